#!/bin/bash
# Build the cached test VPS images into $1 (a fresh directory):
#   ctroot/ (the guest root; also the container root), vmlinuz, initrd.img, disk.raw, apt-repo/,
#   installer-root.cpio.zst (the stand-in installer: its whole root as one initrd segment),
#   system-root.tar (the installed stand-in system's root).
# Only Debian packages from the host's apt mirror are used (mmdebstrap --mode=unshare: no loop devices).
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
pkgs() { grep -v '^#' "$1" | grep -v '^$' | paste -sd, -; }
t() { printf '[image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
nodocs=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*')

# mmdebstrap hooks get the root as "$1" in the hook's own shell: single quotes are meant.
# shellcheck disable=SC2016
kexec_preseed='echo "kexec-tools kexec-tools/load_kexec boolean false" | chroot "$1" debconf-set-selections'

mkdir -p "$out"
cd "$out"
# Each step writes its output under a temporary name and renames it: a failed build resumes at the failed step.

if [[ ! -e ctroot ]]; then
t "mmdebstrap guest root (a directory: also the container's root and the source of the disk)"
rm -rf ctroot.part
# output type follows the name: a directory here (we are root, owners are kept)
mmdebstrap --mode=unshare --variant=minbase --quiet "${nodocs[@]}" \
  --include="$(pkgs "$here/guest-packages.txt")" \
  --essential-hook="$kexec_preseed" \
  --customize-hook="\"$here/customize-guest.sh\" \"\$1\"" \
  bookworm ctroot.part
mv ctroot.part ctroot
fi
kver=$(basename "$(ls -d ctroot/lib/modules/*)")
cp "ctroot/boot/vmlinuz-$kver" vmlinuz
cp "ctroot/boot/initrd.img-$kver" initrd.img   # still there after customize-guest.sh purged initramfs-tools
echo "$kver" > kernel-version

if [[ ! -e disk.raw ]]; then
t "disk: GPT + ext4 (label vpsroot) written straight into a sparse raw file"
# 4094M filesystem at 1 MiB in a 4 GiB disk: 4095M would overlap the backup GPT (TESTBED 2).
# NB: 'sgdisk -q' is not an option here: it exits 0 and writes nothing.
rm -f disk.tmp
truncate -s 4G disk.tmp
sgdisk -o -n 1:2048:+4094M -t 1:8300 -c 1:root disk.tmp >/dev/null
mkfs.ext4 -q -F -L vpsroot -E offset=1048576,nodiscard -d ctroot disk.tmp 4094M
sgdisk -v disk.tmp | grep -q 'No problems found' || { sgdisk -v disk.tmp >&2; exit 1; }
mv disk.tmp disk.raw
fi

if [[ ! -e apt-repo ]]; then
t "apt repo served inside the test network"
rm -rf apt-repo.tmp; mkdir apt-repo.tmp
chmod 755 apt-repo.tmp
mapfile -t repo_pkgs < <(grep -v '^#' "$here/apt-repo-packages.txt" | grep -v '^$')
(cd apt-repo.tmp && apt-get -q -o APT::Sandbox::User=root download "${repo_pkgs[@]}" >/dev/null \
  && dpkg-scanpackages -m . > Packages 2>/dev/null && gzip -k -9 Packages \
  && apt-ftparchive release . > Release)
mv apt-repo.tmp apt-repo
fi

tools=$(cd "$here/../../../scripts" && pwd)/installer-tools.txt
if [[ ! -e installer-root.cpio.zst ]]; then
t "mmdebstrap stand-in installer root (the whole installer: one initrd, systemd as /init)"
rm -f installer-part.tar
mmdebstrap --mode=unshare --variant=minbase --quiet "${nodocs[@]}" \
  --include="$(pkgs "$here/installer-packages.txt")" \
  --customize-hook="\"$here/customize-installer.sh\" \"\$1\" \"$out/ctroot/lib/modules/$kver\" \"$tools\"" \
  bookworm installer-part.tar
t "installer root -> one zstd newc cpio (the initrd's base; standins/build.sh adds the ballast)"
# bsdtar converts tar to newc without unpacking: owners, modes and device nodes are kept.
# zstd -10: the level NixOS uses for its initrds (initrd-compressor-meta.nix).
bsdtar --format newc -cf - @installer-part.tar | zstd -q -10 -T0 > installer-root.tmp
bsdtar -tvf installer-part.tar | awk '{ s += $5 } END { print s }' > installer-root.unpacked-bytes
rm installer-part.tar
mv installer-root.tmp installer-root.cpio.zst
fi

if [[ ! -e system-root.tar ]]; then
t "mmdebstrap the installed stand-in system's root (a tar: the toplevel carries it in a store path)"
rm -f system-part.tar
mmdebstrap --mode=unshare --variant=minbase --quiet "${nodocs[@]}" \
  --include="$(pkgs "$here/system-packages.txt")" \
  --customize-hook="\"$here/customize-system.sh\" \"\$1\" \"$out/ctroot/lib/modules/$kver\"" \
  bookworm system-part.tar
mv system-part.tar system-root.tar
fi
t "done: $(du -sh ctroot | cut -f1) root, $(du -sh disk.raw | cut -f1) disk allocated, $(du -sh installer-root.cpio.zst | cut -f1) installer initrd ($(numfmt --to=iec < installer-root.unpacked-bytes) unpacked), $(du -sh system-root.tar | cut -f1) system root"
