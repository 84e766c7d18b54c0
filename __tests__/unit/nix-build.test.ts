import { drvOutInstallable } from '../../src/nix/build';

describe('the installable that builds a derivation from its .drv', () => {
  const drv = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-vps.drv';
  it.each([
    ['nix (Nix) 2.8.0', drv],
    ['nix (Nix) 2.14.1', drv],
    ['nix (Nix) 2.15.0', `${drv}^out`],
    ['nix (Nix) 2.28.3', `${drv}^out`],
    ['nix (Determinate Nix 3.11.2) 2.31.2', `${drv}^out`],
    ['nix (Lix, like Nix) 2.93.3', `${drv}^out`],
    ['nix (Nix) 3.0', `${drv}^out`],
    ['something else', `${drv}^out`],
  ])('%s: %s', (version, want) => {
    expect(drvOutInstallable(drv, version)).toBe(want);
  });
});
