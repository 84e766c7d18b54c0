# The NixOS systems the real end-to-end test installs on and deploys to the test
# VPS. The e2e driver copies this directory to a temporary one, writes into it
#   host.nix         `vps-nixos facts-to-nix --disko true` from the probed VPS:
#                    static network, initrd modules, GRUB for BIOS boot and
#                    disko.devices.disk.main.device = lib.mkDefault "/dev/…"
#   authorized_keys  the key the test logs in with as root
# and builds with `--override-input vps-nixos path:<repo>/nix` (this checkout's
# nix/ flake, so the module under test is the one in the working tree):
#   e2e             the base system: installed, then deployed
#   e2e-changed     the same plus one package: a deploy that changes the closure
#   e2e-kills-sshd  sshd moved to port 2222 and the firewall open only there: after
#                   the switch nothing answers on 22, and the rollback guard must
#                   roll the host back by itself
# Without host.nix and authorized_keys it still evaluates (disk /dev/vda, no keys).
{
  description = "vps-nixos end-to-end test: the systems deployed to the test VPS";

  inputs = {
    # Always overridden by the driver; in place, the nix/ flake of this repository.
    vps-nixos.url = "path:../../../nix";
    nixpkgs.follows = "vps-nixos/nixpkgs";
    disko.follows = "vps-nixos/disko";
  };

  outputs =
    {
      nixpkgs,
      vps-nixos,
      disko,
      ...
    }:
    let
      inherit (nixpkgs) lib;
      authorizedKeys = ./authorized_keys;

      base =
        { lib, ... }:
        {
          nixpkgs.hostPlatform = "x86_64-linux";
          system.stateVersion = "26.11";
          networking.hostName = "vps-e2e";

          # Written by the driver: the key the test logs in with.
          users.users.root.openssh.authorizedKeys.keyFiles =
            lib.optional (builtins.pathExists authorizedKeys) authorizedKeys;

          # The test disk: a 1 MiB BIOS boot partition for GRUB (disko adds the disk
          # to boot.loader.grub.devices for it) and ext4 on the rest. The device is
          # below mkDefault, so host.nix's probed disk wins (disko's device option
          # takes a single definition per priority).
          disko.devices.disk.main = {
            type = "disk";
            device = lib.mkOptionDefault "/dev/vda";
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
        };

      mkSystem =
        extraModules:
        lib.nixosSystem {
          modules = [
            vps-nixos.nixosModules.default
            disko.nixosModules.disko
            base
          ]
          ++ lib.optional (builtins.pathExists ./host.nix) ./host.nix
          ++ extraModules;
        };
    in
    {
      nixosConfigurations = {
        e2e = mkSystem [ ];

        e2e-changed = mkSystem [
          (
            { pkgs, ... }:
            {
              environment.systemPackages = [ pkgs.hello ];
            }
          )
        ];

        e2e-kills-sshd = mkSystem [
          {
            services.openssh.ports = lib.mkForce [ 2222 ];
            networking.firewall = {
              enable = lib.mkForce true;
              allowedTCPPorts = lib.mkForce [ 2222 ];
            };
          }
        ];
      };
    };
}
