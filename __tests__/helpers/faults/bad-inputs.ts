/**
 * The fault campaign's bad inputs (issue 21): each given to the real entry points as users give
 * them (the built CLI with its options, the action's main step with INPUT_* variables), against a
 * listener that counts TCP connections. Each must be refused before any connection, by a message
 * that names the input, and nothing it prints may hold the key. Used by
 * __tests__/integration/bad-inputs.test.ts (CI) and bench/faults.sh (the campaign's table).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keyPair } from '../keys';

const ROOT = join(__dirname, '../../..');

/** A TCP listener that counts who connects (and closes each at once). */
export interface CountingListener {
  port: number;
  connections(): number;
  close(): Promise<void>;
}

export async function countingListener(): Promise<CountingListener> {
  let n = 0;
  const server: Server = createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => n,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

export interface BadInput {
  name: string;
  /** `cli <command>` or `action` (the main step). */
  entry: string;
  /** Options (CLI, without `--`) or inputs (action), over the campaign's valid base. */
  inputs: Record<string, string>;
  /** The input the message must name. */
  names: string;
}

/** What a refusal looked like. */
export interface BadInputRun {
  case: BadInput;
  code: number;
  message: string;
  connections: number;
  namesInput: boolean;
  keyLeaked: boolean;
  seconds: number;
  rejected: boolean;
}

const HASH = 'a'.repeat(64);

/** At least 30, across both entry points and every kind of input. */
export function badInputs(files: { dir: string }): BadInput[] {
  const cli = (command: string, name: string, inputs: Record<string, string>, names: string) => ({
    name,
    entry: `cli ${command}`,
    inputs,
    names,
  });
  const act = (name: string, inputs: Record<string, string>, names: string) => ({
    name,
    entry: 'action',
    inputs,
    names,
  });
  return [
    cli('probe', 'target without a host', { target: 'root@' }, 'target'),
    cli('probe', 'target port out of range', { target: 'root@127.0.0.1:99999' }, 'target'),
    cli('probe', 'IPv6 target without brackets', { target: 'root@2001:db8::7' }, 'target'),
    cli('probe', 'shell in the user name', { target: 'r;m -rf@127.0.0.1' }, 'target'),
    cli('plan', 'unknown method', { method: 'nuke' }, 'method'),
    cli('plan', 'size with an unknown unit', { 'min-ram-infect': '700 parsecs' }, 'min-ram-infect'),
    cli('plan', 'size of 400 digits', { 'min-ram-kexec': '9'.repeat(400) }, 'min-ram-kexec'),
    cli('plan', 'negative size', { 'min-ram-kexec': '-5MiB' }, 'min-ram-kexec'),
    cli('plan', 'boolean that is not one', { 'allow-low-ram': 'yes please' }, 'allow-low-ram'),
    cli(
      'probe',
      'known_hosts that is garbage',
      { 'known-hosts': 'not known hosts' },
      'known-hosts',
    ),
    cli(
      'probe',
      'MD5 fingerprint',
      { 'host-key-fingerprint': 'MD5:ab:cd' },
      'host-key-fingerprint',
    ),
    cli('probe', 'connect-timeout zero', { 'connect-timeout': '0' }, 'connect-timeout'),
    cli('probe', 'connect-retries not a number', { 'connect-retries': 'many' }, 'connect-retries'),
    cli('deploy', 'flake without an attribute', { flake: './flake' }, 'flake'),
    cli('deploy', 'unknown deploy action', { flake: '.#vps', action: 'reboot' }, 'action'),
    cli(
      'deploy',
      'confirm-timeout too short',
      { flake: '.#vps', 'confirm-timeout': '2' },
      'confirm-timeout',
    ),
    cli(
      'deploy',
      'health-url over ftp',
      { flake: '.#vps', 'health-url': 'ftp://x/' },
      'health-url',
    ),
    cli(
      'deploy',
      'build-host with a port',
      { flake: '.#vps', 'build-host': 'root@builder:2222' },
      'build-host',
    ),
    cli('deploy', 'toplevel not a store path', { toplevel: '/tmp/system' }, 'toplevel'),
    cli(
      'bootstrap',
      'confirm-wipe not a device',
      { flake: '.#vps', 'confirm-wipe': 'vda' },
      'confirm-wipe',
    ),
    cli(
      'bootstrap',
      'confirm-wipe escaping /dev',
      { flake: '.#vps', 'confirm-wipe': '/dev/../etc' },
      'confirm-wipe',
    ),
    cli(
      'bootstrap',
      'kexec-tarball over ftp',
      {
        flake: '.#vps',
        'kexec-tarball': 'ftp://example.org/k.tar.gz',
        'kexec-tarball-sha256': HASH,
      },
      'kexec-tarball',
    ),
    cli(
      'bootstrap',
      'kexec-tarball that does not exist',
      { flake: '.#vps', 'kexec-tarball': join(files.dir, 'missing.tar.gz') },
      'kexec-tarball',
    ),
    cli(
      'bootstrap',
      'kexec-tarball over HTTPS without a hash',
      { flake: '.#vps', 'kexec-tarball': 'HTTPS://example.org/k.tar.gz' },
      'kexec-tarball-sha256',
    ),
    cli(
      'bootstrap',
      'infect-url as file://',
      { flake: '.#vps', method: 'infect', 'infect-url': `file://${files.dir}/x` },
      'infect-url',
    ),
    cli(
      'bootstrap',
      'infect-revision a branch',
      { flake: '.#vps', method: 'infect', 'infect-revision': 'master' },
      'infect-revision',
    ),
    cli(
      'bootstrap',
      'zram-size a fraction of a byte',
      { flake: '.#vps', 'zram-size': '0.0001' },
      'zram-size',
    ),
    cli(
      'bootstrap',
      'patch-udevadm unknown',
      { flake: '.#vps', 'patch-udevadm': 'maybe' },
      'patch-udevadm',
    ),
    cli(
      'bootstrap',
      'substituter not a URL',
      { flake: '.#vps', substituters: 'cache.example' },
      'substituters',
    ),
    cli(
      'bootstrap',
      'trusted key not a key',
      { flake: '.#vps', 'trusted-public-keys': 'nope' },
      'trusted-public-keys',
    ),
    cli(
      'build',
      'closure-budget not a size',
      { flake: '.#vps', 'closure-budget': 'huge' },
      'closure-budget',
    ),
    cli('build', 'push-to an s3 URL', { flake: '.#vps', 'push-to': 's3://bucket' }, 'push-to'),
    cli(
      'plan',
      'facts file that does not exist',
      { facts: join(files.dir, 'no-facts.txt') },
      'facts',
    ),
    act('key that is not a key', { 'ssh-private-key': 'hunter2' }, 'ssh-private-key'),
    act(
      'no pin and no trust-on-first-use',
      { 'known-hosts': '', 'trust-on-first-use': 'false' },
      'known-hosts',
    ),
    act('real run without a flake', { 'plan-only': 'false', flake: '' }, 'flake'),
    act('cache-max-size above 8 PiB', { 'cache-max-size': '8192TiB' }, 'cache-max-size'),
    act(
      'disk-script without toplevel',
      { 'disk-script': `/nix/store/${'b'.repeat(32)}-disko` },
      'disk-script',
    ),
    act(
      'infect-url without a hash',
      { 'infect-url': 'https://example.org/nixos-infect' },
      'infect-sha256',
    ),
    act('push-to of an unknown kind', { 'push-to': 'ftp://cache' }, 'push-to'),
    act('health-timeout not a number', { 'health-timeout': 'soon' }, 'health-timeout'),
  ];
}

/** A key pair and the files the campaign's valid base refers to. */
export function campaignFiles(): {
  dir: string;
  privateKey: string;
  keyFile: string;
  keyLines: string[];
} {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-bad-inputs-'));
  const { privateKey } = keyPair();
  const keyFile = join(dir, 'id');
  writeFileSync(keyFile, privateKey, { mode: 0o600 });
  return { dir, privateKey, keyFile, keyLines: secretKeyLines(privateKey) };
}

/**
 * The lines of a private key file that are this key's own: not the armour, and not the first
 * base64 line, which every unencrypted OpenSSH key of a type shares ("openssh-key-v1", no cipher,
 * no KDF, the key type): matching it counted any other key in the temp dir as a leak.
 */
export function secretKeyLines(privateKey: string): string[] {
  return privateKey
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('-----') && !l.startsWith('b3BlbnNzaC1rZXktdjE'));
}

