#!/usr/bin/env bash
# The test command (make test, and CI): installs what is missing, then runs the unit and
# integration tests (real redis-server, real HTTP, real SQLite) and the compatibility tests
# with the public Python clients, then each fuzz target for a bounded time (FUZZ_SECONDS, 30).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --test
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads=4
if [ -x tests/compat/run.sh ]; then
  tests/compat/run.sh
fi
./scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
