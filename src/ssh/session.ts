/** An SSH session to the target whose host key is checked against the pin before anything runs. */
import { getCiphers } from 'node:crypto';
import {
  Client,
  type CipherAlgorithm,
  type ConnectConfig,
  type ClientChannel,
  type NegotiatedAlgorithms,
} from 'ssh2';
import type { Readable } from 'node:stream';
import { HostKeyMismatch, SshConnectError, VpsNixosError } from '../errors';
import { formatTarget, type Target } from '../target';
import {
  algorithmsFor,
  describeKey,
  describePresented,
  expectedFingerprints,
  hostKeyTypesToTry,
  judgeHostKey,
  keyTypeOf,
  whyNotPinned,
  type HostKey,
  type HostKeyPin,
} from './hostkeys';

export interface ExecResult {
  code: number;
  signal?: string;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  stdin?: string | Buffer | Readable;
  timeoutMs?: number;
  /** Called with each chunk of output as it arrives (streaming logs). */
  onOutput?: (chunk: string, stream: 'stdout' | 'stderr') => void;
}

/** A connected, verified session: the only way the rest of the code talks to the target. */
export interface RemoteSession {
  readonly target: Target;
  /** The key the host presented (it passed the pin, or was trusted on first use). */
  readonly hostKey: HostKey;
  /** The cipher negotiated for what we send (client to server), e.g. chacha20-poly1305@openssh.com. */
  readonly cipher?: string;
  exec(command: string, opts?: ExecOptions): Promise<ExecResult>;
  close(): void;
}

export interface ConnectOptions {
  target: Target;
  /** The key that logs in; without it, the keys of the ssh-agent at `agent`. */
  privateKey?: string;
  /** The ssh-agent's socket (SSH_AUTH_SOCK), used when no privateKey is given (the CLI). */
  agent?: string;
  /**
   * The host must present a pinned key (of any type: the types are asked for in turn, see round);
   * 'trust-on-first-use' accepts whatever the host presents; the caller reports it.
   */
  pin: HostKeyPin | 'trust-on-first-use';
  /**
   * When nothing is pinned for the host: connect anyway, refuse each key it presents before
   * logging in, and throw HostKeyUnknown naming them, with `why` (where no pin was found) and the
   * fix for those keys. Without it an empty pin is refused before connecting (HostKeyNotPinned).
   */
  unknownHost?: { why: string; fix: (presented: readonly HostKey[]) => string };
  connectTimeoutMs: number;
  retries: number;
  keepaliveIntervalMs?: number;
  log?: (line: string) => void;
  /** For tests: how long to wait between attempts (grows ×2 up to 10 s). */
  retryDelayMs?: number;
  /** For tests and the bench: offer exactly these ciphers instead of cipherPreference(). */
  ciphers?: CipherAlgorithm[];
}

/**
 * The ciphers we offer, best first, each with the OpenSSL cipher ssh2 runs it on. chacha20-poly1305
 * leads, as in OpenSSH: cheap VPSes often show a generic CPU model (qemu64) without AES-NI, where
 * sshd's AES-GCM crawls (issue 17, under TCG: uploads at 14–15 MiB/s with ssh2's default
 * aes128-gcm, 32–33 MiB/s with OpenSSH's chacha20-poly1305). ssh2 puts chacha last unless its
 * optional native binding is built; without it ssh2 runs chacha on OpenSSL's chacha20 and a
 * bundled WebAssembly poly1305. Then AES-GCM, then AES-CTR (what a hardened sshd may be left with).
 */
const CIPHERS: readonly (readonly [CipherAlgorithm, string])[] = [
  ['chacha20-poly1305@openssh.com', 'chacha20'],
  ['aes128-gcm@openssh.com', 'aes-128-gcm'],
  ['aes256-gcm@openssh.com', 'aes-256-gcm'],
  ['aes128-ctr', 'aes-128-ctr'],
  ['aes192-ctr', 'aes-192-ctr'],
  ['aes256-ctr', 'aes-256-ctr'],
];

/**
 * Our cipher preference, keeping only those this Node's OpenSSL provides (the test ssh2 makes
 * before it accepts a name); undefined (ssh2's defaults) if none is left. Pure given `available`.
 */
export function cipherPreference(
  available: readonly string[] = getCiphers(),
): CipherAlgorithm[] | undefined {
  const list = CIPHERS.filter(([, ssl]) => available.includes(ssl)).map(([name]) => name);
  return list.length ? list : undefined;
}

const OUR_CIPHERS = cipherPreference();

/**
 * The host presented a key that known-hosts marks @revoked. A HostKeyMismatch, so every caller
 * that stops on a wrong key stops on this one too; its message says revoked, not "expected".
 */
