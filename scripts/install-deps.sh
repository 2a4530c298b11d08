#!/usr/bin/env bash
# Installs what crsd needs on a Debian machine and is missing: redis-server, redis-sentinel (the
# failover engine), haproxy (the stable address of each instance) and prometheus-redis-exporter
# (per-node metrics), all Debian's packages;
# for the tests python3-venv, openssl, curl, xz-utils, prometheus (the metrics test scrapes
# through the example config) and chromium with chromium-driver (the console test), and for
# the backup benchmark nginx and curl.
# Idempotent; does nothing when all is there.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v prometheus-redis-exporter >/dev/null 2>&1 || need+=(prometheus-redis-exporter)
if [ "${1:-}" = "--test" ]; then
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  # The upgrade test unpacks the previous release's source where history is missing.
  command -v xz >/dev/null 2>&1 || need+=(xz-utils)
  command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fi
if [ "${1:-}" = "--bench" ]; then
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
fi
[ ${#need[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
# Debian starts a service for most of these packages when it installs them (a system
# redis-server on 6379, nginx on 80, an exporter watching 6379, a Prometheus); crsd runs its
# own processes and uses none of them. Only the services of the packages installed just now
# are disabled: one the operator already ran is left alone.
if command -v systemctl >/dev/null 2>&1; then
  for pkg in "${need[@]}"; do
    case "$pkg" in
      redis-server|redis-sentinel|haproxy|prometheus-redis-exporter|prometheus|nginx)
        $SUDO systemctl disable --now "$pkg" >/dev/null 2>&1 || true ;;
    esac
  done
fi
