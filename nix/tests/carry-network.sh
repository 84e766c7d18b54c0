#!/bin/sh
# Proves that kexec-installer/run.sh carries a static VPS network and identity.
#
#   sudo sh nix/tests/carry-network.sh
#
# Needs root (for unshare), util-linux unshare, iproute2, cpio, gzip, ssh-keygen.
# It creates a private network + mount namespace with two veth interfaces and
# documentation-prefix addresses only (RFC 5737 / RFC 3849), bind-mounts
# fixture host keys, authorized_keys, machine-id and resolv.conf over the real
# ones *inside that namespace only*, runs `RUN_DRY=1 run` (no kexec), and
# checks the generated systemd-networkd files and the packed cpio. Then it does
# the same with busybox's sh/awk/ip/cpio when busybox is installed (Alpine-like
# userland, whose ip prints no "proto kernel"). Then: that run refuses clearly
# without cpio, and the real (non-dry) path with a stand-in `kexec` that only
# records its arguments: the initrd it is given must carry the keys, and the
# temporary copies must be gone afterwards. Nothing outside the namespaces is
# touched; the temp dir is removed at the end. RUN_SH=path tests another run.sh.
#
# VLANs (the Hetzner vSwitch pattern: eth0.4000 on eth0, with eth0's MAC; and a
# VLAN on a parent that has no address of its own): real 8021q VLANs when the
# kernel can make them; otherwise (a container without 8021q) the bundled `ip`
# is a wrapper that adds the same VLANs to what the real ip prints, so the
# parsing and the files are tested either way (busybox mode then has none).
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
run_sh=${RUN_SH:-$here/../kexec-installer/run.sh}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# ---------------------------------------------------------------- inside the namespace
if [ "${1:-}" = --inside ]; then
  tmp=$2
  mode=$3
  vlans=$4
  # A Hetzner-style /32 with a gateway outside it, reached through a host route
  # (no "onlink" flag on the kernel route: run.sh must work it out), plus IPv6
  # with a link-local default gateway and an in-subnet static route.
  ip link add eth0 type veth peer name peer0
  ip link set eth0 address 02:00:00:00:00:01 mtu 1450
  ip link add eth1 type veth peer name peer1
  ip link set eth1 address 02:00:00:00:00:02
  for l in eth0 peer0 eth1 peer1; do ip link set "$l" up; done
  ip addr add 203.0.113.7/32 dev eth0
  ip route add 192.0.2.1/32 dev eth0 scope link
  ip route add default via 192.0.2.1 dev eth0
  ip -6 addr add 2001:db8:10::7/64 dev eth0 nodad
  ip -6 route add default via fe80::1 dev eth0
  ip -6 route add 2001:db8:30::/48 via 2001:db8:10::1 dev eth0
  # eth1: a DHCP-style (dynamic) address, a static route, an onlink v6 route.
  ip addr add 10.20.0.5/24 dev eth1 valid_lft 3600 preferred_lft 3600
  ip route add 10.30.0.0/16 via 10.20.0.1 dev eth1
  ip -6 addr add 2001:db8:20::5/64 dev eth1 nodad
  ip -6 route add 2001:db8:99::/48 via 2001:db8:ffff::1 dev eth1 onlink
  # eth2: no address of its own, only a VLAN with one (802.1ad).
  ip link add eth2 type veth peer name peer2
  ip link set eth2 address 02:00:00:00:00:03
  for l in eth2 peer2; do ip link set "$l" up; done
  if [ "$vlans" = real ]; then
    ip link add link eth0 name eth0.4000 type vlan id 4000
    ip link set eth0.4000 mtu 1400 up
    ip addr add 10.40.0.7/24 dev eth0.4000
    ip route add 10.50.0.0/16 via 10.40.0.1 dev eth0.4000
    ip link add link eth2 name eth2.100 type vlan proto 802.1ad id 100
    ip link set eth2.100 up
    ip addr add 10.60.0.7/24 dev eth2.100
  fi

  # Identity fixtures over the real paths, visible in this mount namespace only.
  mount --bind "$tmp/fixture/ssh" /etc/ssh
  mount --bind "$tmp/fixture/root" /root
  mount --bind "$tmp/fixture/resolv.conf" /etc/resolv.conf
  if [ -e /etc/machine-id ]; then mount --bind "$tmp/fixture/machine-id" /etc/machine-id; fi

  if [ "$mode" = busybox ]; then
    PATH=$tmp/bb exec "$tmp/bb/sh" "$tmp/kexec/run"
  fi
  # RUN_ARGS: nixos-images' arguments, as nixos-anywhere passes them (one value, no word splitting)
  if [ -n "${RUN_ARGS:-}" ]; then exec sh "$tmp/kexec/run" --kexec-extra-flags "$RUN_ARGS"; fi
  exec sh "$tmp/kexec/run"
