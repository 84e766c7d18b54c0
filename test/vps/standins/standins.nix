# Stand-in store paths, built by the host's Debian nix-bin from builtins.derivation + /bin/sh
# (no nixpkgs offline). See test/STANDINS.md.
#   toplevel     the system toplevel the bootstrap installs (== variants.ok)
#   variants.*   system toplevels for deploy tests (ok, ok2, new-kernel, exit4, unhealthy, cut-sshd);
#                all of them share the root, Nix and ballast paths, so only the small paths differ
#   diskScript   the disko stand-in
# Every toplevel boots on its own: it carries its Debian root as a tar (rootfs, a fixed-output path
# of the image's system-root.tar), its own Nix (nix-standin.sh) and a shell (busybox), so our
# install step can register it and run its switch-to-configuration in a chroot holding nothing but
# /nix/store, as with a real NixOS closure.
# test/standins/make-flake.sh copies this file (and the files it names) into a flake, so the
# flake's nixosConfigurations.<variant> evaluate to the same derivations, hence the same paths.
{
  # Target NAR size of the whole closure; the root tar counts against it, the rest is ballast:
  # half real files (compressible: ELF and text, like a real closure), half random bytes.
  systemBallastBytes ? 0,
  ballastPaths ? 4,
  # The image's system-root.tar (a host path: the fixed-output derivation copies it) and its
  # sha256 and size (build.sh and make-flake.sh read them from the image dir).
  rootfsTar,
  rootfsSha256,
  rootfsBytes,
}:
let
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
  rest = if systemBallastBytes > rootfsBytes then systemBallastBytes - rootfsBytes else 0;
  per = rest / 2 / ballastPaths;
  idx = if per == 0 then [ ] else builtins.genList (i: i) ballastPaths;
  # incompressible ballast, so NAR and transfer sizes are like a real closure of that size
  ballast = i: mk {
    name = "vps-standin-ballast-${toString i}";
    args = [ "-c" "/usr/bin/head -c ${toString per} /dev/urandom > $out" ];
  };
  # compressible ballast: real files (libraries, binaries, text) from the host, ${per} bytes each
  filesBallast = i: mk {
    name = "vps-standin-files-ballast-${toString i}";
    args = [ "-c" ''
      set -eu
      /bin/mkdir -p $out
      /usr/bin/find /usr/lib/x86_64-linux-gnu /usr/share /usr/bin -type f -size +4k 2>/dev/null |
        /usr/bin/sort | /usr/bin/awk -v n=${toString ballastPaths} -v i=${toString i} 'NR % n == i' |
        { total=0; k=0
          while read -r f; do
            s=$(/usr/bin/stat -c %s "$f")
            [ $((total + s)) -le ${toString per} ] || continue
            /bin/cp "$f" "$out/$k-$(/usr/bin/basename "$f")" 2>/dev/null || continue
            total=$((total + s)); k=$((k + 1))
            [ $total -lt $((${toString per} - 4096)) ] || break
          done; }
    '' ];
  };
  ballasts = map ballast idx ++ map filesBallast idx;

  # The installed system's Debian root (test/vps/image/customize-system.sh), fixed-output: the
  # store path depends on the name and hash only, so the flake gets the same one.
  rootfs = derivation {
    name = "vps-standin-rootfs.tar";
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "/bin/cp ${rootfsTar} $out" ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = rootfsSha256;
  };
  # A shell for scripts that run before the root exists (in the install chroot): busybox.
  busybox = mk {
    name = "busybox-standin-1.35";
    args = [ "-c" "/bin/mkdir -p $out/bin && /bin/cp /bin/busybox $out/bin/busybox && $out/bin/busybox --install -s $out/bin" ];
  };
  nix = mk {
    name = "nix-standin-2.8";
    args = [ ./nix-standin.sh ];
  };

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
    inherit variant health rootfs busybox;
    switch = ./switch-to-configuration;
    activate = ./activate;
    version = "00.00.standin (vps-nixos stand-in)";
    kernel = kernel kernelVersion;
    initrd = initrd kernelVersion;
    packages = [ (hello helloVersion) nix ];
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
