#!/bin/sh
# The in-place path on the running distribution: runs the verified, patched nixos-infect detached
# from the SSH session, so a dropped connection does not stop it, and keeps its state on disk
# (not /tmp) so a re-run can tell "running", "finished" and "failed" apart and follow the log.
# Usage:
#   infect.sh status DIR          key=value: dir, state (none|running|finished|failed), exit,
#                                 boot_id, current_boot_id, log_bytes, script_sha256, started,
#                                 finished; after NixOS's first boot DIR is under /old-root
#   infect.sh network DIR         records addresses, routes and DNS in DIR/network and prints them
#   infect.sh saved-network DIR   prints what `network` recorded (under /old-root after the boot)
#   infect.sh put DIR NAME        writes stdin to DIR/NAME atomically: DIR 0700, the file 0600
#   infect.sh access DIR FILE…    after the reboot: each readable FILE's lines as `FILE LINE`,
#                                 then `---`, then the global addresses now up (ADDR/PREFIX)
#   infect.sh start DIR SHA256 NO_SWAP SWAPFILE
#                                 checks DIR/nixos-infect has SHA256, orders swap so zram is not
#                                 taken for the new system's swapDevices, starts it; NO_SWAP=1
#                                 passes NO_SWAP=y (containers; or a disk swapfile already on)
#   infect.sh poll DIR OFFSET     stdout: the log from byte OFFSET (at most 256 KiB);
#                                 stderr: key=value status, size = the byte the next poll starts at
#   infect.sh _run DIR            (internal) the detached runner
# The state also lets facts.sh report the run (infect.boot_id, infect.exit, infect.running).
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
mode=${1:?mode}
dir=${2:?state dir}

kv() { printf '%s=%s\n' "$1" "$2"; }
have() { command -v "$1" >/dev/null 2>&1; }
fail() { kv error "$1"; exit 1; }
boot_id() { cat /proc/sys/kernel/random/boot_id 2>/dev/null; }

