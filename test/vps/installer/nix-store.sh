#!/bin/sh
# Runs IN THE INSTALLER: the NixOS netboot store layout. The read-only store is a squashfs that
# lives in the initrd (so in RAM, like the real one), a tmpfs takes writes, overlayfs joins them.
set -eu
for m in loop squashfs overlay; do modprobe "$m" 2>/dev/null || true; done
mkdir -p /nix/.ro-store /nix/.rw-store /nix/store
if [ -e /nix-store.squashfs ] && ! mountpoint -q /nix/.ro-store; then
  mount -t squashfs -o loop,ro /nix-store.squashfs /nix/.ro-store
fi
mountpoint -q /nix/.rw-store || mount -t tmpfs -o mode=0755 tmpfs /nix/.rw-store
mkdir -p /nix/.rw-store/store /nix/.rw-store/work
mountpoint -q /nix/store || mount -t overlay overlay \
  -o lowerdir=/nix/.ro-store,upperdir=/nix/.rw-store/store,workdir=/nix/.rw-store/work /nix/store
