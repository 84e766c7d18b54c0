# shellcheck shell=bash
# Shared helpers for the test VPS harness. Sourced, never executed.

VPS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VPS_CACHE_DIR=${VPS_CACHE_DIR:-/var/cache/vps-nixos-testvps}
VPS_RUN_ROOT=${VPS_RUN_ROOT:-/tmp/vps-nixos-testvps}
# Addresses live only inside network namespaces we create: 10.77.N.0/24 and a ULA /64 per slot N.
VPS_NET4_PREFIX=${VPS_NET4_PREFIX:-10.77}
VPS_NET6_PREFIX=${VPS_NET6_PREFIX:-fd7a:7e57:0}

log() { printf '[vps %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[vps] ERROR: %s\n' "$*" >&2; exit 1; }
now() { printf '%s' "$EPOCHREALTIME"; }
# seconds since $1 (an EPOCHREALTIME value), one decimal
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# Hash of everything that determines the images: package lists and the scripts/files baked in.
image_hash() {
  (cd "$VPS_DIR" && find image guest installer system ../../scripts/installer-tools.txt -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
    | sha256sum | cut -c1-16
}
# VPS_IMAGE_DIR overrides (e.g. a dir restored by CI's cache step, or a dev build).
image_dir() { printf '%s' "${VPS_IMAGE_DIR:-$VPS_CACHE_DIR/$(image_hash)}"; }

# Parse "278MiB", "1GiB", "512M", "0", "1234" (bytes) into bytes.
parse_size() {
  local s=$1 n unit
  [[ $s =~ ^([0-9]+)([KMGkmg]?)(i?[Bb]?)$ ]] || die "bad size: $s"
  n=${BASH_REMATCH[1]}; unit=${BASH_REMATCH[2]^^}
  case $unit in
    K) echo $((n * 1024)) ;; M) echo $((n * 1024 * 1024)) ;; G) echo $((n * 1024 * 1024 * 1024)) ;; *) echo "$n" ;;
  esac
}

# Is PID alive and was it started for this run dir? (guards against PID reuse)
pid_is_ours() {
  local pid=$1 marker=$2
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$marker"
}

# Wait until PID is gone, up to $2 seconds.
wait_pid_gone() {
  local pid=$1 secs=$2 end
  end=$((SECONDS + secs))
  while [[ -e /proc/$pid ]]; do
    # a zombie child of ours counts as gone
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && return 0
    ((SECONDS < end)) || return 1
    sleep 0.2
  done
}

# ssh into a run's guest with the pinned host key, inside its netns. Usage: run_ssh RUNDIR cmd...
run_ssh() {
  local rd=$1; shift
  ip netns exec "$(cat "$rd/netns")" ssh "${SSH_OPTS[@]}" -i "$rd/client_ed25519" \
    -o UserKnownHostsFile="$rd/known_hosts" "root@$(cat "$rd/address")" "$@"
}
# ServerAliveInterval: a probe that connects just as the guest kexecs would otherwise hang ~300 s (TESTBED 3).
SSH_OPTS=(-o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR
  -o ConnectTimeout=5 -o ServerAliveInterval=2 -o ServerAliveCountMax=3)

serial_tail() {
  local rd=$1
  if [[ -s $rd/serial.log ]]; then
    echo "--- last 40 lines of $rd/serial.log ---" >&2
    tail -n 40 "$rd/serial.log" >&2
  fi
  # a container's console shows little: its journal is in the overlay's upper dir
  if [[ -d $rd/ct-upper/var/log/journal ]]; then
    echo "--- last 40 lines of the container's journal ---" >&2
    journalctl -D "$rd/ct-upper/var/log/journal" --no-pager -n 40 >&2 || true
  fi
}

# The installed stand-in system's root tar (image build) as the stand-in toplevels take it:
# prints "PATH SHA256 BYTES"; the sha256 is computed once and kept beside the tar.
rootfs_facts() {
  local img=$1 tar sha
  tar=$img/system-root.tar
  [[ -f $tar ]] || die "$tar is missing: build the image first (test/vps/vps image)"
  if [[ ! -s $tar.sha256 || $tar.sha256 -ot $tar ]]; then
    sha256sum "$tar" | cut -d' ' -f1 > "$tar.sha256.tmp" && mv "$tar.sha256.tmp" "$tar.sha256"
  fi
  sha=$(cat "$tar.sha256")
  printf '%s %s %s\n' "$tar" "$sha" "$(stat -c %s "$tar")"
}
