#!/bin/sh
# Before a deploy, on the target: what runs, which profile generation, which units have failed
# already, and the store's path names (to measure what the deploy adds). key=value lines, then
# the store listing after a line `store:`. With the argument `units`: only the failed units.
export LC_ALL=C
PATH="/run/current-system/sw/bin:$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
kv() { printf '%s=%s\n' "$1" "$2"; }
# readlink -f prints a path that does not exist, too: resolve only what is there
res() { if [ -e "$1" ]; then readlink -f "$1"; fi; }
failed() { systemctl --failed --plain --no-legend --no-pager 2>/dev/null | awk '{ printf "%s ", $1 }'; }
if [ "${1:-}" = units ]; then kv failed "$(failed)"; exit 0; fi
kv nixos "$([ -e /etc/NIXOS ] && echo 1 || echo 0)"
kv current "$(res /run/current-system)"
kv profile_link "$(readlink /nix/var/nix/profiles/system 2>/dev/null)"
kv profile "$(res /nix/var/nix/profiles/system)"
kv systemd_run "$(command -v systemd-run 2>/dev/null)"
kv failed "$(failed)"
echo store:
# no /nix/store yet (Nix never used): nothing there
ls /nix/store 2>/dev/null
exit 0
