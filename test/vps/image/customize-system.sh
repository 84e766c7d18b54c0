#!/bin/bash
# mmdebstrap customize hook for the INSTALLED stand-in system's root (test/STANDINS.md §4): a
# Debian root that the stand-in toplevel carries as a tar in a store path and whose
# switch-to-configuration boot unpacks onto the new disk. $1 = the new root, $2 = the guest
# kernel's /lib/modules/<version>. Runs on the host.
set -euo pipefail
root=$1 mods=$2
src=$(cd "$(dirname "$0")/../system" && pwd)
guest=$(cd "$(dirname "$0")/../guest" && pwd)
inst=$(cd "$(dirname "$0")/../installer" && pwd)

touch "$root/etc/NIXOS"
rm -f "$root/etc/os-release"
install -m 644 "$src/os-release" "$root/etc/os-release"
echo nixos > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 nixos\n::1 localhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
install -m 644 "$guest/fstab" "$root/etc/fstab"
: > "$root/etc/machine-id"
rm -f "$root/etc/resolv.conf" "$root"/etc/ssh/ssh_host_*
install -m 644 "$guest/sshd.conf" "$root/etc/ssh/sshd_config.d/vps.conf"
# like NixOS: a missing host key is made at first start (so a key the install did not copy shows)
install -D -m 644 "$inst/ssh-keygen.conf" "$root/etc/systemd/system/ssh.service.d/keygen.conf"
install -D -m 644 "$guest/nix.conf" "$root/etc/nix/nix.conf"
mkdir -p "$root/root/.ssh" "$root/etc/systemd/network"
chmod 700 "$root/root/.ssh"
install -D -m 755 "$src/vps-identity.sh" "$root/usr/local/lib/vps-nixos/vps-identity.sh"
install -m 644 "$guest/vps-identity.service" "$root/etc/systemd/system/vps-identity.service"
install -m 644 "$src/activate.service" "$root/etc/systemd/system/vps-standin-activate.service"
# Nix comes from the system closure, as on NixOS (/run/current-system/sw/bin): ssh's PATH has
# /usr/local/bin, so nix-copy-closure's `nix-store --serve` finds it there.
for b in nix nix-store nix-env nix-build nix-instantiate nix-copy-closure nix-collect-garbage; do
  ln -s "/run/current-system/sw/bin/$b" "$root/usr/local/bin/$b"
done
chroot "$root" systemctl enable systemd-networkd.service ssh.service vps-identity.service \
  vps-standin-activate.service
chroot "$root" systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer fstrim.timer systemd-networkd-wait-online.service man-db.timer \
  getty@tty1.service e2scrub_reap.service 2>/dev/null || true

kver=$(basename "$mods")
d=$root/lib/modules/$kver
mkdir -p "$d/kernel/drivers/net" "$d/kernel/fs" "$d/kernel/net"
cp -a "$mods"/modules.order "$mods"/modules.builtin* "$d/"
cp -a "$mods/kernel/drivers/virtio" "$mods/kernel/drivers/block" "$d/kernel/drivers/"
cp -a "$mods/kernel/drivers/net/virtio_net.ko" "$mods/kernel/drivers/net/net_failover.ko" "$d/kernel/drivers/net/"
for f in ext4 jbd2 mbcache.ko fat nls; do
  [[ -e $mods/kernel/fs/$f ]] && cp -a "$mods/kernel/fs/$f" "$d/kernel/fs/"
done
cp -a "$mods/kernel/lib" "$mods/kernel/crypto" "$d/kernel/"
cp -a "$mods/kernel/net/core" "$d/kernel/net/"
mkdir -p "$d/kernel/drivers/firmware"
cp -a "$mods/kernel/drivers/firmware/qemu_fw_cfg.ko" "$d/kernel/drivers/firmware/" 2>/dev/null || true
chroot "$root" depmod "$kver"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
  "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale "$root"/usr/share/info
