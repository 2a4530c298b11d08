#!/usr/bin/env bash
# The test command (make test, and CI): installs what is missing, then runs the unit and
# integration tests (real redis-server, real HTTP, real SQLite), the upgrade-in-place test
# (the previous release's crsd, then this one, on one data dir), the compatibility tests with
# the public Python clients, the web console in headless chromium, the Debian package's check,
# then each fuzz target for a bounded time (FUZZ_SECONDS, 30).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage says how much disk is left: a full disk fails backups and builds far from its cause.
stage() { echo "== $1 (disk free: $(df -h --output=avail . | tail -n 1 | tr -d ' '))"; }
stage "dependencies"
./scripts/install-deps.sh --test
stage "build"
cargo build --workspace --all-targets
stage "unit and integration tests"
# Two tests at a time, one per core: a failover test runs a whole stack (crsd, three
# sentinels, haproxy, the nodes), and four of them at once on two cores starved Sentinel's
# timers (no failover after a kill, now and then).
cargo test --workspace -- --test-threads=2
stage "upgrade in place"
./scripts/upgrade-test.sh
stage "public clients"
if [ -x tests/compat/run.sh ]; then
  tests/compat/run.sh
fi
stage "console"
tests/console/run.sh
stage "Debian package"
./scripts/package-test.sh
stage "fuzzing"
./scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