running_pid() {
  pid=$(cat "$dir/pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ ! -e "$dir/exit" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

state() {
  if [ ! -e "$dir/boot_id" ]; then echo none
  elif [ -e "$dir/exit" ]; then
    if [ "$(cat "$dir/exit")" = 0 ]; then echo finished; else echo failed; fi
  elif running_pid >/dev/null; then echo running
  else echo failed # started, no exit status, not alive: killed (a reboot, OOM)
  fi
}

print_status() {
  kv state "$(state)"
  [ -e "$dir/exit" ] && kv exit "$(cat "$dir/exit")"
  [ -e "$dir/boot_id" ] && kv boot_id "$(cat "$dir/boot_id")"
  kv current_boot_id "$(boot_id)"
  kv log_bytes "$(wc -c <"$dir/log" 2>/dev/null || echo 0)"
  [ -e "$dir/script.sha256" ] && kv script_sha256 "$(cat "$dir/script.sha256")"
  [ -e "$dir/started" ] && kv started "$(cat "$dir/started")"
  [ -e "$dir/finished" ] && kv finished "$(cat "$dir/finished")"
  pid=$(running_pid) && kv pid "$pid"
  return 0
}

case "$mode" in
  status)
    # NixOS's first boot moves the old root, our state with it, under /old-root (lustrate).
    [ ! -e "$dir/boot_id" ] && [ -e "/old-root$dir/boot_id" ] && dir=/old-root$dir
    kv dir "$dir"
    print_status
    ;;

  network)
    mkdir -p "$dir"
    {
      echo "# addresses (ip -o addr show scope global)"
      ip -o addr show scope global 2>/dev/null | awk '{ print $2, $3, $4 }'
      echo "# IPv4 routes"
      ip -4 route show 2>/dev/null
      echo "# IPv6 routes"
      ip -6 route show 2>/dev/null | grep -v '^fe80::/64' || true
      echo "# DNS (/etc/resolv.conf)"
      grep -E '^(nameserver|search|domain)' /etc/resolv.conf 2>/dev/null || true
    } >"$dir/network.tmp" && mv "$dir/network.tmp" "$dir/network"
    cat "$dir/network"
    ;;

  saved-network)
    cat "$dir/network" 2>/dev/null || cat "/old-root$dir/network"
    ;;

  put)
    name=${3:?name}
    case "$name" in */* | . | .. | '') fail "put: '$name' is not a file name" ;; esac
    umask 077
    mkdir -p "$dir" || fail "cannot create $dir"
    cat >"$dir/$name.tmp" || fail "cannot write $dir/$name (disk full?)"
    mv "$dir/$name.tmp" "$dir/$name" || fail "cannot write $dir/$name"
    ;;

  access)
    shift 2
    for f in "$@"; do
      [ -r "$f" ] && sed "s|^|$f |" "$f"
    done
    echo ---
    ip -o addr show scope global | awk '{ print $4 }'
    ;;

  start)
    want=${3:?sha256}
    no_swap=${4:?no_swap}
    swapfile=${5:?swapfile}
    script=$dir/nixos-infect
    [ -f "$script" ] || fail "$script is missing"
    pid=$(running_pid) && fail "nixos-infect is already running (pid $pid)"
    have sha256sum || fail "sha256sum is missing"
    got=$(sha256sum "$script" | awk '{ print $1 }')
    [ "$got" = "$want" ] || fail "$script has sha256 $got, expected $want"
    echo "$got" >"$dir/script.sha256"

    # nixos-infect makes the first swap in `swapon --show` the new system's swapDevices when it
    # is a /dev/ device: zram (ours, from prep) must not be that one.
    first=$(awk 'NR == 2 { print $1 }' /proc/swaps)
    case "$first" in
      /dev/zram*)
        zrams=$(awk 'NR > 1 && $1 ~ /^\/dev\/zram/ { print $1 }' /proc/swaps)
        others=$(awk 'NR > 1 && $1 !~ /^\/dev\/zram/ { print $1 }' /proc/swaps)
        for z in $zrams; do swapoff "$z" || fail "swapoff $z failed"; done
        if [ -n "$others" ]; then
          # swapon takes the lowest free slot, and /proc/swaps lists slots in order
          for o in $others; do swapoff "$o" || fail "swapoff $o failed"; done
          for o in $others; do swapon -p 10 "$o" || fail "swapon $o failed"; done
          for z in $zrams; do swapon -p 100 "$z" || fail "swapon $z failed"; done
          kv swap_order "$(awk 'NR > 1 { printf "%s ", $1 }' /proc/swaps)"
        else
          kv warning "zram is off while nixos-infect runs: as the only swap it would become the new system's swapDevices"
        fi
        ;;
    esac
    if [ "$no_swap" != 1 ] && awk -v p="$swapfile" '$1 == p { f = 1 } END { exit !f }' /proc/swaps; then
      no_swap=1
      kv no_swap "the swapfile $swapfile is on already"
    fi

    rm -f "$dir/exit" "$dir/finished" "$dir/pid"
    boot_id >"$dir/boot_id"
    date +%s >"$dir/started"
    : >"$dir/no_swap"
    [ "$no_swap" = 1 ] && echo y >"$dir/no_swap"
    printf '%s start %s\n' "$(date -u +%FT%TZ)" "$got" >>"$dir/runs"
    # A new session without a terminal, its output in a file on disk: the SSH connection may go.
    # Outside the login session's scope too, where systemd would end it with the session.
    # Without systemd (or its bus), plain setsid; the pid file says whether the scope started it.
    if [ -d /run/systemd/system ] && have systemd-run; then
      # shellcheck disable=SC2016 # expanded by the inner shell
      setsid sh -c 'systemd-run --scope --quiet --unit="vps-nixos-infect-$(date +%s)" sh "$1/infect.sh" _run "$1" ||
        { [ -e "$1/pid" ] || exec sh "$1/infect.sh" _run "$1"; }' sh "$dir" \
        </dev/null >/dev/null 2>>"$dir/log" &
    else
      setsid sh "$dir/infect.sh" _run "$dir" </dev/null >/dev/null 2>>"$dir/log" &
    fi
    i=0
    while [ ! -s "$dir/pid" ] && [ ! -e "$dir/exit" ] && [ $i -lt 50 ]; do
      sleep 0.2 2>/dev/null || sleep 1
      i=$((i + 1))
    done
    [ -s "$dir/pid" ] || [ -e "$dir/exit" ] || fail "nixos-infect did not start (see $dir/log)"
    print_status
    ;;

  _run)
    echo $$ >"$dir/pid.tmp" && mv "$dir/pid.tmp" "$dir/pid"
    cd / || exit 1
    case "$(head -n 1 "$dir/nixos-infect")" in
      *bash*) interp='bash' ;;
      *) interp='sh' ;;
    esac
    no_swap=$(cat "$dir/no_swap" 2>/dev/null)
    # Our reboot phase reboots and waits for it; nixos-infect must not reboot by itself.
    NO_REBOOT=y NO_SWAP=$no_swap "$interp" "$dir/nixos-infect" >>"$dir/log" 2>&1 </dev/null
    rc=$?
    date +%s >"$dir/finished"
    sync
    echo "$rc" >"$dir/exit.tmp" && mv "$dir/exit.tmp" "$dir/exit"
    sync
    ;;

  poll)
    off=${3:?offset}
    size=$(wc -c <"$dir/log" 2>/dev/null || echo 0)
    [ "$size" -gt $((off + 262144)) ] && size=$((off + 262144))
    if [ "$size" -gt "$off" ]; then
      tail -c +"$((off + 1))" "$dir/log" | head -c "$((size - off))"
    fi
    {
      kv size "$size"
      print_status
    } >&2
    ;;

  *)
    fail "unknown mode $mode"
    ;;
esac
exit 0
