#!/bin/sh
# Phase 1 (kexec), on the running distribution: receive the tarball (hashed while it streams in),
# unpack it on disk (not a tmpfs /tmp) and load the installer with its run script, which carries
# the host keys, authorized_keys, machine-id and static network into the initrd and starts kexec
# moments later. Prints key=value lines; a failure prints error=... and exits 1.
# Usage: sh -c "$(cat kexec-stage.sh)" kexec-stage check|receive|load DIR SHA256 [ROOTFS]
#   check    is there room, and is the tarball already here (a re-run)? Reads an existing
#            tarball once to hash it.
#   receive  stdin is the tarball: written to DIR/installer.tar.part and hashed on the way (one
#            read), renamed to installer.tar only when the whole stream has the expected sha256,
#            so an interrupted upload is never taken as complete.
#   load     unpacks the verified tarball (no second hash) and runs kexec/run; ROOTFS ramfs (the
#            plan's, for an initrd over the tmpfs cap) asks our run for rootfstype=ramfs.
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
action=${1:?check, receive or load}
dir=${2:?directory}
want=${3:?sha256}
rootfs=${4:-tmpfs}
kv() { printf '%s=%s\n' "$1" "$2"; }
fail() { kv error "$1"; exit 1; }
case "$rootfs" in tmpfs | ramfs) ;; *) fail "rootfs $rootfs is not tmpfs or ramfs" ;; esac

tarball="$dir/installer.tar"
# Holds the sha256 of installer.tar, written only after that digest was checked against the
# stream (receive) or the file (check): load trusts the pair instead of reading the file again.
verified="$tarball.sha256"
case "$action" in
  check)
    mkdir -p "$dir" || fail "cannot create $dir"
    mnt=$(df -P "$dir" | awk 'NR == 2 { print $NF }')
    kv fstype "$(awk -v m="$mnt" '$2 == m { t = $3 } END { print t }' /proc/mounts)"
    kv avail_bytes "$(df -kP "$dir" | awk 'NR == 2 { printf "%.0f", $4 * 1024 }')"
    if [ -f "$tarball" ] && [ "$(sha256sum "$tarball" | cut -d' ' -f1)" = "$want" ]; then
      [ "$(cat "$verified" 2>/dev/null)" = "$want" ] || printf '%s\n' "$want" >"$verified" ||
        fail "cannot write $verified"
      kv uploaded yes
    else
      kv uploaded no
    fi
    ;;
  receive)
    mkdir -p "$dir" || fail "cannot create $dir"
    # A part of its own: the receiver of a connection that was cut may still be reading (sshd has
    # not noticed yet); when its stream ends it removes its part, never this one. Earlier parts go.
    part="$tarball.part.$$"
    rm -f "$tarball" "$verified" "$tarball".part* || fail "cannot clear $dir"
    # One read of the stream: tee writes the file, sha256sum hashes what tee passes on. A pipeline's
    # status is its last command's, so tee's own (a full disk) comes back on fd 3 beside the digest.
    out=$({ {
      tee "$part"
      echo "tee=$?" >&3
    } | sha256sum; } 3>&1)
    got=$(printf '%s\n' "$out" | sed -n 's/^\([0-9a-f]\{64\}\) .*/\1/p')
    tee_rc=$(printf '%s\n' "$out" | sed -n 's/^tee=//p')
    if [ "$tee_rc" != 0 ]; then
      rm -f "$part"
      fail "cannot write $part (tee exited ${tee_rc:-?}): check free disk space"
    fi
    if [ "$got" != "$want" ]; then
      rm -f "$part"
      fail "the upload has sha256 ${got:-?}, expected $want (interrupted or corrupted on the way)"
    fi
    mv "$part" "$tarball" || fail "cannot rename $part"
    printf '%s\n' "$got" >"$verified" || fail "cannot write $verified"
    kv received_bytes "$(stat -c %s "$tarball")"
    ;;
  load)
    if [ ! -f "$tarball" ] || [ "$(cat "$verified" 2>/dev/null)" != "$want" ]; then
      fail "no verified tarball in $dir"
    fi
    rm -rf "$dir/kexec"
    tar -C "$dir" -xf "$tarball" || fail "cannot unpack $tarball"
    [ -x "$dir/kexec/run" ] || fail "the tarball has no kexec/run"
    kv boot_id "$(cat /proc/sys/kernel/random/boot_id)"
    # run loads the kernel and returns; kexec -e follows in the background a few seconds later.
    cd "$dir/kexec" || fail "cannot enter $dir/kexec"
    VPS_NIXOS_ROOTFS=$rootfs ./run >"$dir/run.log" 2>&1 || fail "kexec/run failed: $(tail -n 3 "$dir/run.log" | tr '\n' ' ')"
    kv loaded yes
    ;;
  *) fail "unknown action $action" ;;
esac
exit 0
