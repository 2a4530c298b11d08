# Shared by the script tests (tests/compat/run.sh, tests/console/run.sh), sourced: finding and
# stopping what a crsd started for a test's data dir, and what both do on exit. The caller
# sets SUITE (its name in output lines) and the globals TMP (its scratch dir, the data dir is
# $TMP/data), CRSD_PID, TEST_PID, STAGE and SUMMARY_PRINTED, then `trap on_exit EXIT`.

say() { echo "$SUITE: $*" >&2; }

# Every process crsd started for our data dir (redis-servers, sentinels, the proxy and its
# workers, the exporter): the pid files they write, plus a /proc scan for one whose pid file is not written
# yet. A pid counts only if its /proc/<pid>/cmdline names one of those programs (pids are
# reused; stale pid files survive kill -9).
redis_pids() {
  local data="$1" f pid cmd
  [ -d "$data" ] || return 0
  {
    while IFS= read -r -d '' f; do
      pid="$(tr -dc '0-9' 2>/dev/null <"$f" || true)"
      if [ -n "$pid" ]; then echo "$pid"; fi
    done < <(find "$data" -name '*.pid' -type f -print0 2>/dev/null)
    for f in /proc/[0-9]*/cmdline; do
      cmd="$(tr '\0' ' ' 2>/dev/null <"$f" || true)"
      case "$cmd" in
        *redis-server*"$data/"* | *redis-sentinel*"$data/"* | *haproxy*"$data/"* | \
          *prometheus-redis-exporter*"$data/"*)
          pid="${f#/proc/}"; echo "${pid%/cmdline}" ;;
      esac
    done
  } | sort -un | while read -r pid; do
    [ "$pid" -gt 1 ] 2>/dev/null || continue
    cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" || true)"
    case "$cmd" in
      *redis-server* | *redis-sentinel* | *haproxy* | *prometheus-redis-exporter*) echo "$pid" ;;
    esac
  done
}

wait_gone() { # wait_gone SECS PID...: true once none of the pids is alive
  local secs="$1" i p alive
  shift
  for ((i = 0; i < secs * 10; i++)); do
    alive=0
    for p in "$@"; do
      if kill -0 "$p" 2>/dev/null && ! grep -qs '^State:.*Z' "/proc/$p/status"; then alive=1; fi
    done
    [ "$alive" -eq 0 ] && return 0
    sleep 0.1
  done
  return 1
}

# The cgroups crsd made for the nodes of our data dir (`<cgroup>/crsd/<id>-<role>` in each
# hierarchy); empty once their redis-servers are gone. crsd removes them when it deletes an
# instance; instances killed here leave them behind.
remove_node_cgroups() {
  local data="$1" inst id dir
  [ -d "$data/instances" ] || return 0
  for inst in "$data"/instances/*/; do
    id="$(basename "$inst")"
    for dir in /sys/fs/cgroup/*/crsd/"$id"-* /sys/fs/cgroup/*/*/*/crsd/"$id"-* \
               /sys/fs/cgroup/crsd/"$id"-*; do
      [ -d "$dir" ] && rmdir "$dir" 2>/dev/null || true
    done
  done
}

cleanup() {
  local pids
  if [ -n "$TEST_PID" ] && kill -0 "$TEST_PID" 2>/dev/null; then
    kill -TERM "$TEST_PID" 2>/dev/null || true
    wait "$TEST_PID" 2>/dev/null || true
  fi
  TEST_PID=""
  # crsd first, so its supervisor does not start a node again behind our back.
  if [ -n "$CRSD_PID" ] && kill -0 "$CRSD_PID" 2>/dev/null; then
    kill -TERM "$CRSD_PID" 2>/dev/null || true
    wait_gone 10 "$CRSD_PID" || kill -KILL "$CRSD_PID" 2>/dev/null || true
    wait "$CRSD_PID" 2>/dev/null || true
  fi
  CRSD_PID=""
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    pids="$(redis_pids "$TMP/data" | tr '\n' ' ')"
    if [ -n "${pids// /}" ]; then
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
      # shellcheck disable=SC2086
      wait_gone 10 $pids || kill -KILL $pids 2>/dev/null || true
    fi
    remove_node_cgroups "$TMP/data"
    rm -rf "$TMP"
  fi
  TMP=""
}

# On exit: crsd's log tail after a failure, the cleanup, and a summary line when the test
# never printed its own.
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ] && [ -n "$TMP" ] && [ -f "$TMP/crsd.log" ]; then
    say "crsd log (last 40 lines):"
    tail -n 40 "$TMP/crsd.log" >&2 || true
  fi
  cleanup
  if [ "$SUMMARY_PRINTED" -eq 0 ]; then
    say "failed during: $STAGE"
    echo "$SUITE: 0 passed, 1 failed"
    [ "$rc" -eq 0 ] && rc=1
  fi
  exit "$rc"
}
