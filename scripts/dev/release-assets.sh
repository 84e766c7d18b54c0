#!/usr/bin/env bash
# The files of a release, as .github/workflows/release.yml attaches them: the npm package (npm
# pack: what `npm publish` uploads, byte for byte), the kexec installers under the names the
# released-installer manifest downloads (nixos-kexec-installer-SYSTEM.tar.gz) and SHA256SUMS over
# all of them. Optionally the release notes: CHANGELOG.md's section of package.json's version.
# Runs the same on a laptop as on GitHub; prints the assets' paths, one a line.
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: scripts/dev/release-assets.sh --out DIR [--installer [SYSTEM=]PATH ...] [--tag vX.Y.Z]
                                     [--notes FILE] [--base-url URL]
  --out        where the assets go: a new or empty directory
  --installer  a kexec installer tarball (kexec/run, kexec/bzImage, kexec/initrd inside); SYSTEM
               (x86_64-linux, aarch64-linux) is read from its name when not given
  --tag        the release's tag: must be v + package.json's version
  --notes      write CHANGELOG.md's section of this version there (refused when there is none)
  --base-url   where the release's assets are downloaded from: src/release/installers.json must
               say the same when it describes this version
EOF
  exit 2
}
die() {
  echo "release-assets: $*" >&2
  exit 1
}

out=
tag=
notes=
base_url=
installers=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out | --installer | --tag | --notes | --base-url)
      [ $# -ge 2 ] || usage
      case "$1" in
        --out) out=$2 ;;
        --installer) installers+=("$2") ;;
        --tag) tag=$2 ;;
        --notes) notes=$2 ;;
        --base-url) base_url=$2 ;;
      esac
      shift 2
      ;;
    -h | --help) usage ;;
    *) echo "release-assets: unknown argument $1" >&2 && usage ;;
  esac
done
[ -n "$out" ] || usage

# Paths given relative to the caller's directory, before moving to the repository.
abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac }
out=$(abs "$out")
[ -z "$notes" ] || notes=$(abs "$notes")
for i in "${!installers[@]}"; do
  spec=${installers[$i]}
  if [[ "$spec" =~ ^([a-z0-9_]+-linux)=(.+)$ ]]; then
    installers[i]="${BASH_REMATCH[1]}=$(abs "${BASH_REMATCH[2]}")"
  else
    installers[i]=$(abs "$spec")
  fi
done
cd "$(dirname "$0")/../.."

version=$(node -p 'require("./package.json").version')
if [ -n "$tag" ] && [ "$tag" != "v$version" ]; then
  die "the tag is $tag but package.json's version is $version: tag v$version, or set the version and tag again"
fi

if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
  die "$out is not empty: every file in it would be released"
fi
mkdir -p "$out"

