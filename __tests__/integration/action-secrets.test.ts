/**
 * The action entry (dist/main, dist/post) run as the runner runs it, with a real key against a
 * real sshd: no line of the key is ever printed, the key file is 0600 in a 0700 dir under
 * RUNNER_TEMP, and the post step removes it — also after a failed main step.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSshd, freePort, type Sshd } from '../helpers/sshd';

jest.setTimeout(60_000);
let sshd: Sshd;
beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => sshd?.stop());

interface StepRun {
  output: string;
  state: Record<string, string>;
  outputs: Record<string, string>;
  summary: string;
  code: number;
  runnerTemp: string;
}

/** Reads GITHUB_OUTPUT / GITHUB_STATE files (`name<<delim` heredoc format). */
function readCommandFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(path)) return out;
  const lines = readFileSync(path, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<=]+)<<(.+)$/.exec(lines[i]!);
    if (!m) continue;
    const value: string[] = [];
    while (++i < lines.length && lines[i] !== m[2]) value.push(lines[i]!);
    out[m[1]!] = value.join('\n');
  }
  return out;
}

function runStep(
  entry: 'main' | 'post',
  inputs: Record<string, string>,
  extraEnv: Record<string, string> = {},
  runnerTemp?: string,
): StepRun {
  const work = mkdtempSync(join(tmpdir(), 'vps-nixos-step-'));
  const temp = runnerTemp ?? mkdtempSync(join(tmpdir(), 'vps-nixos-runner-temp-'));
  const files = {
    GITHUB_OUTPUT: join(work, 'output'),
    GITHUB_STATE: join(work, 'state'),
    GITHUB_STEP_SUMMARY: join(work, 'summary'),
  };
  for (const f of Object.values(files)) writeFileSync(f, '');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    RUNNER_TEMP: temp,
    ...files,
    ...extraEnv,
  };
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
  const r = spawnSync(process.execPath, [join(__dirname, `../../dist/${entry}/index.js`)], {
    env,
    encoding: 'utf8',
    timeout: 50_000,
  });
  return {
    output: `${r.stdout}${r.stderr}`,
    state: readCommandFile(files.GITHUB_STATE),
    outputs: readCommandFile(files.GITHUB_OUTPUT),
    summary: readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8'),
    code: r.status ?? -1,
    runnerTemp: temp,
  };
}

/** What the runner shows: everything except its own workflow commands, which it consumes. */
const visible = (output: string) =>
  output
    .split('\n')
    .filter((l) => !l.startsWith('::add-mask::'))
    .join('\n');

describe('the action entry keeps the key secret', () => {
  const key = () => readFileSync(sshd.clientKeyFile, 'utf8');
  const keyLines = () =>
    key()
      .split('\n')
      .filter((l) => l.trim() !== '');

  it('plans, writes outputs and summary, masks every key line and prints none', () => {
    const main = runStep('main', {
      target: `root@127.0.0.1:${sshd.port}`,
      'ssh-private-key': key(),
      'known-hosts': readFileSync(sshd.knownHostsFile, 'utf8'),
      'plan-only': 'true',
    });
    expect(main.code).toBe(0);
    for (const line of keyLines()) {
      expect(visible(main.output)).not.toContain(line);
      expect(main.output).toContain(`::add-mask::${line}`);
      expect(main.summary).not.toContain(line);
    }
    expect(['kexec', 'infect', 'deploy-only', 'refuse']).toContain(main.outputs.method);
    expect(main.outputs['host-key']).toBe(
      `[127.0.0.1]:${sshd.port} ${sshd.hostKeyPub.split(' ').slice(0, 2).join(' ')}`,
    );
    expect(main.summary).toMatch(/### Plan: `\w/);
    expect(main.summary).toMatch(/\| Memory \|/);

    const dir = main.state['vps-nixos-key-dir']!;
    expect(dir.startsWith(main.runnerTemp)).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'id')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'id'), 'utf8')).toBe(key().trim() + '\n');

    const post = runStep('post', {}, { 'STATE_vps-nixos-key-dir': dir });
    expect(post.code).toBe(0);
    expect(existsSync(dir)).toBe(false);
  });

  it('removes the key in the post step after a failed main step too', async () => {
    const port = await freePort();
    const main = runStep('main', {
      target: `root@127.0.0.1:${port}`,
      'ssh-private-key': key(),
      'trust-on-first-use': 'true',
      'plan-only': 'true',
      'connect-retries': '0',
    });
    expect(main.code).not.toBe(0);
    expect(main.output).toMatch(/::error::cannot connect/);
    for (const line of keyLines()) expect(visible(main.output)).not.toContain(line);
    const dir = main.state['vps-nixos-key-dir']!;
    expect(existsSync(join(dir, 'id'))).toBe(true);
    runStep('post', {}, { 'STATE_vps-nixos-key-dir': dir });
    expect(existsSync(dir)).toBe(false);
  });

  it('plan-only with a flake on a runner without Nix: plans, skips the preflight with a warning', () => {
    const main = runStep(
      'main',
      {
        target: `root@127.0.0.1:${sshd.port}`,
        'ssh-private-key': key(),
        'known-hosts': readFileSync(sshd.knownHostsFile, 'utf8'),
        'plan-only': 'true',
        flake: '.#vps',
      },
      { PATH: '/nonexistent' },
    );
    expect(main.code).toBe(0);
    expect(main.output).toMatch(/::warning::preflight skipped: Nix is not installed/);
    expect(main.outputs.method).toBeTruthy();
  });

  it('a bad input fails before connecting and never echoes the key', () => {
    const before = sshd.log().split('Connection from').length;
    const main = runStep('main', {
      target: `root@127.0.0.1:${sshd.port}`,
      'ssh-private-key': key(),
      method: 'yolo',
      'plan-only': 'true',
      'trust-on-first-use': 'true',
    });
    expect(main.code).not.toBe(0);
    expect(main.output).toMatch(/::error::input 'method'/);
    for (const line of keyLines()) expect(visible(main.output)).not.toContain(line);
    expect(sshd.log().split('Connection from').length).toBe(before);
  });
});
