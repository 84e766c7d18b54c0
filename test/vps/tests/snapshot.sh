#!/bin/bash
# QEMU snapshots for fast tests: savevm, change the guest, loadvm, the change is gone.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
j=$("$VPS" up --json)
rd=$(json_get "$j" runDir)
trap '"$VPS" down --run-dir "$rd" >/dev/null 2>&1 || true' EXIT
g "$rd" 'echo before > /root/marker && sync'
t0=$(now); "$VPS" savevm clean --run-dir "$rd" >&2; echo "savevm: $(since "$t0")s" >&2
g "$rd" 'echo after > /root/marker && rm -rf /usr/share/zoneinfo && sync'
t0=$(now); "$VPS" loadvm clean --run-dir "$rd" >&2
wait_for "$rd" 60 before 'cat /root/marker' >/dev/null
echo "loadvm + ssh answering: $(since "$t0")s" >&2
expect_eq "$(g "$rd" 'test -d /usr/share/zoneinfo && echo restored')" restored "disk after loadvm"
"$VPS" down --run-dir "$rd"
trap - EXIT
assert_clean "$rd"
