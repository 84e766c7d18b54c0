/**
 * The action entry (dist/main, dist/post) run as the runner runs it, with a real key against a
 * real sshd: no line of the key is ever printed, the key file is 0600 in a 0700 dir under
 * RUNNER_TEMP, and the post step removes it — also after a failed main step.
 */
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSshd, freePort, type Sshd } from '../helpers/sshd';
import { readCommandFile, runStep } from '../helpers/action';

jest.setTimeout(60_000);
let sshd: Sshd;
beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => sshd?.stop());

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

describe('a cancelled run', () => {
  it('writes a partial summary that says so, and removes the key at once', async () => {
    // A host that accepts the TCP connection and never says a word: the probe waits.
    const silent = createServer(() => undefined);
    await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', ok));
    const port = (silent.address() as AddressInfo).port;
    const work = mkdtempSync(join(tmpdir(), 'vps-nixos-cancel-'));
    const files = {
      GITHUB_OUTPUT: join(work, 'output'),
      GITHUB_STATE: join(work, 'state'),
      GITHUB_STEP_SUMMARY: join(work, 'summary'),
    };
    for (const f of Object.values(files)) writeFileSync(f, '');
    const child = spawn(process.execPath, [join(__dirname, '../../dist/main/index.js')], {
      env: {
        PATH: process.env.PATH ?? '',
        RUNNER_TEMP: work,
        ...files,
        GITHUB_SHA: 'feedc0de00000000000000000000000000000000',
        GITHUB_REF_NAME: 'main',
        INPUT_TARGET: `root@127.0.0.1:${port}`,
        'INPUT_SSH-PRIVATE-KEY': readFileSync(sshd.clientKeyFile, 'utf8'),
        'INPUT_TRUST-ON-FIRST-USE': 'true',
        'INPUT_PLAN-ONLY': 'true',
        'INPUT_CONNECT-TIMEOUT': '60',
      },
      stdio: 'ignore',
    });
    try {
      // the key dir is written before the probe starts
      const dir = await (async () => {
        for (let i = 0; i < 100; i++) {
          const d = readCommandFile(files.GITHUB_STATE)['vps-nixos-key-dir'];
          if (d && existsSync(join(d, 'id'))) return d;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error('the main step never wrote its key dir');
      })();
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((ok) => child.on('exit', (c) => ok(c)));
      expect(code).toBe(143);
      expect(existsSync(dir)).toBe(false);
      const summary = readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8');
      expect(summary.split('\n')[0]).toMatch(
        /\*\*cancelled\*\* before the first stage .* at commit feedc0d \(main\)/,
      );
    } finally {
      child.kill('SIGKILL');
      silent.close();
    }
  });
});
