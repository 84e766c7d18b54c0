#!/bin/bash
# Build (or find in the cache) the stand-ins and print them:
#   build.sh IMAGE_DIR [--ballast SIZE] [--installer-ballast SIZE] [--system-ballast SIZE]
#            [--kexec-syscall load|auto] [--json]
# --kexec-syscall auto: run uses kexec_file_load like the real one (slow purgatory checks under TCG,
# but no second copy of the initrd in user memory); load (default): kexec_load --no-checks.
# Defaults are the real sizes (DESIGN.md, memory-faithful stand-ins): the installer's squashfs
# images (its root + /nix/.ro-store, both in the initrd, so in RAM after kexec) add up to 278MiB,
# filled with incompressible ballast; 1GiB of NAR in the system closure. --ballast sets both; 0 for fast tests.
#   kexec tarball: IMAGE_DIR/standins/kexec-<hash>-<bytes>/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz
#   toplevel, disk script: the host's Nix store (GC roots under IMAGE_DIR/standins/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/common.sh
. "$here/../lib/common.sh"
img=$1; shift
ib=278MiB sb=1GiB json=0 syscall=load
while (($#)); do
  case $1 in
    --ballast) ib=$2 sb=$2; shift 2 ;;
    --installer-ballast) ib=$2; shift 2 ;;
    --system-ballast) sb=$2; shift 2 ;;
    --kexec-syscall) syscall=$2; shift 2 ;;
    --json) json=1; shift ;;
    *) die "standins: unknown option $1" ;;
  esac
done
ib=$(parse_size "$ib"); sb=$(parse_size "$sb")
out=$img/standins
mkdir -p "$out"
exec 8>"$out/.lock"
flock -w 1800 8 || die "standins lock: timed out"

# --- the installer kexec tarball ---
# (the installer root is part of IMAGE_DIR, which is keyed by its own hash)
key=$(cat "$here/kexec-run" "$0" | sha256sum | cut -c1-12)
[[ $syscall == load || $syscall == auto ]] || die "standins: --kexec-syscall load|auto"
kd=$out/kexec-$key-$ib-$syscall
tarball=$kd/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz
if [[ ! -e $kd/.complete ]]; then
  t0=$(now)
  log "standins: building the installer tarball (ballast $ib bytes)"
  rm -rf "$kd"; mkdir -p "$kd/kexec" "$kd/store"
  w=$kd
  sed "s/^default_syscall=load$/default_syscall=$syscall/" "$here/kexec-run" > "$w/kexec/run"
  chmod 755 "$w/kexec/run"
  cp "$img/vmlinuz" "$w/kexec/bzImage"
  cp "$img/ctroot/usr/sbin/kexec" "$w/kexec/kexec"   # like nixos-images, bring our own kexec
  # The real installer's store squashfs (278 MiB) holds its whole system; ours holds the Debian
  # root in a squashfs of its own, so the ballast is what is left of the real size after it.
  fill=$((ib - $(stat -c %s "$img/installer-base.cpio.zst")))
  if ((ib > 0 && fill > 0)); then
    head -c "$fill" /dev/urandom > "$w/store/00000000000000000000000000000000-vps-standin-installer-ballast"
  fi
  # -noD: data is random anyway; compressing it would only cost time
  mksquashfs "$w/store" "$w/nix-store.squashfs" -noappend -quiet -noD -all-root >/dev/null
  rm -rf "$w/store"
  # initrd = the installer root (zstd cpio) + a second zstd cpio holding /nix-store.squashfs
  { cat "$img/installer-base.cpio.zst"
    (cd "$w" && echo nix-store.squashfs | cpio -o -H newc -R 0:0 --quiet | zstd -q -1 -T0)
  } > "$w/kexec/initrd"
  rm "$w/nix-store.squashfs"
  tar -C "$w" --owner=0 --group=0 -cf - kexec | gzip -1 > "$tarball.part"
  mv "$tarball.part" "$tarball"
  rm -rf "$w/kexec"
  sha256sum "$tarball" | cut -d' ' -f1 > "$kd/sha256"
  touch "$kd/.complete"
  log "standins: installer tarball $(du -h "$tarball" | cut -f1) in $(since "$t0")s"
fi

# --- toplevel variants + disk script: the host's Nix store ---
# Deploy-test variants (test/STANDINS.md): all share the ballast paths; toplevel == variants.ok.
# test/standins/make-flake.sh writes a flake whose nixosConfigurations.<variant> are these paths.
variants=(ok ok2 new-kernel exit4 unhealthy cut-sshd)
t0=$(now)
nixopts=(--option build-users-group '' --option sandbox false --option substituters '')
attrs=(-A diskScript)
for v in "${variants[@]}"; do attrs+=(-A "variants.$v"); done
mapfile -t paths < <(nix-build "${nixopts[@]}" "$here/standins.nix" --arg systemBallastBytes "$sb" \
  "${attrs[@]}" --out-link "$out/result-$sb" 2>"$out/nix-build.log") || { tail -20 "$out/nix-build.log" >&2; die "nix-build failed"; }
((${#paths[@]} == ${#variants[@]} + 1)) || die "nix-build printed ${#paths[@]} paths: ${paths[*]}"
disk=${paths[0]} toplevel=${paths[1]}
[[ $toplevel == *nixos-system* && $disk == *disko-standin ]] || die "unexpected nix-build output: ${paths[*]}"
vjson="" vtext=""
for i in "${!variants[@]}"; do
  p=${paths[i + 1]}
  [[ $p == *nixos-system-vps-standin-* ]] || die "unexpected nix-build output for ${variants[i]}: $p"
  vjson+="${vjson:+,}\"${variants[i]}\":\"$p\""
  vtext+="variants.${variants[i]}=$p"$'\n'
done
log "standins: toplevel variants + disk script ready in $(since "$t0")s (system ballast $sb bytes)"

if ((json)); then
  printf '{"kexecTarball":"%s","kexecSha256":"%s","toplevel":"%s","diskScript":"%s","installerBallastBytes":%s,"systemBallastBytes":%s,"variants":{%s}}\n' \
    "$tarball" "$(cat "$kd/sha256")" "$toplevel" "$disk" "$ib" "$sb" "$vjson"
else
  printf 'kexecTarball=%s\nkexecSha256=%s\ntoplevel=%s\ndiskScript=%s\n%s' "$tarball" "$(cat "$kd/sha256")" "$toplevel" "$disk" "$vtext"
fi
