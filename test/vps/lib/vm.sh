# shellcheck shell=bash
# The QEMU VPS. TCG by default: /dev/kvm on the build box is PVM and an unmodified kernel hangs in
# its decompressor (TESTBED 1), so "/dev/kvm exists" would pick the hang. VPS_BOOT=disk boots from
# the disk after the first reboot (lib/vm-supervise.sh), for a real NixOS install. VPS_ACCEL=kvm uses KVM
# (GitHub's runners: the workflows set it); VPS_ACCEL=auto uses it only after a bounded probe boot
# shows a kernel starts under it (the answer is kept for the host's boot in $VPS_RUN_ROOT).

# The harness plays the provider's bootloader: every (re)boot loads the image's Debian kernel and
# initrd and mounts the root filesystem labelled "vpsroot". The base image has that label; the
# stand-in nixos-install labels the freshly installed root the same way (see test/STANDINS.md).
VM_APPEND="root=LABEL=vpsroot ro console=ttyS0"

# Probe boot: the image's kernel under KVM, no disk, no root; it works when the kernel prints its
# banner within 20 s (on the PVM box it never leaves the decompressor). Prints kvm or tcg.
vm_probe_kvm() {
  local img=$1 dir out pid i
  [[ -r /dev/kvm && -w /dev/kvm ]] || { echo tcg; return; }
  dir=$(mktemp -d "${TMPDIR:-/tmp}/vps-kvm-probe.XXXXXX")
  out="$dir/serial"
  : > "$out"
  qemu-system-x86_64 -accel kvm -M q35 -cpu host -m 256 -nodefaults -display none -no-reboot \
    -serial "file:$out" -kernel "$img/vmlinuz" -append "console=ttyS0 panic=-1" \
    </dev/null >/dev/null 2>&1 &
  pid=$!
  for ((i = 0; i < 40; i++)); do
    grep -q 'Linux version' "$out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if grep -q 'Linux version' "$out" 2>/dev/null; then echo kvm; else echo tcg; fi
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

# The accelerator for this boot: tcg, kvm, or auto (probed once per host boot).
vm_accel() {
  local img=$1 cache boot
  case ${VPS_ACCEL:-tcg} in
    tcg|kvm) echo "${VPS_ACCEL:-tcg}" ;;
    auto)
      boot=$(cat /proc/sys/kernel/random/boot_id)
      cache="$VPS_RUN_ROOT/accel-$boot"
      [[ -s $cache ]] || vm_probe_kvm "$img" > "$cache"
      cat "$cache" ;;
    *) die "VPS_ACCEL: '$VPS_ACCEL' is not tcg, kvm or auto" ;;
  esac
}

