#!/bin/bash
# Bench of the local test VPS (outside CI): image build time (cold, cached), boot-to-ssh (median of 3),
# kexec round trip into the stand-in installer, free RAM before/after kexec, for 512/768/1024 MiB.
# Usage: bench/vps-bench.sh [--rams "512 768 1024"] [--ballast SIZE|real] [--no-cold]
# --no-cold skips the cold image build (it needs ~2 GB in a scratch cache and ~4-6 min).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
vps=$root/test/vps/vps
rams="512 768 1024" ballast=real cold=1
while (($#)); do
  case $1 in
    --rams) rams=$2; shift 2 ;;
    --ballast) ballast=$2; shift 2 ;;
    --no-cold) cold=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
out=$(mktemp -d /var/tmp/vps-bench.XXXXXX)
echo "bench output: $out" >&2
secs() { local t0=$EPOCHREALTIME; "$@" >/dev/null; local rc=$?; awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; return $rc; }
row() { printf '| %s | %s |\n' "$1" "$2" | tee -a "$out/table.md"; }

printf '| measure | value |\n|---|---|\n' | tee "$out/table.md"
if ((cold)); then
  scratch=$(mktemp -d /var/tmp/vps-bench-cache.XXXXXX)
  t=$(VPS_CACHE_DIR=$scratch secs "$vps" image 2>"$out/cold-build.log") || t="FAILED"
  row "image build, cold (mmdebstrap x2 + disk + installer initrd)" "${t}s"
  rm -rf "$scratch"
fi
row "image, cached" "$(secs "$vps" image 2>/dev/null)s"
if [[ $ballast == real ]]; then bopt=(); else bopt=(--ballast "$ballast"); fi
row "stand-ins (ballast ${ballast}), first call" "$(secs "$vps" standins "${bopt[@]}" 2>"$out/standins.log")s"
row "stand-ins, cached" "$(secs "$vps" standins "${bopt[@]}" 2>/dev/null)s"

for ram in $rams; do
  boots=""
  for i in 1 2 3; do
    j=$("$vps" up --ram "$ram" --json 2>>"$out/boot-$ram.log") || { boots+=" fail"; continue; }
    rd=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["runDir"])' "$j")
    boots+=" $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bootToSshSeconds"])' "$j")"
    "$vps" down --run-dir "$rd" 2>>"$out/boot-$ram.log"
    echo "  boot $i at $ram MiB done" >&2
  done
  row "boot-to-ssh ${ram} MiB (median of 3; all:${boots})" "$(echo "$boots" | median)s"
  b=$ballast; [[ $b == real ]] && b=278MiB
  if KEXEC_ONLY=1 "$root/test/vps/tests/kexec-install.sh" "$ram" "$b" >"$out/kexec-$ram.log" 2>&1; then
    for k in uploadSeconds kexecRoundTripSeconds memBeforeKexecMiB memAfterKexecMiB; do
      row "${ram} MiB ${k} (installer ballast ${b})" "$(grep "^RESULT $k=" "$out/kexec-$ram.log" | cut -d= -f2-)"
    done
  else
    row "${ram} MiB kexec (installer ballast ${b})" "FAILED: $(grep -E 'FAIL|ERROR' "$out/kexec-$ram.log" | head -1) (see $out/kexec-$ram.log)"
  fi
done
echo "table: $out/table.md" >&2
