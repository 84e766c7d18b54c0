#!/bin/bash
# All harness tests, for CI: image (cached by hash), VM, container, kexec + install.
# Prints per-test times; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh
total=$(now)
step() {
  local name=$1 t0; shift
  t0=$(now)
  echo "=== $name" >&2
  if "$@"; then echo "=== $name: ok in $(since "$t0")s" >&2
  else echo "=== $name: FAILED after $(since "$t0")s" >&2; exit 1; fi
}
step image "$VPS" image
step standins "$VPS" standins --ballast 0 --json
step standins-flake ./standins-flake.sh
step vm ./vm.sh 1024
step snapshot ./snapshot.sh
step container ./container.sh
step concurrent ./concurrent.sh
step kexec-install ./kexec-install.sh 1024 0
echo "=== all harness tests passed in $(since "$total")s" >&2