vm_up() {
  local rd=$1 img=$2 ram=$3 ns accel
  ns=$(cat "$rd/netns")
  accel=$(vm_accel "$img")
  echo "$accel" > "$rd/accel"
  local cpu_accel=(-accel "tcg,thread=multi" -cpu "${VPS_QEMU_CPU:-qemu64}")
  [[ $accel == tcg ]] || cpu_accel=(-accel kvm -cpu "${VPS_QEMU_CPU:-host}")
  # throwaway overlay: a test may wipe the disk, the cached base stays clean
  qemu-img create -q -f qcow2 -b "$img/disk.raw" -F raw "$rd/disk.qcow2"
  # identity handed to the guest as "provider metadata" via fw_cfg (guest/vps-identity.sh)
  local id="$rd/identity"
  mkdir -p "$id/etc/ssh" "$id/root/.ssh"
  install -m 600 "$rd/ssh_host_ed25519_key" "$id/etc/ssh/ssh_host_ed25519_key"
  install -m 644 "$rd/ssh_host_ed25519_key.pub" "$id/etc/ssh/ssh_host_ed25519_key.pub"
  install -m 600 "$rd/client_ed25519.pub" "$id/root/.ssh/authorized_keys"
  net_guest_files "$rd" "$id"
  tar -C "$id" --owner=0 --group=0 -cf "$rd/identity.tar" .

  # A second disk no layout names (VPS_SPARE_DISK_MIB, for the fault campaign): random bytes under
  # a qcow2 overlay, so `qemu-img compare` tells whether the guest wrote to it.
  local spare=()
  if [[ -n ${VPS_SPARE_DISK_MIB:-} ]]; then
    head -c "$((VPS_SPARE_DISK_MIB * 1048576))" /dev/urandom > "$rd/spare.raw"
    qemu-img create -q -f qcow2 -b "$rd/spare.raw" -F raw "$rd/spare.qcow2"
    spare=(-drive "file=$rd/spare.qcow2,if=virtio,format=qcow2,cache=unsafe")
  fi

  : > "$rd/serial.raw"
  setsid "$VPS_DIR/lib/serial-ts.sh" "$rd/serial.raw" "$rd/serial.log" </dev/null >/dev/null 2>&1 &
  echo $! > "$rd/serial-ts.pgid"

  local args=(-name "vps-nixos,debug-threads=off"
    "${cpu_accel[@]}" -M q35 -smp 2 -m "$ram"
    -nodefaults -display none
    -chardev "file,id=ser0,path=$rd/serial.raw,append=on" -serial chardev:ser0
    -monitor "unix:$rd/monitor.sock,server=on,wait=off"
    -qmp "unix:$rd/qmp.sock,server=on,wait=off"
    -drive "file=$rd/disk.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap"
    "${spare[@]}"
    -netdev "tap,id=n0,ifname=tap0,script=no,downscript=no"
    -device "virtio-net-pci,netdev=n0,mac=$(cat "$rd/mac")"
    -device virtio-rng-pci
    -fw_cfg "name=opt/vps-nixos/identity.tar,file=$rd/identity.tar")
  local kernel=(-kernel "$img/vmlinuz" -initrd "$img/initrd.img" -append "$VM_APPEND")
  case ${VPS_BOOT:-kernel} in
    kernel)
      # no -no-reboot: the guest reboots like a VPS (into whatever root is labelled vpsroot)
      ip netns exec "$ns" qemu-system-x86_64 "${args[@]}" "${kernel[@]}" \
        -daemonize -pidfile "$rd/qemu.pid" \
        2>"$rd/qemu.err" || { cat "$rd/qemu.err" >&2; die "qemu failed to start"; } ;;
    disk)
      # The first boot from the image's kernel, every reboot after from the disk (a real NixOS's
      # GRUB after an install): lib/vm-supervise.sh restarts QEMU without -kernel.
      : > "$rd/qemu.err"
      setsid "$VPS_DIR/lib/vm-supervise.sh" "$rd" "$ns" "${#kernel[@]}" "${kernel[@]}" "${args[@]}" \
        </dev/null >/dev/null 2>&1 &
      echo $! > "$rd/vm-supervise.pgid"
      local i
      for ((i = 0; i < 100; i++)); do
        vm_alive "$rd" && return 0
        pid_is_ours "$(cat "$rd/vm-supervise.pgid")" "$rd" || break
        sleep 0.1
      done
      cat "$rd/qemu.err" >&2; die "qemu failed to start" ;;
    *) die "VPS_BOOT: '$VPS_BOOT' is not kernel or disk" ;;
  esac
}

vm_alive() { pid_is_ours "$(cat "$1/qemu.pid" 2>/dev/null)" "$1/"; }

vm_down() {
  local rd=$1 pid pg
  pg=$(cat "$rd/vm-supervise.pgid" 2>/dev/null) || true
  if [[ -n $pg ]] && pid_is_ours "$pg" "$rd"; then
    : > "$rd/stopping"
    kill -TERM -- "-$pg" 2>/dev/null || true
    wait_pid_gone "$pg" 10 || kill -KILL -- "-$pg" 2>/dev/null || true
  fi
  rm -f "$rd/vm-supervise.pgid"
  pid=$(cat "$rd/qemu.pid" 2>/dev/null) || return 0
  if pid_is_ours "$pid" "$rd/"; then
    kill -TERM "$pid" 2>/dev/null || true
    wait_pid_gone "$pid" 10 || { kill -KILL "$pid" 2>/dev/null || true; wait_pid_gone "$pid" 10 || log "qemu $pid would not die"; }
  fi
  rm -f "$rd/qemu.pid"
}

# Run one HMP command through the monitor socket and print its output.
vm_monitor() {
  local rd=$1 cmd=$2
  # the monitor echoes a banner and prompt; -t: wait up to 600 s for slow commands (savevm/loadvm)
  { printf '%s\n' "$cmd"; sleep 0.5; } | timeout 900 socat -t 600 - "UNIX-CONNECT:$rd/monitor.sock" \
    | tr -d '\r' | grep -v -e '^QEMU .* monitor' -e '^(qemu)' || true
}
