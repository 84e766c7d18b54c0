#!/usr/bin/env bash
# Names the repository's owner wherever the project refers to itself, so that what a release tag
# holds works for whoever publishes it: the action and reusable-workflow references in the
# workflows, the examples and the README, the npx and flake references, package.json's
# repository (npm checks it against the provenance) and the owner `vps-nixos init` writes into
# the workflows it generates (PROJECT_REPO in src/init/files.ts and in the bundle dist/cli: the
# same literal in both, so dist/ stays what `npm run build` makes).
#
# A fresh copy names the placeholder owner `org`; a fork names the owner it was forked from.
# Run it once and commit the result; the release workflow runs it with --check on every tag.
#
# A reference is the owner, a slash and vps-nixos, followed by @ or /.github/workflows/; or
# after github: or github.com/; or in PROJECT_REPO = '…'; and the placeholder owner's anywhere.
# Paths such as /var/lib/vps-nixos are none of these. Prints the files it changed. __tests__/ is
# left alone: its data names owners on purpose, and users never run it.
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: scripts/dev/set-owner.sh [--check] [--dir DIR] OWNER
  --check  change nothing: print every reference that names another owner, exit 1 if any
  --dir    the tree to work on (default: this repository): its tracked and untracked files
           (git ls-files) in a git work tree, else every file below it but .git/ and node_modules/
EOF
  exit 2
}

check=0
dir=$(cd "$(dirname "$0")/../.." && pwd)
owner=
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check=1 ;;
    --dir)
      [ $# -ge 2 ] || usage
      dir=$2
      shift
      ;;
    -h | --help) usage ;;
    -*) echo "set-owner: unknown option $1" >&2 && usage ;;
    *)
      [ -z "$owner" ] || usage
      owner=$1
      ;;
  esac
  shift
done
[ -n "$owner" ] || usage
# GitHub's rule for user and organisation names.
if ! [[ "$owner" =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?$ ]] || [[ "$owner" == *--* ]]; then
  echo "set-owner: '$owner' is not a GitHub user or organisation name" >&2
  exit 2
fi
dir=$(cd "$dir" && pwd -P)
self=$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")

list_files() {
  if [ "$(git -C "$dir" rev-parse --show-toplevel 2>/dev/null)" = "$dir" ]; then
    git -C "$dir" ls-files -z --cached --others --exclude-standard
  else
    (cd "$dir" && find . \( -name .git -o -name node_modules \) -prune -o -type f -print0) |
      sed -z 's|^\./||'
  fi
}

# Text files only (grep -I), this script left out (its own text describes the patterns).
files=$(mktemp)
trap 'rm -f "$files"' EXIT
list_files | sort -zu | while IFS= read -r -d '' f; do
  case "$f" in __tests__/*) continue ;; esac
  p=$dir/$f
  if [ -f "$p" ] && [ ! -L "$p" ] && [ "$p" != "$self" ] && grep -Iq . "$p" 2>/dev/null; then
    printf '%s\0' "$f"
  fi
done >"$files"

# shellcheck disable=SC2016 # Perl, not shell
cd "$dir" && OWNER=$owner CHECK=$check perl -0 -e '
  use strict;
  use warnings;
  my ($owner, $check) = ($ENV{OWNER}, $ENV{CHECK});
  my $id = qr/[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/;
  my $ref = qr{
      (?: (?<=github:) | (?<=github\.com/) | (?<=PROJECT_REPO\ =\ \x27) | (?<=PROJECT_REPO\ =\ ") )
        ($id)/vps-nixos(?![\w-])
    | (?<![\w.-]) ($id)/vps-nixos(?=@|/\.github/workflows/)
    | (?<![\w.-]) (org)/vps-nixos(?![\w-])
  }x;
  my @names = split /\0/, do { local $/; <STDIN> } // "";
  my ($changed, $wrong) = (0, 0);
  for my $name (@names) {
    open(my $in, "<", $name) or die "set-owner: $name: $!\n";
    my $text = do { local $/; <$in> };
    close $in;
    next if index($text, "/vps-nixos") < 0;
    my @lines = split /\n/, $text, -1;
    my $n = 0;
    for my $line (@lines) {
      $n++;
      # Most lines of the bundles are long and name no reference: skip them cheaply.
      next if index($line, "/vps-nixos") < 0;
      if ($check) {
        while ($line =~ /$ref/g) {
          my $found = $1 // $2 // $3;
          next if lc $found eq lc $owner;
          print "$name:$n: names $found, not $owner: $line\n";
          $wrong++;
        }
      } else {
        $line =~ s/$ref/$owner\/vps-nixos/g;
      }
    }
    next if $check;
    my $new = join "\n", @lines;
    next if $new eq $text;
    open(my $out, ">", $name) or die "set-owner: $name: $!\n";
    print $out $new;
    close $out or die "set-owner: $name: $!\n";
    print "$name\n";
    $changed++;
  }
  if ($check) {
    if ($wrong) {
      print STDERR "set-owner: $wrong reference(s) name another owner than $owner: run scripts/dev/set-owner.sh $owner and commit\n";
      exit 1;
    }
    print STDERR "set-owner: every reference names $owner\n";
  } else {
    print STDERR "set-owner: $changed file(s) now name $owner\n";
  }
' <"$files"
