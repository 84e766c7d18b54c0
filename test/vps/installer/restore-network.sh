#!/bin/sh
# Runs IN THE INSTALLER: turns the network state carried by kexec/run (plain `ip` output in
# /etc/vps-nixos/carried/) into MAC-matched systemd-networkd files, like nixos-images' restore_routes.
# Keeps global addresses and routes with a gateway or an explicit static proto; drops kernel/dhcp/ra routes.
set -eu
c=/etc/vps-nixos/carried
[ -r "$c/addrs" ] || exit 0
mkdir -p /etc/systemd/network
[ -s "$c/resolv.conf" ] && cp "$c/resolv.conf" /etc/resolv.conf
dns=$(awk '$1 == "nameserver" { print "DNS=" $2 }' "$c/resolv.conf" 2>/dev/null || true)
awk '$2 != "lo" && / scope global / { print $2 }' "$c/addrs" | sort -u | while read -r dev; do
  mac=$(awk -v d="$dev" '{ n = $2; sub(/:$/, "", n); sub(/@.*/, "", n) } n == d {
          for (i = 1; i < NF; i++) if ($i == "link/ether") print $(i + 1) }' "$c/links")
  [ -n "$mac" ] || continue
  f=/etc/systemd/network/00-carried-$dev.network
  {
    printf '[Match]\nMACAddress=%s\n\n[Network]\nIPv6AcceptRA=no\nLinkLocalAddressing=ipv6\n' "$mac"
    awk -v d="$dev" '$2 == d && / scope global / { print "Address=" $4 }' "$c/addrs"
    [ -n "$dns" ] && printf '%s\n' "$dns"
    cat "$c/routes4" "$c/routes6" 2>/dev/null | awk -v d="$dev" '
      / proto (kernel|dhcp|ra) / { next }
      { dst = $1; via = ""; dev = ""
        for (i = 2; i < NF; i++) { if ($i == "via") via = $(i + 1); if ($i == "dev") dev = $(i + 1) } }
      dev != d { next }
      { if (dst == "default") dst = (via ~ /:/) ? "::/0" : "0.0.0.0/0"
        printf "\n[Route]\nDestination=%s\n", dst
        if (via != "") printf "Gateway=%s\n", via; else print "Scope=link" }'
  } > "$f"
done
