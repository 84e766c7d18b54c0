#!/bin/sh
# Prints what vps-nixos needs to know about this host as key=value lines.
# Read-only: it changes nothing. Runs on bash, dash and busybox ash.
# Raw command output is passed through with a key prefix; parsing happens on
# the runner (src/probe/facts.ts), where it is typed and tested.
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin:/run/current-system/sw/bin"

kv() { printf '%s=%s\n' "$1" "$2"; }
have() { command -v "$1" >/dev/null 2>&1; }
# each line of a command's output, prefixed
lines() { key=$1; shift; "$@" 2>/dev/null | while IFS= read -r l || [ -n "$l" ]; do kv "$key" "$l"; done; }
# a multi-line JSON document on one line
oneline() { "$@" 2>/dev/null | tr -d '\n' | tr -s ' '; }

kv facts.version 1

while IFS= read -r l; do
  case "$l" in
    MemTotal:* | MemAvailable:* | SwapTotal:* | SwapFree:*) kv meminfo "$l" ;;
  esac
done </proc/meminfo

# Virtualization: systemd's answer when there is one, plus the hints we fall back on.
if have systemd-detect-virt; then
  kv virt.detect "$(systemd-detect-virt 2>/dev/null || true)"
  kv virt.container "$(systemd-detect-virt --container 2>/dev/null || true)"
fi
[ -e /proc/vz ] && kv hint.proc_vz 1
[ -e /proc/bc ] && kv hint.proc_bc 1
[ -e /proc/user_beancounters ] && kv hint.user_beancounters 1
[ -e /.dockerenv ] && kv hint.dockerenv 1
[ -r /run/systemd/container ] && kv hint.run_container "$(cat /run/systemd/container)"
if [ -r /proc/1/environ ]; then
  c=$( (tr '\0' '\n' </proc/1/environ) 2>/dev/null | sed -n 's/^container=//p' | head -n 1)
  [ -n "$c" ] && kv hint.pid1_container "$c"
fi
if [ -r /proc/1/cgroup ]; then
  c=$(grep -E -m 1 'lxc|docker|libpod|machine\.slice' /proc/1/cgroup 2>/dev/null)
  [ -n "$c" ] && kv hint.cgroup "$c"
fi
grep -q '^flags.* hypervisor' /proc/cpuinfo 2>/dev/null && kv hint.cpu_hypervisor 1
for f in sys_vendor product_name; do
  [ -r "/sys/class/dmi/id/$f" ] && kv "hint.dmi_$f" "$(cat "/sys/class/dmi/id/$f")"
done
[ -d /proc/xen ] && kv hint.proc_xen 1
cs=/sys/devices/system/clocksource/clocksource0/available_clocksource
[ -r "$cs" ] && kv hint.clocksource "$(cat "$cs")"

# Distribution and NixOS state.
if [ -r /etc/os-release ]; then lines osrelease cat /etc/os-release
elif [ -r /usr/lib/os-release ]; then lines osrelease cat /usr/lib/os-release
fi
[ -e /etc/NIXOS ] && kv nixos.marker 1
[ -e /etc/is_kexec ] && kv nixos.is_kexec 1
[ -L /run/current-system ] && kv nixos.current_system "$(readlink /run/current-system)"
[ -L /nix/var/nix/profiles/system ] && kv nixos.system_profile "$(readlink -f /nix/var/nix/profiles/system)"
if [ -L /run/current-system ]; then
  # An unchanged deploy is decided from these alone (one round trip): failed units, and what a
  # reboot would change (the booted system's kernel, initrd and modules against the current one's).
  kv nixos.failed_units "$(systemctl --failed --plain --no-legend --no-pager 2>/dev/null | awk '{ printf "%s ", $1 }')"
  for f in kernel initrd kernel-modules; do
    [ -e "/run/current-system/$f" ] && kv "nixos.current.$f" "$(readlink -f "/run/current-system/$f")"
    [ -e "/run/booted-system/$f" ] && kv "nixos.booted.$f" "$(readlink -f "/run/booted-system/$f")"
  done
fi
# Our in-place conversion (scripts/phases/infect.sh): started in which boot, still running, exit.
inf=/var/lib/vps-nixos/infect
if [ -r "$inf/boot_id" ]; then
  kv infect.boot_id "$(cat "$inf/boot_id")"
  [ -r "$inf/exit" ] && kv infect.exit "$(cat "$inf/exit")"
  pid=$(cat "$inf/pid" 2>/dev/null) || pid=
  [ -n "$pid" ] && [ ! -r "$inf/exit" ] && kill -0 "$pid" 2>/dev/null && kv infect.running 1
fi

kv arch "$(uname -m)"
kv kernel "$(uname -r)"
kv boot_id "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
[ -r /etc/machine-id ] && kv machine_id "$(cat /etc/machine-id)"
[ -d /sys/firmware/efi ] && kv efi 1
kv kexec_load_disabled "$(cat /proc/sys/kernel/kexec_load_disabled 2>/dev/null)"

# Filesystems: df line (KiB) and type of the mount holding each path.
for p in / /tmp /var/tmp /nix /nix/.rw-store; do
  [ -d "$p" ] || continue
  d=$(df -kP "$p" 2>/dev/null | tail -n 1)
  m=$(printf '%s\n' "$d" | awk '{print $NF}')
  t=$(awk -v m="$m" '$2 == m { t = $3 } END { print t }' /proc/mounts)
  kv fs "$p $t $d"
done
kv root.source "$(awk '$2 == "/" { s = $1 } END { print s }' /proc/mounts)"

# Disks.
if have lsblk && lsblk -J -b -o NAME,TYPE,SIZE,MOUNTPOINT >/dev/null 2>&1; then
  kv lsblk.json "$(oneline lsblk -J -b -o NAME,PATH,TYPE,SIZE,MODEL,MOUNTPOINT,FSTYPE,PKNAME)"
else
  for b in /sys/block/*; do
    [ -e "$b/size" ] || continue
    n=${b##*/}
    kv sysblock "$n $(cat "$b/size") $(cat "$b/removable" 2>/dev/null || echo 0) $(cat "$b/ro" 2>/dev/null || echo 0)"
    for part in "$b/$n"*; do
      [ -e "$part/size" ] && kv syspart "$n ${part##*/} $(cat "$part/size")"
    done
  done
fi

# Network: JSON from iproute2 where it can, plain lines otherwise (busybox ip).
if have ip; then
  if ip -j addr show >/dev/null 2>&1; then
    kv ip.addr.json "$(oneline ip -j addr show)"
    kv ip.route4.json "$(oneline ip -j -4 route show)"
    kv ip.route6.json "$(oneline ip -j -6 route show)"
  else
    lines ip.link ip -o link show
    lines ip.addr ip -o addr show
    lines ip.route4 ip -4 route show
    lines ip.route6 ip -6 route show
  fi
fi
[ -r /etc/resolv.conf ] && lines dns.resolvconf grep -E '^nameserver' /etc/resolv.conf
[ -r /run/systemd/resolve/resolv.conf ] && lines dns.resolved grep -E '^nameserver' /run/systemd/resolve/resolv.conf

# Tools the later phases need, and the package manager that can install them.
for t in tar cpio setsid kexec curl wget sha256sum zramctl mkswap swapon modprobe lsblk ip nix systemctl; do
  p=$(command -v "$t" 2>/dev/null) && kv "tool.$t" "$p"
done
for pm in apt-get dnf yum pacman apk zypper; do
  if have "$pm"; then kv pkgmgr "$pm"; break; fi
done
exit 0
