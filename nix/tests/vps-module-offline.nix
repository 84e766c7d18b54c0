# Offline check of modules/vps.nix with only nixpkgs' `lib` (no nixpkgs, no
# network): the NixOS options it sets are declared here as stubs with the same
# types and defaults, so the module system's merging and priorities are real.
#
#   nix-instantiate --eval --strict nix/tests/vps-module-offline.nix \
#     --arg lib 'import /path/to/nixpkgs/lib'     # e.g. a nix-community/nixpkgs.lib checkout
#
# Prints the list of check names on success; throws naming the failed check.
# On GitHub, `nix flake check ./nix` runs the same checks against real NixOS.
{ lib }:
let
  inherit (lib) mkOption types;
  stub = type: default: mkOption { inherit type default; };
  bool = default: stub types.bool default;

  nixosStubs = { config, ... }: {
    # A "toplevel" that shows the settings the trimming changes, so the untrimmed variant
    # (extendModules with vpsNixos.enable = false) can be compared without building anything.
    config.system.build.toplevel = "firmware=${lib.boolToString config.hardware.enableRedistributableFirmware} docs=${lib.boolToString config.documentation.enable}";
    options = {
      system.build = stub (types.lazyAttrsOf types.raw) { };
      warnings = stub (types.listOf types.str) [ ];
      zramSwap = {
        enable = bool false;
        algorithm = stub types.str "zstd";
        memoryPercent = stub types.int 50;
      };
      boot.kernel.sysctl = stub (types.attrsOf types.anything) { };
      # grub.nix: int, 100; systemd-boot.nix: nullOr int, null (no limit).
      boot.loader.grub.configurationLimit = stub types.int 100;
      boot.loader.systemd-boot.configurationLimit = stub (types.nullOr types.int) null;
      hardware.enableRedistributableFirmware = bool false;
      documentation = {
        enable = bool true;
        doc.enable = bool true;
        info.enable = bool true;
        man.enable = bool true;
        nixos.enable = bool true;
      };
      fonts.fontconfig.enable = bool true;
      xdg = {
        autostart.enable = bool true;
        icons.enable = bool true;
        mime.enable = bool true;
        sounds.enable = bool true;
      };
      programs.command-not-found.enable = bool true;
      environment.defaultPackages = stub (types.listOf types.str) [
        "perl"
        "rsync"
        "strace"
      ];
      services.openssh = {
        enable = bool false;
        startWhenNeeded = bool false;
        settings = mkOption {
          type = types.submodule {
            freeformType = types.attrsOf types.anything;
            options = {
              PasswordAuthentication = bool true;
              KbdInteractiveAuthentication = bool true;
              PermitRootLogin = stub types.str "prohibit-password";
            };
          };
          default = { };
        };
        hostKeys = stub (types.listOf types.attrs) [
          { type = "rsa"; }
          { type = "ed25519"; }
        ];
      };
      nix = {
        gc = {
          automatic = bool false;
          dates = stub types.str "03:15";
          options = stub types.str "";
        };
        settings = stub (types.attrsOf types.anything) { };
        optimise = {
          automatic = bool false;
          # nix-optimise.nix: a string or a list of them, made a list by `apply`; daily.
          dates = mkOption {
            type = types.either types.singleLineStr (types.listOf types.str);
            default = [ "03:45" ];
            apply = lib.toList;
          };
        };
        # nix-daemon.nix
        daemonCPUSchedPolicy = stub (types.enum [
          "other"
          "batch"
          "idle"
        ]) "other";
        daemonIOSchedClass = stub (types.enum [
          "best-effort"
          "idle"
        ]) "best-effort";
        daemonIOSchedPriority = stub types.int 4;
      };
      # earlyoom.nix
      services.earlyoom = {
        enable = bool false;
        freeMemThreshold = stub (types.ints.between 1 100) 10;
        freeMemKillThreshold = stub (types.nullOr (types.ints.between 1 100)) null;
        freeSwapThreshold = stub (types.ints.between 1 100) 10;
        freeSwapKillThreshold = stub (types.nullOr (types.ints.between 1 100)) null;
      };
      services.journald.extraConfig = stub types.lines "";
      users.mutableUsers = bool true;
      users.users.root.initialPassword = stub (types.nullOr types.str) null;
    };
  };

  # What every nixos-generate-config hardware-configuration.nix pulls in.
  notDetected = {
    hardware.enableRedistributableFirmware = lib.mkDefault true;
  };

  eval =
    modules:
    (lib.evalModules {
      modules = [
        nixosStubs
        notDetected
        ../modules/vps.nix
      ]
      ++ modules;
    }).config;

  d = eval [ ];
  user = eval [
    {
      documentation.enable = true;
      hardware.enableRedistributableFirmware = true;
      services.openssh.startWhenNeeded = true;
      vpsNixos.zram.memoryPercent = 50;
      vpsNixos.journald.maxUse = null;
      vpsNixos.consoleLoginFallback.enable = true;
      vpsNixos.consoleLoginFallback.initialPassword = "console-only";
      services.journald.extraConfig = "Compress=yes";
      nix.optimise.dates = "daily";
      boot.loader.grub.configurationLimit = 3;
      services.earlyoom.freeSwapThreshold = 50;
      nix.daemonCPUSchedPolicy = "idle";
      nix.daemonIOSchedPriority = 5;
    }
  ];
  # Each of the new switches off: NixOS's defaults (the stubs' defaults) come back.
  switchedOff = eval [
    {
      vpsNixos.nix.optimise = false;
      vpsNixos.nix.lowPriority = false;
      vpsNixos.boot.configurationLimit = null;
      vpsNixos.oom.enable = false;
    }
  ];
  limit3 = eval [ { vpsNixos.boot.configurationLimit = 3; } ];
  off = eval [ { vpsNixos.enable = false; } ];
  risky = eval [
    {
      vpsNixos.ssh.keyOnly = false;
      services.openssh.settings.PermitRootLogin = "yes";
      vpsNixos.consoleLoginFallback.enable = true;
    }
  ];
  hasWarning = cfg: lib.any (w: lib.hasInfix "consoleLoginFallback" w) cfg.warnings;

  # vpsNixos.deploy: what vps-nixos reads with `nix eval --json` (src/hosts/eval.ts).
  hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
  described = eval [
    {
      vpsNixos.deploy = {
        target = "root@203.0.113.7";
        inherit hostKey;
        healthUrl = "https://203.0.113.7/";
        useSudo = false;
        confirmTimeout = 90;
      };
    }
  ];
  # The module rejects what the option types do not allow (the CLI would too, later).
  refused = module: !(builtins.tryEval (builtins.toJSON (eval [ module ]).vpsNixos.deploy)).success;

  checks = {
    "zram on, 100 % of RAM, zstd" =
      d.zramSwap.enable && d.zramSwap.memoryPercent == 100 && d.zramSwap.algorithm == "zstd";
    "zram sysctls" = d.boot.kernel.sysctl."vm.swappiness" == 100;
    "firmware off despite not-detected.nix's mkDefault" = !d.hardware.enableRedistributableFirmware;
    "docs off" = !d.documentation.enable && !d.documentation.man.enable && !d.documentation.nixos.enable;
    "fonts, xdg, command-not-found off" =
      !d.fonts.fontconfig.enable && !d.xdg.mime.enable && !d.programs.command-not-found.enable;
    "no default packages" = d.environment.defaultPackages == [ ];
    "sshd on and persistent" = d.services.openssh.enable && !d.services.openssh.startWhenNeeded;
    "sshd key-only" =
      !d.services.openssh.settings.PasswordAuthentication
      && !d.services.openssh.settings.KbdInteractiveAuthentication
      && d.services.openssh.settings.PermitRootLogin == "prohibit-password";
    "ecdsa host key served" = lib.any (k: k.type == "ecdsa") d.services.openssh.hostKeys;
    "nix gc weekly, 14d" =
      d.nix.gc.automatic && d.nix.gc.dates == "weekly" && d.nix.gc.options == "--delete-older-than 14d";
    "min-free/max-free" =
      d.nix.settings.min-free == 256 * 1024 * 1024 && d.nix.settings.max-free == 1024 * 1024 * 1024;
    "optimise weekly" = d.nix.optimise.automatic && d.nix.optimise.dates == [ "weekly" ];
    "nix daemon: batch, best-effort 7" =
      d.nix.daemonCPUSchedPolicy == "batch"
      && d.nix.daemonIOSchedClass == "best-effort"
      && d.nix.daemonIOSchedPriority == 7;
    "boot entries limited to 10 (grub, systemd-boot)" =
      d.boot.loader.grub.configurationLimit == 10 && d.boot.loader.systemd-boot.configurationLimit == 10;
    "earlyoom on: 10 % memory, 25 % swap, kill at half" =
      d.services.earlyoom.enable
      && d.services.earlyoom.freeMemThreshold == 10
      && d.services.earlyoom.freeSwapThreshold == 25
      && d.services.earlyoom.freeMemKillThreshold == null
      && d.services.earlyoom.freeSwapKillThreshold == null;
    "journald capped" = lib.hasInfix "SystemMaxUse=100M" d.services.journald.extraConfig;
    "no fallback by default" = d.users.users.root.initialPassword == null && !hasWarning d;

    "user: docs back on" = user.documentation.enable;
    "user: firmware back on" = user.hardware.enableRedistributableFirmware;
    "user: socket activation back on" = user.services.openssh.startWhenNeeded;
    "user: zram 50 %" = user.zramSwap.memoryPercent == 50;
    "user: optimise schedule" = user.nix.optimise.dates == [ "daily" ] && user.nix.optimise.automatic;
    "user: boot limit, grub only" =
      user.boot.loader.grub.configurationLimit == 3 && user.boot.loader.systemd-boot.configurationLimit == 10;
    "user: earlyoom swap threshold" =
      user.services.earlyoom.freeSwapThreshold == 50 && user.services.earlyoom.freeMemThreshold == 10;
    "user: daemon priority" =
      user.nix.daemonCPUSchedPolicy == "idle"
      && user.nix.daemonIOSchedPriority == 5
      && user.nix.daemonIOSchedClass == "best-effort";
    "vpsNixos.boot.configurationLimit sets both" =
      limit3.boot.loader.grub.configurationLimit == 3 && limit3.boot.loader.systemd-boot.configurationLimit == 3;
    "switched off: NixOS's optimise (off, daily)" =
      !switchedOff.nix.optimise.automatic && switchedOff.nix.optimise.dates == [ "03:45" ];
    "switched off: NixOS's daemon priority" =
      switchedOff.nix.daemonCPUSchedPolicy == "other"
      && switchedOff.nix.daemonIOSchedClass == "best-effort"
      && switchedOff.nix.daemonIOSchedPriority == 4;
    "switched off: NixOS's boot limits" =
      switchedOff.boot.loader.grub.configurationLimit == 100
      && switchedOff.boot.loader.systemd-boot.configurationLimit == null;
    "switched off: no earlyoom, its defaults" =
      !switchedOff.services.earlyoom.enable
      && switchedOff.services.earlyoom.freeMemThreshold == 10
      && switchedOff.services.earlyoom.freeSwapThreshold == 10;
    "switched off: the rest stays" = switchedOff.zramSwap.enable && !switchedOff.documentation.enable;
    "user: journald cap removed, own line kept" =
      !lib.hasInfix "SystemMaxUse" user.services.journald.extraConfig
      && lib.hasInfix "Compress=yes" user.services.journald.extraConfig;
    "fallback: password, mutable users, warning" =
      user.users.users.root.initialPassword == "console-only" && user.users.mutableUsers && hasWarning user;
    "fallback: only one warning while sshd is key-only" = lib.length user.warnings == 1;
    "fallback: extra warning when root passwords reach sshd" = lib.length risky.warnings == 2;

    "deploy: nothing described by default" =
      builtins.toJSON d.vpsNixos.deploy
      == ''{"buildHost":null,"confirmTimeout":null,"healthCheck":null,"healthTimeout":null,"healthUrl":null,"hostKey":[],"hostKeyFingerprint":[],"method":null,"target":null,"useSudo":null}'';
    "deploy: a description reads as plain JSON, one key a list" =
      builtins.toJSON described.vpsNixos.deploy
      == ''{"buildHost":null,"confirmTimeout":90,"healthCheck":null,"healthTimeout":null,"healthUrl":"https://203.0.113.7/","hostKey":["${hostKey}"],"hostKeyFingerprint":[],"method":null,"target":"root@203.0.113.7","useSudo":false}'';
    "deploy: changes nothing in the system" =
      described.system.build.toplevel == d.system.build.toplevel && described.warnings == d.warnings;
    "deploy: an unknown field is refused" = refused { vpsNixos.deploy.confirmWipe = "/dev/vda"; };
    "deploy: a string for a bool is refused" = refused { vpsNixos.deploy.useSudo = "yes"; };
    "deploy: an unknown method is refused" = refused { vpsNixos.deploy.method = "nuke"; };
    "deploy: a timeout out of range is refused" = refused { vpsNixos.deploy.confirmTimeout = 1; };
    "deploy: a target with a space is refused" = refused { vpsNixos.deploy.target = "root@a b"; };

    "untrimmed variant: the same configuration without the module" =
      d.system.build.toplevel == "firmware=false docs=false"
      && d.system.build.vpsNixosUntrimmed == "firmware=true docs=true";
    "no untrimmed variant when disabled" = !(off.system.build ? vpsNixosUntrimmed);
    "enable = false changes nothing" =
      !off.zramSwap.enable
      && off.hardware.enableRedistributableFirmware
      && off.documentation.enable
      && !off.services.earlyoom.enable
      && off.nix.daemonCPUSchedPolicy == "other"
      && off.boot.loader.grub.configurationLimit == 100
      && off.nix.optimise.dates == [ "03:45" ];
  };
  failed = lib.attrNames (lib.filterAttrs (_: ok: !ok) checks);
in
if failed == [ ] then
  lib.attrNames checks
else
  throw "vps module offline checks failed: ${lib.concatStringsSep "; " failed}"
