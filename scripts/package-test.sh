#!/usr/bin/env bash
# The Debian package, checked without installing it on this machine: built by scripts/deb.sh
# (from the debug binary the tests use; `make deb` packs the release one), its control data
# and files; its unit verified by `systemd-analyze verify` in a fresh root that holds only the
# package and systemd's targets (no warning allowed); its maintainer scripts parsed; then the
# packaged binary started with the packaged config (its ports moved to free ones) as an
# unprivileged user, as the unit does, until /healthz answers and the first start showed the
# keys (and kept them 0600).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "package-test: $*" >&2; exit 1; }
tmp=$(mktemp -d)
crsd_pid=""
cleanup() {
  if [ -n "$crsd_pid" ]; then
    kill "$crsd_pid" 2>/dev/null || true
    # Until it has exited: its supervisor may still be starting a warm node.
    for _ in $(seq 100); do kill -0 "$crsd_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  # Whatever crsd started for its data folder (sentinels, the proxy, the exporter, the
  # warm pool's redis-servers).
  for p in $(pgrep -f "$tmp/data" || true); do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
chmod 0755 "$tmp"

[ -x target/debug/crsd ] || cargo build -p crsd --bin crsd
deb=$(scripts/deb.sh --binary target/debug/crsd --out "$tmp/out")

depends=$(dpkg-deb --field "$deb" Depends)
for dep in redis-server redis-sentinel haproxy prometheus-redis-exporter adduser; do
  grep -q "\b$dep\b" <<<"$depends" || fail "Depends lacks $dep: $depends"
done
dpkg-deb -e "$deb" "$tmp/control"
grep -qx /etc/crsd/crsd.toml "$tmp/control/conffiles" || fail "crsd.toml is not a conffile"
for s in postinst prerm postrm; do
  sh -n "$tmp/control/$s" || fail "$s does not parse"
done

root="$tmp/root"
dpkg-deb -x "$deb" "$root"
for f in usr/bin/crsd lib/systemd/system/crsd.service etc/crsd/crsd.toml \
  usr/share/doc/crsd/examples/prometheus.yml; do
  [ -e "$root/$f" ] || fail "missing /$f"
done
unit="$root/lib/systemd/system/crsd.service"
for line in "KillMode=process" "User=crsd" "StateDirectory=crsd" "Delegate=yes" \
  "ExecStart=/usr/bin/crsd serve --config /etc/crsd/crsd.toml"; do
  grep -qx "$line" "$unit" || fail "the unit lacks $line"
done
cp /lib/systemd/system/*.target "$root/lib/systemd/system/"
verified=$(systemd-analyze verify --root="$root" /lib/systemd/system/crsd.service 2>&1) ||
  fail "systemd-analyze verify: $verified"
[ -z "$verified" ] || fail "systemd-analyze verify warns: $verified"

# The packaged config, readable by the user the run uses, on free ports.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
grep -qx 'data_dir = "/var/lib/crsd"' "$root/etc/crsd/crsd.toml" || fail "data_dir is not /var/lib/crsd"
sed -e "s|^sentinel_ports = .*|sentinel_ports = [$(free_port), $(free_port), $(free_port)]|" \
  -e "s|^listen = \"127.0.0.1:9751\"|listen = \"127.0.0.1:$(free_port)\"|" \
  -e "s|^exporter_listen = .*|exporter_listen = \"127.0.0.1:$(free_port)\"|" \
  "$root/etc/crsd/crsd.toml" >"$tmp/crsd.toml"
chmod 0644 "$tmp/crsd.toml"
install -d -m 0700 -o nobody "$tmp/data"
port=$(free_port)
runuser -u nobody -- "$root/usr/bin/crsd" serve --config "$tmp/crsd.toml" --data-dir "$tmp/data" \
  --listen "127.0.0.1:$port" >"$tmp/stdout" 2>"$tmp/stderr" &
crsd_pid=$!
disown
for _ in $(seq 150); do
  if curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz" | grep -qx 200; then
    break
  fi
  kill -0 "$crsd_pid" 2>/dev/null || fail "crsd exited: $(tail -5 "$tmp/stderr")"
  sleep 0.2
done
grep -q "crsd is ready." "$tmp/stdout" || fail "no ready banner: $(cat "$tmp/stdout") $(tail -5 "$tmp/stderr")"
grep -q "SecretKey:" "$tmp/stdout" || fail "the first start did not show the keys"
[ "$(stat -c %a "$tmp/data/credentials.json")" = 600 ] || fail "credentials.json is not 0600"
echo "package-test: ok ($(basename "$deb"), $(du -h "$deb" | cut -f1))"
