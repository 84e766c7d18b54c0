# shellcheck shell=bash
# Helpers for the harness's shell tests. Sourced.
T_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export VPS=$T_DIR/../vps
# shellcheck source=../lib/common.sh
. "$T_DIR/../lib/common.sh"

ok() { printf '  ok: %s\n' "$*" >&2; }
fail() { printf '  FAIL: %s\n' "$*" >&2; exit 1; }
# json_get JSON KEY (flat objects of strings/numbers: all our harness prints)
json_get() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
expect_eq() { if [[ $1 == "$2" ]]; then ok "$3 = $2"; else fail "$3: expected '$2', got '$1'"; fi; }

# g RUNDIR cmd...: run in the guest (pinned key, inside the netns)
g() { run_ssh "$@"; }

# Wait (bounded) until the guest answers and `cmd` prints `want`. Prints elapsed seconds.
wait_for() {
  local rd=$1 secs=$2 want=$3 cmd=$4 t0 got=""
  t0=$(now)
  local end=$((SECONDS + secs))
  while ((SECONDS < end)); do
    got=$(run_ssh "$rd" "$cmd" 2>/dev/null) || got=""
    [[ $got == "$want" ]] && { since "$t0"; return 0; }
    sleep 1
  done
  serial_tail "$rd"
  fail "timed out after ${secs}s waiting for '$cmd' to print '$want' (last: '$got')"
}

# After `vps down`: no process, netns or mount of this run is left.
assert_clean() {
  local rd=$1 ns
  ns=$(cat "$rd/netns")
  local left
  left=$(for p in /proc/[0-9]*; do
    [[ $(awk '{print $3}' "$p/stat" 2>/dev/null) == Z ]] && continue
    { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -F -- "$rd" || true
  done)
  [[ -z $left ]] || fail "processes left behind: $left"
  ok "no process of $rd left"
  ! ip netns list | grep -qE "^$ns(-ct)?( |$)" || fail "netns $ns left behind"
  ok "no netns $ns left"
  ! grep -qF -- "$rd" /proc/mounts || fail "mounts left behind: $(grep -F -- "$rd" /proc/mounts)"
  ok "no mount under $rd left"
}
