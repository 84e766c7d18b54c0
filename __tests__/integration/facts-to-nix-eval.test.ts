/**
 * The generated host module with a real Nix (Debian's nix-bin, offline): it parses, and called
 * with a stub `lib` (no nixpkgs here) it evaluates to the addresses, routes, DNS, boot loader,
 * disk and drivers of the facts. Evaluation against real NixOS (option types, networkd's unit
 * checks) needs nixpkgs and runs only in the GitHub workflow (`nix flake check`).
 */
import { hostNetwork } from '../../src/hostconfig/network';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { factsToNix } from '../../src/hostconfig';
import {
  fixtureNames,
  loadExpected,
  loadFacts,
  withoutDisko,
} from '../fixtures/hostconfig/fixtures';

jest.setTimeout(60_000);

/** Nix 2.8 as root without a daemon, nixbld group or internet. */
const env = {
  ...process.env,
  NIX_CONFIG: 'build-users-group =\nsandbox = false\nsubstituters =',
};

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${e.stderr ?? e.message}`);
  }
}

/** Calls the module function the way the module system would, with `lib` stubbed. */
function evalModule(file: string, mkDefault = 'x: x'): unknown {
  const expr = `
    let
      lib = {
        mkDefault = ${mkDefault};
        mkForce = x: x;
        mkOverride = _: x: x;
      };
    in
    (import ${JSON.stringify(file)}) {
      inherit lib;
      config = { };
      options = { };
      pkgs = { };
      modulesPath = "/x";
    }`;
  return JSON.parse(
    run('nix', [
      '--extra-experimental-features',
      'nix-command',
      'eval',
      '--json',
      '--impure',
      '--expr',
      expr,
    ]),
  );
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vps-nixos-hostconfig-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each(fixtureNames)('the module generated from %s', (name) => {
  const facts = loadFacts(name);
  const expected = loadExpected(name);

  function write(suffix: string, disko: boolean): string {
    const file = join(dir, `${name}${suffix}.nix`);
    writeFileSync(file, factsToNix(facts, { host: 'root@203.0.113.7', date: '2026-11-22', disko }));
    return file;
  }

  it('parses (nix-instantiate --parse)', () => {
    run('nix-instantiate', ['--parse', write('', true)]);
    run('nix-instantiate', ['--parse', write('-plain', false)]);
  });

  it('evaluates to the facts: addresses, routes, DNS, boot loader, disk, drivers', () => {
    expect(evalModule(write('', true))).toEqual(expected);
  });

  it('names the disk for GRUB itself without disko', () => {
    expect(evalModule(write('-plain', false))).toEqual(withoutDisko(expected));
  });

  it('leaves only the platform and the disk to lib.mkDefault', () => {
    const tagged = evalModule(write('', true), 'x: { mkDefault = x; }') as {
      nixpkgs: unknown;
      disko?: { devices: { disk: { main: { device: unknown } } } };
      networking: unknown;
      systemd: unknown;
    };
    expect(tagged.nixpkgs).toEqual({ hostPlatform: { mkDefault: expected.nixpkgs.hostPlatform } });
    if (expected.disko)
      expect(tagged.disko?.devices.disk.main.device).toEqual({
        mkDefault: expected.disko.devices.disk.main.device,
      });
    // The network is the facts, not a default a stray module setting could replace.
    expect(tagged.networking).toEqual(expected.networking);
    expect(tagged.systemd).toEqual(expected.systemd);
  });
});

describe('the facts behind the expectations', () => {
  it.each(fixtureNames)(
    '%s: every static global address of a NIC with a MAC is in its unit',
    (name) => {
      const facts = loadFacts(name);
      const networks = loadExpected(name).systemd.network.networks;
      // A VLAN child (or another link on its parent's MAC) gets no unit of its own: a MAC match
      // would take the parent over (issue 17); hostNetwork lists it as skipped.
      const skipped = new Set(hostNetwork(facts).skipped.map((s) => s.split(' ')[0]));
      for (const iface of facts.interfaces) {
        if (skipped.has(iface.name)) {
          expect(networks[`10-${iface.name}`]).toBeUndefined();
          continue;
        }
        const statics = iface.addresses
          .filter((a) => a.scope === 'global' && !a.dynamic)
          .map((a) => `${a.address}/${a.prefixLength}`);
        const unit = networks[`10-${iface.name}`];
        if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(iface.mac ?? '')) {
          expect(unit).toBeUndefined();
          continue;
        }
        expect(unit?.address ?? []).toEqual(statics);
        if (unit) expect(unit.matchConfig.MACAddress).toBe(iface.mac?.toLowerCase());
      }
    },
  );
});
