#!/usr/bin/env bash
# Benchmarks (not tests): prints crsd's figures next to the raw redis-server operation measured
# in the same run, and their ratio. See bench/src/main.rs (and bench/src/backups.rs with
# BENCH_SUITE=backups) for what is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --bench
export PATH="$PATH:/usr/sbin"
cargo build --profile profiling -p crsd-bench
./target/profiling/crsd-bench "$@"
