#!/bin/sh
# Runs the installer's carry unit (vps-nixos-carry in kexec-installer/module.nix:
# the one step that puts what kexec/run carried in place, in the initrd, before
# networkd and sshd) on a fixture, with its absolute paths moved into a temp
# dir; then nix/tests/initrd-tools.sh on fixture initrds.
#
#   sh nix/tests/restore-offline.sh
#
# Needs nix (2.8 is enough; no nixpkgs), bash, cpio and gzip. No root: nothing
# outside the temp dir is touched. The script is read from the module, not copied.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
module=$here/../kexec-installer/module.nix

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
mode_of() { stat -c %a "$1"; }

# The module called with stub arguments: only the script string is forced, and
# it needs nothing from nixpkgs.
script_of() {
  nix --extra-experimental-features nix-command eval --raw --impure --expr "
    let m = import $module { config = { }; lib = { }; pkgs = { }; };
    in m.config.$1.script"
}

tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM

carry=$(script_of boot.initrd.systemd.services.vps-nixos-carry)

# What run's cpio unpacks at the initrd's root.
c=$tmp/initrd/vps-nixos-carried
mkdir -p "$c/ssh" "$c/network"
(
  umask 077
  echo "PRIVATE" >"$c/ssh/ssh_host_ed25519_key"
  printf '[Match]\nMACAddress=02:00:00:00:00:01\nType=ether\n' >"$c/network/00-vps-nixos-eth0.network"
  printf '[Match]\nName=eth0.4000\nKind=vlan\n' >"$c/network/00-vps-nixos-eth0.4000.network"
  printf '[NetDev]\nName=eth0.4000\nKind=vlan\n\n[VLAN]\nId=4000\n' >"$c/network/00-vps-nixos-eth0.4000.netdev"
)
echo "ssh-ed25519 AAAAhost fixture" >"$c/ssh/ssh_host_ed25519_key.pub"
chmod 644 "$c/ssh/ssh_host_ed25519_key.pub"
printf 'ssh-ed25519 AAAAuser1 one\nssh-ed25519 AAAAuser2 two\nssh-ed25519 AAAAbuilt-in operator\n' >"$c/ssh/authorized_keys"
echo 0123456789abcdef0123456789abcdef >"$c/machine-id"
chmod 444 "$c/machine-id"

# The initrd's own files: authorized_keys.d/root is a symlink to a read-only
# store copy of the keys the image was built with (no trailing newline).
r=$tmp/root
mkdir -p "$r/etc/ssh/authorized_keys.d" "$r/nix/store/x-authorized-keys" "$tmp/bin"
printf '# vps-nixos: the keys kexec/run carried are added at boot\nssh-ed25519 AAAAbuilt-in operator' \
  >"$r/nix/store/x-authorized-keys/root"
chmod 444 "$r/nix/store/x-authorized-keys/root"
chmod 555 "$r/nix/store/x-authorized-keys"
ln -s "$r/nix/store/x-authorized-keys/root" "$r/etc/ssh/authorized_keys.d/root"
# ssh-keygen -A, recorded: it must run only when nothing was carried.
cat >"$tmp/bin/ssh-keygen" <<EOF
#!/bin/sh
echo "\$*" >>"$tmp/ssh-keygen.calls"
echo GENERATED >"$r/etc/ssh/ssh_host_ed25519_key"
EOF
chmod +x "$tmp/bin/ssh-keygen"

echo "$carry" | sed \
  -e "s|/vps-nixos-carried|$tmp/initrd/vps-nixos-carried|g" \
  -e "s|/var/lib/vps-nixos|$r/var/lib/vps-nixos|g" \
  -e "s|/etc/ssh|$r/etc/ssh|g" \
  -e "s|/run/systemd/network|$r/run/systemd/network|g" >"$tmp/carry.sh"
grep -q "$r/etc/ssh/authorized_keys.d/root" "$tmp/carry.sh" || fail "the carry script has no authorized_keys path: $carry"

run_carry() { PATH=$tmp/bin:$PATH bash -e "$tmp/carry.sh"; }
run_carry || fail "the carry script failed"
run_carry || fail "the carry script failed when run again"

ak=$r/etc/ssh/authorized_keys.d/root
cmp -s "$r/etc/ssh/ssh_host_ed25519_key" "$c/ssh/ssh_host_ed25519_key" || fail "host key not in /etc/ssh"
[ "$(mode_of "$r/etc/ssh/ssh_host_ed25519_key")" = 600 ] || fail "private host key not 0600"
[ "$(mode_of "$r/etc/ssh/ssh_host_ed25519_key.pub")" = 644 ] || fail "public host key not 0644"
[ ! -L "$ak" ] || fail "authorized_keys.d/root is still the image's symlink"
[ "$(mode_of "$ak")" = 600 ] || fail "authorized_keys.d/root not 0600"
[ "$(wc -l <"$ak")" -eq 3 ] || fail "authorized keys not merged without duplicates: $(cat "$ak")"
grep -qx "ssh-ed25519 AAAAbuilt-in operator" "$ak" || fail "the image's own key was lost"
grep -qx "ssh-ed25519 AAAAuser2 two" "$ak" || fail "carried key missing"
if grep -q '^#' "$ak"; then fail "the placeholder comment was kept"; fi
[ "$(wc -l <"$r/nix/store/x-authorized-keys/root")" -eq 1 ] || fail "the store copy was written to"
for f in 00-vps-nixos-eth0.network 00-vps-nixos-eth0.4000.network 00-vps-nixos-eth0.4000.netdev; do
  [ -f "$r/run/systemd/network/$f" ] || fail "$f not in /run/systemd/network"
  [ "$(mode_of "$r/run/systemd/network/$f")" = 644 ] || fail "$f not 0644"
