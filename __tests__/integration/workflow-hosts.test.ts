/**
 * The fan-out of the reusable workflows, for real: the Hosts step of deploy.yml and update.yml,
 * run by bash as the runner runs it, with Debian's Nix evaluating a stand-in flake of described
 * hosts (one `nix eval`) and `npx github:OWNER/vps-nixos#REF` answered by this checkout's CLI
 * (from source). Checks the matrix the deploy jobs fan out over, the errors a bad description
 * gives (an annotation naming host and field), and `vps-nixos hosts` as a person reads it.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { describedFlake, OFFLINE_NIX_CONFIG } from '../helpers/nixflake';
import { keyPair } from '../helpers/keys';
import { runSourceCli, sourceCliScript } from '../helpers/source-cli';

jest.setTimeout(120_000);
const ROOT = join(__dirname, '../..');
const tmp = mkdtempSync(join(tmpdir(), 'vps-nixos-workflow-hosts-'));

/** The Hosts step of a workflow: its run: script and the env: it is given. */
function hostsStep(file: string): { run: string; env: Record<string, string> } {
  const wf = YAML.parse(readFileSync(join(ROOT, file), 'utf8')) as {
    jobs: Record<
      string,
      { steps?: { name?: string; run?: string; env?: Record<string, string> }[] }
    >;
  };
  for (const job of Object.values(wf.jobs))
    for (const step of job.steps ?? [])
      if (step.name === 'Hosts') return { run: step.run!, env: step.env ?? {} };
  throw new Error(`${file} has no Hosts step`);
}

// npx as the runner has it, for the one package the step asks for: this checkout's CLI. It
// records the package spec, and refuses anything else.
const bin = join(tmp, 'bin');
const npxLog = join(tmp, 'npx.log');
spawnSync('mkdir', ['-p', bin]);
const cli = sourceCliScript(tmp);
writeFileSync(
  join(bin, 'npx'),
  `#!/bin/bash
echo "$*" >> ${JSON.stringify(npxLog)}
[ "$1" = --yes ] && [[ $2 =~ ^github:[A-Za-z0-9-]+/vps-nixos#[A-Za-z0-9.-]+$ ]] || { echo "npx stand-in: $*" >&2; exit 99; }
echo "npm warn exec The following package was not found and will be installed: $2" >&2
shift 2
exec ${JSON.stringify(process.execPath)} ${JSON.stringify(cli)} "$@"
`,
);
chmodSync(join(bin, 'npx'), 0o755);

interface Row extends Record<string, string> {
  name: string;
  flake: string;
  target: string;
  key: string;
  id: string;
}
interface StepResult {
  status: number | null;
  stdout: string;
  stderr: string;
  matrix?: Row[];
  targets?: string;
}

/**
 * Runs a workflow's Hosts step: its env: with the workflow's inputs at their defaults
 * (`${{ inputs.X }}` → DEFAULTS[X]), then `inputs` on top.
 */
function runStep(file: string, inputs: Record<string, string>): StepResult {
  const { run, env } = hostsStep(file);
  const defaults: Record<string, string> = {
    flake: '',
    hosts: '',
    target: '',
    'confirm-wipe': '',
    'known-hosts': '',
    'host-key-fingerprint': '',
    method: '',
    'build-host': '',
    'use-sudo': 'false',
    'confirm-timeout': '0',
    'health-check': '',
    'health-url': '',
    'health-timeout': '0',
    ...inputs,
  };
  const stepEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    const m = /^\$\{\{ inputs\.([\w-]+) \}\}$/.exec(String(v));
    stepEnv[k] = m ? (defaults[m[1]!] ?? '') : String(v);
  }
  const out = join(tmp, 'github-output');
  writeFileSync(out, '');
  const r = spawnSync('bash', ['--noprofile', '--norc', '-e', '-c', run], {
    encoding: 'utf8',
    env: {
      PATH: `${bin}:${process.env.PATH}`,
      HOME: process.env.HOME,
      NIX_CONFIG: OFFLINE_NIX_CONFIG,
      RUNNER_TEMP: tmp,
      GITHUB_OUTPUT: out,
      ...stepEnv,
    },
  });
  const output = readFileSync(out, 'utf8');
  const matrix = /^matrix=(.*)$/m.exec(output)?.[1];
  return {
    status: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    matrix: matrix ? (JSON.parse(matrix) as { host: Row[] }).host : undefined,
    targets: /^targets=(.*)$/m.exec(output)?.[1],
  };
}

