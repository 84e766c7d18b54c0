#!/bin/bash
# The container "provider": run systemd-nspawn and start it again when the guest reboots
# (nspawn exits 133), as a real host would. Usage: ct-supervise.sh RUNDIR ROOT MACHINE NETNS_PATH
# Writes RUNDIR/nspawn.pid for each start; `vps down` stops us by our process group.
set -uo pipefail
rd=$1 root=$2 machine=$3 nspath=$4
while :; do
  # --keep-unit --register=no: host PID 1 is not systemd (TESTBED 7).
  # CAP_NET_ADMIN: nspawn drops it unless it made the netns itself, and networkd needs it.
  # --tmpfs: nspawn mounts its own big /tmp, which an fstab line cannot resize.
  systemd-nspawn -b -D "$root" -M "$machine" --keep-unit --register=no \
    --network-namespace-path="$nspath" --capability=CAP_NET_ADMIN --console=pipe \
    --tmpfs=/tmp:size=64M,mode=1777 \
    --resolv-conf=off --timezone=off --link-journal=no \
    </dev/null >>"$rd/console.raw" 2>&1 &
  echo $! > "$rd/nspawn.pid"
  wait $!
  rc=$?
  printf '%s nspawn exited %s\n' "$EPOCHREALTIME" "$rc" >> "$rd/supervisor.log"
  [[ $rc == 133 ]] || exit "$rc"
done
