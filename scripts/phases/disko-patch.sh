#!/bin/sh
# Phase 2 (installer prep), in the kexec installer: patch the disk script against the udevadm
# SIGBUS (seed bug 2: on virtual disks with a stale partition table, `udevadm trigger
# --subsystem-match=block` reads past the new partitions' ends and dies with a bus error).
# Every file of the disk script's closure whose store name says disko/disk-deactivate and that
# calls `udevadm trigger --subsystem-match=block` or `udevadm settle` gets a patched copy
# bind-mounted over it: each call still runs, bounded (timeout 30 s), and only when it fails (the
# SIGBUS) a short sleep stands in for it, so a disk whose udevadm works loses no time. The store
# stays read-only and the patch goes away with the installer. Idempotent. Prints key=value lines.
# Usage: disko-patch.sh check|apply DISK_SCRIPT   (stdin: the store paths of its closure; the
# installer has no Nix to list them)
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
action=${1:?check or apply}
script=${2:?disk script store path}
kv() { printf '%s=%s\n' "$1" "$2"; }
fail() { kv error "$1"; exit 1; }
copies=/run/vps-nixos/disko-patched

[ -e "$script" ] || fail "$script is not in the installer's store"
targets=$(
  grep -E -- '-(disko[^/]*|disk-deactivate)$' |
    while read -r p; do
      grep -rlE 'udevadm (trigger --subsystem-match=block|settle)' "$p" 2>/dev/null || :
    done
)
patched=0 pending=0
for f in $targets; do
  if grep -q 'vps-nixos-udevadm' "$f"; then patched=$((patched + 1)); else pending=$((pending + 1)); fi
done
kv files "$(echo "$targets" | grep -c . || :)"
if [ "$action" = check ]; then
  kv patched "$patched"
  kv pending "$pending"
  exit 0
fi
mkdir -p "$copies"
for f in $targets; do
  grep -q 'vps-nixos-udevadm' "$f" && continue
  copy="$copies/$(echo "$f" | tr / _)"
  cp "$f" "$copy" || fail "cannot copy $f"
  # the rest of the command (up to ; & | or the line's end) stays with it
  sed -i -E \
    -e 's/udevadm (trigger --subsystem-match=block|settle)([^;&|]*)/{ timeout 30 udevadm \1\2 || sleep 3; : vps-nixos-udevadm; }/g' \
    "$copy"
  chmod --reference="$f" "$copy"
  mount --bind "$copy" "$f" || fail "cannot bind-mount the patched copy over $f"
  patched=$((patched + 1))
  echo "patched $f" >&2
done
kv patched "$patched"
kv pending 0
