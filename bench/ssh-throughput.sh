#!/bin/bash
# Upload throughput per SSH cipher, ssh2 (our session) vs the OpenSSH client, to a loopback sshd
# with and without AES-NI (issue 17). Compiles bench/ssh-throughput.ts with the project's tsc.
# Usage: bench/ssh-throughput.sh [MIB] [RUNS]   (default 128 MiB per upload, median of 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /tmp/vps-nixos-ssh-bench.XXXXXX)
trap 'rm -rf "$out"' EXIT
"$root/node_modules/.bin/tsc" --outDir "$out" --rootDir "$root" --module commonjs --target es2022 \
  --moduleResolution node --esModuleInterop --skipLibCheck --strict --types node \
  "$root/bench/ssh-throughput.ts"
ln -s "$root/node_modules" "$out/node_modules"
node "$out/bench/ssh-throughput.js" "${1:-128}" "${2:-3}"
