#!/bin/bash
# npm run bench:deploy: the everyday path on the test VPS, in one run. Through the ACTION entry
# (dist/main + dist/post, runner-style environment: INPUT_* variables, GITHUB_OUTPUT/STATE/
# STEP_SUMMARY files, RUNNER_TEMP; a flake, cache on, method auto) against `nixos-rebuild switch
# --target-host` alone, on the same host, same flake, same ssh pin:
#   - unchanged: the host already runs flake#ok. Ours must confirm it from the probe (no build, no
#     copy, no activation, no installer); nixos-rebuild alone builds (a no-op), copies (a no-op
#     query) and activates again.
#   - one-package change: ok → ok2 by ours, ok2 → ok by nixos-rebuild alone (hello-standin 1.0 ↔ 2.0,
#     a new toplevel; both paths are in the runner's store, so neither builds more than the other).
# Prints per run: exit, seconds, what crossed the test network (tap0 tx bytes) and the action's
# outputs; then the medians and the ratios ours / nixos-rebuild alone.
# Stand-ins (test/STANDINS.md): nixos-rebuild (test/standins/bin, first on PATH) and the stand-in
# system toplevels with --system-ballast (default 256MiB).
# --kind container runs it on the nspawn container VPS instead of the QEMU/TCG VM: the same Debian
# guest at the host's CPU speed, where an exec or an SSH session costs what it does on a real
# (KVM) VPS, not 20× that (TESTBED: /dev/kvm hangs guests here; GitHub's e2e.yml runs it on KVM).
# Usage: bench/deploy-bench.sh [--system-ballast SIZE] [--repeat N] [--kind vm|container] [--logs DIR]
# --logs DIR keeps each run's log (the action's main and post, or nixos-rebuild's), every line
# stamped with the seconds since the run began: where the time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
VPS=test/vps/vps
# shellcheck source=bench/lib.sh
. bench/lib.sh
sb=256MiB repeat=3 kind=vm logs=""
while (($#)); do
  case $1 in
    --system-ballast) sb=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --kind) kind=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -f dist/main/index.js ]] || npm run build >/dev/null
"$VPS" standins --ballast 0 --system-ballast "$sb" --json >/dev/null
work=$(mktemp -d)
j=$("$VPS" up --kind "$kind" --json)
# The runner's end of the test network's link.
link=tap0
[[ $kind == vm ]] || link=vh0
rd=$(json_get "$j" runDir) ns=$(json_get "$j" netns) target=$(json_get "$j" target)
[[ -z $logs ]] || mkdir -p "$logs"
trap '"$VPS" down --run-dir "$rd" >/dev/null; rm -rf "$work"' EXIT
ssh_vps() { ip netns exec "$ns" ssh -o BatchMode=yes -o UserKnownHostsFile="$rd/known_hosts" -i "$rd/client_ed25519" "$target" "$@"; }
# the configuration carries the deploy key and the static network, as a user's does (the
# preflight checks both)
read -r gw dev < <(ssh_vps ip -o -4 route show default | awk '{ for (i = 1; i < NF; i++) { if ($i == "via") g = $(i + 1); if ($i == "dev") d = $(i + 1) } print g, d }')
addr=$(ssh_vps ip -o -4 addr show dev "$dev" | awk '{ print $4 }')
flake=$(test/standins/make-flake.sh "$work/flake" --system-ballast "$sb" \
  --authorized-key "$(ssh-keygen -y -f "$rd/client_ed25519")" --static "$dev" "$addr" "$gw")
ssh_vps 'touch /etc/NIXOS'
offline=$'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command flakes'
results=$work/results.tsv
: >"$results"

