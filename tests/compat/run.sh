#!/usr/bin/env bash
# Compatibility test: a real crsd (HTTPS with a throwaway CA made by `crsd tls init`, plain
# HTTP beside it, real redis-server processes)
# driven by the public qcloudapi-sdk-python 2.0.15 from PyPI (tests/compat/v2_sdk.py), then by
# tencentcloud-sdk-python (redis and monitor 3.1.189) and tccli 3.1.189.1 through API 3.0
# (tests/compat/v3_sdk.py), then by cds-python-sdk 0.14 and the documentation's reference code
# through the Capital Online Redis OpenAPI on /redis (tests/compat/co_sdk.py), all against the
# same crsd.
#
# Needs python3 with venv, redis-server, redis-cli and cargo (or a built
# target/debug/crsd); curl is used for the readiness probe when present. Network: PyPI only, on
# the first run (the venv in target/compat-venv is reused). Works as root and as a user.
#
# Prints one line per check, then a last line "compat: N passed, M failed"; exits non-zero on
# any failure. crsd and every redis-server it started are stopped on every exit path.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

SDK_VERSION="2.0.15"
V3_REDIS_VERSION="3.1.189"
TCCLI_VERSION="3.1.189.1"
CDS_SDK_VERSION="0.14"
# redis-py, whose RedisCluster client walks the cluster edition.
REDIS_PY_VERSION="5.2.1"
VENV="$ROOT/target/compat-venv"
CRSD="$ROOT/target/debug/crsd"
SECRET_ID="AKIDcrsdCompatTest0000000000000000001"
SECRET_KEY="crsdCompatTestSecretKey00000000001"
PORT_MIN=30400
PORT_MAX=30499
READY_LIMIT_SECS=30

TMP=""
CRSD_PID=""
TEST_PID=""
STAGE="setup"
SUMMARY_PRINTED=0

SUITE=compat

# say, redis_pids, wait_gone, remove_node_cgroups, cleanup, on_exit.
# shellcheck source=../lib/stack.sh
. "$ROOT/tests/lib/stack.sh"

trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. the SDK in a venv ----------------------------------------------------------------
STAGE="venv"
sdk_ok() {
  [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/tccli" ] &&
    "$VENV/bin/python" -c "import sys, QcloudApi; sys.exit(QcloudApi.__version__ != '$SDK_VERSION')" \
      >/dev/null 2>&1 &&
    "$VENV/bin/python" - "$V3_REDIS_VERSION" "$TCCLI_VERSION" "$CDS_SDK_VERSION" \
      "$REDIS_PY_VERSION" >/dev/null 2>&1 <<'EOF'
import sys
from importlib.metadata import version
from tencentcloud.redis.v20180412 import redis_client  # noqa: F401
from tencentcloud.monitor.v20180724 import monitor_client  # noqa: F401
from capitalonline.common.client import Client  # noqa: F401
from redis.cluster import RedisCluster  # noqa: F401
import requests  # noqa: F401
sys.exit(version("tencentcloud-sdk-python-redis") != sys.argv[1] or version("tccli") != sys.argv[2]
         or version("tencentcloud-sdk-python-monitor") != sys.argv[1]
         or version("cds-python-sdk") != sys.argv[3] or version("redis") != sys.argv[4])
EOF
}
if ! sdk_ok; then
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input \
    "qcloudapi-sdk-python==$SDK_VERSION" "tencentcloud-sdk-python-redis==$V3_REDIS_VERSION" \
    "tencentcloud-sdk-python-monitor==$V3_REDIS_VERSION" tencentcloud-sdk-python-common "tccli==$TCCLI_VERSION" \
    "cds-python-sdk==$CDS_SDK_VERSION" "redis==$REDIS_PY_VERSION" \
    requests # cds-python-sdk imports requests, declares nothing
  sdk_ok || {
    say "qcloudapi-sdk-python $SDK_VERSION, tencentcloud-sdk-python-redis $V3_REDIS_VERSION, tccli $TCCLI_VERSION or cds-python-sdk $CDS_SDK_VERSION is not usable from $VENV"
    exit 1
  }
fi
PY="$VENV/bin/python"

# ---- 2. crsd, and a CA and server certificate made by `crsd tls init` ---------------------
STAGE="build"
if command -v cargo >/dev/null 2>&1; then
  cargo build -q -p crsd
elif [ ! -x "$CRSD" ]; then
  say "cargo is not installed and $CRSD does not exist"
  exit 1
fi

STAGE="certificates"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/crsd-compat.XXXXXX")"
TMP="$(cd "$TMP" && pwd)"
mkdir -p "$TMP/data"
# A private CA and a certificate for localhost, 127.0.0.1, ::1 and redis.api.qcloud.com, as an
# operator makes them; every client below trusts that CA the way `tls init` printed.
"$CRSD" tls init --dir "$TMP" --days 2 >"$TMP/tls-init.txt"
grep -q "certifi.where()" "$TMP/tls-init.txt"
if command -v openssl >/dev/null 2>&1; then
  openssl verify -CAfile "$TMP/ca.pem" "$TMP/cert.pem" >/dev/null
fi

# ---- 3. crsd: HTTP and HTTPS side by side ---------------------------------------------------
STAGE="start crsd"
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
PORT="$(free_port)"      # HTTPS: every SDK test
HTTP_PORT="$(free_port)" # plain HTTP at the same time
cat >"$TMP/crsd.toml" <<EOF
[instances]
port_min = $PORT_MIN
port_max = $PORT_MAX
[ha]
sentinel_ports = [$(free_port), $(free_port), $(free_port)]
down_after_ms = 1500
[backups]
# The client checks need backups to work on a build machine whose disk the build has filled;
# the reserve itself is tested in crates/crsd/tests/faults_disk.rs.
min_free_bytes = 16777216
[monitor]
# GetMonitorData's check needs a few samples within seconds.
sample_interval_secs = 2
[metrics]
listen = "127.0.0.1:0"
exporter_listen = "127.0.0.1:$(free_port)"
[tls]
cert = "$TMP/cert.pem"
key = "$TMP/key.pem"
listen = "127.0.0.1:$PORT"
EOF
NO_COLOR=1 CRSD_BOOTSTRAP_SECRET_ID="$SECRET_ID" CRSD_BOOTSTRAP_SECRET_KEY="$SECRET_KEY" \
  "$CRSD" serve --config "$TMP/crsd.toml" --data-dir "$TMP/data" --listen "127.0.0.1:$HTTP_PORT" \
  >"$TMP/crsd.log" 2>&1 &
CRSD_PID=$!

STAGE="wait for /healthz"
probe() {
  if command -v curl >/dev/null 2>&1; then
    [ "$(curl -s --noproxy '*' --max-time 2 --cacert "$TMP/ca.pem" -o /dev/null -w '%{http_code}' \
      "https://127.0.0.1:$PORT/healthz" 2>/dev/null || true)" = "200" ]
  else
    SSL_CERT_FILE="$TMP/ca.pem" "$PY" - "$PORT" >/dev/null 2>&1 <<'EOF'
import http.client, ssl, sys
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), timeout=2,
                                context=ssl.create_default_context())
c.request("GET", "/healthz")
sys.exit(c.getresponse().status != 200)
EOF
  fi
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
STAGE="plain HTTP beside HTTPS"
"$PY" - "$HTTP_PORT" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/healthz")
sys.exit(c.getresponse().status != 200)
EOF

# ---- 4. the SDK tests: v2, then API 3.0 (SDK and tccli), then Capital Online ---------------
STAGE="test"
run_test() { # run_test SCRIPT RESULT_FILE [VAR=VALUE...]: sets test_rc, test_passed, test_failed
  local script="$1" result="$2"
  shift 2
  set +e
  env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy -u ALL_PROXY -u all_proxy \
    SSL_CERT_FILE="$TMP/ca.pem" \
    CRSD_HOST="127.0.0.1:$PORT" CRSD_SECRET_ID="$SECRET_ID" CRSD_SECRET_KEY="$SECRET_KEY" \
    CRSD_COMPAT_RESULT="$result" PYTHONDONTWRITEBYTECODE=1 "$@" \
    "$PY" "$ROOT/tests/compat/$script" &
  TEST_PID=$! # in the background so that a signal to this script is handled at once
  wait "$TEST_PID"
  test_rc=$?
  TEST_PID=""
  set -e
  test_passed=0
  test_failed=1
  if [ -s "$result" ]; then
    read -r test_passed test_failed < <("$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["passed"], r["failed"])' "$result")
  fi
  if [ "$test_rc" -ne 0 ] && [ "$test_failed" -eq 0 ]; then
    test_failed=1 # the script died without recording a failure
  fi
}

run_test v2_sdk.py "$TMP/result.json"
passed=$test_passed
failed=$test_failed

mkdir -p "$TMP/v3"
run_test v3_sdk.py "$TMP/result_v3.json" \
  CRSD_CA="$TMP/ca.pem" CRSD_TCCLI="$VENV/bin/tccli" CRSD_SCRATCH="$TMP/v3"
passed=$((passed + test_passed))
failed=$((failed + test_failed))

run_test co_sdk.py "$TMP/result_co.json" \
  CRSD_CA="$TMP/ca.pem" REQUESTS_CA_BUNDLE="$TMP/ca.pem"
passed=$((passed + test_passed))
failed=$((failed + test_failed))

if [ "$failed" -ne 0 ]; then
  say "crsd log (last 40 lines):"
  tail -n 40 "$TMP/crsd.log" >&2 || true
fi

# ---- 5. clean up, then the summary as the last line -----------------------------------------
STAGE="cleanup"
trap - EXIT
cleanup
SUMMARY_PRINTED=1
echo "compat: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