export class HostKeyRevoked extends HostKeyMismatch {
  declare readonly fix: string;
  constructor(
    host: string,
    presented: string,
    line: number | undefined,
    expected: string[],
    source = 'known-hosts',
  ) {
    super(host, presented, expected);
    this.message =
      `host key revoked for ${host}: it presented ${presented}, which ${source} marks @revoked` +
      `${line !== undefined ? ` (line ${line})` : ''}; nothing was run on it`;
    this.fix =
      'the host still serves a key you revoked: replace that host key on the target (from the ' +
      'provider console) and pin the new one; if the @revoked line is a mistake, remove it';
  }
}

/** Nothing is pinned for the host's name (known_hosts names other hosts only). Nothing was sent. */
export class HostKeyNotPinned extends VpsNixosError {}

/**
 * Nothing was pinned for the host, so its keys were fetched to be shown, and refused before
 * logging in: never trusted on first use unasked. Nothing was run on it.
 */
export class HostKeyUnknown extends HostKeyNotPinned {
  constructor(
    readonly host: string,
    readonly presented: readonly HostKey[],
    why: string,
    fix: string,
  ) {
    super(
      `host key not known for ${host}: it presented ${describePresented([...presented], [])}; ${why}; nothing was run on it`,
      fix,
    );
  }
}

/**
 * The host presented a key other than the one a known_hosts the user keeps (the CLI's
 * ~/.ssh/known_hosts) holds for it: the fix says where that line is.
 */
export class KnownHostsMismatch extends HostKeyMismatch {
  declare readonly fix: string;
  constructor(host: string, presented: string, expected: string[], source: string) {
    super(host, presented, expected);
    this.fix =
      `if the host was reinstalled on purpose, compare its new key with the provider console ` +
      `(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and replace its line in ${source}; ` +
      'otherwise you may be talking to the wrong machine';
  }
}

/** A connection attempt that gave us a session. */
type Connected = { client: Client; hostKey: HostKey; cipher?: string };
/** How one connection attempt ended, when it did not give us a session. */
type AttemptFailure =
  | { kind: 'unpinned'; presented: HostKey }
  | { kind: 'revoked'; presented: HostKey; line?: number }
  | { kind: 'no-such-key-type'; message: string }
  | { kind: 'auth'; message: string }
  | { kind: 'agent'; message: string }
  | { kind: 'network'; message: string; code?: string };
/** How one round (the key types tried in turn) ended, when it did not give us a session. */
type RoundFailure =
  | Exclude<AttemptFailure, { kind: 'unpinned' } | { kind: 'no-such-key-type' }>
  | { kind: 'mismatch'; presented: HostKey[]; lacking: string[] };

const RETRYABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'EPIPE',
]);

type ServerHostKeyAlgorithms = NonNullable<ConnectConfig['algorithms']>['serverHostKey'];

/** One connection offering `serverHostKey` (ssh2's defaults when undefined). */
function attempt(
  opts: ConnectOptions,
  serverHostKey: string[] | undefined,
): Promise<Connected | AttemptFailure> {
  return new Promise((resolve) => {
    const client = new Client();
    let presented: HostKey | undefined;
    let negotiated: NegotiatedAlgorithms | undefined;
    let refusal: AttemptFailure | undefined;
    let settled = false;
    const done = (v: Connected | AttemptFailure) => {
      if (settled) return;
      settled = true;
      if ('kind' in v) client.end();
      resolve(v);
    };
    const pin = opts.pin;
    const config: ConnectConfig = {
      host: opts.target.host,
      port: opts.target.port,
      username: opts.target.user,
      ...(opts.privateKey !== undefined ? { privateKey: opts.privateKey } : { agent: opts.agent }),
      readyTimeout: opts.connectTimeoutMs,
      keepaliveInterval: opts.keepaliveIntervalMs ?? 5000,
      keepaliveCountMax: 3,
      hostVerifier: (blob: Buffer): boolean => {
        presented = { type: keyTypeOf(blob) ?? 'unknown', blob: Buffer.from(blob) };
        if (pin === 'trust-on-first-use') return true;
        const verdict = judgeHostKey(pin, blob);
        if (verdict.kind === 'revoked')
          refusal = { kind: 'revoked', presented, line: verdict.line };
        else if (verdict.kind === 'unpinned') refusal = { kind: 'unpinned', presented };
        // Returning false makes ssh2 drop the connection before it authenticates.
        return verdict.kind === 'pinned';
      },
      algorithms: {
        cipher: opts.ciphers ?? OUR_CIPHERS,
        serverHostKey: serverHostKey as ServerHostKeyAlgorithms,
      },
    };
    client.once('handshake', (n: NegotiatedAlgorithms) => {
      negotiated = n;
    });
    client.on('ready', () => {
      if (presented) done({ client, hostKey: presented, cipher: negotiated?.cs.cipher });
      else done({ kind: 'network', message: 'the server sent no host key' });
    });
    client.on('error', (err: Error & { code?: string; level?: string }) => {
      if (refusal) return done(refusal);
      // ssh2 reports an agent it cannot reach or that will not sign, then gives up on the login.
      if (err.level === 'agent') return done({ kind: 'agent', message: err.message });
      if (err.level === 'client-authentication')
        return done({ kind: 'auth', message: err.message });
      // The host's KEXINIT lists no algorithm we offered: it has no key of those types.
      if (err.level === 'handshake' && /no matching host key format/.test(err.message))
        return done({ kind: 'no-such-key-type', message: err.message });
      done({ kind: 'network', message: err.message, code: err.code });
    });
    client.on('close', () => {
      if (refusal) done(refusal);
      else done({ kind: 'network', message: 'the connection closed during the handshake' });
    });
    try {
      client.connect(config);
    } catch (err) {
      // ssh2 refuses (synchronously, before any socket) a cipher it cannot run: use its defaults.
      if (opts.ciphers || !config.algorithms?.cipher) throw err;
      opts.log?.(`ssh: ${(err as Error).message}; offering ssh2's default ciphers`);
      config.algorithms.cipher = undefined;
      client.connect(config);
    }
  });
}

