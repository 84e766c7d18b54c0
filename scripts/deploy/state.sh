#!/bin/sh
# Before a deploy, on the target, in one round trip: what runs, which profile generation, which
# units have failed already, and the store's path names (to measure what the deploy adds).
# key=value lines, then the store listing after a line `store:`.
#
#   state.sh                       only that
#   state.sh arm ID TIMEOUT MODE   then, before anything changes, the rollback guard against what
#                                  it just read: guard.sh (sent before this script as the function
#                                  guard_sh) installed as /run/vps-nixos/guard.sh, and
#                                  `guard.sh arm ID CURRENT PROFILE_LINK TIMEOUT MODE`. Not when
#                                  there is nothing to guard or nothing to guard with: no
#                                  /etc/NIXOS, no current system (the first deploy), no
#                                  systemd-run. Prints guard_install=ok|failed, guard.sh's answer
#                                  as guard_KEY=VALUE lines, and guard_exit=its exit status.
export LC_ALL=C
PATH="/run/current-system/sw/bin:$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
kv() { printf '%s=%s\n' "$1" "$2"; }
# readlink -f prints a path that does not exist, too: resolve only what is there
res() { if [ -e "$1" ]; then readlink -f "$1"; fi; }
failed() { systemctl --failed --plain --no-legend --no-pager 2>/dev/null | awk '{ printf "%s ", $1 }'; }
nixos=$([ -e /etc/NIXOS ] && echo 1 || echo 0)
current=$(res /run/current-system)
link=$(readlink /nix/var/nix/profiles/system 2>/dev/null)
systemd_run=$(command -v systemd-run 2>/dev/null)
# The running system's closure, listed in the background while nixos-rebuild copies and
# switches, for closure.sh to read afterwards instead of asking nix-store then (a store path's
# closure never changes). Complete or absent (tmp + mv); older lists go (/run is RAM).
if [ -n "$current" ] && (umask 077 && mkdir -p /run/vps-nixos) 2>/dev/null; then
  listed=/run/vps-nixos/closure-${current##*/}
  for f in /run/vps-nixos/closure-*; do
    [ "$f" = "$listed" ] || rm -f "$f"
  done
  if [ ! -s "$listed" ]; then
    (nix-store -qR "$current" > "$listed.$$" && mv "$listed.$$" "$listed"
      rm -f "$listed.$$") < /dev/null > /dev/null 2>&1 &
  fi
fi
kv nixos "$nixos"
kv current "$current"
kv profile_link "$link"
kv profile "$(res /nix/var/nix/profiles/system)"
kv systemd_run "$systemd_run"
kv failed "$(failed)"
if [ "${1:-}" = arm ] && [ "$nixos" = 1 ] && [ -n "$current" ] && [ -n "$systemd_run" ]; then
  id=${2:?deploy id}
  timeout=${3:?confirm timeout}
  mode=${4:?switch or test}
  g=/run/vps-nixos/guard.sh
  if (umask 077 && mkdir -p /run/vps-nixos && guard_sh > "$g.tmp" && mv "$g.tmp" "$g"); then
    kv guard_install ok
    answer=$(/bin/sh "$g" arm "$id" "$current" "${link:--}" "$timeout" "$mode")
    rc=$?
    printf '%s\n' "$answer" | sed -n 's/^./guard_&/p'
    kv guard_exit "$rc"
  else
    kv guard_install failed
  fi
fi
echo store:
# no /nix/store yet (Nix never used): nothing there
ls /nix/store 2>/dev/null
exit 0
