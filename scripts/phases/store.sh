#!/bin/sh
# Store operations in the kexec installer, which has no Nix of its own: the closure is unpacked
# under ROOT (the new disk, /mnt) and the closure's OWN Nix does the rest in a chroot of ROOT,
# as on an installed system. The runner decides; this script only reports and acts.
# Usage (stdin as said):
#   store.sh invalid ROOT NIX      stdin: store paths. Prints those not valid in ROOT's store: all
#                                  of them while NIX is not there and registered yet.
#   store.sh clear ROOT            stdin: store paths. Removes what an interrupted copy left of them.
#   store.sh receive ROOT          stdin: a zstd-compressed tar of store paths, unpacked under ROOT.
#   store.sh hash ROOT NIX         stdin: store paths. Prints their NAR sha256 (base16), one a line,
#                                  in order, as NIX computes it (the runner compares them).
#   store.sh register ROOT NIX     stdin: `nix-store --dump-db` of hash-checked paths; registers them.
#   store.sh substitute ROOT NIX [URLS KEYS]  stdin: store paths. NIX fetches what the binary
#                                  caches have (its defaults, plus URLS/KEYS); prints nothing.
#   store.sh check ROOT            stdin: `sha256sum` lines (paths relative to ROOT). Prints
#                                  `ok=yes|no` and the first mismatches (files sent without Nix).
export LC_ALL=C
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
action=${1:?action}
root=${2:?root}
nix=${3:-}
kv() { printf '%s=%s\n' "$1" "$2"; }
fail() { kv error "$1"; exit 1; }
cd "$root" || fail "cannot enter $root"

# The closure's Nix, in a chroot of ROOT: no nixbld group exists there before the activation,
# and HOME is wherever the chroot has one.
nix_ok() { [ -n "$nix" ] && [ -x "$root$nix/bin/nix-store" ]; }
in_root() {
  for d in dev proc; do
    mkdir -p "$root/$d"
    mountpoint -q "$root/$d" && continue
    # rslave: unmounting the copy must not propagate back and take the installer's /dev/pts along
    if [ $d = dev ]; then
      mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
    else
      mount -t proc proc "$root/proc"
    fi
    unmount="$unmount $root/$d"
  done
  mkdir -p "$root/root" "$root/tmp" "$root/etc"
  HOME=/root TMPDIR=/tmp NIX_CONFIG="build-users-group =" chroot "$root" "$@"
}
unmount=
# shellcheck disable=SC2154 # m is the trap's own loop variable
trap 'for m in $unmount; do umount -lR "$m" 2>/dev/null; done' EXIT
# The path lists go on one command line (a few hundred KB for thousands of paths).
# shellcheck disable=SC2046

case $action in
  invalid)
    if nix_ok && [ -e "$root/nix/var/nix/db/db.sqlite" ]; then
      in_root "$nix/bin/nix-store" --check-validity --print-invalid $(cat) ||
        fail "the closure's nix-store cannot read ROOT's store"
    else
      cat
    fi
    ;;
  clear)
    while read -r p; do
      if [ -e ".$p" ] || [ -L ".$p" ]; then chmod -R u+w ".$p" 2>/dev/null; rm -rf ".$p"; fi
    done
    ;;
  receive)
    mkdir -p nix/store
    zstd -dc | tar -C "$root" --no-same-owner -xf - || fail "cannot unpack the closure under $root"
    ;;
  hash)
    nix_ok || fail "$nix/bin/nix-store is not under $root"
    # One process for the whole list (nix hash path takes many), in the order given.
    in_root "$nix/bin/nix" --extra-experimental-features nix-command hash path --type sha256 --base16 $(cat) ||
      fail "the closure's nix could not hash the paths"
    ;;
  register)
    nix_ok || fail "$nix/bin/nix-store is not under $root"
    in_root "$nix/bin/nix-store" --load-db || fail "nix-store --load-db failed"
    ;;
  substitute)
    nix_ok || fail "$nix/bin/nix-store is not under $root"
    extra=
    if [ -n "${4:-}" ]; then
      extra="--option extra-substituters $4 --option extra-trusted-public-keys ${5:-}"
    fi
    # the installer's DNS, bound over the new root's as nixos-enter does
    if [ -e /etc/resolv.conf ] && [ ! -L "$root/etc/resolv.conf" ]; then
      mkdir -p "$root/etc" && touch "$root/etc/resolv.conf" &&
        mount --bind /etc/resolv.conf "$root/etc/resolv.conf" && unmount="$root/etc/resolv.conf $unmount"
    fi
    # keep-going: fetch what the caches have, even when some paths (ours) are in none of them.
    # Two attempts a download, not Nix's five with back-off: what the caches do not give, the
    # runner sends, so a cache the target cannot reach costs seconds, not tens of them.
    # shellcheck disable=SC2086 # word splitting of $extra and of the path list is meant
    in_root "$nix/bin/nix-store" --realise --option keep-going true --option connect-timeout 5 \
      --option download-attempts 2 --option fallback false $extra $(cat) >/dev/null 2>&1 || :
    ;;
  check)
    # Files with a patched copy bind-mounted over them (disko-patch.sh, after they were checked)
    # are left out: the mount hides the original.
    mounted=$(awk '{ print $5 }' /proc/self/mountinfo | grep '^/nix/store/' || :)
    bad=$(awk -v root="${root%/}" -v m="$mounted" '
      BEGIN { n = split(m, a, "\n"); for (i = 1; i <= n; i++) skip[a[i]] = 1 }
      { p = substr($0, 67); sub(/^\./, "", p); if (!((root p) in skip)) print }' |
      sha256sum -c --quiet 2>/dev/null | head -n 5 | tr '\n' ' ')
    if [ -z "$bad" ]; then kv ok yes; else kv ok no; kv bad "$bad"; fi
    ;;
  *) fail "usage: store.sh invalid|clear|receive|hash|register|substitute|check ROOT [NIX]" ;;
esac
