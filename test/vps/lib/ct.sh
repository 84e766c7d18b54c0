# shellcheck shell=bash
# The container VPS (stand-in for OpenVZ/LXC hosts): the image's root under systemd-nspawn.
# Root = overlayfs (cached extracted root as lower, the run dir as upper), so nothing is copied.

ct_up() {
  local rd=$1 img=$2 ns
  ns=$(cat "$rd/netns")
  mkdir -p "$rd/ct-upper" "$rd/ct-work" "$rd/ct-root"
  mount -t overlay overlay -o "lowerdir=$img/ctroot,upperdir=$rd/ct-upper,workdir=$rd/ct-work" "$rd/ct-root"
  echo "$rd/ct-root" > "$rd/mounted"
  local r=$rd/ct-root
  install -m 600 "$rd/ssh_host_ed25519_key" "$r/etc/ssh/ssh_host_ed25519_key"
  install -m 644 "$rd/ssh_host_ed25519_key.pub" "$r/etc/ssh/ssh_host_ed25519_key.pub"
  install -m 600 "$rd/client_ed25519.pub" "$r/root/.ssh/authorized_keys"
  net_guest_files "$rd" "$r"
  # no root device in a container; the 64M /tmp is nspawn's --tmpfs (ct-supervise.sh)
  : > "$r/etc/fstab"
  echo "vps-ct" > "$r/etc/hostname"
  # there is no root device to remount in a container
  ln -sf /dev/null "$r/etc/systemd/system/systemd-remount-fs.service"

  : > "$rd/console.raw"
  setsid "$VPS_DIR/lib/serial-ts.sh" "$rd/console.raw" "$rd/serial.log" </dev/null >/dev/null 2>&1 &
  echo $! > "$rd/serial-ts.pgid"
  setsid "$VPS_DIR/lib/ct-supervise.sh" "$rd" "$r" "$ns" "/run/netns/$ns-ct" </dev/null >/dev/null 2>&1 &
  echo $! > "$rd/supervisor.pgid"
}

ct_alive() { pid_is_ours "$(cat "$1/nspawn.pid" 2>/dev/null)" "$1/"; }

ct_down() {
  local rd=$1 pg pid
  pg=$(cat "$rd/supervisor.pgid" 2>/dev/null) || true
  pid=$(cat "$rd/nspawn.pid" 2>/dev/null) || true
  # stop the supervisor first so it does not restart nspawn; one SIGTERM makes nspawn halt the
  # guest cleanly (a second one would kill it at once)
  if [[ -n $pg ]] && pid_is_ours "$pg" "$rd"; then kill -TERM "$pg" 2>/dev/null || true; fi
  if [[ -n $pid ]] && pid_is_ours "$pid" "$rd/"; then
    kill -TERM "$pid" 2>/dev/null || true
    wait_pid_gone "$pid" 20 || { kill -KILL "$pid" 2>/dev/null || true; wait_pid_gone "$pid" 10 || log "nspawn $pid would not die"; }
  fi
  if [[ -n $pg ]]; then wait_pid_gone "$pg" 5 || true; fi
  rm -f "$rd/nspawn.pid" "$rd/supervisor.pgid"
  if [[ -r $rd/mounted ]]; then
    local m; m=$(cat "$rd/mounted")
    if mountpoint -q "$m"; then umount "$m" || umount -l "$m"; fi
    rm -f "$rd/mounted"
  fi
}
