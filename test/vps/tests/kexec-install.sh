#!/bin/bash
# The whole stand-in path on the VM, by hand (not the product): prep (apt-get install cpio from the
# test repo) -> upload the installer tarball -> kexec/run -> the installer (one initrd: the tmpfs
# rootfs stays the root, systemd is PID 1, no Nix) answers on the SAME address with the SAME pinned
# host key and VARIANT_ID=installer -> disk script -> the closure as a tar into /mnt, registered by
# the closure's own Nix in a chroot -> its switch-to-configuration boot (unpacks its root,
# grub-install) -> reboot -> the installed system answers (same key) with /run/current-system =
# the toplevel.
# Usage: kexec-install.sh [RAM_MiB] [BALLAST]   (defaults 1024, 0). Prints timings and RAM figures
# as "RESULT key=value" lines. KEXEC_ONLY=1 stops after the installer checks (for the bench).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ram=${1:-1024} ballast=${2:-0}
s=$("$VPS" standins --ballast "$ballast" --json)
tarball=$(json_get "$s" kexecTarball) sha=$(json_get "$s" kexecSha256)
toplevel=$(json_get "$s" toplevel) disk=$(json_get "$s" diskScript)
j=$("$VPS" up --ram "$ram" --json)
rd=$(json_get "$j" runDir) addr=$(json_get "$j" address)
trap '"$VPS" down --run-dir "$rd" >/dev/null 2>&1 || true' EXIT
report() { printf 'RESULT %s=%s\n' "$1" "$2" | tee -a "$rd/results" >&2; }
report ramMiB "$ram"; report ballast "$ballast"
report bootToSsh "$(json_get "$j" bootToSshSeconds)"
mem() { g "$rd" "awk '/^(MemTotal|MemFree|MemAvailable):/ {printf \"%s=%d \", \$1, \$2/1024}' /proc/meminfo"; }
report memBeforeKexecMiB "$(mem)"

# phase-0-like prep: cpio is not installed; the only apt source is the harness's repo
t0=$(now)
g "$rd" 'apt-get -q update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q cpio >/dev/null 2>&1'
report aptInstallCpioSeconds "$(since "$t0")"

t0=$(now)
g "$rd" 'mkdir -p /root/kexec-up && cat > /root/kexec-up/installer.tar.gz' < "$tarball"
expect_eq "$(g "$rd" 'sha256sum /root/kexec-up/installer.tar.gz | cut -d" " -f1')" "$sha" "uploaded tarball sha256"
g "$rd" 'tar -C /root/kexec-up -xzf /root/kexec-up/installer.tar.gz && rm /root/kexec-up/installer.tar.gz'
report uploadSeconds "$(since "$t0") ($(stat -c %s "$tarball") bytes)"

old_boot=$(g "$rd" cat /proc/sys/kernel/random/boot_id)
t0=$(now)
# detached, like the product does it; `run` kexecs 6 s later in the background
# shellcheck disable=SC2016  # expands in the guest
g "$rd" 'setsid /root/kexec-up/kexec/run </dev/null >/root/kexec-up/run.log 2>&1; rc=$?; cat /root/kexec-up/run.log; exit $rc' \
  || { report kexecRoundTripSeconds "FAILED: kexec/run failed (${ram} MiB, installer ballast $ballast)"; fail "kexec/run failed"; }
probe=". /etc/os-release; b=\$(cat /proc/sys/kernel/random/boot_id); [ \"\$b\" = $old_boot ] && echo old || echo \"\$ID/\$VARIANT_ID\""
wait_for "$rd" 400 nixos/installer "$probe" >/dev/null
report kexecRoundTripSeconds "$(since "$t0") (run -> installer sshd, incl. run's 6 s delay)"
ok "installer answers at $addr with the pinned host key (StrictHostKeyChecking=yes)"
expect_eq "$(g "$rd" 'test -e /etc/NIXOS && echo yes')" yes /etc/NIXOS
expect_eq "$(g "$rd" 'findmnt -no FSTYPE /')" rootfs "the root is the initramfs (no switch_root)"
expect_eq "$(g "$rd" 'stat -c %U:%a /')" "root:755" "rootfs mode"
expect_eq "$(g "$rd" 'readlink /proc/1/exe')" /usr/lib/systemd/systemd "systemd is PID 1"
expect_eq "$(g "$rd" 'command -v nix-store nix || echo none')" none "no Nix in the installer"
expect_eq "$(g "$rd" 'swapon --show=NAME --noheadings | grep -c zram')" 1 "zram swap on"
expect_eq "$(g "$rd" 'stat -c %a /etc/machine-id')" 444 "carried machine-id readable by networkd"
# every command our remote scripts and a disko script run (the build checked it too)
# shellcheck disable=SC2016 # expands in the guest
missing=$(grep -v '^#' "$T_DIR/../../../scripts/installer-tools.txt" | g "$rd" 'm=; while read -r spec; do [ -n "$spec" ] || continue; f=; for c in $(echo "$spec" | tr "|" " "); do command -v "$c" >/dev/null && f=1; done; [ -n "$f" ] || m="$m $spec"; done; echo "none$m"')
expect_eq "$missing" none "installer tools (scripts/installer-tools.txt)"
expect_eq "$(g "$rd" "ip -br addr show | awk '\$3 ~ /^$addr\\// {print \"found\"}'")" found "same IPv4 address"
expect_eq "$(g "$rd" "ip -6 route show default | grep -c via")" 1 "IPv6 default route carried"
report memAfterKexecMiB "$(mem)"
g "$rd" 'df -h / | sed 1d' >&2

