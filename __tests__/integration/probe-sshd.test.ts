/**
 * The walking skeleton against a real OpenSSH sshd on loopback, through the built CLI:
 * pinned host keys in every form, the facts of this very machine, and each failure's message.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startSshd, freePort, type Sshd } from '../helpers/sshd';
import { runCli } from '../helpers/cli';
import { hashedName, keyPair, opensshFingerprint } from '../helpers/keys';

jest.setTimeout(60_000);

let sshd: Sshd;
beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.stop();
});

const target = () => `root@127.0.0.1:${sshd.port}`;
const base = () => ['--target', target(), '--ssh-private-key-file', sshd.clientKeyFile];
const keyPart = (pub: string) => pub.split(' ').slice(0, 2).join(' ');

function localMemTotal(): number {
  const m = /^MemTotal:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return Number(m![1]) * 1024;
}
function localOsRelease(key: string): string | undefined {
  const m = new RegExp(`^${key}=(.*)$`, 'm').exec(readFileSync('/etc/os-release', 'utf8'));
  return m?.[1]?.replace(/^"(.*)"$/, '$1');
}
function localVirt(): string {
  try {
    return execFileSync('systemd-detect-virt').toString().trim();
  } catch (e) {
    return ((e as { stdout?: Buffer }).stdout ?? '').toString().trim();
  }
}

describe('probe over pinned SSH', () => {
  it("pins with a [host]:port known_hosts entry and reports this machine's facts", async () => {
    const r = await runCli([
      'probe',
      ...base(),
      '--known-hosts-file',
      sshd.knownHostsFile,
      '--json',
    ]);
    expect(r.stderr).toMatch(/matches the pin/);
    expect(r.code).toBe(0);
    const { facts } = JSON.parse(r.stdout);
    expect(facts.memTotalBytes).toBe(localMemTotal());
    expect(facts.osId).toBe(localOsRelease('ID'));
    expect(facts.osVersionId).toBe(localOsRelease('VERSION_ID'));
    expect(facts.virtualization).toBe(localVirt());
    expect(facts.isNixos).toBe(false);
    expect(facts.arch).toBe(execFileSync('uname', ['-m']).toString().trim());
    expect(facts.bootId).toBe(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    expect(facts.tmp.fsType).toBeTruthy();
    expect(facts.tmp.sizeBytes).toBeGreaterThan(0);
    expect('osVariantId' in facts).toBe(localOsRelease('VARIANT_ID') !== undefined);
  });

  it('pins with a hashed |1| entry', async () => {
    const kh = join(sshd.dir, 'known_hosts_hashed');
    writeFileSync(kh, `${hashedName(`[127.0.0.1]:${sshd.port}`)} ${keyPart(sshd.hostKeyPub)}\n`);
    const r = await runCli(['probe', ...base(), '--known-hosts-file', kh, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).facts.memTotalBytes).toBe(localMemTotal());
  });

  it('pins with a SHA256 fingerprint', async () => {
    const r = await runCli([
      'probe',
      ...base(),
      '--host-key-fingerprint',
      opensshFingerprint(sshd.hostKeyPub),
      '--json',
    ]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(opensshFingerprint(sshd.hostKeyPub));
  });

  it('pins with a plain host entry on port 22 (sshd in a netns of ours)', async () => {
    const inNs = await startSshd({ netns: true });
    try {
      const kh = join(inNs.dir, 'known_hosts');
      expect(readFileSync(kh, 'utf8')).toMatch(/^127\.0\.0\.1 ssh-ed25519 /);
      const r = await runCli(
        [
          'probe',
          '--target',
          'root@127.0.0.1',
          '--ssh-private-key-file',
          inNs.clientKeyFile,
          '--known-hosts-file',
          kh,
          '--json',
        ],
        { netns: inNs.netns },
      );
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).facts.memTotalBytes).toBe(localMemTotal());
    } finally {
      await inNs.stop();
    }
  });

  it('plan --json prints facts and plan', async () => {
    const r = await runCli([
      'plan',
      ...base(),
      '--known-hosts-file',
      sshd.knownHostsFile,
      '--json',
    ]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.facts.memTotalBytes).toBe(localMemTotal());
    expect(['kexec', 'infect', 'deploy-only', 'refuse']).toContain(doc.plan.method);
    expect(doc.plan.reasons.length).toBeGreaterThan(0);
    expect(Array.isArray(doc.plan.phases)).toBe(true);
  });

  it('trust-on-first-use accepts, prints and returns the presented key', async () => {
    const r = await runCli(['probe', ...base(), '--trust-on-first-use', '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.hostKey).toBe(`[127.0.0.1]:${sshd.port} ${keyPart(sshd.hostKeyPub)}`);
    expect(r.stderr).toMatch(/trust-on-first-use: accepted/);
  });
});

describe('probe failures, each with its own message and a non-zero exit', () => {
  it('a wrong pinned key stops before anything runs, printing both fingerprints', async () => {
    const other = keyPair().publicKey;
    const kh = join(sshd.dir, 'known_hosts_wrong');
    writeFileSync(kh, `[127.0.0.1]:${sshd.port} ${keyPart(other)}\n`);
    const before = sshd.log().split('Accepted publickey').length;
    const r = await runCli(['probe', ...base(), '--known-hosts-file', kh]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/host key mismatch/);
    expect(r.stdout + r.stderr).toContain(opensshFingerprint(sshd.hostKeyPub));
    expect(r.stdout + r.stderr).toContain(opensshFingerprint(other));
    expect(sshd.log().split('Accepted publickey').length).toBe(before);
  });

  it('no pin and no known_hosts line: the host key is shown and refused before logging in', async () => {
    // A HOME of its own: no ~/.ssh/known_hosts, so nothing pins the host.
    const home = join(sshd.dir, 'home-empty');
    mkdirSync(home, { recursive: true });
    const before = sshd.log().split('Accepted publickey').length;
    const r = await runCli(['probe', ...base()], { env: { HOME: home } });
    expect(r.code).toBe(1);
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/host key not known for \[127\.0\.0\.1\]:\d+: it presented/);
    expect(out).toContain(opensshFingerprint(sshd.hostKeyPub));
    expect(out).toMatch(/~\/\.ssh\/known_hosts does not exist/);
    expect(out).toMatch(new RegExp(`ssh-keyscan -p ${sshd.port} 127.0.0.1`));
    expect(out).toMatch(/nothing was run on it/);
    expect(sshd.log().split('Accepted publickey').length).toBe(before);
  });

  it('an unreachable port ends with a connection message after bounded retries', async () => {
    const port = await freePort();
    const r = await runCli([
      'probe',
      '--target',
      `root@127.0.0.1:${port}`,
      '--ssh-private-key-file',
      sshd.clientKeyFile,
      '--trust-on-first-use',
      '--connect-retries',
      '1',
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(
      /cannot connect to root@127\.0\.0\.1:\d+: .*ECONNREFUSED.*\(2 attempts\)/,
    );
    expect(r.stderr).toMatch(/retrying/);
  });

  it('a refused login says which key to authorize', async () => {
    const stranger = join(sshd.dir, 'stranger');
    writeFileSync(stranger, keyPair().privateKey, { mode: 0o600 });
    const r = await runCli([
      'probe',
      '--target',
      target(),
      '--ssh-private-key-file',
      stranger,
      '--known-hosts-file',
      sshd.knownHostsFile,
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/login refused/);
    expect(r.stdout + r.stderr).toMatch(/authorized_keys/);
  });
});

describe('facts-to-nix from a real probe', () => {
  it('writes a module that parses and carries the probed static addresses as values', async () => {
    const probed = await runCli([
      'probe',
      ...base(),
      '--known-hosts-file',
      sshd.knownHostsFile,
      '--json',
    ]);
    const factsFile = join(sshd.dir, 'facts.json');
    writeFileSync(factsFile, probed.stdout);
    const out = join(sshd.dir, 'host.nix');
    const r = await runCli([
      'facts-to-nix',
      '--facts',
      factsFile,
      '--out',
      out,
      '--host',
      target(),
    ]);
    expect(r.code).toBe(0);
    const text = readFileSync(out, 'utf8');
    execFileSync('nix-instantiate', ['--parse', out], {
      stdio: 'ignore',
      env: { ...process.env, NIX_CONFIG: 'build-users-group =' },
    });
    const facts = JSON.parse(probed.stdout).facts as {
      isContainer: boolean;
      interfaces: {
        addresses: { address: string; prefixLength: number; scope: string; dynamic: boolean }[];
      }[];
    };
    if (facts.isContainer) {
      expect(text).toMatch(/boot\.isContainer = true;/);
    }
    for (const a of facts.interfaces
      .flatMap((i) => i.addresses)
      .filter((x) => x.scope === 'global' && !x.dynamic)) {
      expect(text).toContain(`"${a.address}/${a.prefixLength}"`);
    }
    // Without --out the same module goes to stdout (the header's first line carries the date).
    const stdout = await runCli(['facts-to-nix', '--facts', factsFile, '--host', target()]);
    const body = (t: string) => t.split('\n').slice(1).join('\n');
    expect(body(stdout.stdout)).toBe(body(text));
  });
  it('refuses a missing facts file with the input named', async () => {
    const r = await runCli(['facts-to-nix', '--facts', '/nonexistent.json']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/input 'facts': cannot read/);
  });
  it('refuses a disk name that is not a Nix attribute, before reading the facts', async () => {
    const r = await runCli([
      'facts-to-nix',
      '--facts',
      '/nonexistent.json',
      '--disk-name',
      'main; rm -rf',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/input 'disk-name': 'main; rm -rf' is not a disko disk name/);
  });
});