/**
 * One round: asks for the pinned key types in turn until the host presents a pinned key. Each
 * connection offers every type not yet seen, so the host picks the first of them it has (SSH
 * takes the client's first algorithm the server also offers) and presents that key; an unpinned
 * key is refused before authentication and its type dropped from the next offer. The round ends
 * when a pinned key is accepted, a revoked one is seen, or the host has none of the types left:
 * at most one connection per key type, plus one.
 */
async function round(opts: ConnectOptions): Promise<Connected | RoundFailure> {
  const pin = opts.pin;
  if (pin === 'trust-on-first-use') {
    const r = await attempt(opts, undefined);
    if (!('kind' in r)) return r;
    // Nothing is refused on first use: a failed key exchange is the only way to get here.
    if (r.kind === 'unpinned' || r.kind === 'no-such-key-type')
      return { kind: 'network', message: 'message' in r ? r.message : 'the key exchange failed' };
    return r;
  }
  const pinnedTypes = new Set(pin.keys.map((k) => k.type));
  const presented: HostKey[] = [];
  let left = hostKeyTypesToTry(pin);
  while (left.length > 0) {
    const r = await attempt(opts, algorithmsFor(left));
    if (!('kind' in r)) return r;
    if (r.kind === 'no-such-key-type') break;
    if (r.kind !== 'unpinned') return r;
    presented.push(r.presented);
    const type = r.presented.type;
    // A key of a type we did not offer would have us offer the same list again: stop there.
    if (!left.includes(type)) break;
    left = left.filter((t) => t !== type);
  }
  return { kind: 'mismatch', presented, lacking: left.filter((t) => pinnedTypes.has(t)) };
}

/**
 * Connects with bounded retries on network failures; never retries a wrong or revoked host key
 * or a refused login. Refuses before connecting when nothing is pinned for the host's name
 * (unless opts.unknownHost asks to see its keys first), or when there is no key to log in with.
 */
