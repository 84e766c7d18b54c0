#!/bin/sh
# The deploy's safety net, run on the target as root (deploy-rs' "magic rollback" idea, which
# nixos-rebuild lacks). Armed before nixos-rebuild switches; once /run/current-system changes, the
# runner has TIMEOUT seconds to confirm over a NEW SSH session, else the target reactivates the
# previous generation by itself: a configuration that cuts the network or sshd undoes itself.
#
#   guard.sh arm ID PREV_SYSTEM PROFILE_LINK TIMEOUT MODE   start the watcher (a transient unit),
#                                                            and stop any other armed one
#   guard.sh watch ID                                        the watcher itself (run by arm)
#   guard.sh confirm ID                                      keep the new system
#   guard.sh rollback ID REASON                              roll back now (health check failed)
#   guard.sh disarm ID                                       nothing was switched: stop watching
#   guard.sh status ID                                       print the state as key=value lines
#
# PROFILE_LINK is what /nix/var/nix/profiles/system pointed at before (system-N-link), or '-'.
# MODE is switch (restore the profile generation too) or test (activation only).
# State lives in /run/vps-nixos/deploy/ID (tmpfs: a reboot ends every guard, and the profile
# then decides what boots). The one file `armed` is the token: whoever renames it first (the
# runner's confirm, or the watcher's deadline) decides, so the two can never both win.
export LC_ALL=C
PATH="/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin:$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
self=$(readlink -f "$0")
cmd=${1:?usage: guard.sh arm|watch|confirm|rollback|disarm|status ID …}
id=${2:?deploy id}
case $id in *[!A-Za-z0-9-]*) echo "guard: bad id $id" >&2; exit 2 ;; esac
d=/run/vps-nixos/deploy/$id
unit=vps-nixos-guard-$id

kv() { printf '%s=%s\n' "$1" "$2"; }
now() { date +%s; }
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >> "$d/log"; }
current() { if [ -e /run/current-system ]; then readlink -f /run/current-system; fi; }

