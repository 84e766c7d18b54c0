#!/bin/bash
# mmdebstrap customize hook for the guest VPS image. $1 = the new root. Runs on the host.
set -euo pipefail
root=$1
src=$(cd "$(dirname "$0")/../guest" && pwd)

echo vps > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vps\n::1 localhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
install -m 644 "$src/fstab" "$root/etc/fstab"
: > "$root/etc/machine-id"   # empty: systemd makes a fresh one on each run's first boot
rm -f "$root/etc/resolv.conf"

# identity (host key, client key, network, apt source) arrives per run via fw_cfg
install -D -m 755 "$src/vps-identity.sh" "$root/usr/local/lib/vps-nixos/vps-identity.sh"
install -m 644 "$src/vps-identity.service" "$root/etc/systemd/system/vps-identity.service"
rm -f "$root"/etc/ssh/ssh_host_*
install -m 644 "$src/sshd.conf" "$root/etc/ssh/sshd_config.d/vps.conf"
mkdir -p "$root/etc/systemd/network" "$root/root/.ssh"
chmod 700 "$root/root/.ssh"
install -D -m 644 "$src/nix.conf" "$root/etc/nix/nix.conf"

# apt: the only source is the harness's repo inside the test network (written per run)
: > "$root/etc/apt/sources.list"
rm -rf "$root"/etc/apt/sources.list.d/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
# kexec-tools must not hijack reboots
printf 'LOAD_KEXEC=false\n' > "$root/etc/default/kexec"

# A small initrd (virtio + ext4 only, not MODULES=most) boots several seconds faster under TCG.
printf 'MODULES=list\n' > "$root/etc/initramfs-tools/conf.d/vps-nixos.conf"
printf '%s\n' virtio_pci virtio_blk ext4 >> "$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all >/dev/null 2>&1

# cpio must be missing, but linux-image-amd64 pulls in initramfs-tools, which needs cpio. The harness
# boots the guest with the initrd built here (build.sh copies it out), so the guest does not need
# initramfs-tools: a dummy package that Provides linux-initramfs-tool keeps apt's state consistent
# while initramfs-tools and cpio are purged. The prep phase's `apt-get install cpio` then runs for real.
# (purging initramfs-tools leaves /boot/initrd.img-* in place; build.sh checks it is there)
pkg=$(mktemp -d)
mkdir -p "$pkg/DEBIAN"
printf '%s\n' 'Package: vps-nixos-initrd-standin' 'Version: 1' 'Architecture: all' \
  'Maintainer: vps-nixos test harness <noreply@example.invalid>' 'Provides: linux-initramfs-tool' \
  'Description: initrd comes from the test harness (stand-in for initramfs-tools)' > "$pkg/DEBIAN/control"
dpkg-deb -b "$pkg" "$root/tmp/standin.deb" >/dev/null
rm -rf "$pkg"
# initramfs-tools Conflicts: linux-initramfs-tool, so it goes first (briefly breaking linux-image's dependency)
chroot "$root" dpkg --purge --force-depends initramfs-tools initramfs-tools-core klibc-utils cpio >/dev/null
chroot "$root" dpkg -i /tmp/standin.deb >/dev/null
rm -f "$root/tmp/standin.deb"
chroot "$root" dpkg --audit
[[ ! -e $root/usr/bin/cpio ]]

chroot "$root" systemctl enable systemd-networkd.service ssh.service vps-identity.service
# quiet, deterministic boots: no timers doing I/O under TCG, no network wait
chroot "$root" systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer fstrim.timer systemd-networkd-wait-online.service man-db.timer \
  kexec-load.service kexec.service getty@tty1.service 2>/dev/null || true
