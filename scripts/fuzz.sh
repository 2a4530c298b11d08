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
passed=0
mkdir -p out
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    # Seeds (checked in) are read; new inputs go to the corpus folder (not checked in).
    # libFuzzer's progress goes to out/<target>.log; its summary is printed here.
    if cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -max_len=131072 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"out/$target.log" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $target: $(grep -E '^Done [0-9]+ runs' "out/$target.log" | tail -n 1)"
    else
        failed="$failed $target"
        echo "FAIL $target (fuzz/out/$target.log):"
        tail -n 40 "out/$target.log"
    fi
done
nfailed=$(echo "$failed" | wc -w)
# The closing line in the plain form test runners' readers know.
echo "fuzz: $passed passed, $nfailed failed"
if [ -n "$failed" ]; then
    echo "fuzz: crashes in:$failed (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