fi

# ---------------------------------------------------------------- outside: set up, run, check
[ "$(id -u)" = 0 ] || fail "run as root (it needs unshare --net --mount)"
for tool in unshare ip cpio gzip ssh-keygen; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing"
done
[ -f "$run_sh" ] || fail "no $run_sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

mkdir -p "$tmp/fixture/ssh" "$tmp/fixture/root/.ssh" "$tmp/kexec"
ssh-keygen -q -t ed25519 -N '' -C fixture-host -f "$tmp/fixture/ssh/ssh_host_ed25519_key"
ssh-keygen -q -t ecdsa -N '' -C fixture-host -f "$tmp/fixture/ssh/ssh_host_ecdsa_key"
ssh-keygen -q -t ed25519 -N '' -C fixture-user -f "$tmp/user_key"
user_key=$(cut -d' ' -f1,2 "$tmp/user_key.pub")
# A cloud-image style entry that must lose its command= prefix, and a plain one.
{
  echo "no-port-forwarding,command=\"echo 'Please login as the user \\\"debian\\\" rather than root.';exit 142\" $user_key fixture-user"
  echo "# comment"
  echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureSecondKeyxxxxxxxxxxxxxxxxxxxxxxxxxx second"
} >"$tmp/fixture/root/.ssh/authorized_keys"
chmod 700 "$tmp/fixture/root" "$tmp/fixture/root/.ssh"
printf 'nameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.invalid\n' >"$tmp/fixture/resolv.conf"
echo 0123456789abcdef0123456789abcdef >"$tmp/fixture/machine-id"

cp "$run_sh" "$tmp/kexec/run"
# A stand-in initrd: any bytes; the packed copy must be it plus a gzip'd cpio.
printf 'stand-in initrd\n' >"$tmp/kexec/initrd"

# Real VLANs if this kernel makes them, else the ip wrapper below adds them.
if unshare --net sh -c 'ip link add d0 type dummy && ip link add link d0 name d0.7 type vlan id 7' >/dev/null 2>&1; then
  vlans=real
else
  vlans=fake
fi
real_ip=$(command -v ip)
# What `ip` on a host with those VLANs adds to its output (the real ip's lines, verbatim shape).
cat >"$tmp/ip-vlans" <<WRAPPER
#!/bin/sh
"$real_ip" "\$@" || exit
case "\$*" in
  "-d -o link show")
    printf '%s\\n' '9: eth0.4000@eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1400 qdisc noqueue state UP mode DEFAULT group default qlen 1000\    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 0 maxmtu 65535 \    vlan protocol 802.1Q id 4000 <REORDER_HDR> addrgenmode eui64 numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535'
    printf '%s\\n' '10: eth2.100@eth2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\    link/ether 02:00:00:00:00:03 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 0 maxmtu 65535 \    vlan protocol 802.1ad id 100 <REORDER_HDR> addrgenmode eui64 numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535'
    ;;
  "-o addr show")
    printf '%s\\n' '9: eth0.4000    inet 10.40.0.7/24 scope global eth0.4000\       valid_lft forever preferred_lft forever'
    printf '%s\\n' '10: eth2.100    inet 10.60.0.7/24 scope global eth2.100\       valid_lft forever preferred_lft forever'
    ;;
  "-4 route show table main")
    printf '%s\\n' '10.40.0.0/24 dev eth0.4000 proto kernel scope link src 10.40.0.7'
    printf '%s\\n' '10.50.0.0/16 via 10.40.0.1 dev eth0.4000'
    printf '%s\\n' '10.60.0.0/24 dev eth2.100 proto kernel scope link src 10.60.0.7'
    ;;
esac
WRAPPER
chmod +x "$tmp/ip-vlans"

