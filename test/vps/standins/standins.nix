# Stand-in store paths, built by the host's Debian nix-bin from builtins.derivation + /bin/sh
# (no nixpkgs offline). See test/STANDINS.md.
#   toplevel     the system toplevel the bootstrap installs (== variants.ok)
#   variants.*   system toplevels for deploy tests (ok, ok2, new-kernel, exit4, unhealthy, cut-sshd);
#                all of them share the ballast paths, so only the small paths differ
#   diskScript   the disko stand-in
# test/standins/make-flake.sh copies this file (and the files it names) into a flake, so the
# flake's nixosConfigurations.<variant> evaluate to the same derivations, hence the same paths.
{ systemBallastBytes ? 0, ballastPaths ? 4 }:
let
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
  per = systemBallastBytes / ballastPaths;
  # incompressible ballast, so NAR and transfer sizes are like a real closure of that size
  ballast = i: mk {
    name = "vps-standin-ballast-${toString i}";
    args = [ "-c" "/usr/bin/head -c ${toString per} /dev/urandom > $out" ];
  };
  idx = if systemBallastBytes == 0 then [ ] else builtins.genList (i: i) ballastPaths;
  ballasts = map ballast idx;

  # A small package (about 4 KB): bin/hello and a data file. A version change is what
  # `nix store diff-closures` reports as `hello-standin: 1.0 → 2.0`.
  hello = version: mk {
    name = "hello-standin-${version}";
    args = [ "-c" ''
      /bin/mkdir -p $out/bin $out/share/hello-standin
      printf '#!/bin/sh\necho "Hello, world! (hello-standin ${version}, a vps-nixos stand-in)"\n' > $out/bin/hello
      /bin/chmod 555 $out/bin/hello
      /usr/bin/head -c 4096 /dev/zero | /usr/bin/tr '\0' 'h' > $out/share/hello-standin/data
    '' ];
  };
  # The kernel and initrd are paths of their own, as in NixOS, so that `readlink -f
  # /run/{booted,current}-system/kernel` only differs when the kernel does (NixOS's reboot check).
  kernel = version: mk {
    name = "linux-standin-${version}";
    args = [ "-c" ''
      /bin/mkdir -p $out/lib/modules/${version}
      echo "linux ${version} (not a kernel: vps-nixos stand-in)" > $out/bzImage
    '' ];
  };
  initrd = version: mk {
    name = "initrd-linux-standin-${version}";
    args = [ "-c" ''
      /bin/mkdir -p $out
      echo "initrd for linux ${version} (not an initrd: vps-nixos stand-in)" > $out/initrd
    '' ];
  };

  # One system toplevel. `variant` selects the behaviour of bin/switch-to-configuration.
  system = { variant, helloVersion ? "1.0", kernelVersion ? "6.1.0", health ? "ok" }: mk {
    name = "nixos-system-vps-standin-00.00.standin";
    args = [ ./builder.sh ];
    inherit variant health;
    switch = ./switch-to-configuration;
    activate = ./activate;
    version = "00.00.standin (vps-nixos stand-in)";
    kernel = kernel kernelVersion;
    initrd = initrd kernelVersion;
    packages = [ (hello helloVersion) ];
    ballast = ballasts;
  };

  variants = {
    ok = system { variant = "ok"; };
    ok2 = system { variant = "ok2"; helloVersion = "2.0"; };
    new-kernel = system { variant = "new-kernel"; kernelVersion = "6.1.1"; };
    exit4 = system { variant = "exit4"; };
    unhealthy = system { variant = "unhealthy"; health = "bad"; };
    cut-sshd = system { variant = "cut-sshd"; };
  };
in {
  inherit variants;
  toplevel = variants.ok;
  diskScript = mk {
    name = "disko-standin";
    args = [ "-c" "/bin/cp ${./disk-script} $out && /bin/chmod 555 $out" ];
  };
}
