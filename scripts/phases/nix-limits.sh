#!/bin/sh
# Phase 2 (installer prep), in the kexec installer: keep Nix's automatic GC thresholds below the
# real free space of the store (a tmpfs of half the RAM), or every store write triggers a GC
# (nixos-anywhere #402/#521: "stuck for hours at 100% CPU"). Idempotent. Prints key=value lines.
# Usage: nix-limits.sh [--check]
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin:/run/current-system/sw/bin"
kv() { printf '%s=%s\n' "$1" "$2"; }

store=/nix/.rw-store
[ -d "$store" ] || store=/nix/store
free=$(df -kP "$store" | awk 'NR == 2 { printf "%.0f", $4 * 1024 }')
# min-free: an eighth of what is free, at most 64 MiB; max-free: a quarter, at most 256 MiB.
min=$((free / 8)); [ "$min" -le 67108864 ] || min=67108864
max=$((free / 4)); [ "$max" -le 268435456 ] || max=268435456
kv store_free_bytes "$free"

conf=/etc/nix/nix.conf
current_min=$(sed -n 's/^min-free *= *//p' "$conf" 2>/dev/null | tail -n 1)
current_max=$(sed -n 's/^max-free *= *//p' "$conf" 2>/dev/null | tail -n 1)
if [ "${1:-}" = "--check" ]; then
  kv min_free "${current_min:-unset}"
  kv max_free "${current_max:-unset}"
  ok=no
  if [ -n "$current_min" ] && [ -n "$current_max" ] && [ "$current_max" -le "$free" ] && [ "$current_min" -le "$current_max" ]; then ok=yes; fi
  kv ok "$ok"
  exit 0
fi

mkdir -p /etc/nix
# On NixOS nix.conf is a read-only store symlink; the installer's /etc is a tmpfs, so a copy can go in its place.
if [ -L "$conf" ]; then cp --remove-destination "$(readlink -f "$conf")" "$conf"; fi
[ -f "$conf" ] || : >"$conf"
sed -i '/^min-free *=/d; /^max-free *=/d' "$conf"
printf 'min-free = %s\nmax-free = %s\n' "$min" "$max" >>"$conf"
kv min_free "$min"
kv max_free "$max"
