#!/bin/sh
# Phase 3 (partition + install), in the kexec installer. Prints key=value lines.
# Usage:
#   install.sh identity DISK            machine-id carried from the old system, the disk's kind/size
#   install.sh disko DISK SCRIPT        run the disk script (destroy,format,mount): WIPES DISK
#   install.sh state TOPLEVEL           how far the install got (for detect and resume)
#   install.sh finish TOPLEVEL NIX      what nixos-install does after its copy, with the closure's
#                                       own tools in a chroot of /mnt (the installer has no Nix):
#                                       system profile, /etc/NIXOS, nixos-enter's mounts, the
#                                       activation, NIXOS_INSTALL_BOOTLOADER=1 switch-to-configuration
#                                       boot; then the host keys into /mnt
# The closure itself is copied into /mnt's store and registered before (store.sh).
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
kv() { printf '%s=%s\n' "$1" "$2"; }
fail() { kv error "$1"; exit 1; }
marker=/run/vps-nixos/disko-done
profiles=/mnt/nix/var/nix/profiles
installed=/mnt/var/lib/vps-nixos/installed

# The system profile's store path, following its links inside /mnt (they are absolute in /mnt).
profile_path() {
  p=$(readlink "$profiles/system" 2>/dev/null) || { echo none; return; }
  case $p in /*) ;; *) p=$(readlink "$profiles/$p" 2>/dev/null) || { echo none; return; } ;; esac
  echo "$p"
}

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
    kv profile "$(profile_path)"
    if keys_match; then kv host_keys copied; else kv host_keys missing; fi
    if [ "$(cat "$installed" 2>/dev/null)" = "$toplevel" ] && [ "$(profile_path)" = "$toplevel" ] &&
      keys_match; then
      kv installed yes
    else
      kv installed no
    fi
    ;;
  finish)
    toplevel=${2:?toplevel} nix=${3:?nix store path}
    mountpoint -q /mnt || fail "/mnt is not mounted: run the disk script first"
    [ -e "/mnt$toplevel" ] || fail "$toplevel is not in /mnt's store"
    [ -x "/mnt$nix/bin/nix-env" ] || fail "$nix/bin/nix-env is not in /mnt's store"
    rm -f "$installed"
    # nixos-enter's mounts, undone however this ends
    binds=
    # shellcheck disable=SC2154 # m is the trap's own loop variable
    trap 'for m in $binds; do umount -lR "$m" 2>/dev/null; done' EXIT
    for d in dev sys proc run; do
      mkdir -p "/mnt/$d"
      mountpoint -q "/mnt/$d" && continue
      case $d in
        dev | sys) mount --rbind "/$d" "/mnt/$d" && mount --make-rslave "/mnt/$d" ;;
        proc) mount -t proc proc /mnt/proc ;;
        run) mount -t tmpfs -o mode=0755 tmpfs /mnt/run ;;
      esac || fail "cannot mount /mnt/$d"
      binds="/mnt/$d $binds"
    done
    mkdir -p /mnt/root /mnt/tmp
    chmod 1777 /mnt/tmp
    HOME=/root NIX_CONFIG="build-users-group =" chroot /mnt "$nix/bin/nix-env" \
      -p /nix/var/nix/profiles/system --set "$toplevel" >&2 || fail "nix-env --set failed (exit $?)"
    mkdir -p /mnt/etc && chmod 0755 /mnt/etc
    touch /mnt/etc/NIXOS
    ln -sfn /proc/mounts /mnt/etc/mtab
    # nixos-enter: the activation (its errors do not stop an install), then tmpfiles
    LOCALE_ARCHIVE=$toplevel/sw/lib/locale/locale-archive IN_NIXOS_ENTER=1 \
      chroot /mnt "$toplevel/activate" >&2 || echo "install: the activation reported errors (exit $?)" >&2
    if [ -x "/mnt$toplevel/sw/bin/systemd-tmpfiles" ]; then
      chroot /mnt "$toplevel/sw/bin/systemd-tmpfiles" --create --remove -E >&2 || :
    fi
    NIXOS_INSTALL_BOOTLOADER=1 chroot /mnt "$toplevel/bin/switch-to-configuration" boot >&2 ||
      fail "switch-to-configuration boot failed (exit $?): the boot loader is not installed"
    # The installed system must answer with the key the user pinned: nixos-install does not copy it.
    mkdir -p /mnt/etc/ssh
    for k in /etc/ssh/ssh_host_*; do
      [ -e "$k" ] && cp -p "$k" "/mnt$k"
    done
    keys_match || fail "the host keys in /mnt/etc/ssh differ from the installer's"
    mkdir -p "$(dirname "$installed")"
    echo "$toplevel" >"$installed"
    sync
    kv profile "$(profile_path)"
    kv host_keys copied
    ;;
  *) fail "usage: install.sh identity|disko|state|finish …" ;;
esac