if [ -n "$notes" ]; then
  # The section under "## 1.2.3", "## v1.2.3", "## [1.2.3]" or "## 1.2.3 (2026-01-02)", up to the
  # next "## ", without the blank lines around it.
  awk -v v="$version" '
    /^## / {
      if (on) exit
      h = $0
      sub(/^## +/, "", h)
      gsub(/[][]/, "", h)
      sub(/^v/, "", h)
      split(h, w, /[ \t(]/)
      if (w[1] == v) on = 1
      next
    }
    on { lines[++n] = $0 }
    END {
      first = 1
      while (first <= n && lines[first] ~ /^[ \t]*$/) first++
      while (n >= first && lines[n] ~ /^[ \t]*$/) n--
      for (i = first; i <= n; i++) print lines[i]
    }
  ' CHANGELOG.md >"$notes"
  [ -s "$notes" ] || die "CHANGELOG.md has no section for $version (## $version, under Unreleased): write it, commit, tag again"
  echo "release-assets: notes: CHANGELOG.md's section of $version, $(wc -l <"$notes") lines" >&2
fi

# The installers, each under the name the manifest downloads (first: quick to refuse).
declare -A seen=()
for spec in "${installers[@]}"; do
  if [[ "$spec" =~ ^([a-z0-9_]+-linux)=(.+)$ ]]; then
    system=${BASH_REMATCH[1]}
    file=${BASH_REMATCH[2]}
  else
    file=$spec
    [[ "$(basename "$file")" =~ (x86_64|aarch64|i686|riscv64)-linux(\.tar(\.gz|\.zst|\.xz)?)$ ]] ||
      die "--installer $file: its name says no system (…-x86_64-linux.tar.gz): give SYSTEM=$file"
    system=${BASH_REMATCH[1]}-linux
  fi
  [ -f "$file" ] || die "--installer $file: not a file"
  [[ "$file" =~ \.tar(\.gz|\.zst|\.xz)?$ ]] || die "--installer $file: not a tarball (.tar, .tar.gz, .tar.zst, .tar.xz)"
  ext=${BASH_REMATCH[0]}
  [ -z "${seen[$system]:-}" ] || die "two installers for $system: ${seen[$system]} and $file"
  seen[$system]=$file
  members=$(tar -tf "$file") || die "--installer $file: tar cannot list it"
  for m in kexec/run kexec/bzImage kexec/initrd; do
    grep -qxF -e "$m" -e "./$m" <<<"$members" ||
      die "--installer $file holds no $m: not a kexec installer tarball"
  done
  cp "$file" "$out/nixos-kexec-installer-$system$ext"
done

# The npm package. No scripts run (there are none for packing; .npmrc says so too).
pack_log=$(mktemp)
trap 'rm -f "$pack_log"' EXIT
pack_json=$(npm pack --ignore-scripts --json --pack-destination "$out" 2>"$pack_log") || {
  cat "$pack_log" >&2
  die "npm pack failed"
}
# shellcheck disable=SC2016 # JavaScript, not shell
tarball=$(printf '%s' "$pack_json" | node -e '
  const [r] = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const files = r.files.map((f) => f.path);
  const need = ["dist/main/index.js", "dist/post/index.js", "dist/cli/index.js", "action.yml", "LICENSE"];
  const missing = need.filter((f) => !files.includes(f));
  const stray = files.filter((f) => /\.exe$/.test(f) || /^(__tests__|test|bench)\//.test(f));
  const bad = [
    ...(missing.length ? [`lacks ${missing.join(", ")}`] : []),
    ...(stray.length ? [`holds ${stray.join(", ")}`] : []),
  ];
  if (bad.length) {
    console.error(`release-assets: the npm package ${bad.join(" and ")}: see package.json files`);
    process.exit(1);
  }
  console.log(r.filename);
')
[ -f "$out/$tarball" ] || die "npm pack wrote no $tarball"

# The released-installer manifest, when it describes this version, names these very files (a
# run without installers, a dry run, has none to compare).
manifest=src/release/installers.json
if [ -f "$manifest" ] && [ ${#installers[@]} -gt 0 ]; then
  # shellcheck disable=SC2016 # JavaScript, not shell
  MANIFEST=$manifest OUT=$out VERSION=$version BASE_URL=$base_url node -e '
    const fs = require("fs");
    const crypto = require("crypto");
    const { MANIFEST, OUT, VERSION, BASE_URL } = process.env;
    const m = JSON.parse(fs.readFileSync(MANIFEST, "utf8"));
    const entries = Object.entries(m.installers ?? {});
    if (m.version !== VERSION || entries.length === 0) process.exit(0);
    const bad = [];
    if (BASE_URL && m.baseUrl !== BASE_URL.replace(/\/+$/, ""))
      bad.push(`its baseUrl is ${m.baseUrl}, the release is at ${BASE_URL}`);
    for (const [system, i] of entries) {
      const f = `${OUT}/${i.file}`;
      if (!fs.existsSync(f)) { bad.push(`${system}: ${i.file} is not among the assets`); continue; }
      const sha = crypto.createHash("sha256").update(fs.readFileSync(f)).digest("hex");
      if (sha !== i.sha256) bad.push(`${system}: ${i.file} has sha256 ${sha}, the manifest says ${i.sha256}`);
    }
    if (bad.length) {
      console.error(`release-assets: ${MANIFEST} describes ${VERSION} but not these assets:\n  ${bad.join("\n  ")}`);
      process.exit(1);
    }
    console.error(`release-assets: ${MANIFEST} names these installers (${entries.map(([s]) => s).join(", ")})`);
  '
fi

sums=$(cd "$out" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%P\0' | sort -z |
  xargs -0 sha256sum --)
printf '%s\n' "$sums" >"$out/SHA256SUMS"
(cd "$out" && sha256sum --quiet -c SHA256SUMS) || die "SHA256SUMS does not verify"
echo "release-assets: $(($(wc -l <"$out/SHA256SUMS") + 1)) assets in $out" >&2
find "$out" -maxdepth 1 -type f | sort
