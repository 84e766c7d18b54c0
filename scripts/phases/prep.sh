#!/bin/sh
# Phase 0 (prep) on the running distribution: the tools the next phase needs, free memory, zram
# swap and a swapfile on real disk. Safe to run twice: each step checks first. Prints key=value.
# Usage: prep.sh [--check] [--tools "T1 T2 A|B"] ZRAM_BYTES SWAPFILE_BYTES SWAPFILE_PATH
#   --tools: commands that must exist (A|B: either one); default the kexec path's "cpio tar setsid".
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
check_only=0
tools="cpio tar setsid"
if [ "${1:-}" = "--check" ]; then check_only=1; shift; fi
if [ "${1:-}" = "--tools" ]; then tools=${2:?tools}; shift 2; fi
zram_bytes=${1:?zram bytes}
swap_bytes=${2:?swapfile bytes}
swap_path=${3:?swapfile path}

kv() { printf '%s=%s\n' "$1" "$2"; }
have() { command -v "$1" >/dev/null 2>&1; }
fail() { kv error "$1"; exit 1; }

# A tool spec is present when any of its |-separated commands is.
present() {
  for c in $(printf '%s' "$1" | tr '|' ' '); do have "$c" && return 0; done
  return 1
}
missing=
for t in $tools; do present "$t" || missing="$missing $t"; done
zram_active=$(awk '$1 ~ /^\/dev\/zram/ { print $1; exit }' /proc/swaps)
swap_active=$(awk -v p="$swap_path" '$1 == p { print $1 }' /proc/swaps)

if [ "$check_only" = 1 ]; then
  kv missing_tools "${missing# }"
  kv zram "${zram_active:-none}"
  kv swapfile "${swap_active:-none}"
  exit 0
fi

# 1. Tools, with the distribution's package manager (each names the packages its own way).
pm=
for m in apt-get dnf yum pacman apk zypper; do
  if have "$m"; then pm=$m; break; fi
done
# The package that brings a command, in $pm's naming.
package_of() {
  case "$1" in
    setsid) echo util-linux ;;
    bzcat) echo bzip2 ;;
    xzcat) if [ "$pm" = apt-get ]; then echo xz-utils; else echo xz; fi ;;
    groupadd | useradd)
      case "$pm" in apt-get) echo passwd ;; dnf | yum) echo shadow-utils ;; *) echo shadow ;; esac ;;
    ip) case "$pm" in dnf | yum) echo iproute ;; *) echo iproute2 ;; esac ;;
    awk) if [ "$pm" = apt-get ]; then echo mawk; else echo gawk; fi ;;
    *) echo "$1" ;;
  esac
}
updated=0
install_packages() {
  case "$pm" in
    apt-get)
      if [ "$updated" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || fail "apt-get update failed"
        updated=1
      fi
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 ;;
    dnf) dnf install -y "$@" >&2 ;;
    yum) yum install -y "$@" >&2 ;;
    pacman)
      if [ "$updated" = 0 ]; then pacman -Sy --noconfirm >&2 || fail "pacman -Sy failed"; updated=1; fi
      pacman -S --noconfirm --needed "$@" >&2 ;;
    apk) apk add --no-cache "$@" >&2 ;;
    zypper) zypper -n install "$@" >&2 ;;
  esac
}
if [ -n "$missing" ]; then
  [ -n "$pm" ] || fail "no package manager found to install:$missing"
  pkgs=
  alternatives=
  for t in $missing; do
    case "$t" in
      *'|'*) alternatives="$alternatives $t" ;;
      *) p=$(package_of "$t"); case " $pkgs " in *" $p "*) ;; *) pkgs="$pkgs $p" ;; esac ;;
    esac
  done
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  if [ -n "$pkgs" ]; then install_packages $pkgs || fail "$pm could not install:$pkgs"; fi
  # A|B: the first that installs (curl|wget: the mirror may carry only one).
  for spec in $alternatives; do
    ok=0
    for c in $(printf '%s' "$spec" | tr '|' ' '); do
      if install_packages "$(package_of "$c")"; then ok=1; break; fi
    done
    [ "$ok" = 1 ] || fail "$pm could not install any of: $(printf '%s' "$spec" | tr '|' ' ')"
  done
  for t in $missing; do present "$t" || fail "$t is still missing after installing it"; done
  kv installed "${missing# }"
fi

# 2. Free what the kernel can give back before the memory-hungry phases.
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
echo 1 >/proc/sys/vm/compact_memory 2>/dev/null || true

# 3. zram swap: compressed RAM, the only swap that survives nothing but helps everything.
if [ -z "$zram_active" ] && [ "$zram_bytes" -gt 0 ]; then
  if modprobe zram 2>/dev/null || [ -e /sys/class/zram-control ]; then
    dev=
    if have zramctl; then
      dev=$(zramctl --find --size "$zram_bytes" --algorithm zstd 2>/dev/null) ||
        dev=$(zramctl --find --size "$zram_bytes" 2>/dev/null) || dev=
    fi
    if [ -z "$dev" ] && [ -e /sys/block/zram0/disksize ] && [ "$(cat /sys/block/zram0/disksize)" = 0 ]; then
      echo "$zram_bytes" >/sys/block/zram0/disksize && dev=/dev/zram0
    fi
    if [ -n "$dev" ] && mkswap "$dev" >/dev/null 2>&1 && swapon -p 100 "$dev" 2>/dev/null; then
      zram_active=$dev
    else
      kv warning "zram could not be set up (device ${dev:-none})"
    fi
  else
    kv warning "no zram module in this kernel (containers cannot load modules)"
  fi
fi
kv zram "${zram_active:-none}"

# 4. A swapfile on real disk, never on tmpfs (swapon refuses it there: nixos-infect #245).
if [ -z "$swap_active" ] && [ "$swap_bytes" -gt 0 ]; then
  dir=$(dirname "$swap_path")
  mkdir -p "$dir"
  mnt=$(df -P "$dir" | awk 'NR == 2 { print $NF }')
  fstype=$(awk -v m="$mnt" '$2 == m { t = $3 } END { print t }' /proc/mounts)
  avail_kb=$(df -kP "$dir" | awk 'NR == 2 { print $4 }')
  need_kb=$((swap_bytes / 1024 + 262144))
  if [ "$fstype" = tmpfs ] || [ "$fstype" = ramfs ]; then
    kv warning "no swapfile: $dir is on $fstype"
  elif [ "$avail_kb" -lt "$need_kb" ]; then
    kv warning "no swapfile: $dir has $((avail_kb / 1024)) MiB free, needs $((need_kb / 1024)) MiB"
  else
    if [ ! -f "$swap_path" ] || [ "$(wc -c <"$swap_path")" -ne "$swap_bytes" ]; then
      rm -f "$swap_path"
      fallocate -l "$swap_bytes" "$swap_path" 2>/dev/null ||
        dd if=/dev/zero of="$swap_path" bs=1M count=$((swap_bytes / 1048576)) 2>/dev/null ||
        fail "cannot write $swap_path"
    fi
    chmod 600 "$swap_path"
    if mkswap "$swap_path" >/dev/null 2>&1 && swapon -p 10 "$swap_path" 2>/dev/null; then
      swap_active=$swap_path
    else
      kv warning "swapon $swap_path failed (containers usually forbid swap)"
    fi
  fi
fi
kv swapfile "${swap_active:-none}"
awk '/^(MemAvailable|SwapTotal|SwapFree):/ { printf "mem.%s=%.0f\n", substr($1, 1, length($1) - 1), $2 * 1024 }' /proc/meminfo
exit 0
