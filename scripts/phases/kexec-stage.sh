#!/bin/sh
# Phase 1 (kexec), on the running distribution: check the uploaded tarball's sha256, unpack it
# on disk (not a tmpfs /tmp) and load the installer with its run script, which carries the host
# keys, authorized_keys, machine-id and static network into the initrd and starts kexec
# moments later. Prints key=value lines.
# Usage: kexec-stage.sh check|load DIR SHA256
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
action=${1:?check or load}
dir=${2:?directory}
want=${3:?sha256}
kv() { printf '%s=%s\n' "$1" "$2"; }
fail() { kv error "$1"; exit 1; }

tarball="$dir/installer.tar"
case "$action" in
  check)
    # Is the upload already there (a re-run after an interrupted phase)? And is there room?
    mkdir -p "$dir" || fail "cannot create $dir"
    mnt=$(df -P "$dir" | awk 'NR == 2 { print $NF }')
    kv fstype "$(awk -v m="$mnt" '$2 == m { t = $3 } END { print t }' /proc/mounts)"
    kv avail_bytes "$(df -kP "$dir" | awk 'NR == 2 { printf "%.0f", $4 * 1024 }')"
    if [ -f "$tarball" ] && [ "$(sha256sum "$tarball" | cut -d' ' -f1)" = "$want" ]; then
      kv uploaded yes
    else
      kv uploaded no
    fi
    ;;
  load)
    got=$(sha256sum "$tarball.part" 2>/dev/null | cut -d' ' -f1)
    if [ -n "$got" ]; then
      [ "$got" = "$want" ] || fail "the upload has sha256 $got, expected $want"
      mv "$tarball.part" "$tarball"
    fi
    [ "$(sha256sum "$tarball" | cut -d' ' -f1)" = "$want" ] || fail "no verified tarball in $dir"
    rm -rf "$dir/kexec"
    tar -C "$dir" -xf "$tarball" || fail "cannot unpack $tarball"
    [ -x "$dir/kexec/run" ] || fail "the tarball has no kexec/run"
    kv boot_id "$(cat /proc/sys/kernel/random/boot_id)"
    # run loads the kernel and returns; kexec -e follows in the background a few seconds later.
    cd "$dir/kexec" || fail "cannot enter $dir/kexec"
    ./run >"$dir/run.log" 2>&1 || fail "kexec/run failed: $(tail -n 3 "$dir/run.log" | tr '\n' ' ')"
    kv loaded yes
    ;;
  *) fail "unknown action $action" ;;
esac
exit 0
