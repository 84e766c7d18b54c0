#!/bin/sh
# Reboots detached from the SSH session that asks (the reboot must not depend on the session it
# ends): a systemd timer 2 s out, or without systemd a detached `reboot -f` after 2 s. Returns at
# once; the caller then waits for a new boot_id.
sync
if ! systemd-run --on-active=2 --timer-property=AccuracySec=100ms systemctl reboot \
  </dev/null >/dev/null 2>&1; then
  setsid -f sh -c 'sleep 2; reboot -f' </dev/null >/dev/null 2>&1
fi
