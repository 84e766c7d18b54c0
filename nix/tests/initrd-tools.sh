#!/bin/sh
# Is every command our remote scripts and the disk script run in the installer
# in its initrd? Unpacks INITRD (zstd, xz, gzip or plain cpio) into a temp dir
# and looks up each command of TOOLS (scripts/installer-tools.txt: one per
# line, `A|B` means either, # comments) as /bin/NAME or /sbin/NAME, following
# symlinks inside the unpacked tree (the initrd's /bin is a symlink into its own
# /nix/store, and so are the programs in it), to an executable file.
#
#   sh nix/tests/initrd-tools.sh INITRD TOOLS [FORBIDDEN...]
#
# FORBIDDEN: store path names (e.g. icu4c) that must not be in the initrd.
# Prints "ok: …" and exits 0, or names what is missing and exits 1.
# Needs cpio, and zstd/xz/gzip for a compressed initrd. No root.
set -eu

initrd=${1:?usage: initrd-tools.sh INITRD TOOLS [FORBIDDEN...]}
tools=${2:?usage: initrd-tools.sh INITRD TOOLS [FORBIDDEN...]}
shift 2
# Store path names that must not be in the initrd (the loop below reuses "$@").
forbid=$*

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
[ -f "$initrd" ] || fail "no initrd at $initrd"
[ -f "$tools" ] || fail "no tools list at $tools"

tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
root=$tmp/root
mkdir "$root"

decompress() {
  case "$(od -An -tx1 -N4 "$1" | tr -d ' \n')" in
    28b52ffd) zstd -dc "$1" ;;
    fd377a58) xz -dc "$1" ;;
    1f8b*) gzip -dc "$1" ;;
    *) cat "$1" ;;
  esac
}
decompress "$initrd" >"$tmp/initrd.cpio" || fail "cannot decompress $initrd"
(cd "$root" && cpio -idm --quiet --no-absolute-filenames <"$tmp/initrd.cpio") ||
  fail "cannot unpack $initrd"
rm -f "$tmp/initrd.cpio"

# resolve PATH: the path inside $root that PATH leads to, symlinks resolved
# against $root (an absolute target means $root/target, as in the initrd).
resolve() {
  r_rest=${1#/}
  r_out=
  r_hops=0
  while [ -n "$r_rest" ]; do
    case $r_rest in
      */*)
        r_comp=${r_rest%%/*}
        r_rest=${r_rest#*/}
        ;;
      *)
        r_comp=$r_rest
        r_rest=
        ;;
    esac
    case $r_comp in
      '' | .) continue ;;
      ..)
        r_out=${r_out%/*}
        continue
        ;;
    esac
    if [ -L "$root$r_out/$r_comp" ]; then
      r_hops=$((r_hops + 1))
      [ "$r_hops" -le 40 ] || return 1
      r_target=$(readlink "$root$r_out/$r_comp")
      case $r_target in
        /*)
          r_out=
          r_target=${r_target#/}
          ;;
      esac
      r_rest=$r_target${r_rest:+/$r_rest}
    else
      r_out=$r_out/$r_comp
      [ -e "$root$r_out" ] || return 1
    fi
  done
  printf '%s\n' "$r_out"
}

# found NAME: /bin/NAME or /sbin/NAME leads to an executable file in the initrd.
found() {
  for f_dir in bin sbin; do
    if f_path=$(resolve "/$f_dir/$1") && [ -f "$root$f_path" ] && [ -x "$root$f_path" ]; then
      return 0
    fi
  done
  return 1
}

missing=
checked=0
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%%#*}
  # shellcheck disable=SC2086 # word splitting trims the blanks
  set -- $line
  [ $# -gt 0 ] || continue
  want=$1
  checked=$((checked + 1))
  ok=
  rest=$want
  while [ -n "$rest" ]; do
    alt=${rest%%|*}
    case $rest in *'|'*) rest=${rest#*|} ;; *) rest= ;; esac
    if [ -n "$alt" ] && found "$alt"; then
      ok=1
      break
    fi
  done
  [ -n "$ok" ] || missing="$missing $want"
done <"$tools"
[ "$checked" -gt 0 ] || fail "$tools lists no commands"

forbidden=
for name in $forbid; do
  for p in "$root"/nix/store/*-"$name"-* "$root"/nix/store/*-"$name"; do
    if [ -e "$p" ]; then forbidden="$forbidden ${p#"$root"}"; fi
  done
done

if [ -n "$missing" ] || [ -n "$forbidden" ]; then
  if [ -n "$missing" ]; then echo "not in the initrd's /bin or /sbin:$missing" >&2; fi
  if [ -n "$forbidden" ]; then echo "in the initrd but must not be:$forbidden" >&2; fi
  exit 1
fi
echo "ok: all $checked commands of $(basename "$tools") are in the initrd${forbid:+, and none of: $forbid}"
