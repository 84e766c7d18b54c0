/**
 * The cipher our session negotiates with a real OpenSSH sshd on loopback (issue 17):
 * chacha20-poly1305 when the server offers it (OpenSSH does by default), and a server left with
 * only aes256-ctr still works. The second sshd is the helper's, started again with -o overrides.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { freePort, startSshd, type Sshd } from '../helpers/sshd';
import { Client, type CipherAlgorithm } from 'ssh2';
import { connect, type RemoteSession } from '../../src/ssh/session';
import { pinFor } from '../../src/ssh/hostkeys';
import { parseTarget, type Target } from '../../src/target';

jest.setTimeout(60_000);

let sshd: Sshd;
let ctrOnly: { port: number; child: ChildProcess };
const sessions: RemoteSession[] = [];

async function listening(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((r) => {
      const c = createConnection({ port, host: '127.0.0.1' }, () => {
        c.destroy();
        r(true);
      });
      c.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sshd did not listen on 127.0.0.1:${port} within ${ms} ms`);
}

beforeAll(async () => {
  sshd = await startSshd();
  const port = await freePort();
  const child = spawn(
    '/usr/sbin/sshd',
    [
      '-D',
      '-E',
      join(sshd.dir, 'sshd-ctr.log'),
      '-f',
      join(sshd.dir, 'sshd_config'),
      '-p',
      String(port),
      '-o',
      'Ciphers=aes256-ctr',
      '-o',
      `PidFile=${join(sshd.dir, 'sshd-ctr.pid')}`,
    ],
    { stdio: 'ignore' },
  );
  ctrOnly = { port, child };
  await listening(port, 10_000);
});

afterAll(async () => {
  for (const s of sessions) s.close();
  if (ctrOnly?.child.exitCode === null) {
    const exited = new Promise((r) => ctrOnly.child.once('exit', r));
    ctrOnly.child.kill('SIGTERM');
    await exited;
  }
  await sshd?.stop();
});

async function open(
  port: number,
  ciphers?: CipherAlgorithm[],
  log?: (line: string) => void,
): Promise<RemoteSession> {
  const target = parseTarget(`root@127.0.0.1:${port}`) as Target;
  const hostKey = sshd.hostKeyPub.split(' ').slice(0, 2).join(' ');
  const session = await connect({
    target,
    privateKey: readFileSync(sshd.clientKeyFile, 'utf8'),
    pin: pinFor(target.knownHostsName, `${target.knownHostsName} ${hostKey}\n`, []),
    connectTimeoutMs: 10_000,
    retries: ciphers ? 0 : 2,
    retryDelayMs: 200,
    ciphers,
    log,
  });
  sessions.push(session);
  return session;
}

describe('ssh cipher', () => {
  it('negotiates chacha20-poly1305 with a default OpenSSH sshd, host key still pinned', async () => {
    const s = await open(sshd.port);
    expect(s.cipher).toBe('chacha20-poly1305@openssh.com');
    expect(s.hostKey.type).toBe('ssh-ed25519');
    const payload = Buffer.alloc(3 * 2 ** 20 + 17, 0x5a);
    const r = await s.exec('wc -c', { stdin: payload });
    expect(r).toMatchObject({ code: 0, stdout: `${payload.length}\n` });
  });

  it('works with a server that offers only aes256-ctr', async () => {
    // That server really refuses the others.
    await expect(open(ctrOnly.port, ['chacha20-poly1305@openssh.com'])).rejects.toThrow(
      /cannot connect/,
    );
    const s = await open(ctrOnly.port);
    expect(s.cipher).toBe('aes256-ctr');
    const payload = Buffer.alloc(2 ** 20, 0xa5);
    const r = await s.exec('wc -c', { stdin: payload });
    expect(r).toMatchObject({ code: 0, stdout: `${payload.length}\n` });
  });

  it("falls back to ssh2's own list when ssh2 refuses ours", async () => {
    // As an ssh2 built without some cipher would: it throws before opening a socket.
    const spy = jest.spyOn(Client.prototype, 'connect').mockImplementationOnce(() => {
      throw new Error('Unsupported algorithm: chacha20-poly1305@openssh.com');
    });
    const lines: string[] = [];
    try {
      const s = await open(sshd.port, undefined, (l) => lines.push(l));
      expect(spy).toHaveBeenCalledTimes(2);
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { DEFAULT_CIPHER } = require('ssh2/lib/protocol/constants.js') as {
        DEFAULT_CIPHER: string[];
      };
      expect(s.cipher).toBe(DEFAULT_CIPHER[0]); // aes128-gcm@openssh.com on this ssh2, here
      expect(lines.join('\n')).toMatch(/Unsupported algorithm.*offering ssh2's default ciphers/);
      expect((await s.exec('echo ok')).stdout).toBe('ok\n');
    } finally {
      spy.mockRestore();
    }
  });
});
