#!/bin/bash
# Several VPSes at once: started in parallel, each on its own netns/subnet, each answering with its
# own pinned key; then all down and clean.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d)
trap 'for f in "$tmp"/*.json; do [[ -s $f ]] && "$VPS" down --run-dir "$(json_get "$(cat "$f")" runDir)" >/dev/null 2>&1; done; rm -rf "$tmp"' EXIT
"$VPS" up --json > "$tmp/vm.json" 2>"$tmp/vm.log" &
p1=$!
"$VPS" up --kind container --json > "$tmp/ct1.json" 2>"$tmp/ct1.log" &
p2=$!
"$VPS" up --kind container --json > "$tmp/ct2.json" 2>"$tmp/ct2.log" &
p3=$!
wait "$p1" "$p2" "$p3" || { cat "$tmp"/*.log >&2; fail "a parallel up failed"; }
declare -A seen=()
for f in "$tmp"/*.json; do
  j=$(cat "$f") rd=$(json_get "$(cat "$f")" runDir)
  addr=$(json_get "$j" address) ns=$(json_get "$j" netns)
  [[ -z ${seen[$addr]:-} ]] || fail "address $addr used twice"
  seen[$addr]=1
  expect_eq "$(g "$rd" cat /etc/hostname)" "$([[ $(json_get "$j" kind) == vm ]] && echo vps || echo vps-ct)" "$(basename "$f" .json) at $addr in $ns"
done
for f in "$tmp"/*.json; do
  rd=$(json_get "$(cat "$f")" runDir)
  "$VPS" down --run-dir "$rd"
  assert_clean "$rd"
done
rm -f "$tmp"/*.json
