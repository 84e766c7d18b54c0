#!/bin/sh
# vps-nixos kexec installer: the `run` script of the tarball (kexec/run).
#
# Runs as root on the provider's distro (Debian, Ubuntu, Arch, Alma, Alpine).
# It carries this machine's identity into the installer, then kexecs into it:
#   - SSH host keys (/etc/ssh/ssh_host_*), so a pinned known_hosts entry still matches;
#   - root's authorized_keys, so the same key logs in;
#   - /etc/machine-id (mode 0444: networkd, which runs as systemd-network, reads
#     it for its DHCP client identifier);
#   - the static network (addresses, routes, DNS) as systemd-networkd files: a
#     NIC matched by MAC (and Type=ether, so a VLAN on it with the same MAC is not
#     taken for it), a VLAN matched by name with a .netdev that recreates it and a
#     VLAN= line in its parent's file, so a static-IP VPS stays reachable.
# The files go into a newc cpio appended to a copy of the initrd; the kernel
# unpacks it over the installer's own files: /vps-nixos-carried/ for the unit
# in module.nix that puts keys and network in place before sshd and networkd
# start, and /etc/machine-id, which systemd reads before any unit runs.
#
# Environment:
#   RUN_DRY=1          collect and print what would be carried (and pack it when
#                      cpio and ./initrd exist) but never load or start a kernel.
#   KEXEC_DELAY        seconds between this script returning and `kexec -e` (6).
#   KEXEC_EXTRA_FLAGS  extra kexec flags, e.g. --kexec-syscall or --no-checks.
#
# Arguments, as nixos-images' run takes them (nixos-anywhere passes them):
#   --kexec-extra-flags FLAGS   the same as KEXEC_EXTRA_FLAGS (added to it).
# Like nixos-images' run, it prints "machine will boot into nixos in Ns...",
# the line nixos-anywhere waits for.
#   VPS_NIXOS_ROOTFS   ramfs: boot with rootfstype=ramfs, a root without the tmpfs
#                      cap (half the RAM on kernels without initramfs_options=),
#                      for an initrd over it; the planner decides (tmpfs default).
set -eu
umask 077

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# The installer's kernel command line (rd.systemd.unit=…, console, panic; no
# init= and no root=), filled in when the tarball is built.
cmdline=@cmdline@
case "${VPS_NIXOS_ROOTFS:-tmpfs}" in
  tmpfs) ;;
  # no root= on the command line, so rootfstype= only picks what rootfs is
  ramfs) cmdline="$cmdline rootfstype=ramfs" ;;
  *) echo "vps-nixos run: error: VPS_NIXOS_ROOTFS=$VPS_NIXOS_ROOTFS is not tmpfs or ramfs" >&2; exit 1 ;;
esac
dry=${RUN_DRY:-}
delay=${KEXEC_DELAY:-6}
extra_flags=${KEXEC_EXTRA_FLAGS:-}
while [ $# -gt 0 ]; do
  case $1 in
    --kexec-extra-flags)
      [ $# -ge 2 ] || { echo "vps-nixos run: error: --kexec-extra-flags needs a value" >&2; exit 1; }
      extra_flags="$extra_flags $2"
      shift 2
      ;;
    *) echo "vps-nixos run: error: unknown argument $1 (only --kexec-extra-flags FLAGS)" >&2; exit 1 ;;
  esac
done
stage=$here/carried
carried=$stage/vps-nixos-carried