check() { # check MODE: run once and assert on what it carried
  mode=$1
  rm -rf "$tmp/kexec/carried" "$tmp/kexec/initrd.carried" "$tmp/kexec/ip"
  # Are there VLANs for this run to carry? busybox ip cannot be wrapped (it is on PATH).
  has_vlans=yes
  if [ "$mode" = iproute2 ] && [ "$vlans" = fake ]; then
    cp "$tmp/ip-vlans" "$tmp/kexec/ip" # plays the bundled static ip, with VLANs
  elif [ "$mode" = iproute2 ]; then
    ln -s "$real_ip" "$tmp/kexec/ip" # plays the bundled static ip
  elif [ "$vlans" = fake ]; then
    has_vlans=no
  fi
  RUN_DRY=1 unshare --net --mount sh "$here/carry-network.sh" --inside "$tmp" "$mode" "$vlans" >"$tmp/out.$mode" 2>&1 ||
    {
      cat "$tmp/out.$mode" >&2
      fail "$mode: run.sh failed"
    }

  c=$tmp/kexec/carried/vps-nixos-carried
  e0=$c/network/00-vps-nixos-eth0.network
  e1=$c/network/00-vps-nixos-eth1.network
  if [ ! -f "$e0" ] || [ ! -f "$e1" ]; then
    cat "$tmp/out.$mode" >&2
    fail "$mode: no .network files for eth0/eth1"
  fi
  for f in "$c"/network/00-vps-nixos-peer*; do
    [ -e "$f" ] && fail "$mode: $f written for an interface with no global address"
  done

  has() { grep -qx -- "$2" "$1" || fail "$mode: $(basename "$1") lacks '$2'"; }
  lacks() { if grep -qx -- "$2" "$1"; then fail "$mode: $(basename "$1") has '$2'"; fi; }
  # The [Route] section (up to the next blank line) whose Gateway= is $2.
  route_of() { awk -v gw="Gateway=$2" 'BEGIN { RS = "" } $0 ~ "\n" gw "(\n|$)" { print }' "$1"; }

  has "$e0" "MACAddress=02:00:00:00:00:01"
  has "$e0" "MTUBytes=1450"
  has "$e0" "Address=203.0.113.7/32"
  has "$e0" "Address=2001:db8:10::7/64"
  has "$e0" "DHCP=no"
  has "$e0" "DNS=192.0.2.53"
  has "$e0" "DNS=2001:db8::53"
  lacks "$e0" "DNS=127.0.0.53"
  route_of "$e0" 192.0.2.1 | grep -qx "GatewayOnLink=yes" ||
    fail "$mode: default route via 192.0.2.1 (outside 203.0.113.7/32) lacks GatewayOnLink=yes"
  route_of "$e0" 192.0.2.1 | grep -q "^Destination=" &&
    fail "$mode: the IPv4 default route got a Destination="
  route_of "$e0" fe80::1 | grep -qx "Gateway=fe80::1" || fail "$mode: IPv6 default route via fe80::1 missing"
  route_of "$e0" fe80::1 | grep -q GatewayOnLink && fail "$mode: link-local gateway marked on-link"
  route_of "$e0" 2001:db8:10::1 | grep -qx "Destination=2001:db8:30::/48" || fail "$mode: in-subnet v6 route missing"
  route_of "$e0" 2001:db8:10::1 | grep -q GatewayOnLink && fail "$mode: in-subnet v6 gateway marked on-link"
  lacks "$e0" "Destination=2001:db8:10::/64" # the prefix route comes back by itself

  has "$e1" "MACAddress=02:00:00:00:00:02"
  has "$e1" "DHCP=ipv4"
  lacks "$e1" "Address=10.20.0.5/24" # dynamic: DHCP brings it back
  has "$e1" "Address=2001:db8:20::5/64"
  lacks "$e1" "DNS=192.0.2.53" # no default route on eth1
  route_of "$e1" 10.20.0.1 | grep -qx "Destination=10.30.0.0/16" || fail "$mode: static route 10.30.0.0/16 missing"
  route_of "$e1" 10.20.0.1 | grep -q GatewayOnLink && fail "$mode: in-subnet v4 gateway marked on-link"
  route_of "$e1" 2001:db8:ffff::1 | grep -qx "GatewayOnLink=yes" || fail "$mode: onlink v6 route lost its flag"
  # A NIC's file matches its MAC and only an Ethernet link: not a VLAN that has the same MAC.
  has "$e0" "Type=ether"
  has "$e1" "Type=ether"

  # VLANs: matched by name (not by the MAC they share with their parent), recreated by a
  # .netdev, attached by a VLAN= line in the parent's file; a parent with no address of
  # its own still gets a file for that line.
  v0=$c/network/00-vps-nixos-eth0.4000.network
  v0d=$c/network/00-vps-nixos-eth0.4000.netdev
  e2=$c/network/00-vps-nixos-eth2.network
  v2=$c/network/00-vps-nixos-eth2.100.network
  v2d=$c/network/00-vps-nixos-eth2.100.netdev
  if [ "$has_vlans" = yes ]; then
    for f in "$v0" "$v0d" "$e2" "$v2" "$v2d"; do
      [ -f "$f" ] || {
        ls "$c/network" >&2
        fail "$mode: no $(basename "$f")"
      }
    done
    has "$e0" "VLAN=eth0.4000"
    lacks "$e0" "Address=10.40.0.7/24"
    has "$v0" "Name=eth0.4000"
    has "$v0" "Kind=vlan"
    lacks "$v0" "MACAddress=02:00:00:00:00:01"
    lacks "$v0" "Type=ether"
    has "$v0" "Address=10.40.0.7/24"
    has "$v0" "MTUBytes=1400"
    has "$v0" "DHCP=no"
    lacks "$v0" "DNS=192.0.2.53" # the default route is on eth0
    route_of "$v0" 10.40.0.1 | grep -qx "Destination=10.50.0.0/16" || fail "$mode: route over the VLAN missing"
    lacks "$v0" "Destination=10.40.0.0/24"
    has "$v0d" "Name=eth0.4000"
    has "$v0d" "Kind=vlan"
    has "$v0d" "Id=4000"
    lacks "$v0d" "Protocol=802.1ad"
    lacks "$v0d" "MACAddress=02:00:00:00:00:01" # the parent's MAC is the default
    has "$e2" "MACAddress=02:00:00:00:00:03"
    has "$e2" "Type=ether"
    has "$e2" "VLAN=eth2.100"
    has "$e2" "DHCP=no"
    if grep -q "^Address=" "$e2"; then fail "$mode: eth2 has no address of its own"; fi
    has "$v2" "Name=eth2.100"
    has "$v2" "Address=10.60.0.7/24"
    has "$v2d" "Id=100"
    # busybox ip has no -d: /proc/net/vlan/config gives id and parent, not the protocol.
    if [ "$mode" = iproute2 ]; then has "$v2d" "Protocol=802.1ad"; fi
    lacks "$e1" "VLAN=eth0.4000"
  else
    for f in "$v0" "$v0d" "$e2" "$v2" "$v2d"; do
      if [ -e "$f" ]; then fail "$mode: $(basename "$f") without VLANs"; fi
    done
  fi

  # Identity: host keys with their modes, keys stripped of command=, machine-id.
  cmp -s "$c/ssh/ssh_host_ed25519_key" "$tmp/fixture/ssh/ssh_host_ed25519_key" || fail "$mode: ed25519 host key not carried"
  cmp -s "$c/ssh/ssh_host_ecdsa_key.pub" "$tmp/fixture/ssh/ssh_host_ecdsa_key.pub" || fail "$mode: ecdsa host key not carried"
  [ "$(stat -c %a "$c/ssh/ssh_host_ed25519_key")" = 600 ] || fail "$mode: private host key is not 0600"
  has "$c/ssh/authorized_keys" "$user_key fixture-user"
  [ "$(grep -c . "$c/ssh/authorized_keys")" = 2 ] || fail "$mode: expected exactly 2 authorized keys"
  if [ -e /etc/machine-id ]; then
    cmp -s "$c/machine-id" "$tmp/fixture/machine-id" || fail "$mode: machine-id not carried"
    cmp -s "$tmp/kexec/carried/etc/machine-id" "$tmp/fixture/machine-id" ||
      fail "$mode: machine-id not staged for /etc/machine-id"
    # 0444, not run's umask 077: networkd (user systemd-network) reads it for DHCP's DUID.
    [ "$(stat -c %a "$tmp/kexec/carried/etc/machine-id")" = 444 ] || fail "$mode: machine-id is not 0444"
    [ "$(stat -c %a "$c/machine-id")" = 444 ] || fail "$mode: carried machine-id is not 0444"
  fi

  # Packing: initrd.carried = the initrd, then a gzip'd newc cpio of the carried dir.
  size=$(wc -c <"$tmp/kexec/initrd")
  head -c "$size" "$tmp/kexec/initrd.carried" | cmp -s - "$tmp/kexec/initrd" || fail "$mode: initrd prefix changed"
  tail -c +"$((size + 1))" "$tmp/kexec/initrd.carried" | gzip -dc | cpio -t 2>/dev/null >"$tmp/list.$mode"
  grep -qx vps-nixos-carried/ssh/ssh_host_ed25519_key "$tmp/list.$mode" || fail "$mode: host key not in the cpio"
  grep -qx vps-nixos-carried/network/00-vps-nixos-eth0.network "$tmp/list.$mode" || fail "$mode: network file not in the cpio"
  if [ -e /etc/machine-id ]; then
    # At /etc/machine-id (systemd reads it before any unit runs), 0444, and no "etc"
    # entry: the kernel would set the initrd's /etc to that entry's mode and owner.
    tail -c +"$((size + 1))" "$tmp/kexec/initrd.carried" | gzip -dc | cpio -tv 2>/dev/null >"$tmp/listv.$mode"
    grep -q '^-r--r--r-- .* etc/machine-id$' "$tmp/listv.$mode" ||
      fail "$mode: etc/machine-id not in the cpio as 0444: $(grep machine-id "$tmp/listv.$mode")"
    if grep -qx etc "$tmp/list.$mode"; then fail "$mode: the cpio has an etc entry"; fi
  fi

  echo "ok ($mode): $(basename "$e0"), $(basename "$e1"), VLANs: $has_vlans ($vlans), host keys, authorized_keys, machine-id 0444, cpio"
}

