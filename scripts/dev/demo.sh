#!/usr/bin/env bash
# The demo (npm run demo): boots the local 1 GB test VPS (QEMU, Debian, static IP in a network
# namespace of its own, /tmp a 64 MB tmpfs, no swap), runs the pipeline that exists so far
# against it — pinned-SSH probe, plan, the host module generated from the facts, then the whole
# bootstrap (prep → kexec → installer prep → partition + install → reboot) with the stand-ins of
# test/STANDINS.md (ballast 0) — and stops it. DEMO_BOOTSTRAP=0 stops after the host module.
# The first run builds the VPS image from Debian packages (a few minutes); later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/dev/deps.sh

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/vps-nixos-demo-XXXX")
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() { test/vps/vps down --run-dir "$run_dir" >&2 || true; }
trap cleanup EXIT

test/vps/vps up --ram "${VPS_RAM:-1024}" --run-dir "$run_dir" --json >"$run_dir/vps.json"
field() { node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1]))[process.argv[2]])' "$run_dir/vps.json" "$1"; }
target=$(field target)
key=$(field sshPrivateKeyFile)
known_hosts=$(field knownHostsFile)

# The CLI runs inside the VPS's network namespace: nothing outside it is reachable from there.
in_vps() { test/vps/vps exec --run-dir "$run_dir" -- "$@"; }
in_vps node dist/cli/index.js plan --target "$target" \
  --ssh-private-key-file "$key" --known-hosts-file "$known_hosts" "$@"
in_vps node dist/cli/index.js probe --target "$target" \
  --ssh-private-key-file "$key" --known-hosts-file "$known_hosts" --json >"$run_dir/facts.json"
echo "── host module generated from the probe (vps-nixos facts-to-nix):"
node dist/cli/index.js facts-to-nix --facts "$run_dir/facts.json" --host "$target"

if [[ ${DEMO_BOOTSTRAP:-1} == 1 ]]; then
  standins=$(test/vps/vps standins --ballast 0 --json | tail -n 1)
  sfield() { node -e 'console.log(JSON.parse(process.argv[1])[process.argv[2]])' "$standins" "$1"; }
  echo "── bootstrap: WIPES the test VPS's /dev/vda (confirm-wipe) and installs the stand-in system"
  in_vps node dist/cli/index.js bootstrap --target "$target" \
    --ssh-private-key-file "$key" --known-hosts-file "$known_hosts" --confirm-wipe /dev/vda \
    --kexec-tarball "$(sfield kexecTarball)" --toplevel "$(sfield toplevel)" \
    --disk-script "$(sfield diskScript)"
fi
