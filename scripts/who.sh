#!/bin/sh
# What answers now, one line each: the boot id, os-release's VARIANT_ID ('installer' in ours),
# 'nixos' or 'other' (/etc/NIXOS), and /run/current-system resolved ('' when there is none).
# Read after a kexec or reboot to tell which system came back.
cat /proc/sys/kernel/random/boot_id
(
  # shellcheck disable=SC1091 # the target's own os-release
  [ -r /etc/os-release ] && . /etc/os-release
  echo "${VARIANT_ID:-}"
)
if [ -e /etc/NIXOS ]; then echo nixos; else echo other; fi
if [ -e /run/current-system ]; then readlink -f /run/current-system; else echo; fi
