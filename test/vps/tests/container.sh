#!/bin/bash
# The container VPS: nspawn, pinned key, systemd-detect-virt = systemd-nspawn, no kexec,
# a reboot inside it is restarted by the harness (nspawn exit 133); then down, clean.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
j=$("$VPS" up --kind container --json)
rd=$(json_get "$j" runDir)
trap '"$VPS" down --run-dir "$rd" >/dev/null 2>&1 || true' EXIT
echo "container: boot-to-ssh $(json_get "$j" bootToSshSeconds)s" >&2
expect_eq "$(g "$rd" systemd-detect-virt)" systemd-nspawn systemd-detect-virt
expect_eq "$(g "$rd" df -h --output=fstype,size /tmp | tail -1 | tr -s ' ')" "tmpfs 64M" "/tmp"
expect_eq "$(g "$rd" 'kexec -l /boot/vmlinuz-* --reuse-cmdline >/dev/null 2>&1 && echo loaded || echo refused')" refused "kexec"
expect_eq "$(g "$rd" 'command -v cpio || echo missing')" missing "cpio before prep"
g "$rd" 'apt-get -q update >/dev/null 2>&1 && apt-get install -y -q cpio >/dev/null 2>&1'
expect_eq "$(g "$rd" 'command -v cpio')" /usr/bin/cpio "cpio from the test repo"
old_boot=$(g "$rd" cat /proc/sys/kernel/random/boot_id)
old_pid=$(cat "$rd/nspawn.pid")
t0=$(now)
# boot_id is the host kernel's in a container: watch the nspawn restart and a marker in /run instead
g "$rd" 'touch /run/before-reboot && systemd-run --on-active=1 --timer-property=AccuracySec=100ms systemctl reboot >/dev/null 2>&1'
wait_for "$rd" 120 gone 'test -e /run/before-reboot && echo still || echo gone' >/dev/null
[[ $(cat "$rd/nspawn.pid") != "$old_pid" ]] || fail "nspawn was not restarted"
ok "rebooted (nspawn restarted by the supervisor) in $(since "$t0")s; boot_id $old_boot is the host's"
grep -q 'exited 133' "$rd/supervisor.log" || fail "supervisor did not see exit 133"
ok "supervisor saw exit 133"
"$VPS" down --run-dir "$rd"
trap - EXIT
assert_clean "$rd"
