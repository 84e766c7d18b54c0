#!/bin/bash
# npm run bench:bootstrap: the whole bootstrap (vps-nixos bootstrap, the built CLI) on the test VPS
# at several RAM sizes with real-size stand-in ballast (installer 278 MiB, system 1 GiB by default;
# see test/STANDINS.md). Prints, per RAM size, how far it got and per phase: status, seconds, peak
# target memory (MemTotal - MemAvailable, sampled every 2 s) and bytes sent, plus the bytes that
# crossed the test network (tap0 TX in the VPS's netns). Not part of CI: one RAM size takes minutes.
# Usage: bench/bootstrap-bench.sh [--ram "1024 768 512"] [--ballast SIZE|--installer-ballast S --system-ballast S]
#        [--kexec-syscall auto]   (kexec_file_load as the real run uses it; see test/STANDINS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
VPS=test/vps/vps
rams="1024 768 512" ballast_args=()
while (($#)); do
  case $1 in
    --ram) rams=$2; shift 2 ;;
    --ballast|--installer-ballast|--system-ballast|--kexec-syscall) ballast_args+=("$1" "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -f dist/cli/index.js ]] || npm run build >/dev/null
s=$("$VPS" standins "${ballast_args[@]}" --json | tail -n 1)
get() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
echo "stand-ins: installer ballast $(get "$s" installerBallastBytes) B, system ballast $(get "$s" systemBallastBytes) B"
for ram in $rams; do
  j=$("$VPS" up --ram "$ram" --json)
  rd=$(get "$j" runDir) ns=$(get "$j" netns)
  low=()
  ((ram >= 768)) || low=(--allow-low-ram)
  # tap0 is the netns side of the guest's NIC: what it transmits, the guest receives.
  txbytes() { ip -n "$ns" -j -s link show tap0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'; }
  tx0=$(txbytes)
  t0=$(date +%s)
  set +e
  ip netns exec "$ns" node dist/cli/index.js bootstrap --target "$(get "$j" target)" \
    --ssh-private-key-file "$rd/client_ed25519" --known-hosts-file "$rd/known_hosts" \
    --confirm-wipe /dev/vda --kexec-tarball "$(get "$s" kexecTarball)" \
    --toplevel "$(get "$s" toplevel)" --disk-script "$(get "$s" diskScript)" "${low[@]}" \
    --json >"$rd/bootstrap.json" 2>"$rd/bootstrap.log"
  rc=$?
  set -e
  tx1=$(txbytes)
  python3 - "$rd/bootstrap.json" "$ram" "$rc" "$(($(date +%s) - t0))" "$((tx1 - tx0))" <<'PY'
import json, sys
path, ram, rc, secs, tx = sys.argv[1:]
try:
    d = json.load(open(path))
except Exception as e:
    print(f"RAM {ram} MiB: no JSON ({e})"); sys.exit(0)
print(f"RAM {ram} MiB: exit {rc} in {secs} s; {int(tx)/2**20:.1f} MiB sent over the test network (tap0 tx)")
for p in d.get("phases", []):
    print(f"  {p['name']:15} {p['status']:8} {p['seconds']:7.1f} s  peak {p.get('peakMemBytes', 0)/2**20:6.0f} MiB  sent {p.get('bytesSent', 0)/2**20:8.1f} MiB")
if d.get("error"):
    print(f"  stopped: {d['error']['message']}")
PY
  tail -n 5 "$rd/bootstrap.log" | sed 's/^/  log: /'
  "$VPS" down --run-dir "$rd" >/dev/null
done
