# shellcheck shell=bash
# Per-run network: a netns "vpsnixos-N" with the provider side of the link (gateway .1 / ::1)
# and no uplink. Our client (ssh, node) runs inside it with `ip netns exec`. Nothing is added to
# the root namespace, so no test traffic can ever take the host's default route.

# Reserve slot N (1..250): an atomic mkdir under a lock, skipping slots whose netns exists (left
# by a crash). A slot whose run dir is gone or no longer claims it (deleted without `vps down`,
# with no netns left) is reclaimed.
slot_alloc() {
  local rd=$1 n owner
  mkdir -p "$VPS_RUN_ROOT/slots"
  exec 7>"$VPS_RUN_ROOT/slots/.lock"
  flock -w 60 7 || die "slot lock: timed out"
  for ((n = 1; n <= 250; n++)); do
    [[ -e /run/netns/vpsnixos-$n || -e /run/netns/vpsnixos-$n-ct ]] && continue
    if [[ -d $VPS_RUN_ROOT/slots/$n ]]; then
      owner=$(readlink "$VPS_RUN_ROOT/slots/$n/rundir" 2>/dev/null) || owner=""
      [[ -n $owner && $(cat "$owner/slot" 2>/dev/null) == "$n" ]] && continue
      log "reclaiming stale slot $n (run dir ${owner:-?} is gone or released it)"
      rm -f "$VPS_RUN_ROOT/slots/$n/rundir"
      rmdir "$VPS_RUN_ROOT/slots/$n" 2>/dev/null || continue
    fi
    if mkdir "$VPS_RUN_ROOT/slots/$n" 2>/dev/null; then
      ln -s "$rd" "$VPS_RUN_ROOT/slots/$n/rundir"
      echo "$n" > "$rd/slot"
      exec 7>&-
      echo "$n"
      return 0
    fi
  done
  exec 7>&-
  die "no free slot in $VPS_RUN_ROOT/slots (250 runs up?)"
}

slot_free() {
  local n=$1
  rm -f "$VPS_RUN_ROOT/slots/$n/rundir"
  rmdir "$VPS_RUN_ROOT/slots/$n" 2>/dev/null || true
}

# Write the run's addressing into files in the run dir.
net_plan() {
  local rd=$1 n=$2 hx
  hx=$(printf '%02x' "$n")
  echo "vpsnixos-$n" > "$rd/netns"
  echo "$VPS_NET4_PREFIX.$n.2" > "$rd/address"
  echo "$VPS_NET4_PREFIX.$n.1" > "$rd/gateway"
  echo "$VPS_NET6_PREFIX:$n::2" > "$rd/address6"
  echo "$VPS_NET6_PREFIX:$n::1" > "$rd/gateway6"
  echo "52:54:00:77:$hx:02" > "$rd/mac"
}

net_up() {
  local rd=$1 kind=$2 ns gw gw6 mac
  ns=$(cat "$rd/netns"); gw=$(cat "$rd/gateway"); gw6=$(cat "$rd/gateway6"); mac=$(cat "$rd/mac")
  ip netns add "$ns"
  echo "$ns" >> "$rd/netns-created"
  ip -n "$ns" link set lo up
  if [[ $kind == vm ]]; then
    ip -n "$ns" tuntap add dev tap0 mode tap
    ip -n "$ns" addr add "$gw/24" dev tap0
    ip -n "$ns" addr add "$gw6/64" dev tap0 nodad
    ip -n "$ns" link set tap0 up
  else
    # the container gets its own netns; a veth pair joins it to ours (never the root ns)
    ip netns add "$ns-ct"
    echo "$ns-ct" >> "$rd/netns-created"
    ip -n "$ns-ct" link set lo up
    ip -n "$ns" link add vh0 type veth peer name eth0 netns "$ns-ct" address "$mac"
    ip -n "$ns" addr add "$gw/24" dev vh0
    ip -n "$ns" addr add "$gw6/64" dev vh0 nodad
    ip -n "$ns" link set vh0 up
    ip -n "$ns-ct" link set eth0 up
  fi
}

net_down() {
  local rd=$1 ns
  [[ -r $rd/netns-created ]] || return 0
  # reverse order: the container netns first
  while read -r ns; do
    [[ -n $ns && -e /run/netns/$ns ]] && ip netns del "$ns"
  done < <(tac "$rd/netns-created")
  rm -f "$rd/netns-created"
}

# The guest's static network, matched by MAC (systemd-networkd).
net_guest_files() {
  local rd=$1 dest=$2
  mkdir -p "$dest/etc/systemd/network" "$dest/etc/apt"
  cat > "$dest/etc/systemd/network/10-vps.network" <<EOF
[Match]
MACAddress=$(cat "$rd/mac")

[Network]
Address=$(cat "$rd/address")/24
Gateway=$(cat "$rd/gateway")
Address=$(cat "$rd/address6")/64
Gateway=$(cat "$rd/gateway6")
DNS=$(cat "$rd/gateway")
IPv6AcceptRA=no
EOF
  printf 'nameserver %s\n' "$(cat "$rd/gateway")" > "$dest/etc/resolv.conf"
  # the guest's only apt source: our repo inside the test network (see apt_up)
  printf 'deb [trusted=yes] http://%s:8080/ ./\n' "$(cat "$rd/gateway")" > "$dest/etc/apt/sources.list"
}

# Serve the image's apt repo (cpio & co.) on the gateway address, inside the netns.
apt_up() {
  local rd=$1 img=$2
  ln -sfn "$img/apt-repo" "$rd/apt-repo"
  # $rd in the command line lets `down` check the PID is really ours
  ip netns exec "$(cat "$rd/netns")" setsid python3 -m http.server --bind "$(cat "$rd/gateway")" \
    --directory "$rd/apt-repo" 8080 </dev/null >"$rd/apt-http.log" 2>&1 &
  echo $! > "$rd/apt-http.pid"
}
