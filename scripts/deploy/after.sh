#!/bin/sh
# After nixos-rebuild, on the target, over a NEW SSH session: what the runner needs to decide and
# to report, in one round trip. Each step runs only when asked, in this order:
#
#   --guard ID      the rollback guard's status (guard.sh status ID) as guard_KEY=VALUE lines and
#                   guard_exit=; then, only while it is still armed:
#     --disarm      nothing switched (what runs is its previous system): disarm it
#     --confirm     the system switched: confirm it
#                   (disarm_/confirm_ + guard.sh's answer, and disarm_exit=/confirm_exit=)
#   --units         the units systemd lists as failed (failed=), read after the confirm
#   --check SECONDS COMMAND
#                   the health-check command's first try, when there is no guard or it is now
#                   confirmed or disarmed: `sh -c COMMAND` with the session's own PATH and LC_ALL
#                   and no stdin, as the runner runs it on its own, stopped after SECONDS:
#                   check_exit=, check_seconds=, check_stdout= and check_stderr= (base64)
#   --closure WHAT PREV KNOWN
#                   closure.sh WHAT PREV KNOWN (sent before this script as the function
#                   closure_sh): of `new` (what the switch went to: the current system, or the
#                   guard's switched_to when it is rolling back), `profile`, or a store path;
#                   KNOWN (or ''): the system whose closure the runner has; closure_of=,
#                   closure_exit=, closure_stderr= (base64), and its output after a line `closure:`
#
# Always: current= (first) and end_current=, end_profile= (read last: what runs once all of the
# above is done). A failed guard.sh verb ends the script: the runner reports it.
session_path=$PATH
session_lc_all=${LC_ALL-}
session_lc_all_set=${LC_ALL+1}
export LC_ALL=C
PATH="/run/current-system/sw/bin:$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
kv() { printf '%s=%s\n' "$1" "$2"; }
res() { if [ -e "$1" ]; then readlink -f "$1"; fi; }
failed() { systemctl --failed --plain --no-legend --no-pager 2>/dev/null | awk '{ printf "%s ", $1 }'; }
get() { printf '%s\n' "$1" | sed -n "s/^$2=//p"; }

guard='' disarm='' confirm='' units='' check='' check_limit='' closure='' closure_prev='' closure_known=''
while [ $# -gt 0 ]; do
  case $1 in
    --guard) guard=${2:?guard id}; shift 2 ;;
    --disarm) disarm=1; shift ;;
    --confirm) confirm=1; shift ;;
    --units) units=1; shift ;;
    --check) check_limit=${2:?seconds}; check=${3:?command}; shift 3 ;;
    --closure)
      closure=${2:?new, profile or a store path}
      closure_prev=${3?previous system or ''}
      closure_known=${4?known system or ''}
      shift 4
      ;;
    *) echo "after.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
t=$(mktemp -d) || exit 1
trap 'rm -rf "$t"' EXIT

current=$(res /run/current-system)
kv current "$current"

# guard.sh VERB: its answer prefixed with VERB_ (status: guard_), and its exit status
g=/run/vps-nixos/guard.sh
guard_verb() {
  answer=$(/bin/sh "$g" "$1" "$guard")
  rc=$?
  printf '%s\n' "$answer" | sed -n "s/^./${2}_&/p"
  kv "$2_exit" "$rc"
  [ "$rc" = 0 ] || exit 0
  state=$(get "$answer" result)
}
state=
now=$current
if [ -n "$guard" ]; then
  guard_verb status guard
  status=$answer
  now=$(get "$status" current)
  if [ "$state" = armed ]; then
    if [ "$now" = "$(get "$status" prev)" ]; then
      if [ -n "$disarm" ]; then guard_verb disarm disarm; fi
    elif [ -n "$confirm" ]; then
      guard_verb confirm confirm
    fi
  fi
fi

if [ -n "$units" ]; then kv failed "$(failed)"; fi

if [ -n "$check_limit" ]; then
  case $state in
    '' | confirmed | disarmed)
      stop=$(command -v timeout)
      t0=$(date +%s)
      (
        PATH=$session_path
        if [ -n "$session_lc_all_set" ]; then LC_ALL=$session_lc_all; else unset LC_ALL; fi
        if [ -n "$stop" ]; then exec "$stop" -k 5 "$check_limit" sh -c "$check"; fi
        exec sh -c "$check"
      ) < /dev/null > "$t/check.out" 2> "$t/check.err"
      kv check_exit "$?"
      kv check_seconds "$(($(date +%s) - t0))"
      kv check_stdout "$(base64 -w0 < "$t/check.out")"
      kv check_stderr "$(base64 -w0 < "$t/check.err")"
      ;;
  esac
fi

if [ -n "$closure" ]; then
  case $closure in
    new)
      of=$now
      if [ -n "$guard" ]; then
        case $(get "$status" result) in
          armed | confirmed | disarmed) ;;
          *) of=$(get "$status" switched_to); of=${of:-$now} ;;
        esac
      fi
      ;;
    profile) of=$(res /nix/var/nix/profiles/system) ;;
    *) of=$closure ;;
  esac
  kv closure_of "$of"
  if [ -n "$of" ]; then
    if command -v closure_sh >/dev/null 2>&1; then
      closure_sh | sh -s -- "$of" "$closure_prev" "$closure_known" > "$t/closure.out" 2> "$t/closure.err"
      kv closure_exit "$?"
    else
      echo 'closure_sh: not sent' > "$t/closure.err"
      kv closure_exit 127
    fi
    kv closure_stderr "$(base64 -w0 < "$t/closure.err")"
  fi
fi

kv end_current "$(res /run/current-system)"
kv end_profile "$(res /nix/var/nix/profiles/system)"
echo closure:
if [ -f "$t/closure.out" ]; then cat "$t/closure.out"; fi
exit 0