# Reactivates the previous system; its result goes to $d/result. Runs in a transient unit, so an
# SSH drop while the old units restart cannot stop it half-way.
do_rollback() {
  reason=$1
  prev=$(cat "$d/prev")
  link=$(cat "$d/link")
  mode=$(cat "$d/mode")
  log "rolling back to $prev: $reason"
  printf '%s\n' "$reason" > "$d/reason"
  echo rolling-back > "$d/result"
  if [ "$mode" = switch ] && [ "$link" != - ]; then
    gen=${link#system-}
    gen=${gen%-link}
    if [ -e "/nix/var/nix/profiles/$link" ]; then
      nix-env -p /nix/var/nix/profiles/system --switch-generation "$gen" >> "$d/log" 2>&1 ||
        nix-env -p /nix/var/nix/profiles/system --set "$prev" >> "$d/log" 2>&1
    else
      nix-env -p /nix/var/nix/profiles/system --set "$prev" >> "$d/log" 2>&1
    fi
  fi
  t0=$(now)
  "$prev/bin/switch-to-configuration" "$mode" >> "$d/log" 2>&1
  rc=$?
  log "switch-to-configuration $mode of $prev exited $rc after $(($(now) - t0))s"
  kv status "$rc" > "$d/rollback-status"
  if [ "$(current)" = "$prev" ]; then
    echo rolled-back > "$d/result"
  else
    echo rollback-failed > "$d/result"
  fi
}

case $cmd in
  arm)
    prev=${3:?previous system}
    link=${4:?profile link or -}
    timeout=${5:?confirm timeout}
    mode=${6:?switch|test}
    [ -x "$prev/bin/switch-to-configuration" ] || { kv error "$prev has no bin/switch-to-configuration"; exit 1; }
    command -v systemd-run >/dev/null 2>&1 || { kv error "systemd-run is missing"; exit 1; }
    # A watcher still armed from another run (cancelled, or its runner died before confirming)
    # would roll back whatever runs once its deadline passes, this deploy included, even
    # confirmed: take its token (the same rename that decides between confirm and rollback, so
    # one already firing is left to finish) and stop it.
    for o in /run/vps-nixos/deploy/*; do
      if [ "$o" = "$d" ] || [ ! -d "$o" ]; then continue; fi
      if mv "$o/armed" "$o/superseded" 2>/dev/null; then
        systemctl stop "vps-nixos-guard-${o##*/}" >/dev/null 2>&1
        echo disarmed > "$o/result"
        printf '%s %s\n' "$(date -u +%H:%M:%S)" "disarmed: superseded by the guard of $id" >> "$o/log"
        kv superseded "${o##*/}"
      fi
    done
    rm -rf "$d"
    mkdir -p "$d"
    chmod 700 /run/vps-nixos "$d" 2>/dev/null
    printf '%s\n' "$prev" > "$d/prev"
    printf '%s\n' "$link" > "$d/link"
    printf '%s\n' "$timeout" > "$d/timeout"
    printf '%s\n' "$mode" > "$d/mode"
    : > "$d/armed"
    log "armed: previous $prev ($link), $timeout s to confirm after the switch"
    # RuntimeMaxSec: a runner that dies before switching must not leave a watcher forever.
    systemd-run --unit="$unit" --collect --quiet --property=RuntimeMaxSec=21600 \
      /bin/sh "$self" watch "$id" || { rm -f "$d/armed"; kv error "systemd-run failed"; exit 1; }
    kv armed "$unit"
    ;;
  watch)
    prev=$(cat "$d/prev")
    timeout=$(cat "$d/timeout")
    deadline=
    while [ -e "$d/armed" ]; do
      if [ -z "$deadline" ]; then
        cur=$(current)
        if [ "$cur" != "$prev" ]; then
          deadline=$(($(now) + timeout))
          printf '%s\n' "$cur" > "$d/switched-to"
          log "switch seen: /run/current-system is $cur; waiting $timeout s for the runner"
        fi
      elif [ "$(now)" -ge "$deadline" ]; then
        if mv "$d/armed" "$d/firing" 2>/dev/null; then
          # who, before the result: a status read in between must not report the runner
          echo target > "$d/by"
          do_rollback "the runner did not confirm within $timeout s after the switch (SSH or the network may be cut)"
        fi
        exit 0
      fi
      sleep 1
    done
    ;;
  confirm)
    if mv "$d/armed" "$d/confirmed" 2>/dev/null; then
      log "confirmed by the runner"
      echo confirmed > "$d/result"
      kv result confirmed
    else
      kv result "$(cat "$d/result" 2>/dev/null || echo rolling-back)"
    fi
    ;;
  rollback)
    reason=${3:?reason}
    if mv "$d/armed" "$d/firing" 2>/dev/null || mv "$d/confirmed" "$d/firing" 2>/dev/null; then
      echo runner > "$d/by"
      systemctl stop "$unit" >/dev/null 2>&1
      systemd-run --unit="$unit-rollback" --collect --quiet /bin/sh "$self" do-rollback "$id" "$reason" ||
        do_rollback "$reason"
      kv result rolling-back
    else
      kv result "$(cat "$d/result" 2>/dev/null || echo rolling-back)"
    fi
    ;;
  do-rollback)
    do_rollback "${3:?reason}"
    ;;
  disarm)
    rm -f "$d/armed"
    systemctl stop "$unit" >/dev/null 2>&1
    log "disarmed: nothing was switched"
    echo disarmed > "$d/result"
    kv result disarmed
    ;;
  status)
    kv current "$(current)"
    kv prev "$(cat "$d/prev" 2>/dev/null)"
    kv result "$(cat "$d/result" 2>/dev/null || { [ -e "$d/firing" ] && echo rolling-back; } || echo armed)"
    kv by "$(cat "$d/by" 2>/dev/null)"
    kv reason "$(cat "$d/reason" 2>/dev/null)"
    kv switched_to "$(cat "$d/switched-to" 2>/dev/null)"
    kv rollback_status "$(sed -n 's/^status=//p' "$d/rollback-status" 2>/dev/null)"
    ;;
  *) echo "guard: unknown command $cmd" >&2; exit 2 ;;
esac
