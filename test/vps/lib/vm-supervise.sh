#!/bin/bash
# The VM "provider" for VPS_BOOT=disk: runs QEMU in the run's netns with -no-reboot. The first start
# boots the image's kernel (the provider's distribution, as without VPS_BOOT); each time the guest
# reboots (QEMU exits 0 after the kernel printed "reboot: Restarting system") QEMU starts again
# from the disk's own boot loader (SeaBIOS, then whatever the install put on the disk), as a real
# VPS boots. A power-off stays off. Usage:
#   vm-supervise.sh RUNDIR NETNS N FIRST-BOOT-ARG×N QEMU-ARG...
# Writes RUNDIR/qemu.pid for each start (QEMU's -pidfile); `vps down` touches RUNDIR/stopping and
# stops us by our process group (RUNDIR/vm-supervise.pgid).
set -uo pipefail
rd=$1 ns=$2 nfirst=$3
shift 3
first=("${@:1:nfirst}")
shift "$nfirst"
start=0
while :; do
  extra=()
  ((start > 0)) || extra=("${first[@]}")
  lines=$(wc -l < "$rd/serial.raw" 2>/dev/null || echo 0)
  ip netns exec "$ns" qemu-system-x86_64 "$@" "${extra[@]}" -no-reboot -pidfile "$rd/qemu.pid" \
    </dev/null 2>>"$rd/qemu.err" &
  wait $!
  rc=$?
  printf '%s qemu exited %s (start %s)\n' "$EPOCHREALTIME" "$rc" "$start" >> "$rd/supervisor.log"
  [[ $rc == 0 && ! -e $rd/stopping ]] || exit "$rc"
  tail -n "+$((lines + 1))" "$rd/serial.raw" 2>/dev/null | grep -q 'reboot: Restarting system' || exit 0
  start=$((start + 1))
done
