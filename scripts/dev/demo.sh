#!/usr/bin/env bash
# The demo (npm run demo): the main job's pipeline (probe + plan, as far as it exists)
# against a local target, then stops everything it started.
# Until the QEMU test VPS lands, the target is a real sshd this script starts on loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/dev/deps.sh

work=$(mktemp -d)
sshd_pid=
cleanup() {
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null && wait "$sshd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -C demo-host -f "$work/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C demo-client -f "$work/client_ed25519"
cp "$work/client_ed25519.pub" "$work/authorized_keys"
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
mkdir -p /run/sshd
cat >"$work/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_ed25519
AuthorizedKeysFile $work/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
PermitRootLogin prohibit-password
CFG
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
sshd_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/host_ed25519.pub")" >"$work/known_hosts"

node dist/cli/index.js plan --target "root@127.0.0.1:$port" \
  --ssh-private-key-file "$work/client_ed25519" --known-hosts-file "$work/known_hosts" "$@"
