#!/bin/sh
# Prints what vps-nixos needs to know about this host as key=value lines.
# Read-only: it changes nothing. Runs on bash, dash and busybox ash.
# Raw command output is passed through with a key prefix; parsing happens on
# the runner (src/probe/facts.ts), where it is typed and tested.
#
# Every process costs 80-150 ms on a slow VPS and this runs on every deploy, so files are
# read with the shell's own `read`, text is cut with parameter expansion, and a command
# runs only for what no file holds (about ten of them, where the plain way took fifty).
# `{ x=$(cmd); } 2>/dev/null` rather than `x=$(cmd 2>/dev/null)`: bash forks twice for a
# command substitution whose command has a redirection, once without.
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin:/run/current-system/sw/bin"
nl='
'

kv() { printf '%s=%s\n' "$1" "$2"; }
have() { command -v "$1" >/dev/null 2>&1; }
# The first line of file $1 into v, '' when it cannot be read: what $(cat "$1") gives for
# the one-line files read here, and never a second line that could pass for a key.
rd() {
  v=
  IFS= read -r v 2>/dev/null <"$1"
}
kvfile() {
  rd "$2"
  kv "$1" "$v"
}
# kv KEY for each line of the captured output $2.
kvlines() {
  [ -n "$2" ] || return 0
  r=$2$nl
  while [ -n "$r" ]; do
    kv "$1" "${r%%"$nl"*}"
    r=${r#*"$nl"}
  done
}
# kv KEY for each line of file $3 that starts with $2.
kvgrep() {
  [ -r "$3" ] || return 0
  while IFS= read -r l || [ -n "$l" ]; do
    case $l in "$2"*) kv "$1" "$l" ;; esac
  done <"$3"
}
# A multi-line JSON document $1 on one line, into j: what `tr -d '\n' | tr -s ' '` made of it.
flat() {
  set -f
  # Splitting at newlines and joining with nothing drops them; at spaces, rejoined with one
  # space, squeezes the runs (one space stays at either end, as tr -s leaves it).
  IFS=$nl
  # shellcheck disable=SC2086
  set -- $1
  IFS=
  j="$*"
  case $j in
    *[!\ ]*)
      a='' z=''
      case $j in ' '*) a=' ' ;; esac
      case $j in *' ') z=' ' ;; esac
      IFS=' '
      # shellcheck disable=SC2086
      set -- $j
      j="$a$*$z"
      ;;
    ?*) j=' ' ;;
  esac
  unset IFS
  set +f
}

kv facts.version 1

# The four lines come early in the file: no need to read the rest.
n=0
while IFS= read -r l; do
  case "$l" in
    MemTotal:* | MemAvailable:* | SwapTotal:* | SwapFree:*)
      kv meminfo "$l"
      n=$((n + 1))
      [ "$n" -lt 4 ] || break
      ;;
  esac
done </proc/meminfo

# Virtualization: systemd's answer when there is one, plus the hints we fall back on.
if have systemd-detect-virt; then
  { vd=$(systemd-detect-virt); } 2>/dev/null
  # Without --container it names a container before looking for a VM, so --container would
  # repeat a container's name and say `none` for a VM or none; only other answers ask it.
  case $vd in
    openvz | lxc | lxc-libvirt | systemd-nspawn | docker | podman | rkt | wsl | proot | pouch | container-other)
      vc=$vd
      ;;
    none | kvm | amazon | qemu | bochs | xen | uml | vmware | oracle | microsoft | zvm | parallels | bhyve | qnx | acrn | powervm | apple | sre | google | vm-other)
      vc=none
      ;;
    *) { vc=$(systemd-detect-virt --container); } 2>/dev/null ;;
  esac
  kv virt.detect "$vd"
  kv virt.container "$vc"
fi
[ -e /proc/vz ] && kv hint.proc_vz 1
[ -e /proc/bc ] && kv hint.proc_bc 1
[ -e /proc/user_beancounters ] && kv hint.user_beancounters 1
[ -e /.dockerenv ] && kv hint.dockerenv 1
[ -r /run/systemd/container ] && kvfile hint.run_container /run/systemd/container
if [ -r /proc/1/environ ]; then
  # NUL-separated, which `read` cannot split: tr makes lines, the first container= one counts.
  c=
  { c=$(tr '\0' '\n'); } 2>/dev/null </proc/1/environ
  c=$nl$c
  case $c in
    *"${nl}container="*)
      c=${c#*"${nl}container="}
      c=${c%%"$nl"*}
      ;;
    *) c= ;;
  esac
  [ -n "$c" ] && kv hint.pid1_container "$c"
fi
if [ -r /proc/1/cgroup ]; then
  c=
  while IFS= read -r l || [ -n "$l" ]; do
    case $l in *lxc* | *docker* | *libpod* | *machine.slice*)
      c=$l
      break
      ;;
    esac
  done </proc/1/cgroup
  [ -n "$c" ] && kv hint.cgroup "$c"
