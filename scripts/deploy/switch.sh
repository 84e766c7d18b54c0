#!/bin/sh
# The deploy's switch, run on the target (as root) over the session that armed the rollback
# guard, once the runner has copied the system it built (nix-copy-closure): what
# `nixos-rebuild --target-host` does after its copy, without its second evaluation of the flake.
#
#   switch.sh ACTION TOPLEVEL      ACTION: switch | boot | test | dry-activate
#
# switch, boot: the system profile gets TOPLEVEL as a new generation (nix-env --set), as
# nixos-rebuild does. Then TOPLEVEL's switch-to-configuration ACTION, in a transient unit
# (systemd-run --wait --pipe, the unit name nixos-rebuild's is modelled on) so that an SSH session
# dropping with the old sshd or network cannot stop it half-way, and two switches cannot run at
# once (the unit name is taken); directly where systemd is not PID 1. Its output passes through.
# Exit: switch-to-configuration's status (4: a unit failed), nix-env's when the profile could not
# be set, 3 for arguments that are not an action and a NixOS system in the store.
export LC_ALL=C
PATH="/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin:$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
action=${1:-}
top=${2:-}
case $action in
  switch | boot | test | dry-activate) ;;
  *) echo "switch.sh: unknown action '$action'" >&2; exit 3 ;;
esac
case $top in
  /nix/store/*) ;;
  *) echo "switch.sh: '$top' is not a store path" >&2; exit 3 ;;
esac
if [ ! -x "$top/bin/switch-to-configuration" ]; then
  echo "switch.sh: $top is not a NixOS system here (no bin/switch-to-configuration)" >&2
  exit 3
fi
if [ "$action" = switch ] || [ "$action" = boot ]; then
  nix-env -p /nix/var/nix/profiles/system --set "$top" || exit
fi
export NIXOS_INSTALL_BOOTLOADER=0
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
  exec systemd-run -E LOCALE_ARCHIVE -E NIXOS_INSTALL_BOOTLOADER --collect --no-ask-password \
    --pipe --quiet --service-type=exec --unit=vps-nixos-switch-to-configuration --wait \
    "$top/bin/switch-to-configuration" "$action"
fi
exec env -i LOCALE_ARCHIVE="${LOCALE_ARCHIVE:-}" NIXOS_INSTALL_BOOTLOADER=0 \
  "$top/bin/switch-to-configuration" "$action"
