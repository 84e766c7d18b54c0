#!/bin/bash
# npm run bench:faults: the fault campaign (issue 21) on the test VPS, outside CI (its bad-input
# part runs in CI: __tests__/integration/bad-inputs.test.ts). Compiles bench/faults/*.ts with the
# project's tsc; each part boots a 1 GiB VM with a spare disk that no layout names
# (VPS_SPARE_DISK_MIB) and runs inside that VM's netns: bad inputs, deploy faults (snapshot
# `deployed`), bootstrap faults (snapshots `fresh`, `installer`), a scan of every output for key
# material. Prints a Markdown table, one row per fault; its last line is
#   faults: N injected, N unreachable, N wrong-disk; bad inputs: N rejected of M; secrets leaked: N
# Usage: bench/faults.sh [all|deploy|bootstrap|PART,PART…]   (PART: deploy, chains, installer-a,
#   installer-b; bootstrap is the last three)
# `all` runs two halves side by side, each on a VPS of its own, and merges their reports
# (FAULTS_SERIAL=1: one VPS, one after the other): the bad inputs, the deploy faults and the first
# faults from the installer; the bootstrap chains from the distribution and the other faults from
# the installer. Much of each is waiting for the host (reboots, confirm windows, rollbacks) or one
# emulated CPU busy, so on 2 cores two VPSes get through more than one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
VPS=test/vps/vps
mode=${1:-all}
[[ -f dist/cli/index.js ]] || npm run build >/dev/null
out=$(mktemp -d /tmp/vps-nixos-faults-build.XXXXXX)
# shellcheck disable=SC2317 # run by the trap
cleanup() {
  for f in "$out"/*.rundir; do
    [[ -f $f ]] && "$VPS" down --run-dir "$(cat "$f")" >/dev/null 2>&1
  done
  rm -rf "$out"
}
trap cleanup EXIT
"$root/node_modules/.bin/tsc" --outDir "$out" --rootDir "$root" --module commonjs --target es2022 \
  --moduleResolution node --esModuleInterop --skipLibCheck --strict --types node,jest \
  --resolveJsonModule "$root/bench/faults/campaign.ts" "$root/bench/faults/merge.ts"
ln -s "$root/node_modules" "$out/node_modules"
# the compiled helpers find scripts/ and dist/ from their own place: give them the tree's
for d in scripts dist test; do ln -s "$root/$d" "$out/$d"; done
"$VPS" standins --ballast 0 --json >/dev/null
t0=$(date +%s)

# One part on a VPS of its own: part NAME LOG [campaign.js options…]
part() {
  local name=$1 log=$2 j rd
  shift 2
  j=$(VPS_SPARE_DISK_MIB=64 "$VPS" up --json 2>>"$log")
  rd=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["runDir"])' "$j")
  echo "$rd" >"$out/$name.rundir"
  "$VPS" savevm fresh --run-dir "$rd" >/dev/null 2>>"$log"
  "$VPS" exec --run-dir "$rd" -- node "$out/bench/faults/campaign.js" "$name" "$@" 2>>"$log"
}

if [[ $mode != all || ${FAULTS_SERIAL:-} == 1 ]]; then
  part "$mode" /dev/stderr
  exit
fi
# Side by side, about equal halves. Each half's progress goes to its log; the logs follow the
# report.
part deploy,installer-a "$out/a.log" --json "$out/a.json" &
pd=$!
sleep 5 # the two VMs boot one after the other
part chains,installer-b "$out/b.log" --no-bad-inputs --json "$out/b.json" &
pb=$!
rc=0
wait "$pd" || rc=$?
wait "$pb" || rc=$?
node "$out/bench/faults/merge.js" "$(($(date +%s) - t0))" "$out"/*.json
for p in a b; do
  echo
  echo "<!-- half $p's progress:"
  sed 's/-->/- ->/g' "$out/$p.log"
  echo "-->"
done >&2
exit "$rc"