const web = keyPair().publicKey;
const db = keyPair().publicKey;
const three = describedFlake({
  web: {
    target: 'root@203.0.113.7',
    hostKey: `${web} root@web`,
    healthUrl: 'https://203.0.113.7/',
  },
  db: {
    target: 'deploy@[2001:db8::5]:2222',
    hostKey: [db],
    useSudo: true,
    healthCheck: 'systemctl is-active postgresql.service',
    confirmTimeout: 120,
  },
  api: { target: 'root@api.example', method: 'infect' },
  // A configuration without our module, and one that imports it and describes nothing.
  laptop: null,
  desktop: {
    target: null,
    hostKey: [],
    hostKeyFingerprint: [],
    method: null,
    buildHost: null,
    useSudo: null,
    confirmTimeout: null,
    healthCheck: null,
    healthUrl: null,
    healthTimeout: null,
  },
});
const EMPTY = {
  'confirm-wipe': '',
  'known-hosts': '',
  'host-key-fingerprint': '',
  method: '',
  'build-host': '',
  'use-sudo': '',
  'confirm-timeout': '',
  'health-check': '',
  'health-url': '',
  'health-timeout': '',
};
const WANT: Row[] = [
  {
    name: 'api',
    flake: `${three}#api`,
    key: 'api.example',
    id: 'api',
    target: 'root@api.example',
    ...EMPTY,
    method: 'infect',
  },
  {
    name: 'db',
    flake: `${three}#db`,
    key: '[2001:db8::5]:2222',
    id: 'db',
    target: 'deploy@[2001:db8::5]:2222',
    ...EMPTY,
    'known-hosts': `[2001:db8::5]:2222 ${db}\n`,
    'use-sudo': 'true',
    'confirm-timeout': '120',
    'health-check': 'systemctl is-active postgresql.service',
  },
  {
    name: 'web',
    flake: `${three}#web`,
    key: '203.0.113.7',
    id: 'web',
    target: 'root@203.0.113.7',
    ...EMPTY,
    'known-hosts': `203.0.113.7 ${web}\n`,
    'health-url': 'https://203.0.113.7/',
  },
];

