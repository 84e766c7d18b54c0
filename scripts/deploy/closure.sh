#!/bin/sh
# After the copy, on the target: the new system's closure with NAR sizes, the previous one's
# paths, and the kernel/initrd/modules of the new system and of the booted one (a reboot is
# needed when they differ). Usage: closure.sh NEW_SYSTEM [PREVIOUS_SYSTEM [KNOWN]]
# KNOWN: a system whose closure the runner has (it built it); when NEW_SYSTEM is that one, its
# paths are not listed (new_known=1). The previous closure comes from what state.sh listed in
# the background while nixos-rebuild ran, when that finished; else from nix-store now.
export LC_ALL=C
PATH="/run/current-system/sw/bin:$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
new=${1:?new system}
prev=${2:-}
known=${3:-}
kv() { printf '%s=%s\n' "$1" "$2"; }
res() { if [ -e "$1" ]; then readlink -f "$1"; fi; }
for f in kernel initrd kernel-modules; do
  kv "new_$f" "$(res "$new/$f")"
  kv "booted_$f" "$(res "/run/booted-system/$f")"
done
if [ -n "$known" ] && [ "$new" = "$known" ]; then
  kv new_known 1
else
  t=$(mktemp -d) || exit 1
  trap 'rm -rf "$t"' EXIT
  nix-store -qR "$new" > "$t/paths" || { kv error "nix-store -qR $new failed"; exit 1; }
  # nix-store -q --size prints one size per path, in order
  xargs nix-store -q --size < "$t/paths" > "$t/sizes" || { kv error "nix-store -q --size failed"; exit 1; }
  paste -d' ' "$t/paths" "$t/sizes" | sed 's/^/new /'
fi
if [ -n "$prev" ] && [ -e "$prev" ]; then
  listed=/run/vps-nixos/closure-${prev##*/}
  if [ -s "$listed" ]; then
    kv prev_listed_before 1
    sed 's/^/prev /' "$listed"
  else
    nix-store -qR "$prev" | sed 's/^/prev /'
  fi
fi
