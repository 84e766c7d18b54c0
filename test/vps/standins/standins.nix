# Stand-in store paths, built by the host's Debian nix-bin from builtins.derivation + /bin/sh
# (no nixpkgs offline). See test/STANDINS.md.
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
in {
  toplevel = mk {
    name = "nixos-system-vps-standin-00.00.standin";
    args = [ ./builder.sh ];
    switch = ./switch-to-configuration;
    activate = ./activate;
    version = "00.00.standin (vps-nixos stand-in)";
    ballast = map ballast idx;
  };
  diskScript = mk {
    name = "disko-standin";
    args = [ "-c" "/bin/cp ${./disk-script} $out && /bin/chmod 555 $out" ];
  };
}
