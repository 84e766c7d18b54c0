# vps-nixos slim kexec installer.
#
# A NixOS that boots from one initrd (netboot: root is a tmpfs, the store is a
# squashfs inside the initrd with a tmpfs overlay on top) and is small enough to
# kexec into on a ~1 GB VPS. Its tarball (system.build.kexecTarball) has the
# nixos-images layout: kexec/{kexec,bzImage,initrd,run,ip}. `run` (./run.sh)
# carries the host keys, authorized_keys, machine-id and static network of the
# old system into the installer through an extra cpio appended to the initrd.
# Every choice and the numbers behind it are in ../README.md.
{
  config,
  lib,
  pkgs,
  modulesPath,
  ...
}:
let
  inherit (pkgs.stdenv) hostPlatform buildPlatform;

  # `run`, kexec and ip run on the provider's distro, which has no /nix/store:
  # only static binaries work there.
  kexecStatic = pkgs.pkgsStatic.kexec-tools;
  # iproute2 links iptables for xtables actions; that does not build static.
  ipStatic = pkgs.pkgsStatic.iproute2.override { iptables = null; };

  # Where the kernel unpacks run's cpio (the initrd's root, stage 1 only) …
  carriedInInitrd = "/vps-nixos-carried";
  # … and where stage 1 moves it so that stage 2 can still see it.
  carriedDir = "/var/lib/vps-nixos/carried";

  cmdline = "init=${config.system.build.toplevel}/init ${toString config.boot.kernelParams}";

  runScript = pkgs.runCommand "vps-nixos-kexec-run" { nativeBuildInputs = [ pkgs.shellcheck ]; } ''
    substitute ${./run.sh} $out --replace-fail '@cmdline@' ${lib.escapeShellArg (lib.escapeShellArg cmdline)}
    chmod 0755 $out
    shellcheck -s sh $out
  '';

  tarballName = "vps-nixos-kexec-installer-${hostPlatform.system}.tar.gz";

  tarball =
    pkgs.runCommand "vps-nixos-kexec-installer-${hostPlatform.system}"
      {
        passthru = { inherit tarballName; };
      }
      ''
        mkdir -p kexec $out
        cp ${config.system.build.netbootRamdisk}/initrd kexec/initrd
        cp ${config.system.build.kernel}/${config.system.boot.loader.kernelFile} kexec/bzImage
        cp ${runScript} kexec/run
        cp ${kexecStatic}/bin/kexec kexec/kexec
        cp ${ipStatic}/bin/ip kexec/ip
        chmod 0755 kexec/run kexec/kexec kexec/ip
        chmod 0644 kexec/initrd kexec/bzImage
        ${lib.optionalString (buildPlatform.canExecute hostPlatform) ''
          kexec/ip -V
          kexec/kexec --version
        ''}
        # The initrd is xz inside and out: gzip only keeps the tarball readable
        # by every target's tar (busybox included) without zstd.
        tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1 -c kexec \
          | gzip -n -6 > $out/${tarballName}
        {
          echo "TARBALL=${tarballName}"
          echo "TARBALL_BYTES=$(stat -c %s $out/${tarballName})"
          echo "INITRD_BYTES=$(stat -c %s kexec/initrd)"
          echo "KERNEL_BYTES=$(stat -c %s kexec/bzImage)"
          echo "SQUASHFS_BYTES=$(stat -c %s ${config.system.build.squashfsStore})"
        } > $out/sizes.env
        cat $out/sizes.env
      '';
