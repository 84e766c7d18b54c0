#!/bin/bash
# npm run bench:bootstrap: the whole bootstrap (vps-nixos bootstrap, the built CLI) on the test VPS
# at several RAM sizes with real-size stand-in ballast (installer initrd 192 MiB unpacked / 62 MiB
# zstd, system closure 1 GiB by default; see test/STANDINS.md). Prints, per RAM size, how far it got
# and per phase: status, seconds, peak target memory (MemTotal - MemAvailable, sampled every 2 s)
# and bytes sent, the bytes that crossed the test network (tap0 TX in the VPS's netns), and the
# install's bytes on the wire against the zstd (-3) size of the closure the target lacked.
# Not part of CI: one RAM size takes minutes. The planner's defaults decide (no allow-low-ram),
# except where --allow-low-ram is given.
# Usage: bench/bootstrap-bench.sh [--ram "1024 768 512 384"] [--ballast SIZE|--installer-ballast S --system-ballast S]
#        [--kexec-syscall auto] [--allow-low-ram]   (auto: kexec_file_load as the real run uses it)
set -euo pipefail
cd "$(dirname "$0")/.."
VPS=test/vps/vps
# shellcheck source=bench/lib.sh
. bench/lib.sh
rams="1024 768 512 384" ballast_args=() low=()
while (($#)); do
  case $1 in
    --ram) rams=$2; shift 2 ;;
    --allow-low-ram) low=(--allow-low-ram); shift ;;
    --ballast|--installer-ballast|--system-ballast|--kexec-syscall) ballast_args+=("$1" "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -f dist/cli/index.js ]] || npm run build >/dev/null
s=$("$VPS" standins "${ballast_args[@]}" --json | tail -n 1)
top=$(json_get "$s" toplevel)
closure_nar=$(nix-store -qR "$top" | xargs nix-store -q --size | awk '{ s += $1 } END { print s }')
mapfile -t closure < <(nix-store -qR "$top")
closure_zstd=$(tar -C / -cf - "${closure[@]#/}" | zstd -q -3 -T0 | wc -c)
echo "stand-ins: installer initrd $(json_get "$s" installerInitrdBytes) B zstd, $(json_get "$s" installerUnpackedBytes) B unpacked;" \
  "system closure ${#closure[@]} paths, $closure_nar B NAR (system ballast $(json_get "$s" systemBallastBytes) B), $closure_zstd B as zstd -3"
echo "host: $(nproc) cores, $(uname -r); guest: QEMU TCG ${VPS_QEMU_CPU:-qemu64}, $(date -u +%F)"
for ram in $rams; do
  j=$("$VPS" up --ram "$ram" --json)
  rd=$(json_get "$j" runDir) ns=$(json_get "$j" netns)
  # tap0 is the netns side of the guest's NIC: what it transmits, the guest receives.
  tx0=$(txbytes "$ns" tap0)
  t0=$(date +%s)
  set +e
  ip netns exec "$ns" node dist/cli/index.js bootstrap --target "$(json_get "$j" target)" \
    --ssh-private-key-file "$rd/client_ed25519" --known-hosts-file "$rd/known_hosts" \
    --confirm-wipe /dev/vda --kexec-tarball "$(json_get "$s" kexecTarball)" \
    --toplevel "$(json_get "$s" toplevel)" --disk-script "$(json_get "$s" diskScript)" "${low[@]}" \
    --json >"$rd/bootstrap.json" 2>"$rd/bootstrap.log"
  rc=$?
  set -e
  tx1=$(txbytes "$ns" tap0)
  python3 - "$rd/bootstrap.json" "$ram" "$rc" "$(($(date +%s) - t0))" "$((tx1 - tx0))" "$closure_zstd" <<'PY'
import json, sys
path, ram, rc, secs, tx, czstd = sys.argv[1:]
try:
    d = json.load(open(path))
except Exception as e:
    print(f"RAM {ram} MiB: no JSON ({e})"); sys.exit(0)
print(f"RAM {ram} MiB: exit {rc} in {secs} s; {int(tx)/2**20:.1f} MiB sent over the test network (tap0 tx)")
for p in d.get("phases", []):
    print(f"  {p['name']:15} {p['status']:8} {p['seconds']:7.1f} s  peak {p.get('peakMemBytes', 0)/2**20:6.0f} MiB  sent {p.get('bytesSent', 0)/2**20:8.1f} MiB")
inst = [p for p in d.get("phases", []) if p["name"] == "install" and p["status"] == "done"]
if inst:
    b = inst[0].get("bytesSent", 0)
    print(f"  install on the wire: {b/2**20:.1f} MiB = {b/int(czstd):.3f} x the zstd -3 size of the closure it lacked ({int(czstd)/2**20:.1f} MiB)")
    import re
    v = re.search(r"NAR hashes checked \(([0-9.]+) s\)", json.dumps(inst[0]))
    if v:
        print(f"  NAR verification on the target (before registration): {v.group(1)} s")
    u = re.search(r"(\d+) substituted by the target \(([0-9.]+) s\)", json.dumps(inst[0]))
    if u:
        print(f"  the target asked its binary caches: {u.group(1)} paths substituted in {u.group(2)} s")
if d.get("plan"):
    print(f"  plan: {d['plan'].get('method')} ({'; '.join(d['plan'].get('reasons', [])[-1:])})")
if d.get("error"):
    print(f"  stopped: {d['error']['message']}")
PY
  tail -n 5 "$rd/bootstrap.log" | sed 's/^/  log: /'
  "$VPS" down --run-dir "$rd" >/dev/null
done