done
[ "$(mode_of "$r/var/lib/vps-nixos")" = 700 ] || fail "/var/lib/vps-nixos is not 0700"
cmp -s "$r/var/lib/vps-nixos/carried/machine-id" "$c/machine-id" ||
  fail "machine-id not kept for the install step in /var/lib/vps-nixos/carried"
[ ! -e "$tmp/ssh-keygen.calls" ] || fail "ssh-keygen ran although host keys were carried"
echo "ok (stage 2, twice): the carry unit, run twice: host keys 0600/0644," \
  "authorized_keys = the image's + the carried (a file now), .network/.netdev in /run/systemd/network," \
  "/var/lib/vps-nixos/carried 0700"

# Nothing carried (run was not used, or the old host had no host keys): new keys.
rm -rf "$tmp/initrd" "$r/etc/ssh"/ssh_host_*
run_carry || fail "the carry script failed with nothing carried"
[ "$(cat "$tmp/ssh-keygen.calls" 2>/dev/null)" = "-A" ] || fail "no ssh-keygen -A without carried host keys"
run_carry || fail "the carry script failed the second time with nothing carried"
[ "$(wc -l <"$tmp/ssh-keygen.calls")" -eq 1 ] || fail "ssh-keygen ran again although a host key exists"
echo "ok (nothing carried): ssh-keygen -A once"

# --- nix/tests/initrd-tools.sh on fixture initrds ---------------------------------
# Laid out as make-initrd-ng lays out a systemd initrd: /bin is a symlink into the
# initrd's own /nix/store, to a directory of symlinks to the programs.
tools=$here/../../scripts/installer-tools.txt
if [ ! -f "$tools" ]; then
  echo "skip (initrd tools): no $tools"
  exit 0
fi
command -v cpio >/dev/null 2>&1 || fail "cpio is missing"
i=$tmp/initrd-fixture
mkdir -p "$i/nix/store/h1-tools/bin" "$i/nix/store/h2-initrd-bin-env/bin"
sed -e 's/#.*//' "$tools" | while read -r want _; do
  [ -n "$want" ] || continue
  first=${want%%|*}
  printf '#!/bin/sh\n' >"$i/nix/store/h1-tools/bin/$first"
  chmod 755 "$i/nix/store/h1-tools/bin/$first"
  ln -s "/nix/store/h1-tools/bin/$first" "$i/nix/store/h2-initrd-bin-env/bin/$first"
done
ln -s /nix/store/h2-initrd-bin-env/bin "$i/bin"
ln -s /nix/store/h2-initrd-bin-env/bin "$i/sbin"
pack() { (cd "$i" && find . -print | sort | cpio -o -H newc --quiet -R 0:0) | gzip -n >"$1"; }
check_tools() { sh "$here/initrd-tools.sh" "$@" >"$tmp/tools.out" 2>&1; }

pack "$tmp/good.img"
check_tools "$tmp/good.img" "$tools" icu4c || fail "initrd-tools.sh on a complete initrd: $(cat "$tmp/tools.out")"
# A program whose symlink points outside the initrd is missing there, even if the
# build machine has that path.
rm "$i/nix/store/h2-initrd-bin-env/bin/jq"
ln -s /usr/bin/env "$i/nix/store/h2-initrd-bin-env/bin/jq"
rm "$i/nix/store/h1-tools/bin/sgdisk"
printf '#!/bin/sh\n' >"$i/nix/store/h1-tools/bin/sfdisk"
chmod 755 "$i/nix/store/h1-tools/bin/sfdisk"
ln -s /nix/store/h1-tools/bin/sfdisk "$i/nix/store/h2-initrd-bin-env/bin/sfdisk"
mkdir "$i/nix/store/h3-icu4c-76.1"
pack "$tmp/bad.img"
if check_tools "$tmp/bad.img" "$tools" icu4c; then fail "initrd-tools.sh passed an initrd without jq"; fi
grep -q "^not in the initrd's /bin or /sbin: jq$" "$tmp/tools.out" ||
  fail "initrd-tools.sh did not name exactly jq (sgdisk|sfdisk has sfdisk): $(cat "$tmp/tools.out")"
grep -q "must not be: /nix/store/h3-icu4c-76.1" "$tmp/tools.out" || fail "initrd-tools.sh missed icu4c: $(cat "$tmp/tools.out")"
if command -v zstd >/dev/null 2>&1; then
  (cd "$i" && find . -print | sort | cpio -o -H newc --quiet -R 0:0) | zstd -q -19 >"$tmp/bad.zst"
  if check_tools "$tmp/bad.zst" "$tools"; then fail "initrd-tools.sh passed a zstd initrd without jq"; fi
  grep -q ": jq$" "$tmp/tools.out" || fail "initrd-tools.sh on zstd: $(cat "$tmp/tools.out")"
fi
echo "ok (initrd tools): complete initrd passes; a missing command, a symlink out of the initrd and a forbidden path fail"
