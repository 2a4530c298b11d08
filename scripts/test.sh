#!/usr/bin/env bash
# The test command (make test, and CI): installs what is missing, then runs the unit and
# integration tests (real redis-server, real HTTP, real SQLite), the upgrade-in-place test
# (the previous release's crsd, then this one, on one data dir), the compatibility tests with
# the public Python clients, the Debian package's check, then each fuzz target for a bounded
# time (FUZZ_SECONDS, 30).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --test
cargo build --workspace --all-targets
# Two tests at a time, one per core: a failover test runs a whole stack (crsd, three
# sentinels, haproxy, the nodes), and four of them at once on two cores starved Sentinel's
# timers (no failover after a kill, now and then).
cargo test --workspace -- --test-threads=2
./scripts/upgrade-test.sh
if [ -x tests/compat/run.sh ]; then
  tests/compat/run.sh
fi
./scripts/package-test.sh
./scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
