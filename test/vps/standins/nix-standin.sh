#!/bin/sh
# Nix builder (runs on the HOST inside nix-build, sandbox off): a STAND-IN for the Nix of a system
# closure. Debian's nix-bin 2.8 made self-contained as a store path, the way nixpkgs' binaries are:
# the `nix` multi-call binary, every library it loads (ldd) and the dynamic loader under $out/lib,
# patchelf'd to use them (DT_RPATH, which also applies to the libraries' own dependencies). It runs
# in a chroot whose only files are /nix/store, as the real closure's Nix does in our install step.
set -eu
PATH=/usr/bin:/bin
: "${out:?}"
mkdir -p "$out/bin" "$out/lib"
ldd /usr/bin/nix | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done
interp=$(patchelf --print-interpreter /usr/bin/nix)
cp -L "$interp" "$out/lib/"
cp /usr/bin/nix "$out/bin/nix"
chmod u+w "$out/bin/nix" "$out"/lib/*
patchelf --set-interpreter "$out/lib/$(basename "$interp")" --force-rpath --set-rpath "$out/lib" "$out/bin/nix"
for l in "$out"/lib/*.so*; do
  case $l in */ld-linux*) continue ;; esac
  patchelf --force-rpath --set-rpath "$out/lib" "$l"
done
chmod 555 "$out/bin/nix"
for b in nix-store nix-env nix-build nix-instantiate nix-copy-closure nix-collect-garbage nix-hash nix-channel nix-shell nix-daemon; do
  ln -s nix "$out/bin/$b"
done
