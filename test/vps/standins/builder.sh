#!/bin/sh
# Nix builder (runs on the HOST inside nix-build, sandbox off): the stand-in system toplevel.
# Layout (like a NixOS toplevel where it matters): bin/switch-to-configuration, activate,
# nixos-version, kernel/initrd/kernel-modules (symlinks into their own paths), sw/bin (the
# packages, Nix among them), health (what the deploy tests' health check greps), variant, ballast,
# rootfs (the Debian root tar its switch-to-configuration installs).
set -eu
PATH=/usr/bin:/bin
# set by the derivation's attributes (standins.nix)
: "${out:?}" "${switch:?}" "${activate:?}" "${version:?}" "${variant:?}" "${health:?}"
: "${kernel:?}" "${initrd:?}" "${packages=}" "${ballast=}" "${rootfs:?}" "${busybox:?}"
mkdir -p "$out/bin" "$out/sw/bin"
subst() {
  sed -e "s|@out@|$out|g" -e "s|@variant@|$variant|g" -e "s|@rootfs@|$rootfs|g" -e "s|@busybox@|$busybox|g" "$1"
}
subst "$switch" > "$out/bin/switch-to-configuration"
subst "$activate" > "$out/activate"
chmod 755 "$out/bin/switch-to-configuration" "$out/activate"
printf '%s\n' "$version" > "$out/nixos-version"
printf '%s\n' "$variant" > "$out/variant"
printf '%s\n' "$health" > "$out/health"
ln -s "$kernel/bzImage" "$out/kernel"
ln -s "$kernel/lib/modules" "$out/kernel-modules"
ln -s "$initrd/initrd" "$out/initrd"
for p in $packages; do
  for b in "$p"/bin/*; do ln -s "$b" "$out/sw/bin/"; done
done
# referencing the ballast paths makes them part of the closure
# shellcheck disable=SC2086  # a space-separated list of store paths
printf '%s\n' $ballast > "$out/ballast"
ln -s "$rootfs" "$out/rootfs"
