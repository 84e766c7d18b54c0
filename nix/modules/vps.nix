# vps-nixos host module (nixosModules.default): defaults for a NixOS host on a
# cheap 512 MB – 2 GB VM. Import it and every default below applies; each one is
# an option under `vpsNixos.*` and is set with low priority, so a value in the
# user's own configuration wins. What each saves or protects against, with the
# numbers, is in ../README.md.
{
  config,
  lib,
  extendModules,
  ...
}:
let
  inherit (lib)
    mkDefault
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    types
    ;
  cfg = config.vpsNixos;
  MiB = 1024 * 1024;

  # Every generated hardware-configuration.nix imports installer/scan/not-detected.nix,
  # which sets enableRedistributableFirmware = mkDefault true; a second mkDefault
  # false would be a conflict. Priority 900 beats mkDefault (1000) and still
  # loses to a plain value (100) in the user's configuration.
  mkTrimDefault = lib.mkOverride 900;

  trimOption =
    what: saves:
    mkOption {
      type = types.bool;
      default = true;
      description = "Leave out ${what} (${saves}). Set to false to keep the NixOS default.";
    };
in
{
  options.vpsNixos = {
    enable = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Apply the vps-nixos defaults for a small VM. Importing the module is
        enough; set to false to import it without any effect.
      '';
    };

    zram = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Compressed swap in RAM (zram), sized from RAM at boot. Cheap VPS plans
          rarely include swap, and a 1 GB host OOMs during `nixos-rebuild switch`
          or a large `nix copy` without it. Also sets vm.swappiness=100 and
          vm.page-cluster=0, the usual tuning for zram.
        '';
      };
      memoryPercent = mkOption {
        type = types.ints.between 1 400;
        default = 100;
        description = ''
          Size of the zram device as a percentage of RAM (uncompressed bytes it
          can hold). At zstd's typical 3:1, 100 % uses at most about a third of
          RAM, and only while swapped pages are stored.
        '';
      };
      algorithm = mkOption {
        type = types.str;
        default = "zstd";
        description = "zram compression algorithm (zstd: best ratio; lz4: least CPU).";
      };
    };

    trim = {
      firmware = trimOption "redistributable firmware (hardware.enableRedistributableFirmware)" "linux-firmware is ~787 MB of a closure; virtio VMs load none of it";
      documentation = trimOption "man pages, info, HTML docs and the NixOS manual" "docs and man-db caches nobody reads on a server";
      fonts = trimOption "fontconfig" "fonts and their caches on a headless host";
      xdg = trimOption "XDG autostart, icons, MIME and sound themes" "desktop data on a headless host";
      commandNotFound = trimOption "command-not-found" "its database and the channel it needs";
      defaultPackages = trimOption "environment.defaultPackages (perl, rsync, strace)" "tools installed only for interactive convenience";
    };

    ssh = {
      persistent = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Enable sshd as a persistent daemon (services.openssh.startWhenNeeded =
          false). Socket activation saves ~5 MB of RAM but fails silently when
          key generation or the config is broken, and deploys need ssh.
        '';
      };
      keyOnly = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Disable password and keyboard-interactive logins and allow root only
          with a key, so that a console fallback password (or any weak one) is
          never reachable over the network.
        '';
      };
      allHostKeyTypes = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Serve ed25519, ECDSA and RSA host keys (NixOS serves ed25519 and RSA).
          The keys carried from the provider's OS include ECDSA; a known_hosts
          pin on that key keeps matching after the install.
        '';
      };
    };

    nix = {
      gc = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Collect garbage periodically (nix.gc.automatic); every deploy leaves a generation behind on a small disk.";
        };
        dates = mkOption {
          type = types.str;
          default = "weekly";
          description = "When to collect garbage (systemd calendar expression).";
        };
        olderThan = mkOption {
          type = types.str;
          default = "14d";
          description = "Delete generations older than this (`--delete-older-than`); rollbacks stay possible within it.";
        };
      };
      minFree = mkOption {
        type = types.ints.unsigned;
        default = 256 * MiB;
        description = ''
          nix.settings.min-free in bytes: when free disk space drops below it
          during a build or copy, Nix collects garbage until max-free is free.
          Must stay well below the disk's free space or every copy starts a GC.
        '';
      };
      maxFree = mkOption {
        type = types.ints.unsigned;
        default = 1024 * MiB;
        description = "nix.settings.max-free in bytes: how much an automatic GC tries to free.";
      };
      optimise = mkOption {
        type = types.bool;
        default = true;
        description = "Hard-link identical files across store paths weekly (nix.optimise.automatic): successive generations share most files.";
      };
    };

    journald.maxUse = mkOption {
      type = types.nullOr types.str;
      default = "100M";
      description = ''
        journald SystemMaxUse= (null: journald's own default, 10 % of the
        filesystem, up to 4 GB). Set it here rather than in
        services.journald.extraConfig, which this adds a line to.
      '';
    };

    consoleLoginFallback = {
      enable = mkEnableOption ''
        a root password for the provider's web console on first boot: when
        SSH does not come up (wrong network, broken keys) the console is the
        only way in. It sets users.users.root.initialPassword and
        users.mutableUsers = true (so `passwd` changes stick) and adds a warning.
        The password is world-readable in the Nix store; change it with passwd
        and turn this off once SSH works'';
      initialPassword = mkOption {
        type = types.str;
        default = "nixos";
        description = "The initial root password used when consoleLoginFallback is enabled.";
      };
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      # The same configuration without this module, for the closure report's "saved by the
      # vpsNixos module" (vps-nixos build --measure-trimming builds it; nothing else does).
      system.build.vpsNixosUntrimmed =
        (extendModules { modules = [ { vpsNixos.enable = lib.mkForce false; } ]; })
        .config.system.build.toplevel;
    }

    (mkIf cfg.zram.enable {
      zramSwap = {
        enable = mkDefault true;
        algorithm = mkDefault cfg.zram.algorithm;
        memoryPercent = mkDefault cfg.zram.memoryPercent;
      };
      boot.kernel.sysctl = {
        "vm.swappiness" = mkDefault 100;
        "vm.page-cluster" = mkDefault 0;
      };
    })

    (mkIf cfg.trim.firmware {
      hardware.enableRedistributableFirmware = mkTrimDefault false;
    })
    (mkIf cfg.trim.documentation {
      documentation = {
        enable = mkDefault false;
        doc.enable = mkDefault false;
        info.enable = mkDefault false;
        man.enable = mkDefault false;
        nixos.enable = mkDefault false;
      };
    })
    (mkIf cfg.trim.fonts { fonts.fontconfig.enable = mkDefault false; })
    (mkIf cfg.trim.xdg {
      xdg = {
        autostart.enable = mkDefault false;
        icons.enable = mkDefault false;
        mime.enable = mkDefault false;
        sounds.enable = mkDefault false;
      };
    })
    (mkIf cfg.trim.commandNotFound { programs.command-not-found.enable = mkDefault false; })
    (mkIf cfg.trim.defaultPackages { environment.defaultPackages = mkDefault [ ]; })

    (mkIf cfg.ssh.persistent {
      services.openssh = {
        enable = mkDefault true;
        startWhenNeeded = mkDefault false;
      };
    })
    (mkIf cfg.ssh.keyOnly {
      services.openssh.settings = {
        PasswordAuthentication = mkDefault false;
        KbdInteractiveAuthentication = mkDefault false;
        PermitRootLogin = mkDefault "prohibit-password";
      };
    })
    (mkIf cfg.ssh.allHostKeyTypes {
      services.openssh.hostKeys = mkDefault [
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
    })

    (mkIf cfg.nix.gc.enable {
      nix.gc = {
        automatic = mkDefault true;
        dates = mkDefault cfg.nix.gc.dates;
        options = mkDefault "--delete-older-than ${cfg.nix.gc.olderThan}";
      };
    })
    {
      nix.settings = {
        min-free = mkDefault cfg.nix.minFree;
        max-free = mkDefault cfg.nix.maxFree;
      };
    }
    (mkIf cfg.nix.optimise { nix.optimise.automatic = mkDefault true; })

    (mkIf (cfg.journald.maxUse != null) {
      services.journald.extraConfig = ''
        SystemMaxUse=${cfg.journald.maxUse}
      '';
    })

    (mkIf cfg.consoleLoginFallback.enable {
      users.users.root.initialPassword = cfg.consoleLoginFallback.initialPassword;
      # NixOS's default; a user who chose immutable users keeps that (then the
      # password is re-applied on every activation and passwd does not stick).
      users.mutableUsers = mkDefault true;
      warnings = [
        ''
          vpsNixos.consoleLoginFallback is enabled: root's initial password is
          set from vpsNixos.consoleLoginFallback.initialPassword and is readable
          by anyone in /nix/store. Use it only on the provider's console, change
          it with `passwd`, and disable the fallback once SSH works.''
      ]
      ++ lib.optional
        (
          config.services.openssh.enable
          && config.services.openssh.settings.PasswordAuthentication or true == true
          && config.services.openssh.settings.PermitRootLogin or "" == "yes"
        )
        ''
          vpsNixos.consoleLoginFallback: sshd allows root password logins
          (PasswordAuthentication and PermitRootLogin = "yes"), so the fallback
          password is reachable over the network. Keep vpsNixos.ssh.keyOnly on.'';
    })
  ]);
}
