#!/bin/bash
# Build (or find in the cache) the stand-ins and print them:
#   build.sh IMAGE_DIR [--ballast SIZE] [--installer-ballast SIZE] [--system-ballast SIZE]
#            [--kexec-syscall load|auto] [--installer-nix] [--json]
# --installer-nix: the installer also carries a Nix (the system closure's nix-standin) and a
# nixos-install stand-in, what nixos-anywhere needs in an installer; only for
# bench/anywhere-bench.sh, which gives this one tarball to both tools.
# --kexec-syscall auto: run uses kexec_file_load like the real one (slow purgatory checks under TCG,
# but no second copy of the initrd in user memory); load (default): kexec_load --no-checks.
# Defaults are the real sizes (DESIGN.md, memory-faithful stand-ins): the installer's initrd is
# filled up to the real one's budget (192 MiB unpacked, 62 MiB zstd: --installer-ballast is the
# unpacked size); 1GiB of NAR in the system closure (its Debian root tar counts against it).
# --ballast sets both; 0 for fast tests (no ballast: the Debian roots alone).
#   kexec tarball: IMAGE_DIR/standins/kexec-<hash>-<bytes>/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz
#   toplevel, disk script: the host's Nix store (GC roots under IMAGE_DIR/standins/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/common.sh
. "$here/../lib/common.sh"
img=$1; shift
ib=192MiB sb=1GiB json=0 syscall=load with_nix=0
while (($#)); do
  case $1 in
    --ballast) ib=$2 sb=$2; shift 2 ;;
    --installer-ballast) ib=$2; shift 2 ;;
    --system-ballast) sb=$2; shift 2 ;;
    --kexec-syscall) syscall=$2; shift 2 ;;
    --installer-nix) with_nix=1; shift ;;
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
  log "standins: building the installer tarball (unpacked size $ib bytes with ballast)"
  rm -rf "$kd"; mkdir -p "$kd/kexec" "$kd/ballast"
  w=$kd
  sed "s/^default_syscall=load$/default_syscall=$syscall/" "$here/kexec-run" > "$w/kexec/run"
  chmod 755 "$w/kexec/run"
  cp "$img/vmlinuz" "$w/kexec/bzImage"
  cp "$img/ctroot/usr/sbin/kexec" "$w/kexec/kexec"   # like nixos-images, bring our own kexec
  # Unpacked = what the files take in the rootfs tmpfs: each rounded up to 4 KiB pages (the real
  # build counts the same way; the kernel's cap on rootfs is in pages).
  pages() { awk '$1 ~ /^-/ { s += int(($5 + 4095) / 4096) * 4096 } END { printf "%d", s }'; }
  page_bytes() { echo $((($(stat -c %s "$1") + 4095) / 4096 * 4096)); }
  base_c=$(stat -c %s "$img/installer-root.cpio.zst")
  base_u=$(zstd -dc "$img/installer-root.cpio.zst" | bsdtar -tvf - 2>/dev/null | pages)
  cp "$img/installer-root.cpio.zst" "$w/kexec/initrd"
  unpacked=$base_u
  # Ballast: size the initrd to the real installer's budget in BOTH dimensions (unpacked $ib,
  # compressed $ib * 62/192, i.e. 62 MiB for the default 192 MiB), with real files (ELF and text
  # from the guest root, compressible like the real initrd's) and random bytes for the rest.
  if ((ib > base_u)); then
    want_c=$((ib * 62 / 192)) room=$((ib - base_u))
    d=$w/ballast/usr/share/vps-standin-ballast
    mkdir -p "$d"
    # real files, up to the whole room, in a stable order
    total=0 k=0 copied=()
    while read -r f; do
      sz=$(page_bytes "$f"); ((total + sz <= room)) || continue
      cp "$f" "$d/$k-${f##*/}"; copied+=("$d/$k-${f##*/}"); total=$((total + sz)) k=$((k + 1))
      ((total < room - 65536)) || break
    done < <(find "$img/ctroot/usr/lib/x86_64-linux-gnu" "$img/ctroot/usr/share" "$img/ctroot/usr/bin" \
               -type f -size +4k | LC_ALL=C sort)
    # how well they compress at the initrd's level
    fc=$(tar -C "$d" -cf - . | zstd -q -10 -T0 | wc -c)
    # R random + F files: base_u + R + F = ib; base_c + R + F * fc/total = want_c
    r=$(awk -v wc="$want_c" -v bc="$base_c" -v room="$room" -v fc="$fc" -v ft="$total" \
      'BEGIN { c = fc / ft; r = (wc - bc - c * room) / (1 - c); if (r < 0) r = 0; if (r > room) r = room; printf "%d", r }')
    keep=$((room - r))
    # drop files from the end until the real-file part is at most `keep` bytes
    while ((total > keep && k > 0)); do
      k=$((k - 1)); f=${copied[k]}
      total=$((total - $(page_bytes "$f"))); rm -f "$f"
    done
    r=$(((room - total) / 4096 * 4096))
    ((r > 0)) && head -c "$r" /dev/urandom > "$d/random"
    (cd "$w/ballast" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | zstd -q -10 -T0 >> "$w/kexec/initrd"
    unpacked=$((base_u + total + r))   # both already in pages
    log "standins: installer ballast $total B of real files + $r B random"
  fi
  rm -rf "$w/ballast"
  {
    echo "INITRD_BYTES=$(stat -c %s "$w/kexec/initrd")"
    echo "INITRD_UNPACKED_BYTES=$unpacked"
    echo "KERNEL_BYTES=$(stat -c %s "$w/kexec/bzImage")"
    # Debian's 6.1 kernel has no initramfs_options=: the rootfs stays capped at half the RAM
    echo "INITRAMFS_OPTIONS=no"
    # kexec-run boots with rootfstype=ramfs when kexec-stage.sh says so (VPS_NIXOS_ROOTFS)
    echo "ROOTFS_RAMFS=yes"
  } > "$kd/sizes.env"
  tar -C "$w" --owner=0 --group=0 -cf - kexec | gzip -1 > "$tarball.part"
  mv "$tarball.part" "$tarball"
  echo "TARBALL_BYTES=$(stat -c %s "$tarball")" >> "$kd/sizes.env"
  rm -rf "$w/kexec"
  sha256sum "$tarball" | cut -d' ' -f1 > "$kd/sha256"
  touch "$kd/.complete"
  log "standins: installer tarball $(du -h "$tarball" | cut -f1) in $(since "$t0")s: $(tr '\n' ' ' < "$kd/sizes.env")"
fi
# shellcheck source=/dev/null
. "$kd/sizes.env"

# --- toplevel variants + disk script: the host's Nix store ---
# Deploy-test variants (test/STANDINS.md): all share the ballast paths; toplevel == variants.ok.
# test/standins/make-flake.sh writes a flake whose nixosConfigurations.<variant> are these paths.
variants=(ok ok2 new-kernel exit4 unhealthy cut-sshd)
t0=$(now)
nixopts=(--option build-users-group '' --option sandbox false --option substituters '')
attrs=(-A diskScript)
for v in "${variants[@]}"; do attrs+=(-A "variants.$v"); done
read -r rootfs_tar rootfs_sha rootfs_bytes < <(rootfs_facts "$img")
mapfile -t paths < <(nix-build "${nixopts[@]}" "$here/standins.nix" --arg systemBallastBytes "$sb" \
  --argstr rootfsTar "$rootfs_tar" --argstr rootfsSha256 "$rootfs_sha" --arg rootfsBytes "$rootfs_bytes" \
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

# --- the installer variant with Nix (--installer-nix): one more cpio layer on the same initrd ---
if ((with_nix)); then
  nixp=$(nix-store -qR "$toplevel" | grep -- '-nix-standin-2\.8$') || die "no nix-standin in the toplevel's closure"
  nkey=$(cat "$here/nixos-install" "$kd/sha256" <(echo "$nixp") | sha256sum | cut -c1-12)
  nd=$out/kexec-nix-$nkey
  if [[ ! -e $nd/.complete ]]; then
    rm -rf "$nd"; mkdir -p "$nd/layer/usr/local/bin" "$nd/layer/etc/nix" "$nd/layer/nix/store" "$nd/layer/nix/var/nix"
    cp -a "$nixp" "$nd/layer/nix/store/"
    for b in nix nix-store nix-env; do ln -s "$nixp/bin/$b" "$nd/layer/usr/local/bin/$b"; done
    install -m 755 "$here/nixos-install" "$nd/layer/usr/local/bin/nixos-install"
    # root without a daemon or build users; Nix's default substituters, as in nixos-images
    printf 'build-users-group =\nsandbox = false\n' > "$nd/layer/etc/nix/nix.conf"
    tar -C "$nd" -xzf "$tarball"
    (cd "$nd/layer" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | zstd -q -10 -T0 >> "$nd/kexec/initrd"
    added=$(find "$nd/layer" -type f -printf '%s\n' | awk '{ s += int(($1 + 4095) / 4096) * 4096 } END { printf "%d", s }')
    {
      grep -v -E '^(INITRD_BYTES|INITRD_UNPACKED_BYTES|TARBALL_BYTES)=' "$kd/sizes.env"
      echo "INITRD_BYTES=$(stat -c %s "$nd/kexec/initrd")"
      echo "INITRD_UNPACKED_BYTES=$((INITRD_UNPACKED_BYTES + added))"
    } > "$nd/sizes.env"
    t=$nd/$(basename "$tarball")
    tar -C "$nd" --owner=0 --group=0 -cf - kexec | gzip -1 > "$t.part"
    mv "$t.part" "$t"
    echo "TARBALL_BYTES=$(stat -c %s "$t")" >> "$nd/sizes.env"
    rm -rf "$nd/kexec" "$nd/layer"
    sha256sum "$t" | cut -d' ' -f1 > "$nd/sha256"
    touch "$nd/.complete"
    log "standins: installer with Nix $(du -h "$t" | cut -f1): $(tr '\n' ' ' < "$nd/sizes.env")"
  fi
  kd=$nd tarball=$nd/$(basename "$tarball")
  # shellcheck source=/dev/null
  . "$kd/sizes.env"
fi

if ((json)); then
  printf '{"kexecTarball":"%s","kexecSha256":"%s","toplevel":"%s","diskScript":"%s","installerBallastBytes":%s,"installerInitrdBytes":%s,"installerUnpackedBytes":%s,"systemBallastBytes":%s,"variants":{%s}}\n' \
    "$tarball" "$(cat "$kd/sha256")" "$toplevel" "$disk" "$ib" "$INITRD_BYTES" "$INITRD_UNPACKED_BYTES" "$sb" "$vjson"
else
  printf 'kexecTarball=%s\nkexecSha256=%s\ntoplevel=%s\ndiskScript=%s\n%s' "$tarball" "$(cat "$kd/sha256")" "$toplevel" "$disk" "$vtext"
fi