check iproute2
for f in 00-vps-nixos-eth0.4000.network 00-vps-nixos-eth0.4000.netdev 00-vps-nixos-eth2.network 00-vps-nixos-eth2.100.netdev; do
  echo "--- $f as carried (iproute2):"
  cat "$tmp/kexec/carried/vps-nixos-carried/network/$f"
done
if command -v busybox >/dev/null 2>&1; then
  mkdir -p "$tmp/bb"
  for applet in sh awk sed grep find cpio gzip cat cp mkdir rm sort uname id dirname tail dmesg sleep sync ip head chmod; do
    ln -s "$(command -v busybox)" "$tmp/bb/$applet"
  done
  check busybox
else
  echo "skip (busybox): not installed"
fi
echo "--- eth0 as carried:"
cat "$tmp/kexec/carried/vps-nixos-carried/network/00-vps-nixos-eth0.network"

# ---------------------------------------------------------------- no cpio: a clear refusal
mkdir -p "$tmp/nocpio"
for tool in sh dirname id; do ln -s "$(command -v "$tool")" "$tmp/nocpio/$tool"; done
ln -sf "$(command -v ip)" "$tmp/kexec/ip"
printf '#!/bin/sh\nexit 0\n' >"$tmp/kexec/kexec"
chmod +x "$tmp/kexec/kexec"
if PATH=$tmp/nocpio sh "$tmp/kexec/run" >"$tmp/out.nocpio" 2>&1; then fail "ran without cpio"; fi
grep -q "cpio is missing" "$tmp/out.nocpio" || fail "no clear message without cpio: $(cat "$tmp/out.nocpio")"
echo "ok (no cpio): $(cat "$tmp/out.nocpio")"

