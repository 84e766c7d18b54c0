/** A real OpenSSH sshd for tests: loopback (or a netns of ours), its own host keys, killed by PID. */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Sshd {
  port: number;
  host: string;
  dir: string;
  /** The first host key's public line (the ed25519 one by default). */
  hostKeyPub: string;
  /** Every host key's public line, in hostKeyTypes order (sshd's HostKey order). */
  hostKeyPubs: string[];
  clientKeyFile: string;
  clientKeyPub: string;
  knownHostsFile: string;
  netns?: string;
  log(): string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** Host key types the helper can give sshd; `ecdsa` is nistp256. */
export type SshdHostKeyType = 'ed25519' | 'ecdsa' | 'ecdsa-384' | 'ecdsa-521' | 'rsa';

const KEYGEN_ARGS: Record<SshdHostKeyType, string[]> = {
  ed25519: ['-t', 'ed25519'],
  ecdsa: ['-t', 'ecdsa', '-b', '256'],
  'ecdsa-384': ['-t', 'ecdsa', '-b', '384'],
  'ecdsa-521': ['-t', 'ecdsa', '-b', '521'],
  // 2048 bits: enough for a test, and quicker to generate than ssh-keygen's default.
  rsa: ['-t', 'rsa', '-b', '2048'],
};

function keygen(file: string, type: SshdHostKeyType = 'ed25519'): string {
  execFileSync('ssh-keygen', [
    '-q',
    ...KEYGEN_ARGS[type],
    '-N',
    '',
    '-C',
    'vps-nixos-test',
    '-f',
    file,
  ]);
  return readFileSync(`${file}.pub`, 'utf8').trim();
}

async function waitForPort(
  port: number,
  host: string,
  netns: string | undefined,
  ms: number,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = netns
      ? (() => {
          try {
            execFileSync(
              'ip',
              ['netns', 'exec', netns, 'bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`],
              { stdio: 'ignore' },
            );
            return true;
          } catch {
            return false;
          }
        })()
      : await new Promise<boolean>((r) => {
          const c = createConnection({ port, host }, () => {
            c.destroy();
            r(true);
          });
          c.on('error', () => r(false));
        });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sshd did not listen on ${host}:${port} within ${ms} ms`);
}

export interface SshdOptions {
  /** Run inside a fresh network namespace (then port 22 is ours to use). */
  netns?: boolean;
  port?: number;
  /**
   * The host keys sshd serves, each a type at most once (default ['ed25519']). known_hosts gets a
   * line for each; hostKeyPub is the first.
   */
  hostKeyTypes?: SshdHostKeyType[];
}

/** Starts sshd in the foreground as our child; stop() kills exactly that PID. */
export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-sshd-'));
  const hostKeyTypes = opts.hostKeyTypes ?? ['ed25519'];
  if (hostKeyTypes.length === 0 || new Set(hostKeyTypes).size !== hostKeyTypes.length)
    throw new Error(`hostKeyTypes must name each type once: ${hostKeyTypes.join(', ')}`);
  const hostKeyFiles = hostKeyTypes.map((t) => join(dir, `host_${t}`));
  const hostKeyPubs = hostKeyTypes.map((t, i) => keygen(hostKeyFiles[i]!, t));
  const hostKeyPub = hostKeyPubs[0]!;
  const clientKeyPub = keygen(join(dir, 'client_ed25519'));
  writeFileSync(join(dir, 'authorized_keys'), clientKeyPub + '\n', { mode: 0o600 });
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const host = '127.0.0.1';
  const netns = opts.netns ? `vpsn-t${process.pid}-${Math.floor(Math.random() * 1e6)}` : undefined;
  if (netns) {
    execFileSync('ip', ['netns', 'add', netns]);
    execFileSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  }
  const port = opts.port ?? (netns ? 22 : await freePort());
  const config = [
    `Port ${port}`,
    `ListenAddress ${host}`,
    ...hostKeyFiles.map((f) => `HostKey ${f}`),
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'StrictModes no',
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'LogLevel VERBOSE',
    `PidFile ${join(dir, 'sshd.pid')}`,
  ].join('\n');
  writeFileSync(join(dir, 'sshd_config'), config + '\n');
  const name = port === 22 ? host : `[${host}]:${port}`;
  const knownHostsFile = join(dir, 'known_hosts');
  writeFileSync(
    knownHostsFile,
    hostKeyPubs.map((pub) => `${name} ${pub.split(' ').slice(0, 2).join(' ')}\n`).join(''),
  );
  const logFile = join(dir, 'sshd.log');
  const cmd = ['/usr/sbin/sshd', '-D', '-E', logFile, '-f', join(dir, 'sshd_config')];
  const child: ChildProcess = netns
    ? spawn('ip', ['netns', 'exec', netns, ...cmd], { stdio: 'ignore' })
    : spawn(cmd[0]!, cmd.slice(1), { stdio: 'ignore' });
  await waitForPort(port, host, netns, 10_000);
  return {
    port,
    host,
    dir,
    hostKeyPub,
    hostKeyPubs,
    clientKeyFile: join(dir, 'client_ed25519'),
    clientKeyPub,
    knownHostsFile,
    netns,
    log: () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      if (netns) execFileSync('ip', ['netns', 'del', netns]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
