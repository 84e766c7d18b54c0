#!/bin/bash
# mmdebstrap customize hook for the stand-in installer root: the WHOLE installer, one initrd.
# $1 = the new root, $2 = the guest kernel's /lib/modules/<version> (the modules a VPS installer
# needs are copied), $3 = scripts/installer-tools.txt (each command must be in the root).
# Runs on the host.
set -euo pipefail
root=$1 mods=$2 tools=$3
src=$(cd "$(dirname "$0")/../installer" && pwd)
guest=$(cd "$(dirname "$0")/../guest" && pwd)

# The kernel runs /init from the initramfs and there is no root= on the command line, so the
# initramfs (a tmpfs) stays the root. No /etc/initrd-release: systemd runs it as a normal system.
ln -s /lib/systemd/systemd "$root/init"
touch "$root/etc/NIXOS"
rm -f "$root/etc/os-release"
install -m 644 "$src/os-release" "$root/etc/os-release"
echo nixos-installer > "$root/etc/hostname"
: > "$root/etc/fstab"
: > "$root/etc/machine-id"   # the carried one (from kexec/run) replaces it
rm -f "$root/etc/resolv.conf" "$root"/etc/ssh/ssh_host_*
install -m 644 "$guest/sshd.conf" "$root/etc/ssh/sshd_config.d/vps.conf"
install -D -m 644 "$src/ssh-keygen.conf" "$root/etc/systemd/system/ssh.service.d/keygen.conf"
mkdir -p "$root/root/.ssh" "$root/mnt"
chmod 700 "$root/root/.ssh"
install -D -m 755 "$src/restore-network.sh" "$root/usr/local/lib/vps-nixos/restore-network.sh"
install -m 644 "$src/restore-network.service" "$src/zram.service" "$src/rootfs-size.service" \
  "$root/etc/systemd/system/"
chroot "$root" systemctl enable systemd-networkd.service ssh.service restore-network.service \
  zram.service rootfs-size.service
# journald in RAM (it is anyway: no /var/log/journal), capped like the real one
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' > "$root/etc/systemd/journald.conf.d/installer.conf"
chroot "$root" systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer fstrim.timer systemd-remount-fs.service systemd-networkd-wait-online.service \
  getty@tty1.service mdmonitor.service mdcheck_start.timer mdcheck_continue.timer \
  mdmonitor-oneshot.timer lvm2-monitor.service lvm2-lvmpolld.socket dm-event.socket \
  e2scrub_reap.service 2>/dev/null || true

# Kernel modules a VPS installer needs (Debian builds them as modules): virtio disk/net/scsi,
# ext4, vfat, btrfs, xfs, dm (LVM, LUKS), md (mdadm), zram.
kver=$(basename "$mods")
d=$root/lib/modules/$kver
mkdir -p "$d/kernel/drivers/net" "$d/kernel/drivers/md" "$d/kernel/fs" "$d/kernel/arch/x86" "$d/kernel/net"
cp -a "$mods"/modules.order "$mods"/modules.builtin* "$d/"
cp -a "$mods/kernel/drivers/virtio" "$mods/kernel/drivers/block" "$d/kernel/drivers/"
cp -a "$mods/kernel/drivers/net/virtio_net.ko" "$mods/kernel/drivers/net/net_failover.ko" "$d/kernel/drivers/net/"
cp -a "$mods/kernel/drivers/md/." "$d/kernel/drivers/md/"
for f in ext4 jbd2 mbcache.ko fat nls btrfs xfs; do
  [[ -e $mods/kernel/fs/$f ]] && cp -a "$mods/kernel/fs/$f" "$d/kernel/fs/"
done
cp -a "$mods/kernel/lib" "$mods/kernel/crypto" "$mods/kernel/mm" "$d/kernel/"
cp -a "$mods/kernel/arch/x86/crypto" "$d/kernel/arch/x86/"
cp -a "$mods/kernel/net/core" "$d/kernel/net/"
chroot "$root" depmod "$kver"

# Nothing the installer never runs: the package manager and its state, docs, locales, and the
# interpreters Debian's packaging drags in (python3 for xfs_scrub_all, perl's modules). The real
# installer copies only what its tools link (makeInitrdNG), so these would flatter nothing.
rm -rf "$root"/var/lib/apt "$root"/var/cache/apt "$root"/var/cache/debconf "$root"/var/lib/dpkg \
  "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale "$root"/usr/share/info \
  "$root"/usr/lib/apt "$root"/usr/bin/apt* "$root"/usr/lib/x86_64-linux-gnu/libapt-* \
  "$root"/usr/lib/python3* "$root"/usr/bin/python3* "$root"/usr/share/python3 \
  "$root"/usr/share/perl "$root"/usr/lib/x86_64-linux-gnu/perl "$root"/usr/lib/x86_64-linux-gnu/libperl* \
  "$root"/usr/share/perl5 "$root"/usr/lib/x86_64-linux-gnu/perl-base "$root"/usr/share/debconf \
  "$root"/usr/sbin/xfs_scrub* "$root"/usr/lib/x86_64-linux-gnu/gconv "$root"/usr/share/i18n
# ICU (30 MiB: only xfs_scrub links it in Debian) goes when nothing left needs it.
if ! find "$root"/usr/bin "$root"/usr/sbin "$root"/usr/lib/systemd "$root"/usr/lib/udev -type f -perm -u+x \
  -exec chroot "$root" /usr/bin/ldd {} \; 2>/dev/null | grep -q libicu; then
  rm -f "$root"/usr/lib/x86_64-linux-gnu/libicu*
fi

# Every command our remote scripts (and a disko script) run in the installer must be here.
missing=
while read -r spec; do
  spec=${spec%%#*}; spec=${spec// /}
  [[ -n $spec ]] || continue
  found=0
  for c in ${spec//|/ }; do
    if chroot "$root" /bin/sh -c "command -v $c" >/dev/null 2>&1; then found=1; break; fi
  done
  ((found)) || missing+=" $spec"
done < "$tools"
[[ -z $missing ]] || { echo "customize-installer: commands missing from the installer:$missing" >&2; exit 1; }