# One run of the action (main, then post), as the runner starts it.
action() {
  local variant=$1 step=$work/step
  rm -rf "$step"; mkdir -p "$step/temp"
  : >"$step/output"; : >"$step/state"; : >"$step/summary"
  ip netns exec "$ns" env -i PATH="$PWD/test/standins/bin:$PATH" HOME="$HOME" NIX_CONFIG="$offline" \
    RUNNER_TEMP="$step/temp" GITHUB_OUTPUT="$step/output" GITHUB_STATE="$step/state" \
    GITHUB_STEP_SUMMARY="$step/summary" GITHUB_SHA=0123456789abcdef GITHUB_REF_NAME=main \
    INPUT_TARGET="$target" "INPUT_SSH-PRIVATE-KEY=$(cat "$rd/client_ed25519")" \
    "INPUT_KNOWN-HOSTS=$(cat "$rd/known_hosts")" INPUT_FLAKE="$flake#$variant" \
    INPUT_CACHE=true INPUT_METHOD=auto \
    node dist/main/index.js 2>&1 | logged "$step/log" || return $?
  local dir
  dir=$(sed -n '/^vps-nixos-key-dir<</{n;p}' "$step/state")
  ip netns exec "$ns" env -i PATH="$PATH" "STATE_vps-nixos-key-dir=$dir" node dist/post/index.js 2>&1 | logged "$step/log"
}
# nixos-rebuild alone, with the same pin and key.
rebuild_alone() {
  ip netns exec "$ns" env PATH="$PWD/test/standins/bin:$PATH" NIX_CONFIG="$offline" \
    NIX_SSHOPTS="-i $rd/client_ed25519 -o UserKnownHostsFile=$rd/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes" \
    nixos-rebuild switch --flake "$flake#$1" --target-host "$target" 2>&1 | logged "$work/rebuild.log"
}
# logged FILE: stdin appended to FILE; with --logs each line stamped with the seconds since the
# run began (run_t0)
logged() { if [[ -n $logs ]]; then stamp "$run_t0" >>"$1"; else cat >>"$1"; fi; }
out() { sed -n "/^$1<</{n;p}" "$work/step/output"; }
measure() {
  local label=$1 kind=$2; shift 2
  local tx0 t0 rc secs tx
  rm -f "$work/step/log" "$work/rebuild.log"
  tx0=$(txbytes "$ns" "$link"); t0=$EPOCHREALTIME run_t0=$t0
  set +e; "$@"; rc=$?; set -e
  secs=$(since2 "$t0")
  tx=$(($(txbytes "$ns" "$link") - tx0))
  local extra=""
  if [[ $1 == action ]]; then
    extra="changed=$(out changed) system-path=$(out system-path | sed 's|.*/||' | cut -c1-24)…"
    grep -q 'kexec' "$work/step/log" && extra+=" (log mentions kexec)"
  fi
  printf '%-34s exit %d  %7.2f s  %s tx %10d B  %s\n' "$label" "$rc" "$secs" "$link" "$tx" "$extra"
  printf '%s\t%s\t%s\t%s\n' "$kind" "$rc" "$secs" "$tx" >>"$results"
  if ((rc != 0)); then tail -n 8 "$work/step/log" "$work/rebuild.log" 2>/dev/null | sed 's/^/  log: /'; fi
  if [[ -n $logs ]]; then
    cat "$work/step/log" "$work/rebuild.log" 2>/dev/null >"$logs/$(printf '%s' "$label" | tr -c 'A-Za-z0-9#\n' '-' | tr -s '-').log" || :
  fi
}

echo "$kind VPS; system ballast $sb; flake $flake; target $target"
measure "first deploy (action, ok)" first action ok
for i in $(seq "$repeat"); do
  measure "unchanged, action #$i" ours-unchanged action ok
  measure "unchanged, nixos-rebuild alone #$i" alone-unchanged rebuild_alone ok
done
for i in $(seq "$repeat"); do
  measure "ok → ok2, action #$i" ours-change action ok2
  measure "ok2 → ok, nixos-rebuild alone #$i" alone-change rebuild_alone ok
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.rstrip('\n').split('\t') for l in open(sys.argv[1])]
by = {}
for kind, rc, secs, tx in rows:
    by.setdefault(kind, []).append((int(rc), float(secs), int(tx)))
med = lambda k, i: statistics.median(r[i] for r in by[k])
print()
for a, b, what in [('ours-unchanged', 'alone-unchanged', 'unchanged'), ('ours-change', 'alone-change', 'one-package change')]:
    if a not in by or b not in by: continue
    fails = sum(1 for r in by[a] + by[b] if r[0] != 0)
    print(f"{what:20} ours {med(a,1):6.2f} s ({med(a,2):>9.0f} B)  nixos-rebuild alone {med(b,1):6.2f} s ({med(b,2):>9.0f} B)  ratio {med(a,1)/med(b,1):.2f}  (medians of {len(by[a])}; {fails} failed)")
PY