export async function connect(opts: ConnectOptions): Promise<RemoteSession> {
  const where = formatTarget(opts.target);
  const name = opts.target.knownHostsName;
  const pin = opts.pin;
  if (opts.privateKey === undefined && !opts.agent) {
    throw new SshConnectError(
      `no key to log in to ${where} with: neither a private key nor an ssh-agent is given; nothing was sent to it`,
      'give the deploy key, or an ssh-agent that holds it (SSH_AUTH_SOCK)',
    );
  }
  // Set when nothing is pinned and the caller wants the host's keys seen before they are refused.
  let unknown: ConnectOptions['unknownHost'];
  if (pin !== 'trust-on-first-use') {
    const why = whyNotPinned(pin, name);
    if (why !== undefined && opts.unknownHost) unknown = opts.unknownHost;
    else if (why !== undefined) {
      const p = opts.target.port === 22 ? '' : `-p ${opts.target.port} `;
      throw new HostKeyNotPinned(
        `no host key is pinned for ${name}: ${why}; nothing was sent to it`,
        `add the host's line (ssh-keyscan ${p}${opts.target.host}; off port 22 it must name [host]:port) after checking its fingerprint out of band, or pass host-key-fingerprint`,
      );
    }
  }
  let delay = opts.retryDelayMs ?? 1000;
  let last: RoundFailure | undefined;
  for (let i = 0; i <= opts.retries; i++) {
    if (i > 0) {
      opts.log?.(
        `ssh ${where}: ${last && 'message' in last ? last.message : 'failed'}; retrying in ${delay / 1000}s (${i}/${opts.retries})`,
      );
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
    const r = await round(opts);
    if (!('kind' in r)) return new Ssh2Session(opts.target, r.client, r.hostKey, r.cipher);
    last = r;
    const source = pin === 'trust-on-first-use' ? undefined : pin.source;
    if (r.kind === 'revoked') {
      throw new HostKeyRevoked(
        name,
        describeKey(r.presented),
        r.line,
        expectedFingerprints(pin as HostKeyPin),
        source,
      );
    }
    if (r.kind === 'mismatch' && unknown) {
      throw new HostKeyUnknown(name, r.presented, unknown.why, unknown.fix(r.presented));
    }
    if (r.kind === 'mismatch') {
      const presented = describePresented(r.presented, r.lacking);
      const expected = expectedFingerprints(pin as HostKeyPin);
      throw source
        ? new KnownHostsMismatch(name, presented, expected, source)
        : new HostKeyMismatch(name, presented, expected);
    }
    if (r.kind === 'agent') {
      throw new SshConnectError(
        `cannot log in to ${where} with the ssh-agent at ${opts.agent}: ${r.message}`,
        'check that the agent runs and holds the deploy key (ssh-add -l lists its keys), or give the private key instead',
      );
    }
    if (r.kind === 'auth' && opts.privateKey === undefined) {
      throw new SshConnectError(
        `login refused: ${where} accepted none of the ssh-agent's keys for user ${opts.target.user} (${r.message})`,
        `load the deploy key into the agent (ssh-add KEY; ssh-add -l lists what it holds), add its public half to ~${opts.target.user}/.ssh/authorized_keys on the target, and check the user name`,
      );
    }
    if (r.kind === 'auth') {
      throw new SshConnectError(
        `login refused: ${where} did not accept the private key for user ${opts.target.user} (${r.message})`,
        `add the deploy key's public half to ~${opts.target.user}/.ssh/authorized_keys on the target (ssh-keygen -y -f KEY prints it), and check the user name`,
      );
    }
    if (r.code && !RETRYABLE.has(r.code) && !/timed out/i.test(r.message)) break;
  }
  const msg = last && last.kind === 'network' ? last.message : 'unknown failure';
  throw new SshConnectError(
    `cannot connect to ${where}: ${msg} (${opts.retries + 1} attempt${opts.retries ? 's' : ''})`,
    `check the address and port in target, that sshd runs there and that a firewall lets the runner in; raise connect-timeout / connect-retries for slow hosts`,
  );
}

/** Thrown when a remote command outlives its timeout. */
export class RemoteTimeout extends VpsNixosError {}

class Ssh2Session implements RemoteSession {
  constructor(
    readonly target: Target,
    private readonly client: Client,
    readonly hostKey: HostKey,
    readonly cipher?: string,
  ) {}

  exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      // ssh2 throws 'Not connected' synchronously once the connection is gone: a lost connection too.
      const lost = (err: Error) =>
        reject(
          new SshConnectError(
            `cannot run a command on ${formatTarget(this.target)}: ${err.message}`,
            'the connection was lost; re-run to resume',
          ),
        );
      try {
        this.exec2(command, opts, resolve, reject, lost);
      } catch (err) {
        lost(err as Error);
      }
    });
  }

  /** The exec itself; `lost` turns ssh2's errors into SshConnectError. */
  private exec2(
    command: string,
    opts: ExecOptions,
    resolve: (r: ExecResult) => void,
    reject: (e: unknown) => void,
    lost: (e: Error) => void,
  ): void {
    this.client.exec(command, (err, channel: ClientChannel) => {
      if (err) return lost(err);
      const out: Buffer[] = [];
      const errOut: Buffer[] = [];
      let timer: NodeJS.Timeout | undefined;
      if (opts.timeoutMs) {
        timer = setTimeout(() => {
          channel.close();
          reject(
            new RemoteTimeout(
              `remote command timed out after ${opts.timeoutMs! / 1000}s: ${command.slice(0, 80)}`,
              'check the target is responsive (load, memory) and re-run',
            ),
          );
        }, opts.timeoutMs);
      }
      channel.on('data', (d: Buffer) => {
        out.push(d);
        opts.onOutput?.(d.toString(), 'stdout');
      });
      channel.stderr.on('data', (d: Buffer) => {
        errOut.push(d);
        opts.onOutput?.(d.toString(), 'stderr');
      });
      channel.on('close', (code: number | null, signal?: string) => {
        if (timer) clearTimeout(timer);
        resolve({
          code: code ?? -1,
          signal: signal ?? undefined,
          stdout: Buffer.concat(out).toString(),
          stderr: Buffer.concat(errOut).toString(),
        });
      });
      const stdin = opts.stdin;
      if (stdin === undefined) channel.end();
      else if (typeof stdin === 'string' || Buffer.isBuffer(stdin)) channel.end(stdin);
      else stdin.pipe(channel);
    });
  }

  close(): void {
    this.client.end();
  }
}
