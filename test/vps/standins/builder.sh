#!/bin/sh
# Nix builder (runs on the HOST inside nix-build, sandbox off): the stand-in system toplevel.
set -eu
PATH=/usr/bin:/bin
# set by the derivation's attributes (standins.nix)
: "${out:?}" "${switch:?}" "${activate:?}" "${version:?}" "${ballast=}"
mkdir -p "$out/bin"
sed "s|@out@|$out|g" "$switch" > "$out/bin/switch-to-configuration"
sed "s|@out@|$out|g" "$activate" > "$out/activate"
chmod 755 "$out/bin/switch-to-configuration" "$out/activate"
printf '%s\n' "$version" > "$out/nixos-version"
# referencing the ballast paths makes them part of the closure
# shellcheck disable=SC2086  # a space-separated list of store paths
printf '%s\n' $ballast > "$out/ballast"
