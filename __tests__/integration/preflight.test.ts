/**
 * Preflight with a real Nix (Debian's nix-bin), offline, on flakes whose configuration is a plain
 * attribute set: one clean, one per trap (__tests__/fixtures/preflight/README.md).
 */
import { chmodSync, cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { localNix, type Nix } from '../../src/nix/nix';
import type { Facts } from '../../src/probe/facts';
import { plan, type PlanConfig } from '../../src/plan/plan';
import { PreflightError } from '../../src/preflight/evaluate';
import { hasErrors, renderFindingsMarkdown, runPreflight } from '../../src/preflight/run';
import type { PreflightContext } from '../../src/preflight/rules';
import type { FindingId, Severity } from '../../src/preflight/types';
import { OFFLINE_NIX_CONFIG } from '../helpers/nixflake';

jest.setTimeout(120_000);

const FIXTURES = join(__dirname, '..', 'fixtures', 'preflight');
const DEPLOY_KEY =
  'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK/UnUMJXly6GKaAAJ4BbkHdfkE07/ga+GhJ9cZ/aJVV deploy@ci';
const MiB = 2 ** 20;
const planConfig: PlanConfig = {
  method: 'auto',
  minRamKexecBytes: 700 * MiB,
  minRamInfectBytes: 700 * MiB,
  allowLowRam: false,
  reinstall: false,
  flake: { ref: '.', name: 'vps' },
};

const facts = (file: string) => JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as Facts;
const staticHost = facts('facts-debian-12-1gb-static.json');

function context(f: Facts = staticHost): PreflightContext {
  return {
    facts: f,
    plan: plan(f, planConfig),
    deployPublicKeys: [DEPLOY_KEY],
    targetUser: 'root',
  };
}

/** A copy outside the git work tree (Nix would see only tracked files there). */
function fixture(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `vps-nixos-preflight-${name}-`));
  cpSync(join(FIXTURES, name), dir, { recursive: true });
  return dir;
}

/**
 * localNix() on a wrapper that sets the offline NIX_CONFIG: jest gives the test a copy of
 * process.env, so setting it here would not reach the nix child process.
 */
function offlineNix(): Nix {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-nixwrap-'));
  const bin = join(dir, 'nix');
  writeFileSync(
    bin,
    `#!/bin/sh\nNIX_CONFIG='${OFFLINE_NIX_CONFIG}'\nexport NIX_CONFIG\nexec nix "$@"\n`,
  );
  chmodSync(bin, 0o755);
  return localNix(bin);
}
let offline: Nix;
beforeAll(() => {
  offline = offlineNix();
});

/** Counts nix processes. */
function counting(nix: Nix): Nix & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    run: (args, opts) => {
      calls.push(args);
      return nix.run(args, opts);
    },
  };
}

const nonInfo = (found: { id: FindingId; severity: Severity }[]) =>
  found
    .filter((f) => f.severity !== 'info')
    .map((f) => `${f.severity} ${f.id}`)
    .sort();

// fixture → the errors and warnings it must produce, nothing else
const TRAPS: [string, string[]][] = [
  ['persist-etc-ssh', ['error persist-activation-dir']],
  ['persist-etc-entries', ['error persist-activation-dir', 'error persist-activation-dir']],
  ['sshd-disabled', ['error sshd-disabled']],
  ['deploy-key-missing', ['error deploy-key-missing']],
  ['no-disko', ['error no-disko']],
  ['disko-device-mismatch', ['error disko-device-mismatch']],
  ['network-dhcp-only', ['error network-mismatch']],
  ['network-wrong-address', ['error network-mismatch', 'error network-mismatch']],
  ['no-console-login', ['warning no-console-login']],
  ['wheel-no-password', ['warning no-console-login']],
  ['sshd-socket-activated', ['warning sshd-socket-activated']],
  ['closure-leak', ['warning closure-leak', 'warning closure-leak', 'warning closure-leak']],
  ['no-zram-low-ram', ['warning no-zram-low-ram']],
  ['swap-on-tmpfs', ['warning swap-on-tmpfs']],
  ['tmp-tmpfs-too-big', ['warning tmp-tmpfs-too-big']],
];