fi
if [ -r /proc/cpuinfo ]; then
  while IFS= read -r l || [ -n "$l" ]; do
    case $l in flags*' hypervisor'*)
      kv hint.cpu_hypervisor 1
      break
      ;;
    esac
  done </proc/cpuinfo
fi
for f in sys_vendor product_name; do
  [ -r "/sys/class/dmi/id/$f" ] && kvfile "hint.dmi_$f" "/sys/class/dmi/id/$f"
done
[ -d /proc/xen ] && kv hint.proc_xen 1
cs=/sys/devices/system/clocksource/clocksource0/available_clocksource
[ -r "$cs" ] && kvfile hint.clocksource "$cs"

# Distribution and NixOS state.
if [ -r /etc/os-release ]; then osr=/etc/os-release
elif [ -r /usr/lib/os-release ]; then osr=/usr/lib/os-release
else osr=
fi
if [ -n "$osr" ]; then
  while IFS= read -r l || [ -n "$l" ]; do kv osrelease "$l"; done <"$osr"
fi
[ -e /etc/NIXOS ] && kv nixos.marker 1
[ -e /etc/is_kexec ] && kv nixos.is_kexec 1
# Every readlink -f below in one run: GNU readlink takes several paths. rlf answers from it
# in the order asked, or runs readlink for one path when the run did not give one line each
# (busybox's takes a single path).
set --
[ -L /nix/var/nix/profiles/system ] && set -- "$@" /nix/var/nix/profiles/system
if [ -L /run/current-system ]; then
  for f in kernel initrd kernel-modules; do
    [ -e "/run/current-system/$f" ] && set -- "$@" "/run/current-system/$f"
    [ -e "/run/booted-system/$f" ] && set -- "$@" "/run/booted-system/$f"
  done
