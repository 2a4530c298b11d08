#!/bin/sh
# Runs every cargo-fuzz target in fuzz/ for a bounded time: the parameter parsers and signers
# of the three dialects. Usage: scripts/fuzz.sh [seconds per target, default 60].
#
# cargo-fuzz needs nightly compiler features; on a stable toolchain RUSTC_BOOTSTRAP=1 allows
# them. Installs cargo-fuzz when missing. Exits non-zero when any target finds a crash (its
# input is left in fuzz/artifacts/<target>/; replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>`).
set -eu
seconds="${1:-60}"
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
failed=""
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    # Seeds (checked in) are read; new inputs go to the corpus folder (not checked in).
    if ! cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -max_len=131072 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1; then
        failed="$failed $target"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz: crashes in:$failed (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: no crash in any target"
