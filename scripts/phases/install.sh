#!/bin/sh
# Phase 3 (partition + install), in the kexec installer. Prints key=value lines.
# Usage:
#   install.sh identity DISK            machine-id carried from the old system, the disk's kind/size
#   install.sh disko DISK SCRIPT        run the disk script (destroy,format,mount): WIPES DISK
#   install.sh state TOPLEVEL           how far the install got (for detect and resume)
#   install.sh finish TOPLEVEL          nixos-install from /mnt's store, host keys into /mnt
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin:/run/current-system/sw/bin"
kv() { printf '%s=%s\n' "$1" "$2"; }
fail() { kv error "$1"; exit 1; }
marker=/run/vps-nixos/disko-done
profile=/mnt/nix/var/nix/profiles/system

keys_match() {
  for k in /etc/ssh/ssh_host_*_key; do
    [ -e "$k" ] || continue
    cmp -s "$k" "/mnt$k" || return 1
  done
  return 0
}

case ${1:-} in
  identity)
    disk=${2:?disk}
    for f in /var/lib/vps-nixos/carried/machine-id /etc/vps-nixos/carried/machine-id /etc/machine-id; do
      if [ -s "$f" ]; then kv machine_id "$(cat "$f")"; kv machine_id_from "$f"; break; fi
    done
    if [ -b "$disk" ]; then
      kv disk_type "$(lsblk -dno TYPE "$disk" 2>/dev/null)"
      kv disk_bytes "$(lsblk -bdno SIZE "$disk" 2>/dev/null)"
      kv disk_mounted "$(lsblk -nro MOUNTPOINT "$disk" 2>/dev/null | grep -c . || :)"
    else
      kv disk_type missing
    fi
    kv root_fstype "$(findmnt -no FSTYPE /)"
    ;;
  disko)
    disk=${2:?disk} script=${3:?disk script}
    [ -x "$script" ] || fail "$script is not in the installer's store"
    rm -f "$marker"
    # Swap on the disk would keep it busy; zram stays on: the install needs it.
    on_disk() { awk -v d="$disk" 'NR > 1 && index($1, d) == 1 { print $1 }' /proc/swaps; }
    on_disk | while read -r dev; do swapoff "$dev"; done
    [ -z "$(on_disk)" ] || fail "cannot swapoff $(on_disk | tr '\n' ' ')on $disk"
    DISKO_DEVICE=$disk "$script" || fail "the disk script failed (exit $?)"
    mountpoint -q /mnt || fail "the disk script did not mount /mnt"
    mkdir -p /run/vps-nixos
    printf '%s %s\n' "$disk" "$script" >"$marker"
    kv mnt "$(findmnt -no SOURCE,FSTYPE /mnt | tr ' ' ,)"
    kv mnt_avail_bytes "$(df -kP /mnt | awk 'NR == 2 { printf "%.0f", $4 * 1024 }')"
    ;;
  state)
    toplevel=${2:?toplevel}
    kv disko "$(cat "$marker" 2>/dev/null || echo none)"
    if mountpoint -q /mnt; then kv mnt mounted; else kv mnt none; fi
    kv profile "$(readlink -f "$profile" 2>/dev/null || echo none)"
    if keys_match; then kv host_keys copied; else kv host_keys missing; fi
    if [ "$(readlink -f "$profile" 2>/dev/null)" = "$toplevel" ] && keys_match; then
      kv installed yes
    else
      kv installed no
    fi
    ;;
  finish)
    toplevel=${2:?toplevel}
    mountpoint -q /mnt || fail "/mnt is not mounted: run the disk script first"
    [ -e "/mnt$toplevel" ] || fail "$toplevel is not in /mnt's store"
    nixos-install --no-root-passwd --no-channel-copy --system "$toplevel" >&2 ||
      fail "nixos-install failed (exit $?)"
    # The installed system must answer with the key the user pinned: nixos-install does not copy it.
    mkdir -p /mnt/etc/ssh
    for k in /etc/ssh/ssh_host_*; do
      [ -e "$k" ] && cp -p "$k" "/mnt$k"
    done
    keys_match || fail "the host keys in /mnt/etc/ssh differ from the installer's"
    sync
    kv profile "$(readlink -f "$profile")"
    kv host_keys copied
    ;;
  *) fail "usage: install.sh identity|disko|state|finish …" ;;
esac
