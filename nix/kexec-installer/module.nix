# vps-nixos kexec installer: an initrd and nothing else.
#
# NixOS's systemd stage 1, booted by kexec with `rd.systemd.unit=` a target of
# ours and never switching root: udev, journald (in RAM), networkd with the
# network `run` carried, resolved, zram swap, and sshd with the carried host
# keys and authorized_keys, as remote LUKS unlock runs it. No `init=` and no
# `root=` on the command line, so the root is the kernel's tmpfs rootfs (which
# zram can swap out). No Nix, perl, python or squashfs store: the installer
# formats the disk, receives the closure onto it and runs the closure's own
# tools in a chroot; it needs only the commands in scripts/installer-tools.txt
# and those of the disk layout (`vpsNixos.installer.layoutTools`).
#
# The tarball (system.build.kexecTarball) keeps the nixos-images layout,
# kexec/{run,bzImage,initrd,kexec,ip}. `run` (./run.sh) carries the host keys,
# authorized_keys, machine-id and static network of the old system in a cpio it
# appends to the initrd. The build fails when the initrd is over its budget
# (compressed and unpacked). Choices and numbers: ../README.md.
#
# There is no system.build.toplevel to build here: NixOS checks `assertions`
# only for the toplevel, so the tarball checks them itself.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.vpsNixos.installer;
  inherit (pkgs.stdenv) hostPlatform buildPlatform;
  mib = n: n * 1024 * 1024;

  # `run`, kexec and ip run on the provider's distro, which has no /nix/store:
  # only static binaries work there.
  kexecStatic = pkgs.pkgsStatic.kexec-tools;
  # iproute2 links iptables for xtables actions; that does not build static.
  # The same static ip serves the initrd (no shared libraries to copy).
  ipStatic = pkgs.pkgsStatic.iproute2.override { iptables = null; };

  target = "vps-nixos-installer.target";

  # Only the named programs of a package (bin/ or sbin/), as a package of their
  # own: initrdBin merges whole bin directories, and make-initrd-ng copies every
  # program in them with its libraries (xfsprogs' xfs_scrub alone links ICU).
  onlyBins =
    pkg: names:
    pkgs.runCommand "${lib.getName pkg}-initrd-bins" { passthru.package = pkg; } ''
      mkdir -p $out/bin
      for n in ${lib.escapeShellArgs names}; do
        p=${lib.getBin pkg}/bin/$n
        [ -e "$p" ] || p=${lib.getBin pkg}/sbin/$n
        if [ ! -e "$p" ]; then
          echo "vps-nixos installer: $n is in neither ${lib.getBin pkg}/bin nor sbin" >&2
          exit 1
        fi
        ln -s "$p" "$out/bin/$n"
      done
    '';

  # gptfdisk's package lists icu in buildInputs, but GPT fdisk dropped ICU in
  # 0.8.9 (2014): 1.0.10's Makefile builds Linux without USE_UTF16 and links
  # only -luuid (-lpopt for sgdisk); partition names are still converted to
  # and from UTF-16LE, by its own code (gptpart.cc). So removing the input
  # loses nothing and keeps ICU (~30 MiB unpacked) out of reach. The flake's
  # initrd-tools check fails if an icu4c path is in the generic initrd.
  gptfdisk = pkgs.gptfdisk.overrideAttrs (old: {
    buildInputs = lib.filter (p: p == null || lib.getName p != "icu4c") (old.buildInputs or [ ]);
  });

  # What a disko layout of the generic kind calls: GPT, ext4, vfat, btrfs, xfs,
  # LVM, LUKS, mdadm. Not ZFS (module and userspace are tens of MB).
  defaultLayoutTools = [
    (onlyBins gptfdisk [ "sgdisk" ])
    (onlyBins pkgs.parted [
      "parted"
      "partprobe"
    ])
    (onlyBins pkgs.e2fsprogs [
      "mke2fs"
      "mkfs.ext2"
      "mkfs.ext3"
      "mkfs.ext4"
      "e2fsck"
      "fsck.ext4"
      "tune2fs"
      "e2label"
      "resize2fs"
    ])
    (onlyBins pkgs.dosfstools [
      "mkfs.fat"
      "mkfs.vfat"
      "fatlabel"
      "fsck.vfat"
    ])
    (onlyBins pkgs.btrfs-progs [
      "mkfs.btrfs"
      "btrfs"
      "btrfstune"
    ])
    (onlyBins pkgs.xfsprogs [ "mkfs.xfs" ])
    (onlyBins pkgs.cryptsetup [ "cryptsetup" ])
    # Whole: the device-mapper udev rules it ships call lvm and dmsetup.
    pkgs.lvm2
    # Whole (mdadm, mdmon): its udev rules call mdadm.
    pkgs.mdadm
  ];
  hasTool = name: lib.any (p: lib.hasPrefix name (lib.getName p)) cfg.layoutTools;

  # The rest of scripts/installer-tools.txt (coreutils, bash, systemd's tools,
  # kmod, mount/umount are in every systemd initrd already).
  utilLinux = config.boot.initrd.systemd.package.util-linux; # the one systemd and mount use
  baseTools = [
    (onlyBins utilLinux [
      "lsblk"
      "findmnt"
      "blkid"
      "mountpoint"
      "zramctl"
      "mkswap"
      "swapon"
      "swapoff"
      "unshare"
      "nsenter"
      "setsid"
      "wipefs"
      "blockdev"
      "sfdisk"
      "partx"
      "losetup"
      "flock"
      "kill"
      "dmesg"
    ])
    (onlyBins pkgs.procps [
      "free"
      "ps"
      "pgrep"
      "pkill"
    ])
    (onlyBins ipStatic [ "ip" ])
    (onlyBins pkgs.gnused [ "sed" ])
    (onlyBins pkgs.gnugrep [ "grep" ])
    (onlyBins pkgs.gawk [
      "awk"
      "gawk"
    ])
    (onlyBins pkgs.findutils [
      "find"
      "xargs"
    ])
    (onlyBins pkgs.diffutils [ "cmp" ])
    (onlyBins pkgs.gnutar [ "tar" ])
    (onlyBins pkgs.zstd [
      "zstd"
      "unzstd"
      "zstdcat"
    ])
    (onlyBins pkgs.jq [ "jq" ])
  ];

  # Kernel modules: what a VPS boots on, the generic layout's filesystems,
  # device-mapper, LUKS, MD RAID, VLANs and zram. Built-in ones are skipped by
  # the module closure; a name the kernel does not have fails the build.
  kernelModules =
    [
      "virtio_pci"
      "virtio_blk"
      "virtio_scsi"
      "virtio_net"
      "nvme"
      "ahci"
      "sd_mod"
      "8021q" # VLANs carried by run (networkd creates them)
      "ext4"
      "vfat"
      "nls_cp437"
      "nls_iso8859-1"
      "btrfs"
      "xfs"
      "dm_mod"
      "dm_crypt"
      "md_mod"
      "raid0"
      "raid1"
      "raid10"
      "raid456"
    ]
    # What cryptsetup luksFormat needs (AF_ALG included), as NixOS keeps it current.
    ++ config.boot.initrd.luks.cryptoModules
    ++ lib.optionals hostPlatform.isx86_64 [
      "ata_piix" # emulated IDE disks
      "xen_blkfront"
      "xen_netfront"
      "hv_vmbus"
      "hv_storvsc"
      "hv_netvsc"
      "vmw_pvscsi"
      "vmxnet3"
      "e1000" # emulated NICs some providers still use
      "e1000e"
    ]
    ++ lib.optionals hostPlatform.isAarch64 [ "virtio_mmio" ];

  # The kernel command line `run` gives kexec: our target instead of
  # initrd.target, no init= (nothing to switch to) and no root= (so rootfs is a
  # tmpfs; NixOS's systemd initrd adds root=fstab to boot.kernelParams).
  cmdline = lib.concatStringsSep " " (
    [ "rd.systemd.unit=${target}" ]
    ++ lib.filter (p: !(lib.hasPrefix "root=" p || lib.hasPrefix "init=" p)) config.boot.kernelParams
    # Kernels with initramfs_options= (6.18, stable backports) size rootfs
    # before the initrd is unpacked into it; vps-nixos-root-size does it later.
    ++ [ "initramfs_options=size=${cfg.rootSize}" ]
  );

  runScript = pkgs.runCommand "vps-nixos-kexec-run" { nativeBuildInputs = [ pkgs.shellcheck ]; } ''
    substitute ${./run.sh} $out --replace-fail '@cmdline@' ${lib.escapeShellArg (lib.escapeShellArg cmdline)}
    chmod 0755 $out
    shellcheck -s sh $out
  '';

  initrdFile = "${config.system.build.initialRamdisk}/${config.system.boot.loader.initrdFile}";
  kernelFile = "${config.system.build.kernel}/${config.system.boot.loader.kernelFile}";

  decompress = ''
    decompress() {
      case "$(od -An -tx1 -N4 "$1" | tr -d ' \n')" in
        28b52ffd) zstd -dc "$1" ;;
        fd377a58) xz -dc "$1" ;;
        1f8b*) gzip -dc "$1" ;;
        *) cat "$1" ;;
      esac
    }
  '';

  # What the initrd holds once unpacked, by store path: the rootfs footprint is
  # each file rounded up to 4 KiB pages (tmpfs allocates pages). One cpio, as
  # makeInitrdNG writes it with boot.initrd.prepend empty (no microcode).
  initrdReport =
    pkgs.runCommand "vps-nixos-initrd-report"
      {
        nativeBuildInputs = [
          pkgs.cpio
          pkgs.zstd
          pkgs.xz
          pkgs.gzip
          pkgs.gawk
        ];
      }
      ''
        ${decompress}
        mkdir -p $out
        decompress ${initrdFile} | cpio -itv --quiet >listing
        # GNU cpio -tv: mode links owner group size month day year name [-> target]
        awk -v out="$out" '
          $1 ~ /^-/ {
            pages = int(($5 + 4095) / 4096) * 4096
            total += pages; bytes += $5; files++
            name = $9
            if (name ~ /^nix\/store\/[^\/]+/) { split(name, p, "/"); key = "/nix/store/" p[3] }
            else key = "(outside /nix/store)"
            by[key] += pages
          }
          END {
            printf "%d\n", total > (out "/unpacked-bytes")
            for (k in by) printf "%d\t%s\n", by[k], k > (out "/by-path")
            printf "%d files, %d bytes, %d bytes in 4 KiB pages\n", files, bytes, total > (out "/summary")
          }' listing
        sort -rn $out/by-path >$out/store-paths.tsv
        rm $out/by-path
        {
          echo "INITRD_BYTES=$(stat -L -c %s ${initrdFile})"
          echo "INITRD_UNPACKED_BYTES=$(cat $out/unpacked-bytes)"
          echo "KERNEL_BYTES=$(stat -L -c %s ${kernelFile})"
          # the planner's rootfs cap: 90 % when this kernel takes initramfs_options=, else half
          echo "INITRAMFS_OPTIONS=${
            if lib.versionAtLeast config.boot.kernelPackages.kernel.version "6.18" then "yes" else "no"
          }"
          # run boots with rootfstype=ramfs when the planner asks (VPS_NIXOS_ROOTFS)
          echo "ROOTFS_RAMFS=yes"
          echo "INITRD_BUDGET_BYTES=${toString cfg.budget.compressedBytes}"
          echo "INITRD_UNPACKED_BUDGET_BYTES=${toString cfg.budget.unpackedBytes}"
        } >$out/sizes.env
        cat $out/summary $out/sizes.env
        head -n 25 $out/store-paths.tsv
      '';

  tarballName = "vps-nixos-kexec-installer-${hostPlatform.system}.tar.gz";

  tarball =
    pkgs.runCommand "vps-nixos-kexec-installer-${hostPlatform.system}"
      {
        passthru = { inherit tarballName initrdReport; };
      }
      ''
        . ${initrdReport}/sizes.env
        mibs() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
        if [ "$INITRD_BYTES" -gt "$INITRD_BUDGET_BYTES" ] || [ "$INITRD_UNPACKED_BYTES" -gt "$INITRD_UNPACKED_BUDGET_BYTES" ]; then
          echo "vps-nixos installer over budget:" \
            "compressed initrd $(mibs "$INITRD_BYTES") (budget $(mibs "$INITRD_BUDGET_BYTES")," \
            "vpsNixos.installer.budget.compressedBytes)," \
            "unpacked $(mibs "$INITRD_UNPACKED_BYTES") (budget $(mibs "$INITRD_UNPACKED_BUDGET_BYTES")," \
            "vpsNixos.installer.budget.unpackedBytes). Biggest store paths, unpacked:" >&2
          head -n 15 ${initrdReport}/store-paths.tsv >&2
          exit 1
        fi
        mkdir -p kexec $out
        cp -L ${initrdFile} kexec/initrd
        cp -L ${kernelFile} kexec/bzImage
        cp ${runScript} kexec/run
        cp ${kexecStatic}/bin/kexec kexec/kexec
        cp ${ipStatic}/bin/ip kexec/ip
        chmod 0755 kexec/run kexec/kexec kexec/ip
        chmod 0644 kexec/initrd kexec/bzImage
        ${lib.optionalString (buildPlatform.canExecute hostPlatform) ''
          kexec/ip -V
          kexec/kexec --version
        ''}
        # The initrd is compressed already: gzip only keeps the tarball
        # readable by every target's tar (busybox included) without zstd.
        tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1 -c kexec \
          | gzip -n -6 > $out/${tarballName}
        {
          echo "TARBALL=${tarballName}"
          echo "TARBALL_BYTES=$(stat -c %s $out/${tarballName})"
          cat ${initrdReport}/sizes.env
        } > $out/sizes.env
        cp ${initrdReport}/store-paths.tsv $out/initrd-store-paths.tsv
        cat $out/sizes.env
      '';

  # NixOS runs assertions and warnings only for system.build.toplevel, which
  # nothing builds here.
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  checked =
    drv:
    if failedAssertions != [ ] then
      throw "\nFailed assertions (vps-nixos kexec installer):\n${
        lib.concatMapStrings (m: "- ${m}\n") failedAssertions
      }"
    else
      lib.foldr (w: d: lib.warn w d) drv config.warnings;

  # The one unit that puts the carried state in place, before networkd and
  # sshd start (machine-id needs nothing: run put it at /etc/machine-id, where
  # systemd reads it before any unit runs). nix/tests/restore-offline.sh runs
  # this script on a fixture.
  carryScript = ''
    src=/vps-nixos-carried
    if [ -d "$src" ]; then
      # Kept for the install step (it reads machine-id from here), private.
      install -d -m 0700 /var/lib/vps-nixos
      rm -rf /var/lib/vps-nixos/carried
      cp -a "$src" /var/lib/vps-nixos/carried
      for key in "$src"/ssh/ssh_host_*; do
        [ -f "$key" ] || continue
        case "$key" in
          *.pub) install -D -m 0644 "$key" "/etc/ssh/''${key##*/}" ;;
          *) install -D -m 0600 "$key" "/etc/ssh/''${key##*/}" ;;
        esac
      done
      # The image's file is a symlink to a read-only copy of the keys it was
      # built with: replace it with those keys plus the carried ones.
      ak=/etc/ssh/authorized_keys.d/root
      if [ -s "$src/ssh/authorized_keys" ]; then
        mkdir -p /etc/ssh/authorized_keys.d
        {
          if [ -e "$ak" ]; then cat "$ak"; echo; fi
          cat "$src/ssh/authorized_keys"
          echo
        } | awk 'NF && $1 !~ /^#/ && !seen[$0]++' >"$ak.new"
        chmod 0600 "$ak.new"
        mv -f "$ak.new" "$ak"
      fi
      # networkd reads /run/systemd/network as well as /etc/systemd/network.
      install -d -m 0755 /run/systemd/network
      for f in "$src"/network/*.network "$src"/network/*.netdev; do
        [ -f "$f" ] || continue
        install -m 0644 "$f" /run/systemd/network/
      done
    fi
    # sshd needs a host key: a host that had none gets new ones.
    have_key=
    for key in /etc/ssh/ssh_host_*_key; do
      if [ -f "$key" ]; then have_key=1; fi
    done
    if [ -z "$have_key" ]; then ssh-keygen -A; fi
  '';
in
{
  options.vpsNixos.installer = {
    layoutTools = lib.mkOption {
      type = lib.types.listOf lib.types.package;
      default = defaultLayoutTools;
      defaultText = lib.literalMD "sgdisk, parted/partprobe, mkfs.{ext4,vfat,btrfs,xfs} and their fsck/label tools, cryptsetup, lvm2, mdadm";
      description = ''
        Packages whose bin/ and sbin/ go into the installer's /bin: what the
        configuration's disk layout (disko) runs. The default covers GPT,
        ext4, vfat, btrfs, xfs, LVM, LUKS and MD RAID, with only the programs
        a layout calls. lvm2 in the list (or cryptsetup) adds the
        device-mapper udev rules, mdadm the MD ones. ZFS is not included.
      '';
    };
    extraTools = lib.mkOption {
      type = lib.types.listOf lib.types.package;
      default = [ ];
      description = "More packages for the installer's /bin (counted against the budget).";
    };
    extraKernelModules = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "More kernel modules for the installer (e.g. a layout's filesystem).";
    };
    budget = {
      compressedBytes = lib.mkOption {
        type = lib.types.ints.positive;
        default = mib 64;
        description = ''
          The compressed initrd may not be bigger (the build fails): kexec
          holds it in RAM twice while loading, unswappable.
        '';
      };
      unpackedBytes = lib.mkOption {
        type = lib.types.ints.positive;
        default = mib 192;
        description = ''
          The unpacked initrd (files rounded up to 4 KiB pages, what it takes
          in the tmpfs rootfs) may not be bigger (the build fails).
        '';
      };
    };
    rootSize = lib.mkOption {
      type = lib.types.strMatching "[0-9]+[%kKmMgG]?";
      default = "90%";
      description = ''
        Size limit of the tmpfs root (tmpfs `size=`; `%` of RAM). The kernel
        makes it 50 % of RAM; a oneshot remounts it with this, and kernels
        that know `initramfs_options=` apply it before unpacking the initrd.
        zram takes what does not fit in RAM.
      '';
    };
    zram = {
      memoryPercent = lib.mkOption {
        type = lib.types.ints.between 1 400;
        default = 100;
        description = "zram swap size (uncompressed) in % of MemTotal.";
      };
      algorithm = lib.mkOption {
        type = lib.types.strMatching "[a-z0-9-]+";
        default = "zstd";
        description = "zram compression; the kernel's default (lzo-rle) when this one is missing.";
      };
    };
    consoleShell = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        A root shell on tty9 of the provider's console (systemd's
        debug-shell.service, no password), the way in when the carried
        network is wrong.
      '';
    };
  };

  config = {
    system.nixos.variant_id = "installer"; # /etc/os-release: what the probe (and nixos-anywhere) detect
    networking.hostName = lib.mkDefault "nixos-installer";
    system.stateVersion = lib.mkDefault config.system.nixos.release; # stateless

    # The module system wants a root file system and a boot loader that never
    # exist: the systemd initrd asserts on fileSystems."/" (as netboot.nix,
    # a tmpfs), and GRUB asserts on a device. Neither reaches the initrd.
    fileSystems."/" = {
      device = "none";
      fsType = "tmpfs";
      options = [ "mode=0755" ];
    };
    boot.loader.grub.enable = false;

    # VMs need no firmware; linux-firmware alone is ~787 MB unpacked.
    hardware.enableRedistributableFirmware = lib.mkForce false;
    hardware.firmware = lib.mkForce [ ];

    boot.initrd.includeDefaultModules = false; # USB, HID, sata_*, mmc, … are not on a VPS
    boot.initrd.availableKernelModules = kernelModules ++ cfg.extraKernelModules;
    boot.initrd.kernelModules = [ "zram" ];

    # zstd -19: typically within ~10 % of xz -9 on binaries, decompressed several times
    # faster (kernel unpacking on a slow vCPU is on the boot path), and its
    # window stays 8 MiB (no --long, no --ultra levels with 128 MiB windows the
    # kernel would have to allocate while unpacking on a 384 MB box).
    boot.initrd.compressor = lib.mkDefault "zstd";
    boot.initrd.compressorArgs = lib.mkDefault [
      "-19"
      "-T0"
    ];

    # The last console= is /dev/console; providers' web consoles show ttyS0 or tty0.
    boot.kernelParams = [
      "panic=30" # an installer that cannot boot reboots into the provider's OS
      "boot.panic_on_fail"
      "console=tty0"
    ]
    ++ lib.optional hostPlatform.isAarch64 "console=ttyAMA0,115200"
    ++ [ "console=ttyS0,115200" ];

    # --- network and ssh (remote-unlock style) -----------------------------------
    # networkd in the initrd with NixOS's DHCP default (99-ethernet-default-dhcp:
    # Type=ether, Kind=!*) for what the carried 00-vps-nixos-* files do not
    # match; resolved (on with networkd) applies their DNS= lines.
    networking.useNetworkd = true;
    networking.useDHCP = lib.mkDefault true;
    boot.initrd.network.enable = true;
    boot.initrd.systemd.network.wait-online.enable = false; # nothing waits for "online"
    boot.initrd.network.ssh = {
      enable = true;
      # sshd_config gets no HostKey line and serves whichever of
      # /etc/ssh/ssh_host_{rsa,ecdsa,ed25519}_key exist: the carried ones.
      hostKeys = [ ];
      ignoreEmptyHostKeys = true;
      extraConfig = ''
        Subsystem sftp internal-sftp
      '';
    };
    # The initrd-ssh assertion wants one authorized key at build time; the real
    # ones are carried and added at boot. A comment line satisfies it.
    users.users.root.openssh.authorizedKeys.keys = lib.mkBefore [
      "# vps-nixos: the keys kexec/run carried are added at boot"
    ];

    boot.initrd.services.lvm.enable = lib.mkDefault (hasTool "lvm2" || hasTool "cryptsetup");
    boot.initrd.services.udev.packages = lib.filter (p: lib.getName p == "mdadm") cfg.layoutTools;

    boot.initrd.systemd = {
      enable = true;

      initrdBin = baseTools ++ cfg.layoutTools ++ cfg.extraTools;
      extraBin.ssh-keygen = "${config.programs.ssh.package}/bin/ssh-keygen"; # only if nothing was carried

      contents = {
        "/etc/NIXOS".text = ""; # isNixos for the probe, next to os-release's ID=nixos
        # The journal is in RAM either way (no /var/log/journal); capped.
        "/etc/systemd/journald.conf.d/vps-nixos.conf".text = ''
          [Journal]
          Storage=volatile
          RuntimeMaxUse=16M
        '';
        "/etc/sysctl.d/60-vps-nixos.conf".text = ''
          # zram is cheap: prefer it to dropping cache, read one page at a time.
          vm.swappiness = 100
          vm.page-cluster = 0
          # Forks and big mappings succeed on a nearly full box; a throwaway system.
          vm.overcommit_memory = 1
        '';
      };

      tmpfiles.settings.vps-nixos = {
        "/run/cryptsetup".d.mode = "0700"; # cryptsetup's lock directory
      };

      # Booted with rd.systemd.unit=vps-nixos-installer.target. initrd.target
      # would also start initrd-find-nixos-closure (fails without init=), mount
      # /sysroot and, through initrd-parse-etc and initrd-cleanup, isolate
      # initrd-switch-root.target and switch to an empty root.
      targets.vps-nixos-installer = {
        description = "vps-nixos kexec installer";
        requires = [ "basic.target" ];
        after = [ "basic.target" ];
        wants = [
          "vps-nixos-root-size.service"
          "vps-nixos-zram.service"
          "vps-nixos-carry.service"
          "systemd-networkd.service"
          "sshd.service"
        ]
        # Upstream's unit, in every NixOS initrd. Wanted here, not through
        # rd.systemd.debug_shell: that adds it to default.target, which is
        # initrd.target in the initrd and not started.
        ++ lib.optional cfg.consoleShell "debug-shell.service";
        # A kernel command line without rd.systemd.unit= boots initrd.target:
        # with the units below disabled it reaches this target too.
        wantedBy = [ "initrd.target" ];
        unitConfig.AllowIsolate = true;
      };

      services = {
        # Never leave the initrd, even on initrd.target. Masking (enable =
        # false) is what nix-dabei and mlyxshi's kexec initrd do; the closure
        # finder loses its Requires= from initrd.target first, or initrd.target
        # would require a masked unit and fail.
        initrd-find-nixos-closure = {
          enable = false;
          requiredBy = lib.mkForce [ ];
        };
        initrd-nixos-activation.enable = false;
        initrd-parse-etc.enable = false;
        initrd-cleanup.enable = false;
        initrd-switch-root.enable = false;

        vps-nixos-carry = {
          description = "Put the host keys, authorized_keys and network carried by kexec/run in place";
          before = [
            "systemd-networkd.service"
            "sshd.service"
            target
          ];
          unitConfig.DefaultDependencies = false;
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
          };
          script = carryScript;
        };

        sshd = {
          after = [ "vps-nixos-carry.service" ];
          wants = [ "vps-nixos-carry.service" ];
        };

        # NixOS's zramSwap is stage 2 only (zram-generator). The module is in
        # boot.initrd.kernelModules; zstd if this kernel's zram has it.
        vps-nixos-zram = {
          description = "zram swap for the installer";
          after = [ "systemd-modules-load.service" ];
          before = [
            "swap.target"
            target
          ];
          unitConfig.DefaultDependencies = false;
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
          };
          script = ''
            if grep -q '^/dev/zram' /proc/swaps; then exit 0; fi
            modprobe zram || true
            kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
            size=$((kib * ${toString cfg.zram.memoryPercent} / 100))K
            dev=$(zramctl --find)
            zramctl --algorithm ${cfg.zram.algorithm} --size "$size" "$dev" ||
              zramctl --size "$size" "$dev"
            mkswap "$dev" >/dev/null
            swapon --priority 100 "$dev"
            zramctl
          '';
        };

        # The kernel's tmpfs rootfs is capped at 50 % of RAM; tmpfs takes a new
        # size= on remount (rootfs is a tmpfs superblock when there is no root=).
        vps-nixos-root-size = {
          description = "Let the tmpfs root grow to ${cfg.rootSize} of RAM";
          before = [ target ];
          unitConfig.DefaultDependencies = false;
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
          };
          script = ''
            mount -o remount,size=${cfg.rootSize} / ||
              echo "could not remount / with size=${cfg.rootSize}: $(grep ' / ' /proc/mounts)" >&2
            grep ' / ' /proc/mounts
          '';
        };
      };
    };

    # --- outputs ------------------------------------------------------------------
    system.build.kexecTarball = checked tarball;
    system.build.vpsNixosKexecRun = runScript;
    system.build.vpsNixosKexecCmdline = cmdline;
    # What the initrd holds, by store path (sizes.env, store-paths.tsv, summary).
    system.build.vpsNixosInitrdReport = checked initrdReport;
  };
}