fi
rlq='' rlo=''
if [ $# -gt 1 ] && { rlo=$(readlink -f "$@"); } 2>/dev/null; then
  n=0 r=$rlo$nl
  while [ -n "$r" ]; do
    n=$((n + 1))
    r=${r#*"$nl"}
  done
  if [ "$n" -eq $# ]; then
    for p; do rlq=$rlq$p$nl; done
    rlo=$rlo$nl
  fi
fi
rlf() {
  case $rlq in
    "$1$nl"*)
      v=${rlo%%"$nl"*}
      rlo=${rlo#*"$nl"}
      rlq=${rlq#*"$nl"}
      ;;
    *) v=$(readlink -f "$1") ;;
  esac
}
[ -L /run/current-system ] && kv nixos.current_system "$(readlink /run/current-system)"
if [ -L /nix/var/nix/profiles/system ]; then
  rlf /nix/var/nix/profiles/system
  kv nixos.system_profile "$v"
fi
if [ -L /run/current-system ]; then
  # An unchanged deploy is decided from these alone (one round trip): failed units, and what a
  # reboot would change (the booted system's kernel, initrd and modules against the current one's).
  { u=$(systemctl --failed --plain --no-legend --no-pager); } 2>/dev/null
  # The first field of each line, each followed by a space (as awk '{ printf "%s ", $1 }').
  fu='' r=''
  [ -n "$u" ] && r=$u$nl
  while [ -n "$r" ]; do
    l=${r%%"$nl"*}
    r=${r#*"$nl"}
    l=${l#"${l%%[! 	]*}"} # [ 	]: a space and a tab
    fu="$fu${l%%[ 	]*} "
  done
  kv nixos.failed_units "$fu"
  for f in kernel initrd kernel-modules; do
    if [ -e "/run/current-system/$f" ]; then
      rlf "/run/current-system/$f"
      kv "nixos.current.$f" "$v"
    fi
    if [ -e "/run/booted-system/$f" ]; then
      rlf "/run/booted-system/$f"
      kv "nixos.booted.$f" "$v"
    fi
  done
fi
# Our in-place conversion (scripts/phases/infect.sh): started in which boot, still running, exit.
inf=/var/lib/vps-nixos/infect
if [ -r "$inf/boot_id" ]; then
  kvfile infect.boot_id "$inf/boot_id"
  [ -r "$inf/exit" ] && kvfile infect.exit "$inf/exit"
  rd "$inf/pid"
  pid=$v
  [ -n "$pid" ] && [ ! -r "$inf/exit" ] && kill -0 "$pid" 2>/dev/null && kv infect.running 1
fi

# What uname -m and -r print, from the files that hold it (kernel.arch came in Linux 6.1);
# else from `uname -r -m`: the release, a space, then the machine.
if [ -r /proc/sys/kernel/arch ] && [ -r /proc/sys/kernel/osrelease ]; then
  kvfile arch /proc/sys/kernel/arch
  kvfile kernel /proc/sys/kernel/osrelease
else
  u=$(uname -r -m)
  kv arch "${u##* }"
  kv kernel "${u% *}"
fi
kvfile boot_id /proc/sys/kernel/random/boot_id
[ -r /etc/machine-id ] && kvfile machine_id /etc/machine-id
[ -d /sys/firmware/efi ] && kv efi 1
kvfile kexec_load_disabled /proc/sys/kernel/kexec_load_disabled

# Filesystems: df line (KiB) and type of the mount holding each path. One df for all the paths,
# its rows in their order after the header; should a path fail, each path gets a df of its own.
set --
for p in / /tmp /var/tmp /nix /nix/.rw-store; do
  [ -d "$p" ] && set -- "$@" "$p"
done
d='' n=0
[ $# -gt 0 ] && { d=$(df -kP "$@"); } 2>/dev/null
r=$d$nl
while [ -n "$d" ] && [ -n "$r" ]; do
  n=$((n + 1))
  r=${r#*"$nl"}
done
r=${d#*"$nl"}$nl
i=0
for p; do
  i=$((i + 1))
  if [ "$n" -eq $(($# + 1)) ]; then
    l=${r%%"$nl"*}
    r=${r#*"$nl"}
  else
    { l=$(df -kP "$p"); } 2>/dev/null
    l=${l##*"$nl"}
  fi
  # Its mount point is the last field (awk's $NF); [ 	] is a space and a tab.
  m=${l%"${l##*[! 	]}"}
  m=${m##*[ 	]}
  eval "d$i=\$l m$i=\$m t$i="
done
# The type (and for / the source) of the last mount on each mount point, as awk found them.
rs=
if [ -r /proc/mounts ]; then
  # shellcheck disable=SC2034 # ty is read in the eval
  while read -r s mp ty _ || [ -n "$s" ]; do
    [ "$mp" = / ] && rs=$s
    i=0
    for p; do
      i=$((i + 1))
      eval "[ \"\$mp\" = \"\$m$i\" ] && t$i=\$ty"
    done
  done </proc/mounts
fi
i=0
for p; do
  i=$((i + 1))
  eval "kv fs \"\$p \$t$i \$d$i\""
done
kv root.source "$rs"

# Disks. lsblk without -J, or without the PATH column (before util-linux 2.33), fails the full
# query; only then is -J asked about alone, to tell the two apart as the one-by-one checks did.
lj=
if have lsblk; then
  if { j=$(lsblk -J -b -o NAME,PATH,TYPE,SIZE,MODEL,MOUNTPOINT,FSTYPE,PKNAME); } 2>/dev/null; then lj=1
  elif lsblk -J -b -o NAME,TYPE,SIZE,MOUNTPOINT >/dev/null 2>&1; then lj=1
  fi
fi
if [ -n "$lj" ]; then
  flat "$j"
  kv lsblk.json "$j"
else
  for b in /sys/block/*; do
    [ -e "$b/size" ] || continue
    n=${b##*/}
    rd "$b/size"
    s=$v
    # cat FILE || echo 0
    if [ -r "$b/removable" ]; then rd "$b/removable"; else v=0; fi
    s="$s $v"
    if [ -r "$b/ro" ]; then rd "$b/ro"; else v=0; fi
    kv sysblock "$n $s $v"
    for part in "$b/$n"*; do
      [ -e "$part/size" ] || continue
      rd "$part/size"
      kv syspart "$n ${part##*/} $v"
    done
  done
fi

# Network: JSON from iproute2 where it can, plain lines otherwise (busybox ip).
if have ip; then
  if { j=$(ip -j addr show); } 2>/dev/null; then
    flat "$j"
    kv ip.addr.json "$j"
    { j=$(ip -j -4 route show); } 2>/dev/null
    flat "$j"
    kv ip.route4.json "$j"
    { j=$(ip -j -6 route show); } 2>/dev/null
    flat "$j"
    kv ip.route6.json "$j"
  else
    { v=$(ip -o link show); } 2>/dev/null
    kvlines ip.link "$v"
    { v=$(ip -o addr show); } 2>/dev/null
    kvlines ip.addr "$v"
    { v=$(ip -4 route show); } 2>/dev/null
    kvlines ip.route4 "$v"
    { v=$(ip -6 route show); } 2>/dev/null
    kvlines ip.route6 "$v"
  fi
fi
kvgrep dns.resolvconf nameserver /etc/resolv.conf
kvgrep dns.resolved nameserver /run/systemd/resolve/resolv.conf

# Tools the later phases need, and the package manager that can install them.
# command -v prints the path itself: capturing it would cost a subshell per tool.
for t in tar cpio setsid kexec curl wget sha256sum zramctl mkswap swapon modprobe lsblk ip nix systemctl; do
  if have "$t"; then
    printf 'tool.%s=' "$t"
    command -v "$t"
  fi
done
for pm in apt-get dnf yum pacman apk zypper; do
  if have "$pm"; then kv pkgmgr "$pm"; break; fi
done
exit 0
