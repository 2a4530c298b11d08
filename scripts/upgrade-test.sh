#!/usr/bin/env bash
# Upgrade in place: builds the previous release's crsd (the commit named in
# tests/upgrade/PREVIOUS) from this clone's history, then runs crates/crsd/tests/upgrade.rs,
# which starts that binary on a fresh data dir, makes instances, stops it and checks that this
# tree's crsd adopts the same redis-server processes and serves every instance.
#
# The previous source is extracted once into <target>/previous-src/<commit> and built with its
# own target dir, <target>/previous, kept between runs (a second run only links the tests).
# Run it on its own, never from inside a running `cargo test` (cargo's build lock). Arguments
# go to the test binary (e.g. a test name to run only that one).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-$PWD/target}
case $target in /*) ;; *) target=$PWD/$target ;; esac

commit=$(grep -v '^#' tests/upgrade/PREVIOUS | tr -d '[:space:]')
if [ -z "$commit" ]; then
  echo "upgrade-test: tests/upgrade/PREVIOUS names no commit" >&2
  exit 1
fi
# Its source: from this clone's history, or else from the copy kept beside PREVIOUS
# (tests/upgrade/<commit>.tar.xz: its Cargo files, crates and bench, for checkouts without
# history).
fixture=tests/upgrade/$commit.tar.xz
src=$target/previous-src/$commit
if [ ! -f "$src/.extracted" ]; then
  # Another commit's source (the previous release was bumped) is of no further use, nor is
  # its build (a build of the old commit's crates was seen reused for the new one's).
  rm -rf "$target/previous-src" "$target/previous"
  mkdir -p "$src.partial"
  if git rev-parse --git-dir >/dev/null 2>&1 && git cat-file -e "${commit}^{commit}" 2>/dev/null; then
    git archive "$commit" | tar -x -C "$src.partial"
  elif [ -f "$fixture" ]; then
    echo "upgrade-test: $commit is not in this checkout's history; using $fixture"
    tar -xJf "$fixture" -C "$src.partial"
  else
    echo "upgrade-test: the previous release's commit $commit (tests/upgrade/PREVIOUS) is neither" >&2
    echo "in this checkout's history nor kept as $fixture, so its crsd cannot be built." >&2
    echo "Fetch it (git fetch --unshallow, or git fetch origin $commit) or add the fixture:" >&2
    echo "  git archive $commit -- Cargo.toml Cargo.lock crates bench | xz -9 > $fixture" >&2
    exit 1
  fi
  touch "$src.partial/.extracted"
  mv "$src.partial" "$src"
fi

echo "upgrade-test: building crsd of the previous release ($commit)"
start=$(date +%s)
# Only a binary to start: no debug info, unoptimised dependencies, no incremental state
# (measured cold: about 40% of the CPU time of a build with the dev profile as it is).
CARGO_TARGET_DIR=$target/previous cargo build --locked --manifest-path "$src/Cargo.toml" \
  -p crsd --bin crsd \
  --config 'profile.dev.debug=0' \
  --config 'profile.dev.package."*".opt-level=0' \
  --config 'profile.dev.incremental=false'
echo "upgrade-test: previous crsd built in $(($(date +%s) - start)) s"

CRSD_PREVIOUS_BIN=$target/previous/debug/crsd \
  cargo test -p crsd --test upgrade -- --ignored --test-threads=2 "$@"
