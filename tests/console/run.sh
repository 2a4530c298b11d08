#!/usr/bin/env bash
# Console test: a real crsd (the built binary, plain HTTP on loopback, real redis-server
# processes) and its web console at /console/ in Debian's chromium, headless, driven by
# selenium through Debian's chromium-driver (tests/console/console_test.py): sign in (a wrong
# key refused first), create an instance and see it reach running, take a backup and see it
# listed with a download link that serves its RDB, open the charts, then delete the instance.
# Screenshots go to test-artifacts/console/ (git-ignored); CONSOLE_UPDATE_DOCS=1 also puts some
# minutes of traffic on the instance before the charts and copies their screenshot to
# docs/console.png.
#
# Needs python3 with venv, chromium, chromium-driver (scripts/install-deps.sh --test installs
# them), redis-server and cargo (or a built target/debug/crsd). Network: PyPI only, on the first
# run (the venv in target/console-venv is reused). Prints one line per check, then a last line
# "console: N passed, M failed"; exits non-zero on any failure. crsd and every process it
# started are stopped on every exit path.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

SELENIUM_VERSION="4.51.0"
VENV="$ROOT/target/console-venv"
CRSD="$ROOT/target/debug/crsd"
ARTIFACTS="$ROOT/test-artifacts/console"
SECRET_ID="AKIDcrsdConsoleTest00000000000000001"
SECRET_KEY="crsdConsoleTestSecretKey0000000001"
PORT_MIN=30600
PORT_MAX=30699
READY_LIMIT_SECS=30
TEST_LIMIT_SECS=240

TMP=""
CRSD_PID=""
TEST_PID=""
STAGE="setup"
SUMMARY_PRINTED=0

SUITE=console

# say, redis_pids, wait_gone, remove_node_cgroups, cleanup, on_exit.
# shellcheck source=../lib/stack.sh
. "$ROOT/tests/lib/stack.sh"

trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. the browser, its driver and selenium ----------------------------------------------
STAGE="browser"
CHROMIUM="$(command -v chromium || true)"
CHROMEDRIVER="$(command -v chromedriver || true)"
if [ -z "$CHROMIUM" ] || [ -z "$CHROMEDRIVER" ]; then
  say "chromium and chromium-driver are needed (scripts/install-deps.sh --test installs them)"
  exit 1
fi
STAGE="venv"
venv_ok() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import sys, selenium; sys.exit(selenium.__version__ != '$SELENIUM_VERSION')" \
      >/dev/null 2>&1
}
if ! venv_ok; then
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input \
    "selenium==$SELENIUM_VERSION"
  venv_ok || { say "selenium $SELENIUM_VERSION is not usable from $VENV"; exit 1; }
fi
PY="$VENV/bin/python"

# ---- 2. crsd -----------------------------------------------------------------------------
STAGE="build"
if command -v cargo >/dev/null 2>&1; then
  cargo build -q -p crsd
elif [ ! -x "$CRSD" ]; then
  say "cargo is not installed and $CRSD does not exist"
  exit 1
fi

STAGE="start crsd"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/crsd-console.XXXXXX")"
TMP="$(cd "$TMP" && pwd)"
mkdir -p "$TMP/data"
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
PORT="$(free_port)"
cat >"$TMP/crsd.toml" <<CONF
[instances]
port_min = $PORT_MIN
port_max = $PORT_MAX
[ha]
sentinel_ports = [$(free_port), $(free_port), $(free_port)]
[backups]
# Backups must work on a build machine whose disk the build has filled; the reserve itself is
# tested in crates/crsd/tests/faults_disk.rs.
min_free_bytes = 16777216
[monitor]
# The chart needs a few points within seconds.
sample_interval_secs = 1
[metrics]
listen = "127.0.0.1:0"
exporter_listen = "127.0.0.1:$(free_port)"
CONF
NO_COLOR=1 CRSD_BOOTSTRAP_SECRET_ID="$SECRET_ID" CRSD_BOOTSTRAP_SECRET_KEY="$SECRET_KEY" \
  "$CRSD" serve --config "$TMP/crsd.toml" --data-dir "$TMP/data" --listen "127.0.0.1:$PORT" \
  >"$TMP/crsd.log" 2>&1 &
CRSD_PID=$!

STAGE="wait for /healthz"
probe() {
  "$PY" - "$PORT" >/dev/null 2>&1 <<'PYEOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
c.request("GET", "/healthz")
sys.exit(c.getresponse().status != 200)
PYEOF
}
deadline=$((SECONDS + READY_LIMIT_SECS))
until probe; do
  if ! kill -0 "$CRSD_PID" 2>/dev/null; then
    say "crsd exited before it was ready"
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    say "crsd did not answer /healthz with 200 within ${READY_LIMIT_SECS}s"
    exit 1
  fi
  sleep 0.2
done

# ---- 3. the browser walk -----------------------------------------------------------------
STAGE="test"
rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
RESULT="$TMP/result.json"
started=$SECONDS
set +e
env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy -u ALL_PROXY -u all_proxy \
  CRSD_URL="http://127.0.0.1:$PORT" CRSD_SECRET_ID="$SECRET_ID" CRSD_SECRET_KEY="$SECRET_KEY" \
  CRSD_CHROMIUM="$CHROMIUM" CRSD_CHROMEDRIVER="$CHROMEDRIVER" CRSD_ARTIFACTS="$ARTIFACTS" \
  CRSD_CONSOLE_RESULT="$RESULT" CRSD_CONSOLE_LIMIT_SECS="$TEST_LIMIT_SECS" \
  CRSD_CONSOLE_DOCS_LOAD_SECS="$([ "${CONSOLE_UPDATE_DOCS:-0}" = "1" ] && echo 150 || echo 0)" \
  PYTHONDONTWRITEBYTECODE=1 SE_AVOID_STATS=true \
  "$PY" "$ROOT/tests/console/console_test.py" &
TEST_PID=$! # in the background so that a signal to this script is handled at once
wait "$TEST_PID"
test_rc=$?
TEST_PID=""
set -e
passed=0
failed=1
if [ -s "$RESULT" ]; then
  read -r passed failed < <("$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["passed"], r["failed"])' "$RESULT")
fi
if [ "$test_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # the script died without recording a failure
fi
say "the browser walk took $((SECONDS - started)) s; screenshots in $ARTIFACTS"
if [ "$failed" -ne 0 ]; then
  say "crsd log (last 40 lines):"
  tail -n 40 "$TMP/crsd.log" >&2 || true
elif [ "${CONSOLE_UPDATE_DOCS:-0}" = "1" ]; then
  cp "$ARTIFACTS/04-charts.png" "$ROOT/docs/console.png"
  say "docs/console.png updated"
fi

# ---- 4. clean up, then the summary as the last line ---------------------------------------
STAGE="cleanup"
trap - EXIT
cleanup
SUMMARY_PRINTED=1
echo "console: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