# ---------------------------------------------------------------- the real path, stand-in kexec
rm -rf "$tmp/kexec/carried" "$tmp/kexec/initrd.carried"
printf 'stand-in kernel\n' >"$tmp/kexec/bzImage"
# Stand-in kexec: records its arguments, keeps a copy of the initrd it is given.
cat >"$tmp/kexec/kexec" <<'STANDIN'
#!/bin/sh
d=$(dirname "$0")
echo "$*" >>"$d/kexec.calls"
for a in "$@"; do
  case $a in --initrd=*) cp "${a#--initrd=}" "$d/loaded-initrd" ;; esac
done
STANDIN
chmod +x "$tmp/kexec/kexec"
KEXEC_DELAY=0 unshare --net --mount sh "$here/carry-network.sh" --inside "$tmp" iproute2 "$vlans" >"$tmp/out.load" 2>&1 ||
  {
    cat "$tmp/out.load" >&2
    fail "load: run.sh failed"
  }
i=0
until grep -qx -- "-e" "$tmp/kexec/kexec.calls" 2>/dev/null; do
  i=$((i + 1))
  if [ "$i" -gt 50 ]; then fail "load: kexec -e was never called in the background"; fi
  sleep 0.1
done
load=$(grep -- "^--load " "$tmp/kexec/kexec.calls") || fail "load: kexec --load not called"
case $load in
  *"--initrd=$tmp/kexec/initrd.carried --command-line=@cmdline@"*) ;;
  *) fail "load: unexpected kexec arguments: $load" ;;
