#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine with Node and npm:
# Debian packages (only those missing) and the npm dependencies (when package-lock.json changed).
set -euo pipefail
cd "$(dirname "$0")/../.."

apt_packages() {
  # The harness of the local test VPS lists its own packages.
  cat scripts/dev/apt-packages.txt
  [ -f test/vps/apt-packages.txt ] && cat test/vps/apt-packages.txt
  true
}

missing=()
while read -r pkg; do
  [ -n "$pkg" ] || continue
  case "$pkg" in \#*) continue ;; esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done < <(apt_packages | sort -u)

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing Debian packages: ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

stamp=node_modules/.package-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "deps: npm ci" >&2
  # Run from `npm run`, npm exports its config as npm_config_* (some empty), which makes
  # `npm ci` misjudge the lock file; the user's own npmrc still applies without them.
  mapfile -t unset_npm < <(env | sed -n 's/^\(npm_config_[^=]*\)=.*/-u\n\1/p')
  env "${unset_npm[@]}" npm ci --no-audit --no-fund >&2
  echo "$want" >"$stamp"
fi
