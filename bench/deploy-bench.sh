#!/bin/bash
# npm run bench:deploy: wall time and bytes of deploys to the test VPS through the built CLI:
# the first deploy (whole closure), a no-change deploy, and a one-path change (ok → ok2: the
# hello-standin package 1.0 → 2.0, plus the new toplevel). Stand-ins: nixos-rebuild
# (test/standins/bin) and the toplevel variants, with --system-ballast (default 256MiB) shared by
# all variants (test/STANDINS.md). Prints, per deploy: exit, seconds, what the product measured
# (paths and NAR bytes added to the target's store) and what crossed the test network (tap0 tx).
# Usage: bench/deploy-bench.sh [--system-ballast SIZE] [--repeat N]
set -euo pipefail
cd "$(dirname "$0")/.."
VPS=test/vps/vps
sb=256MiB repeat=3
while (($#)); do
  case $1 in
    --system-ballast) sb=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -f dist/cli/index.js ]] || npm run build >/dev/null
get() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); [d:=d[k] for k in sys.argv[2:]]; print(d)' "$@"; }
s=$("$VPS" standins --ballast 0 --system-ballast "$sb" --json | tail -n 1)
work=$(mktemp -d)
flake=$(test/standins/make-flake.sh "$work/flake" --system-ballast "$sb")
j=$("$VPS" up --json)
rd=$(get "$j" runDir) ns=$(get "$j" netns) target=$(get "$j" target)
trap '"$VPS" down --run-dir "$rd" >/dev/null; rm -rf "$work"' EXIT
ssh_vps() { ip netns exec "$ns" ssh -o BatchMode=yes -o UserKnownHostsFile="$rd/known_hosts" -i "$rd/client_ed25519" "$target" "$@"; }
ssh_vps 'touch /etc/NIXOS'
txbytes() { ip -n "$ns" -j -s link show tap0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'; }
echo "system ballast $(get "$s" systemBallastBytes) B; closure of ok: $(nix path-info -S "$(get "$s" variants ok)" --extra-experimental-features nix-command | awk '{print $2}') B"
deploy() {
  local label=$1; shift
  local tx0 t0 rc
  tx0=$(txbytes); t0=$(date +%s.%N)
  set +e
  ip netns exec "$ns" env PATH="$PWD/test/standins/bin:$PATH" \
    NIX_CONFIG=$'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command flakes' \
    node dist/cli/index.js deploy --target "$target" --ssh-private-key-file "$rd/client_ed25519" \
    --known-hosts-file "$rd/known_hosts" --cache false --json "$@" >"$work/out.json" 2>"$work/err.log"
  rc=$?
  set -e
  python3 - "$work/out.json" "$label" "$rc" "$t0" "$(($(txbytes) - tx0))" <<'PY'
import json, sys, time
path, label, rc, t0, tx = sys.argv[1:]
secs = time.time() - float(t0)
try:
    d = json.load(open(path))
except Exception as e:
    print(f"{label}: no JSON ({e})"); sys.exit(0)
print(f"{label:28} exit {rc}  {float(secs):6.1f} s  changed {str(d['changed']).lower():5}  measured {d['pathsSent']:3} paths {d['bytesSent']/2**20:9.2f} MiB  tap0 tx {int(tx)/2**20:9.2f} MiB  (nixos-rebuild {d['rebuild']['seconds']:.1f} s)")
PY
  [[ $rc == 0 ]] || tail -n 5 "$work/err.log" | sed 's/^/  log: /'
}
deploy "first deploy (ok)" --flake "$flake#ok"
for i in $(seq "$repeat"); do
  deploy "no change (ok) #$i" --flake "$flake#ok"
done
for i in $(seq "$repeat"); do
  deploy "one-path change (ok2) #$i" --flake "$flake#ok2"
  deploy "one-path change (ok) #$i" --flake "$flake#ok"
done
