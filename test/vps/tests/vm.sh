#!/bin/bash
# Boot the VM VPS, check it looks like a cheap VPS and answers with the pinned key; then down, clean.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ram=${1:-1024}
j=$("$VPS" up --ram "$ram" --json)
rd=$(json_get "$j" runDir)
trap '"$VPS" down --run-dir "$rd" >/dev/null 2>&1 || true' EXIT
echo "vm: boot-to-ssh $(json_get "$j" bootToSshSeconds)s at ${ram} MiB" >&2
expect_eq "$(json_get "$j" disk)" /dev/vda disk
expect_eq "$(g "$rd" systemd-detect-virt)" qemu systemd-detect-virt
expect_eq "$(g "$rd" 'swapon --noheadings --show | wc -l')" 0 "swap devices"
expect_eq "$(g "$rd" df -h --output=fstype,size /tmp | tail -1 | tr -s ' ')" "tmpfs 64M" "/tmp"
expect_eq "$(g "$rd" 'command -v cpio || echo missing')" missing "cpio before prep"
expect_eq "$(g "$rd" 'lsblk -dno NAME | grep -c vd')" 1 "virtio disks"
# IPv6 too, same pinned key (known_hosts has both addresses)
expect_eq "$(ip netns exec "$(json_get "$j" netns)" ssh "${SSH_OPTS[@]}" -i "$rd/client_ed25519" \
  -o UserKnownHostsFile="$rd/known_hosts" "root@$(json_get "$j" address6)" echo v6)" v6 "ssh over IPv6"
# a wrong pin must be refused
bad=$(mktemp); echo "$(json_get "$j" address) $(cut -d' ' -f1,2 "$rd/client_ed25519.pub")" > "$bad"
if ip netns exec "$(json_get "$j" netns)" ssh "${SSH_OPTS[@]}" -i "$rd/client_ed25519" \
  -o UserKnownHostsFile="$bad" "root@$(json_get "$j" address)" true 2>/dev/null; then fail "accepted a wrong host key"; fi
rm -f "$bad"; ok "wrong host key refused"
# the test apt repo is the only source and serves cpio
g "$rd" 'apt-get -q update >/dev/null 2>&1 && apt-get install -y -q cpio >/dev/null 2>&1'
expect_eq "$(g "$rd" 'command -v cpio')" /usr/bin/cpio "cpio after apt-get install"
g "$rd" 'free -m' >&2
"$VPS" down --run-dir "$rd"
trap - EXIT
assert_clean "$rd"
