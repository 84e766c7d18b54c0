# Offline check of kexec-installer/module.nix with only nixpkgs' `lib` (no
# nixpkgs, no network): the NixOS options the module reads are declared here as
# stubs with NixOS's defaults, everything else it sets lands in freeform
# namespaces, and `pkgs` is a set of fake derivations. So the module system's
# merging and priorities are real, and the structure the module builds (kernel
# command line, the target and its units, ssh, modules, tools, budgets) is
# checked; whether NixOS accepts those options (names, types) is not: that
# needs nixpkgs (`nix flake check ./nix` on GitHub).
#
#   nix-instantiate --eval --strict nix/tests/installer-module-offline.nix \
#     --arg lib 'import /path/to/nixpkgs/lib'     # e.g. a nix-community/nixpkgs.lib checkout
#
# Prints the list of check names on success; throws naming the failed checks.
{ lib }:
let
  inherit (lib) mkOption types;

  # A namespace whose declared options are typed and whose other attributes are free.
  ns =
    options:
    mkOption {
      type = types.submodule {
        freeformType = types.lazyAttrsOf types.anything;
        inherit options;
      };
      default = { };
    };
  list = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };

  fake =
    name: extra:
    {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/00000000000000000000000000000000-${name}";
    }
    // extra;
  pkgsFor =
    system:
    let
      isX86 = system == "x86_64-linux";
      plain = n: fake n { };
    in
    {
      stdenv = {
        hostPlatform = {
          inherit system;
          isx86_64 = isX86;
          isAarch64 = !isX86;
        };
        buildPlatform.canExecute = _: true;
      };
      # runCommand keeps its script, so the checks can read what a build would run.
      runCommand =
        name: env: script:
        fake name (env // { inherit script; });
      pkgsStatic = {
        kexec-tools = plain "kexec-tools-static-2.0.29";
        iproute2 = plain "iproute2-static-6.11.0" // {
          override = _: plain "iproute2-static-6.11.0";
        };
      };
      # What nixpkgs' gptfdisk lists; overrideAttrs shows what the module keeps.
      gptfdisk = plain "gptfdisk-1.0.10" // {
        overrideAttrs =
          f:
          let
            old.buildInputs = [
              (plain "util-linux-2.41")
              (plain "popt-1.19")
              (plain "icu4c-76.1")
              (plain "ncurses-6.5")
            ];
          in
          plain "gptfdisk-1.0.10" // f old;
      };
    }
    // lib.genAttrs [
      "parted"
      "e2fsprogs"
      "dosfstools"
      "btrfs-progs"
      "xfsprogs"
      "cryptsetup"
      "lvm2"
      "mdadm"
      "procps"
      "gnused"
      "gnugrep"
      "gawk"
      "findutils"
      "diffutils"
      "gnutar"
      "zstd"
      "jq"
      "shellcheck"
      "cpio"
      "xz"
      "gzip"
      "zfs"
    ] (n: plain "${n}-1.0");

  # The NixOS options the module reads, with what NixOS would give them.
  nixosStubs = {
    freeformType = types.lazyAttrsOf types.anything;
    options = {
      assertions = mkOption {
        type = types.listOf types.raw;
        default = [ ];
      };
      warnings = list;
      boot = ns {
        kernelParams = list;
        # Read by the report's INITRAMFS_OPTIONS= (yes from 6.18 on).
        kernelPackages = mkOption {
          type = types.raw;
          default.kernel = fake "linux-6.12.60" { version = "6.12.60"; };
        };
        initrd = ns {
          availableKernelModules = list;
          kernelModules = list;
          luks = ns {
            cryptoModules = mkOption {
              type = types.listOf types.str;
              default = [
                "aes"
                "xts"
                "sha256"
                "af_alg"
                "algif_skcipher"
              ];
            };
          };
          systemd = ns {
            package = mkOption {
              type = types.raw;
              default = fake "systemd-258" { util-linux = fake "util-linux-minimal-2.41" { }; };
            };
          };
        };
      };
      users = ns { users = ns { root = ns { openssh = ns { authorizedKeys = ns { keys = list; }; }; }; }; };
      programs = ns { ssh = ns { package = mkOption { default = fake "openssh-10.0p2" { }; }; }; };
      system = ns {
        build = mkOption {
          type = types.lazyAttrsOf types.raw;
          default = { };
        };
        nixos = ns {
          release = mkOption { default = "26.11"; };
        };
        boot = ns {
          loader = ns {
            initrdFile = mkOption { default = "initrd"; };
            kernelFile = mkOption { default = "bzImage"; };
          };
        };
      };
    };
    config = {
      # What the systemd initrd and consoleLogLevel add.
      boot.kernelParams = [
        "root=fstab"
        "loglevel=4"
      ];
      system.build.initialRamdisk = fake "initrd-linux-6.12" { };
      system.build.kernel = fake "linux-6.12" { };
    };
  };

  eval =
    system: modules:
    (lib.evalModules {
      modules = [
        nixosStubs
        ../kexec-installer/module.nix
        { _module.args.pkgs = pkgsFor system; }
      ]
      ++ modules;
    }).config;

  x86 = eval "x86_64-linux" [ ];
  arm = eval "aarch64-linux" [ ];
  user = eval "x86_64-linux" [
    {
      vpsNixos.installer = {
        layoutTools = [ (pkgsFor "x86_64-linux").zfs ];
        extraKernelModules = [ "zfs" ];
        budget.compressedBytes = 100 * 1024 * 1024;
        rootSize = "75%";
        consoleShell = false;
        zram.memoryPercent = 50;
      };
      users.users.root.openssh.authorizedKeys.keys = [ "ssh-ed25519 AAAAbuilt-in operator" ];
    }
  ];
  kernel618 = eval "x86_64-linux" [
    { boot.kernelPackages.kernel = fake "linux-6.18.2" { version = "6.18.2"; }; }
  ];
  failing = eval "x86_64-linux" [
    {
      assertions = [
        {
          assertion = false;
          message = "stub assertion";
        }
      ];
    }
  ];

  sd = x86.boot.initrd.systemd;
  cmdline = lib.splitString " " x86.system.build.vpsNixosKexecCmdline;
  consoles = lib.filter (lib.hasPrefix "console=") cmdline;
  binNames = cfg: map (p: p.name) cfg.boot.initrd.systemd.initrdBin;
  sgdiskWrapper = lib.findFirst (p: p.name == "gptfdisk-initrd-bins") null sd.initrdBin;
  tarballScript = x86.system.build.kexecTarball.script;
  reportScript = x86.system.build.vpsNixosInitrdReport.script;
  mib = n: n * 1024 * 1024;

  checks = {
    "cmdline: our target, no init=, no root=" =
      lib.head cmdline == "rd.systemd.unit=vps-nixos-installer.target"
      && !lib.any (lib.hasPrefix "init=") cmdline
      && !lib.any (lib.hasPrefix "root=") cmdline
      && lib.elem "loglevel=4" cmdline;
    "cmdline: ttyS0 is the last console, rootfs sized, panic" =
      lib.last consoles == "console=ttyS0,115200"
      && lib.last cmdline == "initramfs_options=size=90%"
      && lib.elem "panic=30" cmdline
      && lib.elem "boot.panic_on_fail" cmdline;
    "cmdline: aarch64 serial console" =
      lib.elem "console=ttyAMA0,115200" (lib.splitString " " arm.system.build.vpsNixosKexecCmdline);
    "run gets the cmdline" =
      lib.hasInfix "rd.systemd.unit=vps-nixos-installer.target" x86.system.build.vpsNixosKexecRun.script;

    "target: sshd, networkd, carry, zram, root size; isolatable; reached from initrd.target too" =
      let
        t = sd.targets.vps-nixos-installer;
      in
      lib.all (u: lib.elem u t.wants) [
        "sshd.service"
        "systemd-networkd.service"
        "vps-nixos-carry.service"
        "vps-nixos-zram.service"
        "vps-nixos-root-size.service"
      ]
      && lib.elem "debug-shell.service" t.wants
      && t.unitConfig.AllowIsolate
      && lib.elem "basic.target" t.requires
      && t.wantedBy == [ "initrd.target" ];
    "never switches root" =
      !sd.services.initrd-find-nixos-closure.enable
      && sd.services.initrd-find-nixos-closure.requiredBy == [ ]
      && lib.all (u: !sd.services.${u}.enable) [
        "initrd-nixos-activation"
        "initrd-parse-etc"
        "initrd-cleanup"
        "initrd-switch-root"
      ];
    "carry runs before networkd and sshd; sshd waits for it" =
      lib.all (u: lib.elem u sd.services.vps-nixos-carry.before) [
        "systemd-networkd.service"
        "sshd.service"
      ]
      && lib.elem "vps-nixos-carry.service" sd.services.sshd.after
      && !sd.services.vps-nixos-carry.unitConfig.DefaultDependencies;
    "zram: module loaded, 100 %, zstd with a fallback" =
      x86.boot.initrd.kernelModules == [ "zram" ]
      && lib.hasInfix "* 100 / 100" sd.services.vps-nixos-zram.script
      && lib.hasInfix "--algorithm zstd" sd.services.vps-nixos-zram.script
      && lib.hasInfix "mkswap" sd.services.vps-nixos-zram.script
      && lib.hasInfix "swapon" sd.services.vps-nixos-zram.script;
    "root remounted with size=90%" =
      lib.hasInfix "mount -o remount,size=90% /" sd.services.vps-nixos-root-size.script;

    "sshd: carried host keys, runtime authorized keys, sftp" =
      let
        ssh = x86.boot.initrd.network.ssh;
      in
      ssh.enable
      && ssh.hostKeys == [ ]
      && ssh.ignoreEmptyHostKeys
      && lib.hasInfix "Subsystem sftp internal-sftp" ssh.extraConfig
      && x86.boot.initrd.network.enable
      && x86.users.users.root.openssh.authorizedKeys.keys == [
        "# vps-nixos: the keys kexec/run carried are added at boot"
      ]
      && lib.hasInfix "/etc/ssh/authorized_keys.d/root" sd.services.vps-nixos-carry.script;
    "user keys kept, after the placeholder" =
      user.users.users.root.openssh.authorizedKeys.keys == [
        "# vps-nixos: the keys kexec/run carried are added at boot"
        "ssh-ed25519 AAAAbuilt-in operator"
      ];
    "identity: installer variant, hostname, /etc/NIXOS, journal in RAM" =
      x86.system.nixos.variant_id == "installer"
      && x86.networking.hostName == "nixos-installer"
      && sd.contents."/etc/NIXOS".text == ""
      && lib.hasInfix "Storage=volatile" sd.contents."/etc/systemd/journald.conf.d/vps-nixos.conf".text;
    "placeholder root fs, no boot loader, no firmware" =
      x86.fileSystems."/".fsType == "tmpfs"
      && !x86.boot.loader.grub.enable
      && x86.hardware.firmware == [ ]
      && !x86.hardware.enableRedistributableFirmware;

    "kernel modules: explicit, VPS drivers, filesystems, dm/md, VLAN, LUKS crypto" =
      let
        m = x86.boot.initrd.availableKernelModules;
      in
      !x86.boot.initrd.includeDefaultModules
      && lib.all (x: lib.elem x m) [
        "virtio_pci"
        "virtio_blk"
        "virtio_scsi"
        "virtio_net"
        "xen_blkfront"
        "xen_netfront"
        "nvme"
        "ahci"
        "sd_mod"
        "ext4"
        "vfat"
        "btrfs"
        "xfs"
        "dm_mod"
        "dm_crypt"
        "raid1"
        "8021q"
        "af_alg"
      ]
      && !lib.elem "usbhid" m
      && !lib.elem "zfs" m;
    "kernel modules: aarch64 has virtio_mmio and no xen" =
      lib.elem "virtio_mmio" arm.boot.initrd.availableKernelModules
      && !lib.elem "xen_blkfront" arm.boot.initrd.availableKernelModules;
    "compression: zstd -19" =
      x86.boot.initrd.compressor == "zstd"
      && x86.boot.initrd.compressorArgs == [
        "-19"
        "-T0"
      ];

    "tools: base and generic layout" =
      lib.all (n: lib.elem n (binNames x86)) [
        "util-linux-minimal-initrd-bins"
        "procps-initrd-bins"
        "iproute2-static-initrd-bins"
        "jq-initrd-bins"
        "zstd-initrd-bins"
        "gnutar-initrd-bins"
        "gptfdisk-initrd-bins"
        "parted-initrd-bins"
        "e2fsprogs-initrd-bins"
        "dosfstools-initrd-bins"
        "btrfs-progs-initrd-bins"
        "xfsprogs-initrd-bins"
        "cryptsetup-initrd-bins"
        "lvm2-1.0"
        "mdadm-1.0"
      ]
      && sd.extraBin.ssh-keygen == "/nix/store/00000000000000000000000000000000-openssh-10.0p2/bin/ssh-keygen";
    "sgdisk without ICU" =
      sgdiskWrapper != null
      && lib.hasInfix "for n in sgdisk;" sgdiskWrapper.script
      && lib.any (p: lib.hasPrefix "popt" p.name) sgdiskWrapper.passthru.package.buildInputs
      && !lib.any (p: lib.hasPrefix "icu4c" p.name) sgdiskWrapper.passthru.package.buildInputs;
    "only the programs a layout calls" =
      let
        xfs = lib.findFirst (p: p.name == "xfsprogs-initrd-bins") null sd.initrdBin;
      in
      xfs != null && lib.hasInfix "for n in mkfs.xfs;" xfs.script && !lib.hasInfix "xfs_scrub" xfs.script;
    "dm udev rules with lvm2, md rules with mdadm" =
      x86.boot.initrd.services.lvm.enable
      && map (p: p.name) x86.boot.initrd.services.udev.packages == [ "mdadm-1.0" ];
    "user layout: only its tools, no dm/md rules, its modules" =
      lib.elem "zfs-1.0" (binNames user)
      && !lib.elem "gptfdisk-initrd-bins" (binNames user)
      && !user.boot.initrd.services.lvm.enable
      && user.boot.initrd.services.udev.packages == [ ]
      && lib.elem "zfs" user.boot.initrd.availableKernelModules;
    "user: rootfs, zram, no debug shell" =
      lib.hasInfix "initramfs_options=size=75%" user.system.build.vpsNixosKexecCmdline
      && !lib.elem "debug-shell.service" user.boot.initrd.systemd.targets.vps-nixos-installer.wants
      && lib.hasInfix "* 50 / 100" user.boot.initrd.systemd.services.vps-nixos-zram.script;

    "budgets: 64 MiB compressed, 192 MiB unpacked, both in the failure" =
      x86.vpsNixos.installer.budget.compressedBytes == mib 64
      && x86.vpsNixos.installer.budget.unpackedBytes == mib 192
      && lib.hasInfix "INITRD_BUDGET_BYTES=${toString (mib 64)}" reportScript
      && lib.hasInfix "INITRD_UNPACKED_BUDGET_BYTES=${toString (mib 192)}" reportScript
      && lib.hasInfix "INITRD_UNPACKED_BYTES" tarballScript
      && lib.hasInfix "vpsNixos.installer.budget.unpackedBytes" tarballScript
      && lib.hasInfix "vpsNixos.installer.budget.compressedBytes" tarballScript
      && lib.hasInfix "INITRD_BUDGET_BYTES=${toString (mib 100)}" user.system.build.vpsNixosInitrdReport.script;
    "sizes.env: INITRAMFS_OPTIONS from the kernel's version" =
      lib.hasInfix "INITRAMFS_OPTIONS=no" reportScript
      && lib.hasInfix "INITRAMFS_OPTIONS=yes" kernel618.system.build.vpsNixosInitrdReport.script;
    "tarball: nixos-images layout and sizes.env" =
      lib.all (f: lib.hasInfix f tarballScript) [
        "kexec/initrd"
        "kexec/bzImage"
        "kexec/run"
        "kexec/kexec"
        "kexec/ip"
        "TARBALL_BYTES"
        "sizes.env"
      ];
    "failed assertions stop the tarball" =
      !(builtins.tryEval failing.system.build.kexecTarball.name).success
      && (builtins.tryEval x86.system.build.kexecTarball.name).success;
  };
  failed = lib.attrNames (lib.filterAttrs (_: ok: !ok) checks);
in
if failed == [ ] then
  lib.attrNames checks
else
  throw "installer module offline checks failed: ${lib.concatStringsSep "; " failed}"