esac
kver=$(uname -r)
major=${kver%%.*}
minor=${kver#*.}
minor=${minor%%[!0-9]*}
if [ "$major" -gt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -ge 1 ]; }; then
  case $load in *--kexec-syscall-auto*) ;; *) fail "load: kernel $kver >= 6.1 but no --kexec-syscall-auto" ;; esac
else
  case $load in *--kexec-syscall-auto*) fail "load: kernel $kver < 6.1 but --kexec-syscall-auto" ;; esac
fi
[ ! -e "$tmp/kexec/carried" ] || fail "load: carried dir (private host keys) left on disk"
[ ! -e "$tmp/kexec/initrd.carried" ] || fail "load: initrd.carried left on disk"
size=$(wc -c <"$tmp/kexec/initrd")
tail -c +"$((size + 1))" "$tmp/kexec/loaded-initrd" | gzip -dc | cpio -t 2>/dev/null >"$tmp/list.load"
grep -qx vps-nixos-carried/ssh/ssh_host_ed25519_key "$tmp/list.load" ||
  fail "load: the initrd given to kexec does not carry the host key"
echo "ok (load): kexec $load"

# ---------------------------------------------------------------- ramfs root, when the plan asks
rm -f "$tmp/kexec/kexec.calls"
VPS_NIXOS_ROOTFS=ramfs KEXEC_DELAY=0 unshare --net --mount sh "$here/carry-network.sh" --inside "$tmp" iproute2 "$vlans" >"$tmp/out.ramfs" 2>&1 ||
  {
    cat "$tmp/out.ramfs" >&2
    fail "ramfs: run.sh failed"
  }
load=$(grep -- "^--load " "$tmp/kexec/kexec.calls") || fail "ramfs: kexec --load not called"
case $load in
  *"--command-line=@cmdline@ rootfstype=ramfs "*) ;;
  *) fail "ramfs: no rootfstype=ramfs on the command line: $load" ;;
esac
if VPS_NIXOS_ROOTFS=zfs sh "$tmp/kexec/run" >"$tmp/out.badroot" 2>&1; then fail "ran with VPS_NIXOS_ROOTFS=zfs"; fi
grep -q "VPS_NIXOS_ROOTFS=zfs is not tmpfs or ramfs" "$tmp/out.badroot" ||
  fail "no clear message for VPS_NIXOS_ROOTFS=zfs: $(cat "$tmp/out.badroot")"
echo "ok (ramfs): kexec $load"

# ---------------------------------------------------------------- nixos-images' interface
# nixos-anywhere runs `run --kexec-extra-flags "$flags"` and greps for nixos-images' line.
rm -f "$tmp/kexec/kexec.calls"
RUN_ARGS="--no-sync --no-checks" KEXEC_DELAY=0 unshare --net --mount sh "$here/carry-network.sh" --inside "$tmp" iproute2 "$vlans" >"$tmp/out.extra" 2>&1 ||
  {
    cat "$tmp/out.extra" >&2
    fail "extra flags: run.sh failed"
  }
load=$(grep -- "^--load " "$tmp/kexec/kexec.calls") || fail "extra flags: kexec --load not called"
case $load in
  *" --no-sync --no-checks"*) ;;
  *) fail "extra flags: --kexec-extra-flags not passed to kexec: $load" ;;
esac
grep -q "machine will boot into nixos in 0s" "$tmp/out.extra" || fail "extra flags: no nixos-images line: $(cat "$tmp/out.extra")"
if sh "$tmp/kexec/run" --bogus >"$tmp/out.badarg" 2>&1; then fail "ran with --bogus"; fi
grep -q "unknown argument --bogus" "$tmp/out.badarg" || fail "no clear message for --bogus: $(cat "$tmp/out.badarg")"
echo "ok (nixos-images interface): kexec $load"