in
{
  imports = [
    # Not netboot-minimal.nix: that pulls netboot-base.nix, i.e. profiles/base.nix
    # (zfs, cifs, testdisk, …) and installation-device.nix (docs, polkit,
    # wpa_supplicant, a stdenv in the store).
    "${modulesPath}/installer/netboot/netboot.nix"
    "${modulesPath}/profiles/minimal.nix"
    "${modulesPath}/profiles/qemu-guest.nix"
  ];

  config = {
    system.nixos.variant_id = "installer"; # what the probe (and nixos-anywhere) detect
    networking.hostName = lib.mkDefault "nixos-installer";
    system.stateVersion = lib.mkDefault config.system.nixos.release; # stateless

    # --- memory ----------------------------------------------------------------
    # Let nix and friends fork on a nearly full box; it is a throwaway system.
    boot.kernel.sysctl."vm.overcommit_memory" = lib.mkForce "1";
    # zram is the only swap the installer can have: swap files do not survive
    # kexec and a swap file on the tmpfs root is refused. The tmpfs root and
    # store overlay are swappable, so zram stretches them. 100 % of RAM as
    # uncompressed size costs ~1/3 of RAM at zstd's usual 3:1, and only when used.
    zramSwap = {
      enable = true;
      algorithm = "zstd";
      memoryPercent = lib.mkDefault 100;
    };
    boot.kernel.sysctl."vm.swappiness" = lib.mkDefault 100; # zram is cheap, prefer it to dropping cache
    boot.kernel.sysctl."vm.page-cluster" = lib.mkDefault 0; # zram has no seek cost; read one page
    environment.variables.GC_INITIAL_HEAP_SIZE = "1M"; # nix evaluator starts with a small heap
    # Journal in RAM, capped: it lives on the tmpfs anyway.
    services.journald.extraConfig = ''
      Storage=volatile
      RuntimeMaxUse=16M
    '';

    # --- closure (everything here sits in RAM as the squashfs) ------------------
    documentation = {
      enable = false;
      man.enable = false;
      info.enable = false;
      doc.enable = false;
      nixos.enable = false;
    };
    fonts.fontconfig.enable = false;
    programs.bash.completion.enable = false;
    programs.command-not-found.enable = false;
    security.polkit.enable = false;
    security.sudo.enable = false; # root only
    services.udisks2.enable = false;
    i18n.supportedLocales = [ (config.i18n.defaultLocale + "/UTF-8") ];
    # VMs need no firmware; linux-firmware alone is ~787 MB unpacked.
    hardware.enableRedistributableFirmware = lib.mkForce false;
    hardware.firmware = lib.mkForce [ ];
    boot.supportedFilesystems = {
      ext4 = true;
      vfat = true;
      btrfs = true;
      xfs = true;
      zfs = lib.mkForce false; # kernel module + userspace: tens of MB
    };
    # No nixpkgs source (tens of MB) in the image: nothing evaluates here.
    nixpkgs.flake.setNixPath = false;
    nixpkgs.flake.setFlakeRegistry = false;
    nix.channel.enable = false;
    networking.firewall.enable = false; # only sshd listens; saves nftables rules and memory
    boot.initrd.compressor = "xz"; # run appends a gzip'd cpio after it (nixos-images does the same)

    # What disko's scripts (diskoScriptNoDeps relies on PATH) and nixos-install call.
    environment.systemPackages = with pkgs; [
      parted
      gptfdisk
      dosfstools
      e2fsprogs
      btrfs-progs
      util-linux
      cpio
      jq # disko's disk-deactivate
    ];

    # --- console ----------------------------------------------------------------
    # The last console= is /dev/console; providers' web consoles show ttyS0 or tty0.
    boot.kernelParams = [
      "panic=30" # a kernel that cannot boot the installer reboots the provider's OS
      "boot.panic_on_fail"
      "console=tty0"
    ]
    ++ lib.optional hostPlatform.isAarch64 "console=ttyAMA0,115200"
    ++ [ "console=ttyS0,115200" ];
    services.getty.autologinUser = lib.mkDefault "root";

    # --- ssh --------------------------------------------------------------------
    services.openssh = {
      enable = true;
      startWhenNeeded = false; # a daemon: socket activation saves ~5 MB and fails silently
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        PermitRootLogin = "prohibit-password";
      };
      # Serve every key type the old host had: a client pinned to its ECDSA key
      # (and restricted to that algorithm) must still match after kexec.
      hostKeys = [
        {
          type = "ed25519";
          path = "/etc/ssh/ssh_host_ed25519_key";
        }
        {
          type = "ecdsa";
          path = "/etc/ssh/ssh_host_ecdsa_key";
        }
        {
          type = "rsa";
          bits = 4096;
          path = "/etc/ssh/ssh_host_rsa_key";
        }
      ];
    };

    # --- nix --------------------------------------------------------------------
    # The store's writable layer (/nix/.rw-store) is a tmpfs of half the RAM,
    # ~480 MB on 1 GB. nixos-images sets min-free=512MiB/max-free=3000MiB: free
    # space is then always below min-free and every substitution starts a GC
    # (nixos-anywhere #402, #521: hours at 100 % CPU). Keep both below the tmpfs.
    nix.settings = {
      experimental-features = [
        "nix-command"
        "flakes"
      ];
      min-free = lib.mkDefault (64 * 1024 * 1024);
      max-free = lib.mkDefault (256 * 1024 * 1024);
      connect-timeout = 5;
    };

    # --- network ----------------------------------------------------------------
    # networkd reads the MAC-matched .network files run carried; interfaces they
    # do not match fall back to NixOS's DHCP default (99-ethernet-default-dhcp).
    networking.useNetworkd = true;
    networking.useDHCP = lib.mkDefault true;
    services.resolved.enable = true; # applies the carried DNS= lines
    systemd.network.wait-online.enable = false; # nothing here waits for "online"

    # --- carried identity ---------------------------------------------------------
    # Stage 1: the appended cpio's files sit in the initrd's root, which is gone
    # after switch-root. Move them into the new root, and put machine-id in place
    # before stage 2's systemd reads it.
    boot.initrd.systemd.enable = lib.mkDefault true;
    boot.initrd.systemd.services.vps-nixos-carry = lib.mkIf config.boot.initrd.systemd.enable {
      description = "Move the files carried across kexec into the new root";
      wantedBy = [ "initrd.target" ];
      before = [
        "initrd-nixos-activation.service"
        "initrd.target"
      ];
      unitConfig = {
        DefaultDependencies = false;
        RequiresMountsFor = "/sysroot";
        ConditionPathIsDirectory = carriedInInitrd;
      };
      serviceConfig.Type = "oneshot";
      script = ''
        mkdir -p /sysroot${carriedDir} /sysroot/etc
        chmod 0700 /sysroot/var/lib/vps-nixos
        cp -a ${carriedInInitrd}/. /sysroot${carriedDir}/
        if [ -s ${carriedInInitrd}/machine-id ]; then
          cp ${carriedInInitrd}/machine-id /sysroot/etc/machine-id
        fi
      '';
    };
    boot.initrd.postMountCommands = lib.mkIf (!config.boot.initrd.systemd.enable) ''
      if [ -d ${carriedInInitrd} ]; then
        mkdir -p "$targetRoot${carriedDir}" "$targetRoot/etc"
        chmod 0700 "$targetRoot/var/lib/vps-nixos"
        cp -a ${carriedInInitrd}/. "$targetRoot${carriedDir}/"
        if [ -s ${carriedInInitrd}/machine-id ]; then
          cp ${carriedInInitrd}/machine-id "$targetRoot/etc/machine-id"
        fi
      fi
    '';

    # Stage 2: host keys, authorized_keys and .network files, before sshd
    # (and its key generator) and networkd look for them.
    systemd.services.vps-nixos-restore = {
      description = "Restore host keys, authorized_keys and network carried across kexec";
      wantedBy = [
        "multi-user.target"
        "sshd.service"
        "systemd-networkd.service"
      ];
      before = [
        "sshd.service"
        "sshd-keygen.service"
        "systemd-networkd.service"
        "network-pre.target"
        "shutdown.target"
      ];
      wants = [ "network-pre.target" ];
      after = [ "local-fs.target" ];
      conflicts = [ "shutdown.target" ];
      unitConfig = {
        DefaultDependencies = false;
        ConditionPathIsDirectory = carriedDir;
      };
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
      };
      path = [ pkgs.coreutils ];
      script = ''
        src=${carriedDir}
        for key in "$src"/ssh/ssh_host_*; do
          [ -f "$key" ] || continue
          case "$key" in
            *.pub) install -m 0644 "$key" /etc/ssh/ ;;
            *) install -m 0600 "$key" /etc/ssh/ ;;
          esac
        done
        if [ -s "$src/ssh/authorized_keys" ]; then
          install -d -m 0700 /root/.ssh
          touch /root/.ssh/authorized_keys
          sort -u "$src/ssh/authorized_keys" /root/.ssh/authorized_keys > /root/.ssh/authorized_keys.new
          install -m 0600 /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys
          rm -f /root/.ssh/authorized_keys.new
        fi
        # networkd reads /etc/systemd/network first; /run/systemd/network too,
        # for an /etc that is read-only (system.etc.overlay).
        dest=/etc/systemd/network
        install -d -m 0755 "$dest" 2>/dev/null || true
        if [ ! -w "$dest" ]; then
          dest=/run/systemd/network
          install -d -m 0755 "$dest"
        fi
        for f in "$src"/network/*.network; do
          [ -f "$f" ] || continue
          install -m 0644 "$f" "$dest/"
        done
      '';
    };

    # --- outputs ------------------------------------------------------------------
    # netboot.nix (some releases) defines its own kexecTarball (a .tar.zst of
    # kexecTree without run/ip): ours replaces it.
    system.build.kexecTarball = lib.mkForce tarball;
    system.build.vpsNixosKexecRun = runScript;
  };
}