describe('the Hosts step of deploy.yml and update.yml, on a flake of three described hosts', () => {
  it('is the same script in both workflows', () => {
    expect(hostsStep('.github/workflows/update.yml').run).toBe(
      hostsStep('.github/workflows/deploy.yml').run,
    );
  });

  it('hosts: all fans out over the three described hosts, each with its own pin and checks', () => {
    const r = runStep('.github/workflows/deploy.yml', { flake: three, hosts: 'all' });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    expect(r.matrix).toEqual(WANT);
    expect(r.targets).toBe('true');
    // The log lists them; the CLI asked for is the release of the action the workflow uses.
    expect(r.stdout).toContain(`web: root@203.0.113.7 ${three}#web`);
    const uses = /uses: (\S+)\/vps-nixos@(\S+)\n/.exec(
      readFileSync(join(ROOT, '.github/workflows/deploy.yml'), 'utf8'),
    )!;
    expect(readFileSync(npxLog, 'utf8').trim().split('\n').pop()).toMatch(
      new RegExp(
        `^--yes github:${uses[1]}/vps-nixos#${uses[2]} hosts --json --flake ${three} --hosts all$`,
      ),
    );
  });

  it('the inputs given replace the descriptions in every row; false and 0 are not given', () => {
    const r = runStep('.github/workflows/deploy.yml', {
      flake: three,
      hosts: 'web, db',
      method: 'kexec',
      'confirm-wipe': '/dev/vda',
      'health-timeout': '30',
      'use-sudo': 'false',
      'confirm-timeout': '0',
    });
    expect(r.status).toBe(0);
    expect(
      r.matrix!.map((h) => [
        h.name,
        h.method,
        h['confirm-wipe'],
        h['health-timeout'],
        h['use-sudo'],
        h['confirm-timeout'],
      ]),
    ).toEqual([
      ['web', 'kexec', '/dev/vda', '30', '', ''],
      ['db', 'kexec', '/dev/vda', '30', 'true', '120'],
    ]);
    // A pin given replaces the described ones.
    const pinned = runStep('.github/workflows/deploy.yml', {
      flake: `${three}#web`,
      'known-hosts': `203.0.113.7 ${db}`,
    });
    expect(pinned.matrix!.map((h) => [h.name, h['known-hosts']])).toEqual([
      ['web', `203.0.113.7 ${db}`],
    ]);
  });

  it('update.yml: a configuration that describes no host is compared without one', () => {
    const r = runStep('.github/workflows/update.yml', { flake: `${three}#laptop` });
    expect(r.status).toBe(0);
    expect(r.matrix).toEqual([
      { name: 'laptop', flake: `${three}#laptop`, key: '', id: 'laptop', target: '', ...EMPTY },
    ]);
    expect(r.targets).toBe('false');
    // deploy.yml needs a target for it.
    const d = runStep('.github/workflows/deploy.yml', { flake: `${three}#laptop` });
    expect(d.status).toBe(1);
    expect(d.stdout).toMatch(
      /^::error title=vps-nixos hosts::host 'laptop': vpsNixos\.deploy\.target: is not set in nixosConfigurations\.laptop, and no target is given {3}fix: describe the host/m,
    );
  });

  it('the old JSON list is still read (without descriptions)', () => {
    const r = runStep('.github/workflows/deploy.yml', {
      flake: `${three}#web`,
      hosts:
        '["root@198.51.100.1", {"target": "root@198.51.100.2", "name": "two", "confirm-wipe": "/dev/sda"}]',
    });
    expect(r.status).toBe(0);
    expect(
      r.matrix!.map((h) => [h.name, h.flake, h.target, h['confirm-wipe'], h['known-hosts']]),
    ).toEqual([
      ['198.51.100.1', `${three}#web`, 'root@198.51.100.1', '', ''],
      ['two', `${three}#web`, 'root@198.51.100.2', '/dev/sda', ''],
    ]);
  });

  it.each([
    [
      'two names for one machine',
      { web: { target: 'root@203.0.113.7' }, www: { target: 'admin@203.0.113.7:22' } },
      /host 'www': vpsNixos\.deploy\.target: is admin@203\.0\.113\.7:22, the machine web is described at too \(root@203\.0\.113\.7\): two names for one machine {3}fix: one configuration per machine/,
    ],
    [
      'a missing target',
      {
        web: {
          hostKey:
            'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
        },
      },
      /host 'web': vpsNixos\.deploy\.target: is missing/,
    ],
    [
      'a malformed key',
      { web: { target: 'root@203.0.113.7', hostKey: 'ssh-ed25519 AAAA' } },
      /host 'web': vpsNixos\.deploy\.hostKey: 'ssh-ed25519 AAAA' is not an SSH public key/,
    ],
    [
      'an unknown field',
      { web: { target: 'root@203.0.113.7', confirmWipe: '/dev/vda' } },
      /host 'web': vpsNixos\.deploy\.confirmWipe: is not a field of the description {3}fix: wiping a disk is confirmed per run/,
    ],
  ])('%s fails the Hosts job with an annotation naming host and field', (_, hosts, want) => {
    const r = runStep('.github/workflows/deploy.yml', {
      flake: describedFlake(hosts),
      hosts: 'all',
    });
    expect(r.status).toBe(1);
    expect(r.matrix).toBeUndefined();
    const annotation = r.stdout
      .split('\n')
      .find((l) => l.startsWith('::error title=vps-nixos hosts::'));
    expect(annotation).toMatch(want);
    // npm's own lines stay in the log, out of the annotation.
    expect(annotation).not.toMatch(/npm warn/);
    expect(r.stderr).toMatch(/npm warn/);
  });
});

describe('vps-nixos hosts, as a person reads it', () => {
  const env = { PATH: process.env.PATH, HOME: tmp, NIX_CONFIG: OFFLINE_NIX_CONFIG };
  it('lists the described hosts with their pins, and the configurations that describe none', async () => {
    const r = await runSourceCli(['hosts', '--flake', three], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')).toEqual([
      'api  root@api.example           pin: none described (the CLI then reads ~/.ssh/known_hosts)  method infect',
      'db   deploy@[2001:db8::5]:2222  pin: 1 host key(s)  use-sudo true  confirm-timeout 120  health-check systemctl is-active postgresql.service',
      'web  root@203.0.113.7           pin: 1 host key(s)  health-url https://203.0.113.7/',
      'not described (no vpsNixos.deploy.target): desktop, laptop',
      '',
    ]);
  });
  it('a configuration the flake lacks exits 2, naming it', async () => {
    const r = await runSourceCli(['hosts', '--flake', `${three}#nope`], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/has no nixosConfigurations\.nope/);
  });
});
