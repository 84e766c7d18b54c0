#!/bin/bash
# mmdebstrap customize hook for the stand-in installer root. $1 = the new root,
# $2 = the guest kernel's /lib/modules/<version> (we copy the modules the installer needs). Runs on the host.
set -euo pipefail
root=$1 mods=$2
src=$(cd "$(dirname "$0")/../installer" && pwd)
guest=$(cd "$(dirname "$0")/../guest" && pwd)

ln -s /lib/systemd/systemd "$root/init"   # no /etc/initrd-release: systemd runs it as a normal system
touch "$root/etc/NIXOS"
rm -f "$root/etc/os-release"
install -m 644 "$src/os-release" "$root/etc/os-release"
echo nixos-installer > "$root/etc/hostname"
: > "$root/etc/fstab"
: > "$root/etc/machine-id"   # the carried one (from kexec/run) replaces it
rm -f "$root/etc/resolv.conf" "$root"/etc/ssh/ssh_host_*
install -m 644 "$guest/sshd.conf" "$root/etc/ssh/sshd_config.d/vps.conf"
install -D -m 644 "$src/ssh-keygen.conf" "$root/etc/systemd/system/ssh.service.d/keygen.conf"
install -D -m 644 "$src/nix.conf" "$root/etc/nix/nix.conf"
mkdir -p "$root/root/.ssh" "$root/nix/.ro-store" "$root/nix/.rw-store" "$root/nix/store" "$root/mnt"
chmod 700 "$root/root/.ssh"
install -D -m 755 "$src/nix-store.sh" "$root/usr/local/lib/vps-nixos/nix-store.sh"
install -m 755 "$src/restore-network.sh" "$root/usr/local/lib/vps-nixos/restore-network.sh"
install -m 644 "$src/nix-store.service" "$src/restore-network.service" "$root/etc/systemd/system/"
install -m 644 "$src/activate.service" "$root/etc/systemd/system/vps-standin-activate.service"
install -D -m 755 "$src/nixos-install" "$root/usr/local/sbin/nixos-install"
printf 'LOAD_KEXEC=false\n' > "$root/etc/default/kexec"
chroot "$root" systemctl enable systemd-networkd.service ssh.service nix-store.service restore-network.service
chroot "$root" systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer fstrim.timer systemd-remount-fs.service systemd-networkd-wait-online.service \
  kexec-load.service kexec.service getty@tty1.service 2>/dev/null || true

# Kernel modules (Debian builds them as modules): virtio disk/net, ext4, vfat, overlay, squashfs, loop, zram.
kver=$(basename "$mods")
d=$root/lib/modules/$kver
mkdir -p "$d/kernel/drivers/net" "$d/kernel/fs" "$d/kernel/arch/x86" "$d/kernel/net"
cp -a "$mods"/modules.order "$mods"/modules.builtin* "$d/"
cp -a "$mods/kernel/drivers/virtio" "$mods/kernel/drivers/block" "$d/kernel/drivers/"
cp -a "$mods/kernel/drivers/net/virtio_net.ko" "$mods/kernel/drivers/net/net_failover.ko" "$d/kernel/drivers/net/"
for f in ext4 jbd2 mbcache.ko overlayfs fat nls squashfs; do
  [[ -e $mods/kernel/fs/$f ]] && cp -a "$mods/kernel/fs/$f" "$d/kernel/fs/"
done
cp -a "$mods/kernel/lib" "$mods/kernel/crypto" "$mods/kernel/mm" "$d/kernel/"
cp -a "$mods/kernel/arch/x86/crypto" "$d/kernel/arch/x86/"
cp -a "$mods/kernel/net/core" "$d/kernel/net/"
chroot "$root" depmod "$kver"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old
