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
        description = ''
          Hard-link identical files across store paths once a week
          (nix.optimise.automatic, nix.optimise.dates = [ "weekly" ]; NixOS's
          schedule is daily at 03:45): successive generations share most files,
          and a host that changes only by deploys has little new to link each day.
        '';
      };
      lowPriority = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Run the Nix daemon, and the builds and substitutions it does, at a
          lower CPU and I/O priority than the host's services:
          nix.daemonCPUSchedPolicy = "batch" and nix.daemonIOSchedClass =
          "best-effort" with nix.daemonIOSchedPriority = 7, the lowest
          best-effort level (NixOS: "other", best-effort, 4). On a one-vCPU VPS
          a build or an unpack otherwise competes evenly with the service the
          host is for. Only what goes through the daemon is affected; a root
          process that opens the store itself keeps its own priority.
          Not "idle" (for either): an idle process gets the CPU or the disk only
          when nothing else wants it, so a busy service could stall a deploy's
          substitution for as long as it stays busy; batch and best-effort 7
          still get their share.
        '';
      };
    };

    boot.configurationLimit = mkOption {
      type = types.nullOr types.ints.positive;
      default = 10;
      description = ''
        Keep at most this many generations in the boot menu
        (boot.loader.grub.configurationLimit and
        boot.loader.systemd-boot.configurationLimit; NixOS: 100 and no limit).
        Each boot entry needs its kernel and initrd on the ESP (systemd-boot)
        or on a separate /boot partition (GRUB copies them there), tens of MB
        for every distinct pair, so a small /boot or ESP fills after a few kernel
        updates and `switch` then fails to install the boot loader. Older
        generations are only left out of the menu; they stay in
        /nix/var/nix/profiles until the garbage collection (vpsNixos.nix.gc)
        removes them. null: NixOS's limits.
      '';
    };

    oom.enable = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Run earlyoom (services.earlyoom, a small C daemon) so that a host that
        runs out of memory kills its biggest process within seconds instead of
        thrashing, possibly for minutes and unreachable over SSH, until the
        kernel's OOM killer acts. earlyoom sends SIGTERM to the process with the highest
        oom_score when both available memory is below freeMemThreshold % of RAM
        and free swap below freeSwapThreshold % of swap, and SIGKILL at half of
        each. Set here with low priority: 10 % of RAM (NixOS's and earlyoom's
        default; about 100 MB on 1 GB, 50 MB on 512 MB) and 25 % of swap instead
        of 10 %. The swap is zram (vpsNixos.zram), which is held in RAM: the
        fuller it gets, the more RAM its compressed pages take (a full device of
        100 % of RAM: about a third of RAM at zstd's typical 3:1, half at 2:1),
        and a host that waits until it is 90 % full (earlyoom's default) is
        already thrashing on program pages re-read from disk.
        Requiring low available memory as well leaves alone a host that only
        parks idle pages in zram, which vm.swappiness = 100 makes normal.
        NixOS's systemd-oomd (systemd.oomd.enable, on by default) kills only in
        cgroups marked ManagedOOMSwap=/ManagedOOMMemoryPressure=, which NixOS
        sets only through systemd.oomd.enable{Root,System,User}Slice(s), all off
        by default: the two do not compete unless you turn those on (then turn
        this off).
      '';
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

    # Read by vps-nixos (the CLI and the reusable workflows), never by the system:
    # changing it changes no store path. Each field fills the input of the same name
    # (hostKey: known-hosts), explicit options and workflow inputs win over it, and
    # vps-nixos checks every value with the inputs' own rules. Nothing here confirms
    # a wipe, and nothing here is secret: a configuration is readable in the store.
    deploy = {
      target = mkOption {
        type = types.nullOr (types.strMatching "([^@[:space:]]+@)?[^@[:space:]]+");
        default = null;
        example = "root@203.0.113.7";
        description = ''
          Where this configuration is deployed: user@host[:port] (IPv4,
          [IPv6] or a hostname; user root when left out). Setting it makes
          the configuration a described host: `vps-nixos deploy --flake .#NAME`
          needs no other option, `vps-nixos hosts` lists it, and the reusable
          workflows deploy it with `hosts: all`. One machine, one
          configuration: two described hosts with the same host and port are
          refused.
        '';
      };
      hostKey = mkOption {
        type = types.coercedTo types.str lib.toList (types.listOf types.str);
        default = [ ];
        example = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA…";
        description = ''
          The host's public SSH key(s), as /etc/ssh/ssh_host_ed25519_key.pub
          holds them (or as `ssh-keyscan HOST` prints them, without the host
          name): the pin every connection checks (the known-hosts input, for
          the target's name). Check it against the provider's console before
          you commit it. An explicit known-hosts or host-key-fingerprint
          replaces it and hostKeyFingerprint.
        '';
      };
      hostKeyFingerprint = mkOption {
        type = types.coercedTo types.str lib.toList (types.listOf (types.strMatching "SHA256:[A-Za-z0-9+/]{43}"));
        default = [ ];
        example = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
        description = "Pinned host key fingerprint(s) instead of, or beside, hostKey (the host-key-fingerprint input).";
      };
      method = mkOption {
        type = types.nullOr (
          types.enum [
            "auto"
            "kexec"
            "infect"
            "deploy-only"
          ]
        );
        default = null;
        description = "How the host may be installed (the method input; null: auto).";
      };
      buildHost = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "builder@build.example";
        description = "Build on this host (user@host) instead of the runner (the build-host input).";
      };
      useSudo = mkOption {
        type = types.nullOr types.bool;
        default = null;
        description = "The target user is not root: activate with sudo (the use-sudo input).";
      };
      confirmTimeout = mkOption {
        type = types.nullOr (types.ints.between 5 3600);
        default = null;
        description = "Seconds the host waits for the runner to confirm a switch before it rolls back by itself (the confirm-timeout input; null: 60).";
      };
      healthCheck = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "systemctl is-active nginx.service";
        description = "A command run on the host after the switch; a non-zero exit rolls back (the health-check input).";
      };
      healthUrl = mkOption {
        type = types.nullOr (types.strMatching "https?://[^[:space:]]+");
        default = null;
        example = "https://203.0.113.7/";
        description = "A URL fetched from the runner after the switch; no 2xx/3xx answer rolls back (the health-url input).";
      };
      healthTimeout = mkOption {
        type = types.nullOr (types.ints.between 1 3600);
        default = null;
        description = "Seconds the health checks may take to pass (the health-timeout input; null: 60).";
      };
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
    (mkIf cfg.nix.optimise {
      nix.optimise = {
        automatic = mkDefault true;
        # NixOS's default is daily (03:45); the README and the option say weekly.
        dates = mkDefault [ "weekly" ];
      };
    })
    (mkIf cfg.nix.lowPriority {
      # Not "idle": it can starve the daemon while a service is busy (see the option).
      nix = {
        daemonCPUSchedPolicy = mkDefault "batch";
        daemonIOSchedClass = mkDefault "best-effort";
        daemonIOSchedPriority = mkDefault 7;
      };
    })

    (mkIf (cfg.boot.configurationLimit != null) {
      boot.loader.grub.configurationLimit = mkDefault cfg.boot.configurationLimit;
      boot.loader.systemd-boot.configurationLimit = mkDefault cfg.boot.configurationLimit;
    })

    # systemd-oomd stays as NixOS has it: enabled, but acting on no cgroup unless one of
    # systemd.oomd.enable*Slice(s) is set, so it does not compete with earlyoom by default.
    (mkIf cfg.oom.enable {
      services.earlyoom = {
        enable = mkDefault true;
        freeMemThreshold = mkDefault 10;
        freeSwapThreshold = mkDefault 25;
      };
    })

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