say() { echo "vps-nixos run: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

if "$here/ip" -V >/dev/null 2>&1; then
  ip_cmd=$here/ip
elif command -v ip >/dev/null 2>&1; then
  ip_cmd=ip
else
  die "no usable ip(8): $here/ip does not run here and there is none on PATH"
fi

if [ -z "$dry" ]; then
  [ "$(id -u)" = 0 ] || die "run me as root"
  command -v cpio >/dev/null 2>&1 ||
    die "cpio is missing; it packs host keys and network into the initrd. Install it (apt-get install cpio | dnf install cpio | pacman -S cpio | apk add cpio | zypper install cpio) and run again"
  "$here/kexec" --version >/dev/null 2>&1 || die "$here/kexec does not run on this host (wrong architecture?)"
  for f in bzImage initrd; do
    [ -f "$here/$f" ] || die "$here/$f is missing: extract the whole tarball"
  done
fi

rm -rf "$stage"
mkdir -p "$carried/ssh" "$carried/network"

# --- identity -----------------------------------------------------------------
for key in /etc/ssh/ssh_host_*; do
  if [ -f "$key" ]; then cp -p "$key" "$carried/ssh/"; fi
done

# Keep only "type key comment": cloud images prefix root's key with
# command="echo 'Please login as the user debian…';exit 142", which would lock
# root out of the installer. Certificate-authority lines are not user keys.
keys_of() {
  if [ -r "$1" ]; then
    awk '/cert-authority/ { next }
      { for (i = 1; i <= NF; i++) if ($i ~ /^(sk-)?(ssh|ecdsa)-/) {
          line = $i; for (j = i + 1; j <= NF; j++) line = line " " $j
          print line; next } }' "$1"
  fi
}
{
  keys_of /root/.ssh/authorized_keys
  keys_of /root/.ssh/authorized_keys2
  keys_of /etc/ssh/authorized_keys.d/root
  # Started through sudo/doas: that user's keys may be the only ones we have.
  user=${SUDO_USER:-${DOAS_USER:-}}
  if [ -n "$user" ] && [ "$user" != root ]; then
    home=$(awk -F: -v u="$user" '$1 == u { print $6 }' /etc/passwd)
    if [ -n "$home" ]; then keys_of "$home/.ssh/authorized_keys"; fi
  fi
} >"$carried/ssh/authorized_keys"

# umask 077 would make it 0400, and networkd (user systemd-network) could not
# read it: "Failed to set IAID+DUID: Permission denied", no DHCP.
if [ -s /etc/machine-id ]; then
  mkdir -p "$stage/etc"
  cp /etc/machine-id "$stage/etc/machine-id"
  cp /etc/machine-id "$carried/machine-id"
  chmod 0444 "$stage/etc/machine-id" "$carried/machine-id"
fi

# --- network ------------------------------------------------------------------
net=$carried/network
# -d adds each link's kind ("vlan protocol 802.1Q id 4000"); busybox ip has no -d.
"$ip_cmd" -d -o link show >"$net/links.txt" 2>/dev/null || "$ip_cmd" -o link show >"$net/links.txt"
# Every VLAN with its id and parent, whatever ip(8) this is (8021q keeps it per netns).
if [ -r /proc/net/vlan/config ]; then cat /proc/net/vlan/config >"$net/vlan.txt"; else : >"$net/vlan.txt"; fi
"$ip_cmd" -o addr show >"$net/addrs.txt"
"$ip_cmd" -4 route show table main >"$net/routes-v4.txt" 2>/dev/null ||
  "$ip_cmd" -4 route show >"$net/routes-v4.txt"
# A kernel without IPv6 has no v6 routes to carry.
"$ip_cmd" -6 route show table main >"$net/routes-v6.txt" 2>/dev/null || : >"$net/routes-v6.txt"
# Raw JSON as well when this ip supports it: the probe and humans read it.
if "$ip_cmd" -j addr show >"$net/addrs.json" 2>/dev/null; then
  "$ip_cmd" -j -4 route show table main >"$net/routes-v4.json" 2>/dev/null || :
  "$ip_cmd" -j -6 route show table main >"$net/routes-v6.json" 2>/dev/null || :
else
  rm -f "$net/addrs.json"
fi

# Ubuntu's resolv.conf names the local resolved stub; the real servers are behind it.
nameservers() {
  if [ -r "$1" ]; then
    awk '$1 == "nameserver" && $2 !~ /^127\./ && $2 != "::1" { print $2 }' "$1"
  fi
}
nameservers /etc/resolv.conf >"$net/dns.txt"
if [ ! -s "$net/dns.txt" ]; then nameservers /run/systemd/resolve/resolv.conf >"$net/dns.txt"; fi

# One .network file per interface that has a MAC and a global address or a
# static route. Routes made by the kernel, DHCP or router advertisements are
# left out: the installer gets those again by itself. A gateway outside every
# subnet of its interface (a /32 address with a provider gateway, say) gets
# GatewayOnLink=yes, as does a route the kernel already marks "onlink".
# Each file matches exactly one interface: a NIC by MACAddress= and Type=ether
# (names differ between distros, MACs do not), a VLAN by Name= and Kind=vlan: a
# VLAN has its parent's MAC, so MAC matching alone would give the parent's
# file to the VLAN or the VLAN's to the parent (eth0.4000 sorts before eth0).
# A VLAN also gets a .netdev (Id=, Protocol=) and its parent a VLAN= line; a
# parent with nothing else to carry gets a file for that line alone.
awk -v dir="$net" -v host="$(uname -n)" '
function tobits(v, width,   s) {
  s = ""
  while (width-- > 0) { s = (v % 2) s; v = int(v / 2) }
  return s
}
function hexval(h,   i, v) {
  v = 0; h = tolower(h)
  for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
  return v
}
# An IPv4 or IPv6 address as a string of 32 or 128 "0"/"1", to compare prefixes.
function bits(a,   p, half, head, tail, n, nh, nt, i, out) {
  sub(/%.*/, "", a); sub(/\/.*/, "", a); out = ""
  if (a !~ /:/) {
    split(a, p, ".")
    for (i = 1; i <= 4; i++) out = out tobits(p[i] + 0, 8)
    return out
  }
  n = split(a, half, "::")
  nh = half[1] == "" ? 0 : split(half[1], head, ":")
  nt = (n < 2 || half[2] == "") ? 0 : split(half[2], tail, ":")
  for (i = 1; i <= nh; i++) out = out tobits(hexval(head[i]), 16)
  for (i = nh + nt; i < 8; i++) out = out tobits(0, 16)
  for (i = 1; i <= nt; i++) out = out tobits(hexval(tail[i]), 16)
  return out
}
function plen(cidr) { return cidr ~ /\// ? substr(cidr, index(cidr, "/") + 1) + 0 : (cidr ~ /:/ ? 128 : 32) }
function inside(a, cidr) { return (a ~ /:/) == (cidr ~ /:/) && substr(bits(a), 1, plen(cidr)) == substr(bits(cidr), 1, plen(cidr)) }
# Is gateway gw inside one of the subnets of dev (link-local always is)?
function reachable(dev, gw,   i) {
  if (tolower(gw) ~ /^fe80:/) return 1
  for (i = 1; i <= nnet[dev]; i++) if (inside(gw, nets[dev, i])) return 1
  return 0
}
# Is cidr exactly the prefix route of one of the addresses of dev?
function connected(dev, cidr,   i) {
  for (i = 1; i <= nnet[dev]; i++)
    if (plen(nets[dev, i]) == plen(cidr) && inside(cidr, nets[dev, i])) return 1
  return 0
}
function full(a) { return a ~ /\// ? a : a (a ~ /:/ ? "/128" : "/32") }

FILENAME ~ /links\.txt$/ {
  name = $2; sub(/:$/, "", name); at = ""
  # "eth0.4000@eth0": a VLAN names its parent after the @ (a veth its peer).
  if (name ~ /@/) { at = name; sub(/^[^@]*@/, "", at); sub(/@.*/, "", name) }
  link_at[name] = at
  for (i = 3; i < NF; i++) {
    if ($i == "mtu") mtu[name] = $(i + 1)
    if ($i == "link/ether" && $(i + 1) != "00:00:00:00:00:00") mac[name] = tolower($(i + 1))
    if ($i == "vlan" && $(i + 1) == "protocol") {
      vproto[name] = $(i + 2)
      for (j = i + 3; j < NF; j++) if ($j == "id") { vid[name] = $(j + 1); break }
    }
  }
  next
}
# /proc/net/vlan/config: "eth0.4000 | 4000 | eth0" after two header lines.
FILENAME ~ /vlan\.txt$/ {
  if (split($0, vf, "|") != 3) next
  v = vf[1]; id = vf[2]; p = vf[3]
  gsub(/[ \t]/, "", v); gsub(/[ \t]/, "", id); gsub(/[ \t]/, "", p)
  if (id !~ /^[0-9]+$/) next
  vid[v] = id; vparent[v] = p
  next
}
FILENAME ~ /addrs\.txt$/ {
  dev = $2; fam = $3; sub(/@.*/, "", dev)
  if (!(dev in mac) || $0 !~ / scope global / || $0 ~ / temporary /) next
  if ($5 == "peer") { local = $4; prefix = $6 } else { local = $4; prefix = $4 }
  nets[dev, ++nnet[dev]] = prefix
  want[dev] = 1
  if ($0 ~ / dynamic /) { dyn[dev, fam] = 1; next }
  n = ++naddr[dev]; a_local[dev, n] = local; a_peer[dev, n] = ($5 == "peer") ? prefix : ""
  next
}
FILENAME ~ /routes-v[46]\.txt$/ {
  if ($1 ~ /^(unreachable|blackhole|prohibit|throw|local|broadcast|anycast|multicast|nat)$/) next
  fam = FILENAME ~ /v6\.txt$/ ? "inet6" : "inet"
  dst = $1; dev = gw = proto = metric = ""; onlink = scopelink = 0
  for (i = 2; i < NF; i++) {
    if ($i == "dev") dev = $(i + 1)
    else if ($i == "via") { gw = $(i + 1); if (gw == "inet" || gw == "inet6") gw = $(i + 2) }
    else if ($i == "proto") proto = $(i + 1)
    else if ($i == "metric") metric = $(i + 1)
    else if ($i == "scope" && $(i + 1) == "link") scopelink = 1
  }
  if ($NF == "onlink" || $0 ~ / onlink /) onlink = 1
  if (!(dev in mac)) next
  if (dst == "default") hasdefault[dev] = 1
  if (proto == "ra") ra[dev] = 1
  if (proto ~ /^(kernel|dhcp|ra|redirect)$/) next
  if (dst == "default") dst = ""; else dst = full(dst)
  if (gw == "" && (connected(dev, dst) || tolower(dst) ~ /^fe80:/)) next
  if (gw != "" && !reachable(dev, gw)) onlink = 1
  n = ++nroute[dev]; want[dev] = 1
  r_dst[dev, n] = dst; r_gw[dev, n] = gw; r_onlink[dev, n] = onlink
  r_metric[dev, n] = metric; r_scope[dev, n] = scopelink; r_fam[dev, n] = fam
  next
}
FILENAME ~ /dns\.txt$/ { if ($1 != "") dns[++ndns] = $1; next }

END {
  for (dev in vid) if (!(dev in vparent) || vparent[dev] == "") vparent[dev] = link_at[dev]
  # A carried VLAN needs its parent up with a VLAN= line, up the chain (QinQ).
  # (Arrays are not changed while a for-in walks them: that is undefined in awk.)
  do {
    more = 0; split("", add); split("", drop)
    for (dev in want) {
      if (!(dev in vid)) continue
      p = vparent[dev]
      if (p == "" || !(p in mac)) drop[dev] = 1
      else if (!(p in want)) add[p] = 1
    }
    for (dev in drop) { delete want[dev]; lost = lost " " dev; more = 1 }
    for (dev in add) { want[dev] = 1; more = 1 }
  } while (more)
  for (dev in want) if (dev in vid) vlans[vparent[dev]] = vlans[vparent[dev]] " " dev
  for (dev in want) if (dev in hasdefault) anydefault = 1
  for (dev in want) {
    name = dev; gsub(/[^A-Za-z0-9_.-]/, "_", name)
    f = dir "/00-vps-nixos-" name ".network"
    print "# Carried across kexec by vps-nixos from " dev " on " host > f
    print "[Match]" > f
    if (dev in vid) {
      print "Name=" dev > f
      print "Kind=vlan" > f
    } else {
      print "MACAddress=" mac[dev] > f
      print "Type=ether" > f
    }
    if (mtu[dev] != "" && mtu[dev] != 1500) { print "\n[Link]" > f; print "MTUBytes=" mtu[dev] > f }
    print "\n[Network]" > f
    print "DHCP=" (((dev, "inet") in dyn) ? "ipv4" : "no") > f
    print "IPv6AcceptRA=" ((((dev, "inet6") in dyn) || (dev in ra)) ? "yes" : "no") > f
    for (i = 1; i <= naddr[dev]; i++) if (a_peer[dev, i] == "") print "Address=" full(a_local[dev, i]) > f
    # DNS only on links with a default route: resolved would otherwise ask
    # the servers through a private NIC that cannot reach them.
    if (!anydefault || (dev in hasdefault)) for (i = 1; i <= ndns; i++) print "DNS=" dns[i] > f
    n = split(vlans[dev], vl, " ")
    for (i = 1; i <= n; i++) print "VLAN=" vl[i] > f
    for (i = 1; i <= naddr[dev]; i++) if (a_peer[dev, i] != "") {
      print "\n[Address]" > f
      print "Address=" full(a_local[dev, i]) > f
      print "Peer=" a_peer[dev, i] > f
    }
    for (i = 1; i <= nroute[dev]; i++) {
      print "\n[Route]" > f
      if (r_dst[dev, i] != "") print "Destination=" r_dst[dev, i] > f
      else if (r_fam[dev, i] == "inet" && r_gw[dev, i] ~ /:/) print "Destination=0.0.0.0/0" > f
      if (r_gw[dev, i] != "") print "Gateway=" r_gw[dev, i] > f
      if (r_gw[dev, i] != "" && r_onlink[dev, i]) print "GatewayOnLink=yes" > f
      if (r_gw[dev, i] == "" && r_scope[dev, i]) print "Scope=link" > f
      if (r_metric[dev, i] != "") print "Metric=" r_metric[dev, i] > f
    }
    close(f)
    print f
    if (!(dev in vid)) continue
    # networkd creates the VLAN on its parent (the VLAN= line above) from this.
    f = dir "/00-vps-nixos-" name ".netdev"
    print "# Carried across kexec by vps-nixos: VLAN " dev " on " vparent[dev] " on " host > f
    print "[NetDev]" > f
    print "Name=" dev > f
    print "Kind=vlan" > f
    if ((vparent[dev] in mac) && mac[dev] != mac[vparent[dev]]) print "MACAddress=" mac[dev] > f
    print "\n[VLAN]" > f
    print "Id=" vid[dev] > f
    if (vproto[dev] != "" && tolower(vproto[dev]) != "802.1q") print "Protocol=" tolower(vproto[dev]) > f
    close(f)
    print f
  }
  if (lost != "") print "vps-nixos run: not carried (VLAN without a known parent):" lost > "/dev/stderr"
}' "$net/links.txt" "$net/vlan.txt" "$net/addrs.txt" "$net/routes-v4.txt" "$net/routes-v6.txt" "$net/dns.txt" >"$stage/network-files"

# --- pack ---------------------------------------------------------------------
pack() {
  # etc/machine-id without an etc entry: the kernel would chmod the initrd's /etc to it.
  (cd "$stage" && {
    find vps-nixos-carried -print
    if [ -f etc/machine-id ]; then echo etc/machine-id; fi
  } >"$stage/list")
  (cd "$stage" && cpio -o -H newc <"$stage/list" >"$stage/carried.cpio") 2>"$stage/cpio.log" ||
    die "cpio could not pack $carried: $(cat "$stage/cpio.log")"
  cp "$here/initrd" "$here/initrd.carried"
  # The kernel unpacks every cpio (compressed or not) appended to the initrd, in order.
  gzip -9 <"$stage/carried.cpio" >>"$here/initrd.carried"
  rm -f "$stage/carried.cpio" "$stage/list" "$stage/cpio.log"
}

if [ -n "$dry" ]; then
  say "dry run: nothing is loaded. Carried files in $carried:"
  (cd "$stage" && find vps-nixos-carried etc -type f -print 2>/dev/null | sort)
  while read -r f; do
    echo "----- ${f#"$stage"/}"
    cat "$f"
  done <"$stage/network-files"
  if command -v cpio >/dev/null 2>&1 && [ -f "$here/initrd" ]; then
    pack
    say "dry run: packed into $here/initrd.carried"
  fi
  say "dry run: kernel command line would be: $cmdline"
  say "dry run: $stage holds private host keys: delete it when done"
  exit 0
fi

pack
rm -rf "$stage" # the host keys now live only inside initrd.carried

# kexec_file_load via --kexec-syscall-auto only on kernels >= 6.1: older ones
# fail there (nixos-anywhere #264) while plain kexec_load works.
kver=$(uname -r)
major=${kver%%.*}
minor=${kver#*.}
minor=${minor%%[!0-9]*}
syscall_flag=
if [ "$major" -gt 6 ] 2>/dev/null || { [ "$major" -eq 6 ] && [ "${minor:-0}" -ge 1 ]; } 2>/dev/null; then
  syscall_flag=--kexec-syscall-auto
fi

# shellcheck disable=SC2086 # both are lists of flags
if ! "$here/kexec" --load "$here/bzImage" --initrd="$here/initrd.carried" \
  --command-line="$cmdline" $syscall_flag $extra_flags; then
  say "kexec_load_disabled=$(cat /proc/sys/kernel/kexec_load_disabled 2>/dev/null || echo '?')" \
    "lockdown=$(cat /sys/kernel/security/lockdown 2>/dev/null || echo '?')"
  dmesg 2>/dev/null | tail -n 20 >&2 || :
  die "kexec --load failed: Secure Boot lockdown, kexec_load_disabled=1 and Xen PV are known causes"
fi
rm -f "$here/initrd.carried"

say "installer loaded; switching to it in ${delay}s (new boot_id, VARIANT_ID=installer)"
# nixos-images' words, on stdout: nixos-anywhere greps its log for them
echo "machine will boot into nixos in ${delay}s..."
# In the background with SIGHUP ignored (what nohup does; busybox may lack
# nohup), so the SSH session that started us returns before the kernel goes.
# shellcheck disable=SC2016 # $1 and $2 are expanded by the inner sh
(
  trap '' HUP
  exec sh -c 'sleep "$1"; sync; exec "$2" -e' sh "$delay" "$here/kexec"
) </dev/null >/dev/null 2>&1 &
