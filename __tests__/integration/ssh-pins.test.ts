/**
 * Host key pins against a real OpenSSH sshd on loopback that serves several host keys (issue 20):
 * a SHA256 fingerprint pin matches whichever key has that fingerprint, RSA and ECDSA included;
 * known_hosts lines ask for their own key type; and each refusal (mismatch, revoked, missing)
 * says what was presented and what was expected, without authenticating.
 */
import { readFileSync } from 'node:fs';
import { startSshd, type Sshd } from '../helpers/sshd';
import { hashedName, keyPair, opensshFingerprint } from '../helpers/keys';
import { HostKeyMismatch } from '../../src/errors';
import { pinFor, type HostKeyPin } from '../../src/ssh/hostkeys';
import {
  connect,
  HostKeyNotPinned,
  HostKeyRevoked,
  type RemoteSession,
} from '../../src/ssh/session';
import { parseTarget, type Target } from '../../src/target';
import { utils } from 'ssh2';

jest.setTimeout(60_000);

/** ed25519, ECDSA nistp256 and RSA keys: what a stock OpenSSH install generates. */
let full: Sshd;
/** No ed25519 and no nistp256: ECDSA nistp384 and RSA only. */
let noEd: Sshd;
const sessions: RemoteSession[] = [];

/** Waits until sshd has logged the end of the helper's port probe, so counts start clean. */
async function settled(s: Sshd): Promise<Sshd> {
  const deadline = Date.now() + 5000;
  while (!s.log().includes('Connection closed by') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  return s;
}

beforeAll(async () => {
  [full, noEd] = await Promise.all([
    startSshd({ hostKeyTypes: ['ed25519', 'ecdsa', 'rsa'] }).then(settled),
    startSshd({ hostKeyTypes: ['ecdsa-384', 'rsa'] }).then(settled),
  ]);
});
afterAll(async () => {
  for (const s of sessions) s.close();
  await Promise.all([full?.stop(), noEd?.stop()]);
});

const keyPart = (pub: string) => pub.split(' ').slice(0, 2).join(' ');
const target = (s: Sshd) => parseTarget(`root@127.0.0.1:${s.port}`) as Target;
const name = (s: Sshd) => `[127.0.0.1]:${s.port}`;
/** The served key of this type, as `type base64`. */
const served = (s: Sshd, type: string) => keyPart(s.hostKeyPubs.find((p) => p.startsWith(type))!);
const count = (s: Sshd, what: string) => s.log().split(what).length - 1;

/** Connects with the test client key; retries allowed, so a test can show they are not used. */
async function open(s: Sshd, pin: HostKeyPin | 'trust-on-first-use'): Promise<RemoteSession> {
  const session = await connect({
    target: target(s),
    privateKey: readFileSync(s.clientKeyFile, 'utf8'),
    pin,
    connectTimeoutMs: 10_000,
    retries: 2,
    retryDelayMs: 100,
  });
  sessions.push(session);
  return session;
}

async function refusal(p: Promise<RemoteSession>): Promise<Error> {
  const r = await p.then(
    (s) => s,
    (e: Error) => e,
  );
  if (!(r instanceof Error)) throw new Error(`connected, presenting ${r.hostKey.type}`);
  return r;
}

/** Runs `connectOnce`, returning what it gave and how many TCP connections sshd saw meanwhile. */
async function counted<T>(s: Sshd, connectOnce: () => Promise<T>) {
  const before = count(s, 'Connection from');
  const beforeAuth = count(s, 'Accepted publickey');
  const result = await connectOnce();
  // sshd's children may write their last lines just after we hear the connection close.
  await new Promise((r) => setTimeout(r, 200));
  return {
    result,
    connections: count(s, 'Connection from') - before,
    logins: count(s, 'Accepted publickey') - beforeAuth,
  };
}

describe('a SHA256 fingerprint pin matches the key with that fingerprint, whatever its type', () => {
  it.each([
    ['ssh-ed25519', 1],
    ['ecdsa-sha2-nistp256', 2],
    ['ssh-rsa', 3],
  ])(
    '%s: connects, refusing the unpinned keys offered before it (%i connections)',
    async (type, connections) => {
      const key = served(full, type);
      const fp = opensshFingerprint(key);
      const r = await counted(full, () => open(full, pinFor(name(full), undefined, [fp])));
      expect(r.result.hostKey.type).toBe(type);
      expect(keyPart(`${r.result.hostKey.type} ${r.result.hostKey.blob.toString('base64')}`)).toBe(
        key,
      );
      expect((await r.result.exec('echo pinned')).stdout).toBe('pinned\n');
      // One connection per key type the server prefers before the pinned one; one login.
      expect(r.connections).toBe(connections);
      expect(r.logins).toBe(1);
    },
  );

  it('on a host without ed25519: a nistp384 pin in one connection, an RSA pin in two', async () => {
    const ec = await counted(noEd, () =>
      open(noEd, pinFor(name(noEd), undefined, [opensshFingerprint(served(noEd, 'ecdsa'))])),
    );
    expect(ec.result.hostKey.type).toBe('ecdsa-sha2-nistp384');
    expect(ec.connections).toBe(1);
    const rsa = await counted(noEd, () =>
      open(noEd, pinFor(name(noEd), undefined, [opensshFingerprint(served(noEd, 'ssh-rsa'))])),
    );
    expect(rsa.result.hostKey.type).toBe('ssh-rsa');
    expect(rsa.connections).toBe(2);
  });
});

describe('known_hosts lines ask for their own key type', () => {
  it('an RSA-only [host]:port line connects in one connection', async () => {
    const kh = `${name(full)} ${served(full, 'ssh-rsa')}\n`;
    const r = await counted(full, () => open(full, pinFor(name(full), kh, [])));
    expect(r.result.hostKey.type).toBe('ssh-rsa');
    expect(r.connections).toBe(1);
  });

  it('a hashed |1| ECDSA-only line connects in one connection', async () => {
    const kh = `${hashedName(name(full))} ${served(full, 'ecdsa')}\n`;
    const r = await counted(full, () => open(full, pinFor(name(full), kh, [])));
    expect(r.result.hostKey.type).toBe('ecdsa-sha2-nistp256');
    expect(r.connections).toBe(1);
  });

  it('the helper default (one ed25519 line, the file every other test uses) still connects', async () => {
    const kh = readFileSync(full.knownHostsFile, 'utf8');
    expect(kh.trim().split('\n')).toHaveLength(3);
    const s = await open(full, pinFor(name(full), kh.split('\n')[0], []));
    expect(s.hostKey.type).toBe('ssh-ed25519');
  });

  it('trust-on-first-use still accepts what the host presents first', async () => {
    const s = await open(full, 'trust-on-first-use');
    expect(s.hostKey.type).toBe('ssh-ed25519');
  });
});

describe('refusals say what was presented and what was expected, before any login', () => {
  it('a wrong fingerprint: every key the host has, and the pin, in one round', async () => {
    const wrong = opensshFingerprint(keyPair().publicKey);
    const r = await counted(full, () =>
      refusal(open(full, pinFor(name(full), undefined, [wrong]))),
    );
    expect(r.result).toBeInstanceOf(HostKeyMismatch);
    const msg = r.result.message;
    expect(msg).toMatch(new RegExp(`^host key mismatch for \\[127\\.0\\.0\\.1\\]:${full.port}:`));
    for (const type of ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ssh-rsa'])
      expect(msg).toContain(`${type} ${opensshFingerprint(served(full, type))}`);
    expect(msg).toContain(`expected ${wrong} (host-key-fingerprint)`);
    // Three keys refused, then a fourth connection finds no key type left; no retry, no login.
    expect(r.connections).toBe(4);
    expect(r.logins).toBe(0);
  });

  it('a wrong RSA line: the RSA key presented, the pinned one and its line expected', async () => {
    const other = keyPart(utils.generateKeyPairSync('rsa', { bits: 2048 }).public);
    const kh = `# ours\n${name(full)} ${other}\n`;
    const r = await counted(full, () => refusal(open(full, pinFor(name(full), kh, []))));
    expect(r.result).toBeInstanceOf(HostKeyMismatch);
    expect(r.result.message).toContain(
      `it presented ssh-rsa ${opensshFingerprint(served(full, 'ssh-rsa'))}, expected ssh-rsa ${opensshFingerprint(other)} (known-hosts line 2)`,
    );
    expect(r.connections).toBe(1);
    expect(r.logins).toBe(0);
  });

  it('a pinned type the host does not have: says it has no such key', async () => {
    const ed = keyPair().publicKey;
    const kh = `${name(noEd)} ${keyPart(ed)}\n`;
    const r = await counted(noEd, () => refusal(open(noEd, pinFor(name(noEd), kh, []))));
    expect(r.result).toBeInstanceOf(HostKeyMismatch);
    expect(r.result.message).toContain(
      `it presented no ssh-ed25519 key, expected ssh-ed25519 ${opensshFingerprint(ed)} (known-hosts line 1)`,
    );
    expect(r.connections).toBe(1);
  });

  it('a revoked key says revoked, not "presented X, expected X"', async () => {
    const ed = served(full, 'ssh-ed25519');
    const kh = `${name(full)} ${ed}\n@revoked ${name(full)} ${ed}\n`;
    const r = await counted(full, () => refusal(open(full, pinFor(name(full), kh, []))));
    expect(r.result).toBeInstanceOf(HostKeyRevoked);
    // Callers that stop on a wrong key (reboot waits, reconnects) stop on a revoked one too.
    expect(r.result).toBeInstanceOf(HostKeyMismatch);
    expect(r.result.message).toBe(
      `host key revoked for ${name(full)}: it presented ssh-ed25519 ${opensshFingerprint(ed)}, which known-hosts marks @revoked (line 2); nothing was run on it`,
    );
    expect((r.result as HostKeyRevoked).describe()).toMatch(
      /fix: the host still serves a key you revoked/,
    );
    expect(r.result.name).toBe('HostKeyRevoked');
    expect(r.connections).toBe(1);
    expect(r.logins).toBe(0);
  });

  it('a fingerprint search stops at a revoked key', async () => {
    const ec = served(full, 'ecdsa');
    const kh = `@revoked ${name(full)} ${ec}\n`;
    const pin = pinFor(name(full), kh, [opensshFingerprint(served(full, 'ssh-rsa'))]);
    const r = await counted(full, () => refusal(open(full, pin)));
    expect(r.result).toBeInstanceOf(HostKeyRevoked);
    expect(r.result.message).toContain(`ecdsa-sha2-nistp256 ${opensshFingerprint(ec)}`);
    expect(r.result.message).toContain('marks @revoked (line 1)');
    // ed25519 refused (not pinned), then the revoked ECDSA key: RSA is never asked for.
    expect(r.connections).toBe(2);
    expect(r.logins).toBe(0);
  });

  it('no pin for this name: refused before connecting, naming the name', async () => {
    const kh = `127.0.0.1 ${served(full, 'ssh-ed25519')}\n`;
    const r = await counted(full, () => refusal(open(full, pinFor(name(full), kh, []))));
    expect(r.result).toBeInstanceOf(HostKeyNotPinned);
    expect(r.result.message).toBe(
      `no host key is pinned for ${name(full)}: known-hosts has 1 key line, none for ${name(full)}; nothing was sent to it`,
    );
    expect((r.result as HostKeyNotPinned).fix).toContain(`ssh-keyscan -p ${full.port} 127.0.0.1`);
    expect(r.connections).toBe(0);
  });
});
