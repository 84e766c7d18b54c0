#!/bin/bash
# npm run bench:anywhere -- --nixos-anywhere DIR: ours against nixos-anywhere, side by side, on the
# same work: a fresh test VPS (Debian, the same RAM) each run, the same installer tarball (the
# stand-in with a Nix and a nixos-install stand-in, which nixos-anywhere needs and ours ignores),
# the same disk script and system closure, both up to the installed system answering SSH with the
# carried host key and /run/current-system = the toplevel. Runs alternate (ours, theirs, ours, …)
# so a drift of the machine hits both.
# DIR is a checkout of nix-community/nixos-anywhere (src/nixos-anywhere.sh, src/get-facts.sh),
# fetched by you: nothing of it is in this repository, and this machine's tests reach no internet.
# It runs with `--store-paths DISK TOPLEVEL --kexec TARBALL --build-on local --copy-host-keys`
# (--build-on local: its `nix config show` probe needs Nix >= 2.19; Debian's is 2.8).
# Prints per run the wall time, the bytes the VPS received (tap0 tx) and nixos-anywhere's steps
# (from its "### step ###" lines) or our phases; then the medians. Not part of CI.
# --only "ours anywhere ours-own": which runs, in that order (default "ours anywhere"); ours-own is
# ours with the installer it needs, without the Nix nixos-anywhere needs (not the same work).
# Usage: bench/anywhere-bench.sh --nixos-anywhere DIR [--runs N] [--ram MiB] [--only TOOLS]
#        [--logs DIR]   (keeps each run's log, every line stamped with the seconds since its start)
#        [--ballast SIZE | --installer-ballast S --system-ballast S]   (default: --ballast 0)
set -euo pipefail
cd "$(dirname "$0")/.."
VPS=test/vps/vps
# shellcheck source=bench/lib.sh
. bench/lib.sh
logs="" na="" runs=5 ram=1024 ballast_args=() tools="ours anywhere"
while (($#)); do
  case $1 in
    --nixos-anywhere) na=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --ram) ram=$2; shift 2 ;;
    --only) tools=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    --ballast|--installer-ballast|--system-ballast) ballast_args+=("$1" "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -n $na && -f $na/src/nixos-anywhere.sh && -f $na/src/get-facts.sh ]] || {
  echo "bench:anywhere: give --nixos-anywhere DIR, a checkout of github.com/nix-community/nixos-anywhere" >&2
  echo "  (git clone it yourself; it needs src/nixos-anywhere.sh and src/get-facts.sh)" >&2
  exit 2
}
((${#ballast_args[@]})) || ballast_args=(--ballast 0)
[[ -f dist/cli/index.js ]] || npm run build >/dev/null
command -v ssh-copy-id >/dev/null || { echo "bench:anywhere: nixos-anywhere needs ssh-copy-id (openssh-client)" >&2; exit 2; }
s=$("$VPS" standins "${ballast_args[@]}" --installer-nix --json | tail -n 1)
top=$(json_get "$s" toplevel) disk=$(json_get "$s" diskScript) tarball=$(json_get "$s" kexecTarball)
# ours-own: ours with the installer it needs (no Nix in it), for what the design saves
own=$("$VPS" standins "${ballast_args[@]}" --json | tail -n 1)
own_tarball=$(json_get "$own" kexecTarball)
closure_nar=$(nix-store -qR "$top" | xargs nix-store -q --size | awk '{ s += $1 } END { print s }')
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
[[ -z $logs ]] || mkdir -p "$logs"
na_rev=${NIXOS_ANYWHERE_REV:-$(git -C "$na" rev-parse --short HEAD 2>/dev/null || echo "?")}  # the commit, when DIR is no git checkout
echo "bench:anywhere: $(date -u +%F), host $(nproc) cores, QEMU TCG ${VPS_QEMU_CPU:-qemu64}, RAM $ram MiB, nixos-anywhere $na_rev, local Nix $(nix --version | awk '{ print $3 }')"
echo "  installer (both): $(stat -c %s "$tarball") B tarball, $(json_get "$s" installerInitrdBytes) B initrd, $(json_get "$s" installerUnpackedBytes) B unpacked (with a Nix);" \
  "system closure $(nix-store -qR "$top" | wc -l) paths, $closure_nar B NAR (${ballast_args[*]})"

# wait_system NS TARGET RUNDIR: until the installed system answers with the pinned key (at most
# 10 minutes: a guest that hangs in early boot under TCG, seen once, must not stall the bench)
wait_system() {
  local end=$((SECONDS + 600))
  while ((SECONDS < end)); do
    if [[ $(ip netns exec "$1" ssh -o BatchMode=yes -o ConnectTimeout=3 -o UserKnownHostsFile="$3/known_hosts" \
      -o StrictHostKeyChecking=yes -i "$3/client_ed25519" "root@$2" 'readlink -f /run/current-system' 2>/dev/null) == "$top" ]]; then
      return 0
    fi
    sleep 1
  done
  return 1
}

declare -A times net
for ((r = 1; r <= runs; r++)); do
  for tool in $tools; do
    j=$("$VPS" up --ram "$ram" --json)
    rd=$(json_get "$j" runDir) ns=$(json_get "$j" netns) target=$(json_get "$j" target)
    host=${target#*@}
    tx0=$(txbytes "$ns" tap0) t0=$EPOCHREALTIME
    set +e
    if [[ $tool == ours* ]]; then
      t=$tarball; [[ $tool == ours ]] || t=$own_tarball
      ip netns exec "$ns" node dist/cli/index.js bootstrap --target "$target" \
        --ssh-private-key-file "$rd/client_ed25519" --known-hosts-file "$rd/known_hosts" \
        --confirm-wipe /dev/vda --kexec-tarball "$t" --toplevel "$top" --disk-script "$disk" \
        --json >"$work/ours.json" 2> >(stamp "$t0" >"$work/log")
    else
      # nixos-anywhere needs cpio on the target and does not install it (ours does, in prep):
      # the same apt-get from the test VPS's apt repo, timed as part of its run
      { echo "### apt-get install cpio (by hand: nixos-anywhere needs it) ###"
        ip netns exec "$ns" ssh -o BatchMode=yes -o UserKnownHostsFile="$rd/known_hosts" -i "$rd/client_ed25519" "$target" \
          'DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q cpio' 2>&1
      } | stamp "$t0" >"$work/log"
      ip netns exec "$ns" bash "$na/src/nixos-anywhere.sh" --store-paths "$disk" "$top" --kexec "$tarball" \
        --build-on local --copy-host-keys -i "$rd/client_ed25519" "root@$host" </dev/null 2>&1 | stamp "$t0" >>"$work/log"
    fi
    rc=${PIPESTATUS[0]} up=1
    ((rc != 0)) || { wait_system "$ns" "$host" "$rd"; up=$?; }
    set -e
    secs=$(since "$t0")
    tx=$(($(txbytes "$ns" tap0) - tx0))
    # The jump from the old kernel into the installer's (kexec_core's last line to the new
    # kernel's first, wall-clock stamps of the serial console): 11 to 122 s under TCG from one run
    # to the next with the same tarball, where real hardware takes about a second. Both tools
    # cross it; the medians are also given without it.
    jump=$(awk '/kexec_core: Starting new kernel/ && !t { t = $1; next } t && /Linux version/ { printf "%.1f", $1 - t; exit }' "$rd/serial.log")
    if ((rc == 0 && up == 0)); then
      times[$tool]+="$secs "
      net[$tool]+="$(awk -v a="$secs" -v b="${jump:-0}" 'BEGIN { printf "%.1f", a - b }') "
      printf 'run %d %-8s %7.1f s  (kexec jump %s s)  %7.1f MiB to the VPS\n' "$r" "$tool" "$secs" "${jump:-?}" "$(awk -v b="$tx" 'BEGIN { print b / 1048576 }')"
    else
      printf 'run %d %-8s FAILED (exit %s, system up: %s) after %.1f s\n' "$r" "$tool" "$rc" "$([[ $up == 0 ]] && echo yes || echo no)" "$secs"
      # the log holds what the target printed: no control bytes (terminal escapes) reach the terminal
      tail -n 15 "$work/log" | LC_ALL=C tr -d '\000-\010\013-\037\177' | sed 's/^/    /'
    fi
    if [[ $tool == ours* ]]; then
      python3 - "$work/ours.json" <<'PY' || :
import json, sys
d = json.load(open(sys.argv[1]))
print("    " + ", ".join(f"{p['name']} {p['seconds']:.1f}" for p in d.get("phases", [])))
import re
for p in d.get("phases", []):
    m = re.search(r"sent [^;]* in [0-9.]+ s[^;]*; the installer answered [0-9.]+ s after loading", json.dumps(p))
    if m: print("    kexec: " + m.group(0))
PY
    else
      # each step's start, seconds since the run began
      grep -E '^ *[0-9.]+ ### .* ###$' "$work/log" | sed -E 's/^ *([0-9.]+) ### (.*) ###$/\2 @\1/' | paste -sd, | sed 's/^/    /; s/,/, /g'
    fi
    [[ -z $logs ]] || cp "$work/log" "$logs/run$r-$tool.log"
    "$VPS" down --run-dir "$rd" >/dev/null
  done
done
report() { # WHAT OURS THEIRS: medians and their ratio
  local mo ma
  mo=$(median <<<"$2") ma=$(median <<<"$3")
  echo "median $1: ${4:-ours} $mo s (${2:-none}), nixos-anywhere $ma s (${3:-none})"
  [[ $mo == n/a || $ma == n/a ]] || echo "  ratio ${4:-ours} / nixos-anywhere: $(awk -v a="$mo" -v b="$ma" 'BEGIN { printf "%.2f", a / b }')"
}
report "wall time" "${times[ours]:-}" "${times[anywhere]:-}"
report "without the kexec jump" "${net[ours]:-}" "${net[anywhere]:-}"
if [[ -n ${times[ours-own]:-} ]]; then
  report "wall time" "${times[ours-own]}" "${times[anywhere]:-}" "ours with its own installer"
  report "without the kexec jump" "${net[ours-own]}" "${net[anywhere]:-}" "ours with its own installer"
fi
