{
  description = "vps-nixos: a slim kexec installer and a host module for NixOS on cheap (512 MB – 2 GB) VPS";

  # flake.lock cannot be created in the offline workspace this is written in:
  # the nix-lock workflow (.github/workflows/nix-lock.yml) creates and refreshes
  # it as a pull request on GitHub, and until one is committed the nix-installer
  # workflow locks on the fly (`nix flake lock`).
  inputs = {
    # The current stable release (25.11 is end of life).
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.11";
    disko = {
      url = "github:nix-community/disko";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      disko,
    }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = lib.genAttrs systems;

      installerFor =
        system:
        lib.nixosSystem {
          modules = [
            self.nixosModules.kexec-installer
            { nixpkgs.hostPlatform = system; }
          ];
        };

      # A small host like the ones users deploy: our module, disko, one disk.
      exampleHost =
        system: extraModule:
        lib.nixosSystem {
          modules = [
            self.nixosModules.default
            disko.nixosModules.disko
            extraModule
            {
              nixpkgs.hostPlatform = system;
              system.stateVersion = "26.11";
              networking.hostName = "vps-example";
              boot.loader.grub.enable = true;
              disko.devices.disk.main = {
                type = "disk";
                device = "/dev/vda";
                content = {
                  type = "gpt";
                  partitions = {
                    bios = {
                      size = "1M";
                      type = "EF02";
                    };
                    root = {
                      size = "100%";
                      content = {
                        type = "filesystem";
                        format = "ext4";
                        mountpoint = "/";
                      };
                    };
                  };
                };
              };
            }
          ];
        };
    in
    {
      nixosModules = {
        kexec-installer = ./kexec-installer/module.nix;
        vps = ./modules/vps.nix;
        default = self.nixosModules.vps;
      };

      packages = forAllSystems (system: rec {
        kexec-installer = (installerFor system).config.system.build.kexecTarball;
        default = kexec-installer;
        # There is no installer system (toplevel) any more, only an initrd.
        # This explains its size: sizes.env (compressed, unpacked, budgets) and
        # store-paths.tsv (each store path in the initrd, unpacked, biggest
        # first). Built without the budget check, so it shows an initrd that
        # is over budget too.
        kexec-installer-initrd-report = (installerFor system).config.system.build.vpsNixosInitrdReport;
      });

      checks = forAllSystems (
        system:
        let
          pkgs = nixpkgs.legacyPackages.${system};
          installer = (installerFor system).config;
          defaultHost = exampleHost system { };
          defaults = defaultHost.config;
          # A user who wants some things back, and the console fallback.
          overriddenHost = exampleHost system {
            documentation.enable = true;
            hardware.enableRedistributableFirmware = true;
            vpsNixos.zram.memoryPercent = 50;
            vpsNixos.journald.maxUse = null;
            vpsNixos.consoleLoginFallback.enable = true;
            nix.optimise.dates = [ "daily" ];
            boot.loader.grub.configurationLimit = 3;
            services.earlyoom.freeSwapThreshold = 50;
            nix.daemonCPUSchedPolicy = "other";
          };
          overridden = overriddenHost.config;
          # The example host without the module: NixOS's own values.
          plain = (exampleHost system { vpsNixos.enable = false; }).config;
          # Each of the newer switches off: NixOS's own values come back.
          switchedOff =
            (exampleHost system {
              vpsNixos.nix.optimise = false;
              vpsNixos.nix.lowPriority = false;
              vpsNixos.boot.configurationLimit = null;
              vpsNixos.oom.enable = false;
            }).config;
          # hardware.firmware's `apply` turns the list into one buildEnv derivation
          # (the firmware directory), so the packages are looked for in the
          # option's definitions: after mkIf and priorities, before `apply`.
          firmwarePackages = host: lib.concatLists host.options.hardware.firmware.definitions;
          hasLinuxFirmware =
            host: lib.any (p: lib.hasInfix "linux-firmware" (p.name or "")) (firmwarePackages host);
          expect =
            name: ok:
            if ok then
              true
            else
              throw "vps-nixos module check failed: ${name}";
          moduleEval =
            assert expect "zram on by default" defaults.zramSwap.enable;
            assert expect "zram 100 % of RAM" (defaults.zramSwap.memoryPercent == 100);
            assert expect "no firmware" (!defaults.hardware.enableRedistributableFirmware);
            assert expect "no linux-firmware" (!hasLinuxFirmware defaultHost);
            assert expect "docs off" (!defaults.documentation.enable);
            assert expect "command-not-found off" (!defaults.programs.command-not-found.enable);
            assert expect "sshd on" defaults.services.openssh.enable;
            assert expect "sshd persistent" (!defaults.services.openssh.startWhenNeeded);
            assert expect "password auth off" (!defaults.services.openssh.settings.PasswordAuthentication);
            assert expect "ecdsa host key served" (
              lib.any (k: k.type == "ecdsa") defaults.services.openssh.hostKeys
            );
            assert expect "nix gc weekly" (
              defaults.nix.gc.automatic && defaults.nix.gc.options == "--delete-older-than 14d"
            );
            assert expect "min-free 256 MiB" (defaults.nix.settings.min-free == 256 * 1024 * 1024);
            assert expect "nix optimise weekly" (
              defaults.nix.optimise.automatic && defaults.nix.optimise.dates == [ "weekly" ]
            );
            assert expect "nix daemon batch, best-effort 7" (
              let
                sc = defaults.systemd.services.nix-daemon.serviceConfig;
              in
              defaults.nix.daemonCPUSchedPolicy == "batch"
              && sc.CPUSchedulingPolicy == "batch"
              && sc.IOSchedulingClass == "best-effort"
              && sc.IOSchedulingPriority == 7
            );
            assert expect "boot entries limited to 10" (
              defaults.boot.loader.grub.configurationLimit == 10
              && defaults.boot.loader.systemd-boot.configurationLimit == 10
            );
            assert expect "earlyoom on, 10 % memory, 25 % swap" (
              defaults.services.earlyoom.enable
              && defaults.services.earlyoom.freeMemThreshold == 10
              && defaults.services.earlyoom.freeSwapThreshold == 25
            );
            # The module's comment: systemd-oomd is on but marks no slice, so it
            # does not compete with earlyoom.
            assert expect "systemd-oomd acts on no slice" (
              !(
                defaults.systemd.oomd.enableRootSlice
                || defaults.systemd.oomd.enableSystemSlice
                || defaults.systemd.oomd.enableUserSlices
              )
            );
            assert expect "journald cap" (lib.hasInfix "SystemMaxUse=100M" defaults.services.journald.extraConfig);
            assert expect "no fallback password by default" (defaults.users.users.root.initialPassword == null);
            # vpsNixos.deploy is read by vps-nixos, never by the system (tests/vps-module-offline.nix).
            assert expect "no host description by default" (
              defaults.vpsNixos.deploy.target == null && defaults.vpsNixos.deploy.hostKey == [ ]
            );
            assert expect "no fallback warning by default" (
              !lib.any (w: lib.hasInfix "consoleLoginFallback" w) defaults.warnings
            );
            assert expect "user turns docs back on" overridden.documentation.enable;
            assert expect "user turns firmware back on" overridden.hardware.enableRedistributableFirmware;
            # The firmware check can see linux-firmware when it is there.
            assert expect "linux-firmware with firmware on" (hasLinuxFirmware overriddenHost);
            assert expect "user's optimise schedule" (overridden.nix.optimise.dates == [ "daily" ]);
            assert expect "user's grub limit" (
              overridden.boot.loader.grub.configurationLimit == 3
              && overridden.boot.loader.systemd-boot.configurationLimit == 10
            );
            assert expect "user's earlyoom threshold" (overridden.services.earlyoom.freeSwapThreshold == 50);
            assert expect "user's daemon policy" (
              overridden.systemd.services.nix-daemon.serviceConfig.CPUSchedulingPolicy == "other"
            );
            assert lib.all
              (
                o:
                let
                  get = lib.getAttrFromPath (lib.splitString "." o);
                in
                expect "switched off: NixOS's ${o}" (get switchedOff == get plain)
              )
              [
                "nix.optimise.automatic"
                "nix.optimise.dates"
                "nix.daemonCPUSchedPolicy"
                "nix.daemonIOSchedClass"
                "nix.daemonIOSchedPriority"
                "boot.loader.grub.configurationLimit"
                "boot.loader.systemd-boot.configurationLimit"
                "services.earlyoom.enable"
              ];
            assert expect "switched off: no earlyoom" (!switchedOff.services.earlyoom.enable);
            assert expect "user sizes zram" (overridden.zramSwap.memoryPercent == 50);
            assert expect "journald cap removable" (
              !lib.hasInfix "SystemMaxUse=" overridden.services.journald.extraConfig
            );
            assert expect "fallback password" (overridden.users.users.root.initialPassword == "nixos");
            assert expect "fallback mutable users" overridden.users.mutableUsers;
            assert expect "fallback warns" (
              lib.any (w: lib.hasInfix "consoleLoginFallback" w) overridden.warnings
            );
            pkgs.runCommand "vps-module-eval" { } ''
              # Evaluated, not built: the toplevel derivation of the example host.
              echo ${builtins.unsafeDiscardStringContext defaults.system.build.toplevel.drvPath} > $out
            '';
        in
        {
          inherit moduleEval;
          # The installer itself (same derivation as the package: built once);
          # its build fails over the initrd budget.
          kexec-installer = self.packages.${system}.kexec-installer;
          # Every command in scripts/installer-tools.txt (the one list, also read
          # by the stand-in's build) is in the built initrd's /bin or /sbin, and
          # ICU is not in it (gptfdisk is built without it, xfsprogs' xfs_scrub
          # is left out). `../scripts` is inside this git flake's source (the
          # repository), so the file must be committed.
          installer-initrd-tools =
            pkgs.runCommand "installer-initrd-tools"
              {
                nativeBuildInputs = [
                  pkgs.cpio
                  pkgs.zstd
                  pkgs.xz
                  pkgs.gzip
                ];
              }
              ''
                sh ${./tests/initrd-tools.sh} \
                  ${installer.system.build.initialRamdisk}/${installer.system.boot.loader.initrdFile} \
                  ${../scripts/installer-tools.txt} icu4c >$out 2>&1 || {
                  cat $out
                  exit 1
                }
                cat $out
              '';
          # The installer evaluated against real NixOS: what the offline test
          # (tests/installer-module-offline.nix) can only check with stubs.
          installerEval =
            let
              cmdline = lib.splitString " " installer.system.build.vpsNixosKexecCmdline;
              sd = installer.boot.initrd.systemd;
            in
            assert expect "installer: systemd stage 1" sd.enable;
            assert expect "installer: rd.systemd.unit=vps-nixos-installer.target" (
              lib.head cmdline == "rd.systemd.unit=vps-nixos-installer.target"
            );
            assert expect "installer: no init=, no root=" (
              !lib.any (p: lib.hasPrefix "init=" p || lib.hasPrefix "root=" p) cmdline
            );
            assert expect "installer: the target wants sshd and networkd" (
              lib.all (u: lib.elem u sd.targets.vps-nixos-installer.wants) [
                "sshd.service"
                "systemd-networkd.service"
              ]
            );
            assert expect "installer: never switches root" (!sd.services.initrd-switch-root.enable);
            assert expect "installer: initrd sshd" installer.boot.initrd.network.ssh.enable;
            assert expect "installer: resolved in the initrd" installer.boot.initrd.services.resolved.enable;
            assert expect "installer: explicit kernel modules" (!installer.boot.initrd.includeDefaultModules);
            assert expect "installer: no firmware" (!installer.hardware.enableRedistributableFirmware);
            assert expect "installer: VARIANT_ID=installer" (installer.system.nixos.variant_id == "installer");
            pkgs.runCommand "installer-eval" { } ''
              echo ${lib.escapeShellArg installer.system.build.vpsNixosKexecCmdline} > $out
            '';
          # The same checks with stubs, as the offline workspace runs them.
          installer-module-offline = pkgs.writeText "installer-module-offline" (
            lib.concatStringsSep "\n" (import ./tests/installer-module-offline.nix { inherit lib; })
          );
          # The disk script our build stage asks disko for, with our module loaded:
          # destroyFormatMountNoDeps ($out/bin/disko-destroy-format-mount), not the
          # legacy diskoScriptNoDeps that disko removes in 2.0.
          disko-script = defaults.system.build.destroyFormatMountNoDeps;
          run-sh = pkgs.runCommand "run-sh-shellcheck" { nativeBuildInputs = [ pkgs.shellcheck ]; } ''
            shellcheck -s sh ${./kexec-installer/run.sh} ${./tests}/*.sh
            touch $out
          '';
        }
      );
    };
}
