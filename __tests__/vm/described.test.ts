/**
 * A host described in the flake (issue 24), against the real 1 GB QEMU test VPS, through the CLI
 * from source: a stand-in flake whose configuration `ok` describes the VPS (vpsNixos.deploy:
 * target and host key; test/STANDINS.md §6), and `vps-nixos deploy --flake path:…#ok` with no
 * target and no pin option (no ~/.ssh/known_hosts either; the key from VPS_NIXOS_SSH_PRIVATE_KEY)
 * deploys over the described key. A description with another key is refused at the first
 * connection: nothing runs on the host, nothing is copied or switched, the system stays.
 * Stand-ins: nixos-rebuild (test/standins/bin, first on PATH: it must never run) and the system
 * toplevels.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { currentVps, freshVm, openVps, standins, vpsConfig } from '../helpers/vps';
import { runSourceCli } from '../helpers/source-cli';
import { keyPair } from '../helpers/keys';
import { OFFLINE_NIX_CONFIG } from '../helpers/nixflake';

jest.setTimeout(15 * 60_000);
const vps = currentVps();
const cfg = vpsConfig(vps);
const v = standins().variants as Record<'ok' | 'ok2', string>;
const ROOT = join(__dirname, '../..');
const work = mkdtempSync(join(tmpdir(), 'vps-nixos-described-'));
const rebuildLog = join(work, 'nixos-rebuild.log');
const deployKey = execFileSync('ssh-keygen', ['-y', '-f', vps.sshPrivateKeyFile], {
  encoding: 'utf8',
}).trim();
// The VPS's host key as its description holds it: `type base64`, no host name.
const hostKey = readFileSync(vps.knownHostsFile, 'utf8').trim().split(/\s+/).slice(1, 3).join(' ');

// Exactly this environment: no SSH_AUTH_SOCK, a HOME without ~/.ssh/known_hosts.
const env = {
  PATH: `${join(ROOT, 'test/standins/bin')}:${process.env.PATH}`,
  HOME: work,
  NIX_CONFIG: OFFLINE_NIX_CONFIG,
  NIXOS_REBUILD_STANDIN_LOG: rebuildLog,
  VPS_NIXOS_SSH_PRIVATE_KEY: readFileSync(vps.sshPrivateKeyFile, 'utf8'),
};
const rebuildCalls = (): string[] => {
  try {
    return readFileSync(rebuildLog, 'utf8').trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
};
async function onVps(cmd: string): Promise<string> {
  const session = await openVps(cfg, 10);
  try {
    const r = await session.exec(cmd, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`);
    return r.stdout;
  } finally {
    session.close();
  }
}

let network: string[] = [];
const makeFlake = (dir: string, ...extra: string[]) =>
  execFileSync(
    join(ROOT, 'test/standins/make-flake.sh'),
    [join(work, dir), '--static', ...network, '--authorized-key', deployKey, ...extra],
    { encoding: 'utf8' },
  ).trim();
let described = '';
let wrongKey = '';

beforeAll(async () => {
  freshVm(vps);
  // Installed NixOS as far as the product can tell, with no system profile yet.
  await onVps('touch /etc/NIXOS; rm -rf /nix/var/nix/profiles/system* /run/current-system');
  const route = (await onVps('ip -o -4 route show default')).split(/\s+/);
  const dev = route[route.indexOf('dev') + 1]!;
  const addr = (await onVps(`ip -o -4 addr show dev ${dev}`)).split(/\s+/)[3]!;
  network = [dev, addr, route[route.indexOf('via') + 1]!];
  described = makeFlake('described', '--describe', 'ok', vps.target, hostKey);
  const other = keyPair().publicKey.split(' ').slice(0, 2).join(' ');
  wrongKey = makeFlake('wrong-key', '--describe', 'ok2', vps.target, other);
});

describe('a host described in the flake', () => {
  it('vps-nixos hosts lists the VPS as described', async () => {
    const r = await runSourceCli(['hosts', '--flake', described, '--json'], env);
    expect(r.code).toBe(0);
    const rows = (JSON.parse(r.stdout) as { host: Record<string, string>[] }).host;
    expect(rows.map((h) => [h.name, h.target, h['known-hosts']])).toEqual([
      ['ok', vps.target, `${cfg.target!.knownHostsName} ${hostKey}\n`],
    ]);
  });

  it('deploy --flake path:…#ok with no target or pin option deploys over the described key', async () => {
    const start = Date.now();
    const r = await runSourceCli(
      ['deploy', '--flake', `${described}#ok`, '--cache', 'false', '--json'],
      env,
      6 * 60_000,
    );
    console.log(
      `described deploy: exit ${r.code} in ${((Date.now() - start) / 1000).toFixed(1)} s`,
    );
    expect(r.stderr).toMatch(
      /host description: nixosConfigurations\.ok\.config\.vpsNixos\.deploy: target, hostKey/,
    );
    expect(r.stderr).toContain('host key pin: from vpsNixos.deploy.hostKey of ok');
    const doc = JSON.parse(r.stdout) as { changed: boolean; systemPath: string; error?: unknown };
    expect(doc.error).toBeUndefined();
    expect(r.code).toBe(0);
    expect(doc.changed).toBe(true);
    expect(doc.systemPath).toBe(v.ok);
    expect((await onVps('readlink -f /run/current-system')).trim()).toBe(v.ok);
    // nix-copy-closure reached the described target with ssh in BatchMode and a HOME with no
    // known_hosts: only the described key, pinned in its options, lets it through.
    expect(r.stderr).toMatch(
      /copied \S+-nixos-system-vps-standin\S*'s closure in [\d.]+ s \(nix-copy-closure, exit 0\)/,
    );
    expect(rebuildCalls()).toEqual([]);
  });

  it('a description with another host key is refused before anything changes', async () => {
    const calls = rebuildCalls().length;
    const r = await runSourceCli(
      ['deploy', '--flake', `${wrongKey}#ok2`, '--cache', 'false', '--json'],
      env,
      6 * 60_000,
    );
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as {
      changed: boolean;
      error?: { message: string; fix?: string };
    };
    expect(doc.changed).toBe(false);
    expect(doc.error?.message).toMatch(
      /host key mismatch for \S+: it presented .*; nothing was run on it/,
    );
    expect(doc.error?.fix).toMatch(/replace its line in vpsNixos\.deploy\.hostKey of ok2/);
    expect(rebuildCalls().length).toBe(calls);
    expect((await onVps('readlink -f /run/current-system')).trim()).toBe(v.ok);
  });
});
