#!/usr/bin/env bash
# Builds the Debian package of crsd with dpkg-deb: target/debian/crsd_<version>_<arch>.deb.
#   scripts/deb.sh                   the release binary (built here: `cargo build --release`)
#   scripts/deb.sh --binary FILE     another crsd binary (the package test uses the debug one)
#   scripts/deb.sh --out DIR         where the .deb goes
# The package: /usr/bin/crsd; /lib/systemd/system/crsd.service (its own user, KillMode=process,
# StateDirectory=crsd); /etc/crsd/crsd.toml (a conffile: the defaults with data_dir
# /var/lib/crsd); the README and the Prometheus and Grafana examples in /usr/share/doc/crsd;
# depends on Debian's redis-server, redis-sentinel, haproxy and prometheus-redis-exporter.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
out="target/debian"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release -p crsd --bin crsd
  binary=target/release/crsd
fi
[ -x "$binary" ] || { echo "deb.sh: no executable $binary" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
name="crsd_${version}_${arch}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"

install -D -m 0755 "$binary" "$root/usr/bin/crsd"
install -D -m 0644 packaging/debian/crsd.service "$root/lib/systemd/system/crsd.service"
install -d -m 0755 "$root/etc/crsd"
sed 's|^data_dir = "./data"|data_dir = "/var/lib/crsd"|' examples/crsd.toml >"$root/etc/crsd/crsd.toml"
grep -q '^data_dir = "/var/lib/crsd"' "$root/etc/crsd/crsd.toml"
chmod 0640 "$root/etc/crsd/crsd.toml"
install -D -m 0644 README.md "$root/usr/share/doc/crsd/README.md"
for f in prometheus.yml grafana-dashboard.json crsd.toml; do
  install -D -m 0644 "examples/$f" "$root/usr/share/doc/crsd/examples/$f"
done

install -d -m 0755 "$root/DEBIAN"
for s in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$s" "$root/DEBIAN/$s"
done
echo /etc/crsd/crsd.toml >"$root/DEBIAN/conffiles"
size=$(du -sk "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: crsd
Version: $version
Architecture: $arch
Maintainer: crsd developers <crsd@localhost>
Installed-Size: $size
Depends: adduser, redis-server, redis-sentinel, haproxy, prometheus-redis-exporter
Section: database
Priority: optional
Description: self-hosted Cloud Redis Store
 crsd runs Redis instances on your own machines (real redis-server processes, failed over by
 Redis Sentinel behind HAProxy) and lets users create, resize, back up and restore them
 through the Tencent Cloud CRS (v2 and API 3.0) and Capital Online Redis APIs.
CONTROL

dpkg-deb --root-owner-group --build "$root" "$out/$name.deb" >/dev/null
echo "$out/$name.deb"
