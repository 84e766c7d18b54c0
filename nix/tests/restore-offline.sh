#!/bin/sh
# Runs the installer's two restore scripts from kexec-installer/module.nix on a
# fixture, with their absolute paths moved into a temp dir:
#   stage 1 (initrd): /vps-nixos-carried -> /sysroot/var/lib/vps-nixos/carried, machine-id
#   stage 2 (vps-nixos-restore.service): host keys, authorized_keys, .network files
#
#   sh nix/tests/restore-offline.sh
#
# Needs nix (2.8 is enough; no nixpkgs) and bash. No root: nothing outside the
# temp dir is touched. The scripts are read from the module, not copied.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
module=$here/../kexec-installer/module.nix

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
mode_of() { stat -c %a "$1"; }

# The module evaluated with stub arguments: only the two script strings are
# forced, and they need nothing from nixpkgs.
script_of() {
  nix --extra-experimental-features nix-command eval --raw --impure --expr "
    let m = import $module { config = { }; lib = { mkIf = _: v: v; }; pkgs = { }; modulesPath = \"\"; };
    in m.config.$1.script"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

stage1=$(script_of boot.initrd.systemd.services.vps-nixos-carry)
stage2=$(script_of systemd.services.vps-nixos-restore)

# What run.sh's cpio unpacks at the initrd's root.
c=$tmp/initrd/vps-nixos-carried
mkdir -p "$c/ssh" "$c/network"
(
  umask 077
  echo "PRIVATE" >"$c/ssh/ssh_host_ed25519_key"
)
echo "ssh-ed25519 AAAAhost fixture" >"$c/ssh/ssh_host_ed25519_key.pub"
chmod 644 "$c/ssh/ssh_host_ed25519_key.pub"
printf 'ssh-ed25519 AAAAuser1 one\nssh-ed25519 AAAAuser2 two\n' >"$c/ssh/authorized_keys"
printf '[Match]\nMACAddress=02:00:00:00:00:01\n' >"$c/network/00-vps-nixos-eth0.network"
echo 0123456789abcdef0123456789abcdef >"$c/machine-id"

# --- stage 1
echo "$stage1" | sed -e "s|/sysroot|$tmp/sysroot|g" -e "s|/vps-nixos-carried|$tmp/initrd/vps-nixos-carried|g" >"$tmp/stage1.sh"
grep -q "$tmp/sysroot" "$tmp/stage1.sh" || fail "stage 1 script has no /sysroot path to move: $stage1"
bash -eu "$tmp/stage1.sh" || fail "stage 1 script failed"
s=$tmp/sysroot/var/lib/vps-nixos/carried
[ "$(mode_of "$tmp/sysroot/var/lib/vps-nixos")" = 700 ] || fail "stage 1: /var/lib/vps-nixos is not 0700"
cmp -s "$s/ssh/ssh_host_ed25519_key" "$c/ssh/ssh_host_ed25519_key" || fail "stage 1: host key not moved"
[ "$(mode_of "$s/ssh/ssh_host_ed25519_key")" = 600 ] || fail "stage 1: host key lost its 0600"
cmp -s "$tmp/sysroot/etc/machine-id" "$c/machine-id" || fail "stage 1: machine-id not in the new root"
echo "ok (stage 1): carried dir in the new root, machine-id in place"

# --- stage 2, with the new root's paths under $tmp/sysroot
r=$tmp/sysroot
mkdir -p "$r/etc/ssh" "$r/root/.ssh"
echo "ssh-ed25519 AAAAuser1 one" >"$r/root/.ssh/authorized_keys" # e.g. from the installer's own config
echo "$stage2" | sed \
  -e "s|/var/lib/vps-nixos/carried|$r/var/lib/vps-nixos/carried|g" \
  -e "s|/etc/ssh|$r/etc/ssh|g" \
  -e "s|/root/|$r/root/|g" \
  -e "s|/etc/systemd/network|$r/etc/systemd/network|g" \
  -e "s|/run/systemd/network|$r/run/systemd/network|g" >"$tmp/stage2.sh"
bash -eu "$tmp/stage2.sh" || fail "stage 2 script failed"
bash -eu "$tmp/stage2.sh" || fail "stage 2 script failed when run again"
cmp -s "$r/etc/ssh/ssh_host_ed25519_key" "$c/ssh/ssh_host_ed25519_key" || fail "stage 2: host key not in /etc/ssh"
[ "$(mode_of "$r/etc/ssh/ssh_host_ed25519_key")" = 600 ] || fail "stage 2: private host key not 0600"
[ "$(mode_of "$r/etc/ssh/ssh_host_ed25519_key.pub")" = 644 ] || fail "stage 2: public host key not 0644"
[ "$(mode_of "$r/root/.ssh")" = 700 ] || fail "stage 2: /root/.ssh not 0700"
[ "$(mode_of "$r/root/.ssh/authorized_keys")" = 600 ] || fail "stage 2: authorized_keys not 0600"
[ "$(wc -l <"$r/root/.ssh/authorized_keys")" -eq 2 ] || fail "stage 2: authorized_keys not merged without duplicates: $(cat "$r/root/.ssh/authorized_keys")"
grep -qx "ssh-ed25519 AAAAuser2 two" "$r/root/.ssh/authorized_keys" || fail "stage 2: carried key missing"
[ -f "$r/etc/systemd/network/00-vps-nixos-eth0.network" ] || fail "stage 2: .network file not installed"
[ "$(mode_of "$r/etc/systemd/network/00-vps-nixos-eth0.network")" = 644 ] || fail "stage 2: .network not 0644"
echo "ok (stage 2, twice): host keys 0600/0644, authorized_keys merged, .network in /etc/systemd/network"