if [[ ${KEXEC_ONLY:-0} == 1 ]]; then
  "$VPS" down --run-dir "$rd"; trap - EXIT; assert_clean "$rd"; exit 0
fi

# install by hand: disk script, the closure as a tar into /mnt, registered and made bootable by its
# own Nix and switch-to-configuration in a chroot (what the product's install step does)
t0=$(now)
tar -C / -cf - "${disk#/}" | g "$rd" 'tar -C / -xf -'
g "$rd" "$disk" > "$rd/disk-script.log" 2>&1 || { tail -20 "$rd/disk-script.log" >&2; fail "disk script"; }
report diskScriptSeconds "$(since "$t0")"
t0=$(now)
mapfile -t closure < <(nix-store -qR "$toplevel")
nix=$(dirname "$(dirname "$(readlink -f "$toplevel/sw/bin/nix-store")")")
tar -C / -cf - "${closure[@]#/}" | zstd -q -3 -T0 | g "$rd" 'zstd -dc | tar -C /mnt -xf -'
report closureCopySeconds "$(since "$t0") (${#closure[@]} paths)"
t0=$(now)
nix-store --dump-db "${closure[@]}" | g "$rd" "mkdir -p /mnt/dev /mnt/proc /mnt/sys /mnt/run /mnt/root && mount --rbind /dev /mnt/dev && mount --make-rslave /mnt/dev && mount -t proc proc /mnt/proc && mount --rbind /sys /mnt/sys && mount --make-rslave /mnt/sys && mount -t tmpfs tmpfs /mnt/run && HOME=/root NIX_CONFIG='build-users-group =' chroot /mnt $nix/bin/nix-store --load-db"
expect_eq "$(g "$rd" "HOME=/root NIX_CONFIG='build-users-group =' chroot /mnt $nix/bin/nix-store --verify-path $toplevel 2>/dev/null && echo valid")" valid "closure registered by its own Nix"
g "$rd" "HOME=/root NIX_CONFIG='build-users-group =' chroot /mnt $nix/bin/nix-env -p /nix/var/nix/profiles/system --set $toplevel && touch /mnt/etc/NIXOS 2>/dev/null || { mkdir -p /mnt/etc && touch /mnt/etc/NIXOS; }"
g "$rd" "chroot /mnt $toplevel/activate && NIXOS_INSTALL_BOOTLOADER=1 chroot /mnt $toplevel/bin/switch-to-configuration boot && cp -a /etc/ssh/ssh_host_* /mnt/etc/ssh/ && umount -lR /mnt/dev /mnt/proc /mnt/sys /mnt/run" 2>&1 | tail -3 >&2
expect_eq "$(g "$rd" 'dd if=/dev/vda bs=512 count=1 2>/dev/null | grep -c GRUB')" 1 "grub-install wrote the boot sector"
report installSeconds "$(since "$t0")"
old_boot=$(g "$rd" cat /proc/sys/kernel/random/boot_id)
t0=$(now)
g "$rd" 'systemd-run --on-active=1 --timer-property=AccuracySec=100ms systemctl reboot >/dev/null 2>&1'
probe=". /etc/os-release; b=\$(cat /proc/sys/kernel/random/boot_id); [ \"\$b\" = $old_boot ] && echo old || echo \"\$ID/\${VARIANT_ID:-none}/\$(readlink /run/current-system)\""
wait_for "$rd" 400 "nixos/none/$toplevel" "$probe" >/dev/null
report rebootToInstalledSeconds "$(since "$t0")"
ok "installed system answers with the pinned key, /run/current-system = toplevel"
expect_eq "$(g "$rd" 'findmnt -no SOURCE,FSTYPE /')" "/dev/vda3 ext4" "root on the new disk"
"$VPS" down --run-dir "$rd"
trap - EXIT
assert_clean "$rd"