describe('preflight (real Nix, plain-attrset configurations)', () => {
  it('the clean configuration passes every check with one nix eval', async () => {
    const nix = counting(offline);
    const r = await runPreflight(nix, { ref: fixture('clean'), name: 'vps' }, context());
    expect(r.findings).toEqual([]);
    expect(nix.calls).toHaveLength(1);
    expect(nix.calls[0]?.slice(0, 2)).toEqual(['eval', '--json']);
    expect(r.nixCalls).toBe(1);
    expect(r.seconds).toBeLessThan(10);
    expect(renderFindingsMarkdown(r.findings)).toMatch(/0 errors, 0 warnings/);
  });

  it.each(TRAPS)('%s is found with the right id and severity', async (name, expected) => {
    const r = await runPreflight(offline, { ref: fixture(name), name: 'vps' }, context());
    expect(nonInfo(r.findings)).toEqual([...expected].sort());
    expect(r.findings.filter((f) => f.severity === 'info')).toEqual([]);
    expect(hasErrors(r.findings)).toBe(expected.some((e) => e.startsWith('error')));
    for (const f of r.findings) {
      expect(f.why).toMatch(/\S/);
      expect(f.fix).toMatch(/\S/);
    }
    expect(renderFindingsMarkdown(r.findings)).toContain(r.findings[0]!.id);
  });

  it('names the offending values in the messages and fixes', async () => {
    const run = async (name: string) =>
      (await runPreflight(offline, { ref: fixture(name), name: 'vps' }, context())).findings;
    const [ssh] = await run('persist-etc-ssh');
    expect(ssh!.message).toContain('"/etc/ssh"');
    expect(ssh!.fix).toContain('"/etc/ssh/ssh_host_ed25519_key.pub"');
    expect(ssh!.why).toMatch(/bug 4/);
    const entries = await run('persist-etc-entries');
    expect(entries.map((f) => f.message).join('\n')).toMatch(
      /"\/etc\/sing-box\/".*environment\.etc: \/etc\/sing-box\/config\.json/,
    );
    const [login] = await run('no-console-login');
    expect(login!.message).toContain('/run/agenix/root-password');
    expect(login!.why).toMatch(/bug 5/);
    const [dhcp] = await run('network-dhcp-only');
    expect(dhcp!.message).toMatch(/static IPv4 192\.0\.2\.10\/24 on ens3.*DHCP only/);
    expect(dhcp!.fix).toContain('address = "192.0.2.10"; prefixLength = 24;');
    expect(dhcp!.fix).toContain('networking.defaultGateway = { address = "192.0.2.1"');
    const wrong = await run('network-wrong-address');
    expect(wrong.map((f) => f.message).join('\n')).toMatch(/192\.0\.2\.99\/24 differs/);
    expect(wrong.map((f) => f.message).join('\n')).toMatch(/gateway 192\.0\.2\.254 differs/);
    const [disk] = await run('disko-device-mismatch');
    expect(disk!.fix).toBe('disko.devices.disk.main.device = "/dev/vda";');
    const leaks = await run('closure-leak');
    expect(leaks.map((f) => f.message).join('\n')).toMatch(/hyprland, grimblast, zbar/);
    expect(leaks.map((f) => f.message).join('\n')).toMatch(/clang, rustc/);
  });

  it('without facts, key or plan: the host checks are skipped with a note each', async () => {
    const r = await runPreflight(offline, { ref: fixture('network-dhcp-only'), name: 'vps' });
    expect(r.findings.map((f) => `${f.severity} ${f.id}`)).toEqual([
      'info skipped-no-facts',
      'info skipped-no-deploy-key',
      'info skipped-no-plan',
    ]);
  });

  it('a DHCP host with a DHCP configuration passes the network check', async () => {
    const dhcpHost = facts('facts-ubuntu-24.04-2gb-dhcp.json');
    const r = await runPreflight(
      offline,
      { ref: fixture('network-dhcp-only'), name: 'vps' },
      { ...context(dhcpHost), plan: { method: 'kexec' } },
    );
    // The disk there is /dev/sda; everything else about the fixture is clean.
    expect(nonInfo(r.findings)).toEqual(['error disko-device-mismatch']);
  });

  it('one attribute that does not evaluate skips only its checks', async () => {
    const nix = counting(offline);
    const r = await runPreflight(nix, { ref: fixture('eval-error'), name: 'vps' }, context());
    expect(nonInfo(r.findings)).toEqual(['warning eval-failed']);
    expect(r.findings[0]!.message).toMatch(
      /environment\.systemPackages.*this package does not evaluate/,
    );
    expect(r.findings[0]!.why).toMatch(/closure-leak/);
    expect(r.nixCalls).toBe(nix.calls.length);
    expect(nix.calls.length).toBe(9); // the combined eval, then one per section
  });

  it('a configuration name the flake does not have is an error naming it', async () => {
    const ref = fixture('clean');
    await expect(runPreflight(offline, { ref, name: 'nope' })).rejects.toThrow(PreflightError);
    await expect(runPreflight(offline, { ref, name: 'nope' })).rejects.toThrow(
      /no nixosConfigurations\.nope/,
    );
  });

  it('path: references work in place inside the git work tree', async () => {
    const r = await runPreflight(
      offline,
      { ref: `path:${join(FIXTURES, 'sshd-disabled')}`, name: 'vps' },
      context(),
    );
    expect(nonInfo(r.findings)).toEqual(['error sshd-disabled']);
  });
});
