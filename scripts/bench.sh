#!/usr/bin/env bash
# Benchmarks (not tests): prints crsd's figures next to the raw redis-server operation measured
# in the same run, and their ratio. See bench/src/main.rs for what is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release -p crsd-bench
./target/release/crsd-bench "$@"