/** Files a run left under `dir`, with their contents (the secrets scan reads them too). */
export function filesUnder(dir: string): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push({ path: p, text: readFileSync(p, 'latin1') });
    }
  };
  walk(dir);
  return out;
}

/** Runs argv to its end without blocking (the listener must accept meanwhile). */
function run(
  argv: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** Runs one case through its entry point; never throws for the refusal itself. */
export async function runBadInput(
  c: BadInput,
  listener: CountingListener,
  files: ReturnType<typeof campaignFiles>,
): Promise<BadInputRun> {
  const before = listener.connections();
  const target = `root@127.0.0.1:${listener.port}`;
  const t0 = Date.now();
  let code: number;
  let output: string;
  let leftBehind = '';
  if (c.entry === 'action') {
    const work = mkdtempSync(join(files.dir, 'step-'));
    const temp = join(work, 'runner-temp');
    mkdirSync(temp);
    const fileVars = {
      GITHUB_OUTPUT: join(work, 'output'),
      GITHUB_STATE: join(work, 'state'),
      GITHUB_STEP_SUMMARY: join(work, 'summary'),
    };
    for (const f of Object.values(fileVars)) writeFileSync(f, '');
    const inputs: Record<string, string> = {
      target,
      'ssh-private-key': files.privateKey,
      'trust-on-first-use': 'true',
      'plan-only': 'true',
      ...c.inputs,
    };
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      RUNNER_TEMP: temp,
      ...fileVars,
    };
    for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
    const r = await run([process.execPath, join(ROOT, 'dist/main/index.js')], env);
    code = r.code;
    output = `${r.stdout}${r.stderr}`;
    leftBehind = filesUnder(work)
      .map((f) => f.text)
      .join('\n');
  } else {
    const [, command = ''] = c.entry.split(' ');
    // build never connects: it takes no target
    const base: Record<string, string> =
      command === 'build' || 'facts' in c.inputs
        ? {}
        : { target, 'ssh-private-key-file': files.keyFile, 'trust-on-first-use': 'true' };
    const opts = { ...base, ...c.inputs };
    const args = [command, ...Object.entries(opts).flatMap(([k, v]) => [`--${k}`, v])];
    const r = await run([process.execPath, join(ROOT, 'dist/cli/index.js'), ...args], {
      ...process.env,
      XDG_CACHE_HOME: join(files.dir, 'cache'),
    });
    code = r.code;
    output = `${r.stdout}${r.stderr}`;
  }
  // a connection the kernel took while the entry ran is counted once the loop gets to it
  await new Promise((r) => setTimeout(r, 20));
  const connections = listener.connections() - before;
  // The runner consumes its own commands: a masked key line is not printed.
  const visible = output
    .split('\n')
    .filter((l) => !l.startsWith('::add-mask::'))
    .join('\n');
  const keyLeaked = files.keyLines.some((l) => visible.includes(l) || leftBehind.includes(l));
  const message =
    output
      .split('\n')
      .find((l) => /input '|::error::/.test(l))
      ?.replace(/^::error::/, '')
      // the runner's own escapes of a command's data
      .replace(/%0A/g, ' ')
      .replace(/%0D/g, ' ')
      .replace(/%25/g, '%') ?? output.trim().split('\n').slice(-2).join(' ');
  const namesInput = message.includes(`'${c.names}'`) || message.includes(`--${c.names}`);
  return {
    case: c,
    code,
    message: message.slice(0, 300),
    connections,
    namesInput,
    keyLeaked,
    seconds: (Date.now() - t0) / 1000,
    rejected: code !== 0 && connections === 0 && namesInput && !keyLeaked,
  };
}
