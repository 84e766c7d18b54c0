/**
 * Sending a closure over the pinned session into a store root on the target (the installer's
 * `/mnt`), against a real sshd on loopback and real Nix on both ends (this machine is the target;
 * the store root is a fresh directory, like the new disk). Stand-in flake: no nixpkgs offline.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSshd, type Sshd } from '../helpers/sshd';
import { OFFLINE_NIX_CONFIG, nixSync, standinFlake } from '../helpers/nixflake';
import { connect, type RemoteSession } from '../../src/ssh/session';
import { pinFor } from '../../src/ssh/hostkeys';
import { parseTarget, type Target } from '../../src/target';
import { localClosure, sendClosure } from '../../src/nix/transfer';

jest.setTimeout(180_000);
let sshd: Sshd;
let session: RemoteSession;
let toplevel: string;
const lines: string[] = [];

beforeAll(async () => {
  sshd = await startSshd();
  const flake = standinFlake({ tag: 'transfer', uniqueDeps: true, firmwareBytes: 2 * 2 ** 20 });
  const out = JSON.parse(
    nixSync([
      'build',
      '--no-link',
      '--json',
      `${flake.ref}#nixosConfigurations.standin.config.system.build.toplevel`,
    ]),
  ) as { outputs: { out: string } }[];
  toplevel = out[0]!.outputs.out;
  const target = parseTarget(`root@127.0.0.1:${sshd.port}`) as Target;
  session = await connect({
    target,
    privateKey: readFileSync(sshd.clientKeyFile, 'utf8'),
    pin: pinFor(target.knownHostsName, readFileSync(sshd.knownHostsFile, 'utf8'), []),
    connectTimeoutMs: 10_000,
    retries: 2,
  });
});
afterAll(async () => {
  session?.close();
  await sshd?.stop();
});

const env = { ...process.env, NIX_CONFIG: OFFLINE_NIX_CONFIG };
const storeRoot = () => mkdtempSync(join(tmpdir(), 'vps-nixos-mnt-'));
const invalidIn = (root: string, paths: string[]) =>
  execFileSync('nix-store', ['--store', root, '--check-validity', '--print-invalid', ...paths], {
    encoding: 'utf8',
    env,
  })
    .split('\n')
    .filter(Boolean);
const narBytes = (paths: string[]) =>
  paths.reduce(
    (sum, p) => sum + Number(nixSync(['path-info', '--json', p]).match(/"narSize":(\d+)/)![1]),
    0,
  );

describe('sendClosure into a store root over the pinned session', () => {
  it('copies every path of the closure, registered and verifiable, and nothing twice', async () => {
    const root = storeRoot();
    const closure = await localClosure([toplevel]);
    expect(closure[closure.length - 1]).toBe(toplevel);
    const r = await sendClosure(session, [toplevel], {
      storeRoot: root,
      log: (l) => lines.push(l),
    });
    expect(r).toMatchObject({ present: 0, substituted: 0, sent: closure.length });
    expect(r.closure).toEqual(closure);
    // A tar stream carries the NARs' bytes plus headers: at least the NAR sizes.
    expect(r.bytesSent).toBeGreaterThanOrEqual(narBytes(closure) * 0.9);
    expect(invalidIn(root, closure)).toEqual([]);
    // The registered hashes match the files (what Nix checks before trusting them).
    execFileSync('nix-store', ['--store', root, '--verify-path', ...closure], { env });
    expect(
      execFileSync('nix-store', ['--store', root, '-qR', toplevel], { encoding: 'utf8', env })
        .trim()
        .split('\n')
        .sort(),
    ).toEqual([...closure].sort());

    const again = await sendClosure(session, [toplevel], { storeRoot: root, log: () => {} });
    expect(again).toMatchObject({ present: closure.length, sent: 0, bytesSent: 0 });
  });

  it('resumes after an interrupted copy: an unregistered, read-only leftover is replaced', async () => {
    const root = storeRoot();
    const closure = await localClosure([toplevel]);
    // What a cut connection leaves: the toplevel's dir half there, read-only, not registered.
    const leftover = join(root, toplevel);
    mkdirSync(leftover, { recursive: true });
    writeFileSync(join(leftover, 'half-written'), 'x');
    chmodSync(leftover, 0o555);
    const r = await sendClosure(session, [toplevel], { storeRoot: root, log: () => {} });
    expect(r.sent).toBe(closure.length);
    expect(invalidIn(root, closure)).toEqual([]);
    execFileSync('nix-store', ['--store', root, '--verify-path', toplevel], { env });
  });

  it('sends only what the target lacks', async () => {
    const root = storeRoot();
    const closure = await localClosure([toplevel]);
    const deps = closure.slice(0, -1);
    await sendClosure(session, [deps[0]!], { storeRoot: root, log: () => {} });
    const r = await sendClosure(session, [toplevel], { storeRoot: root, log: () => {} });
    const firstClosure = await localClosure([deps[0]!]);
    expect(r.present).toBe(firstClosure.length);
    expect(r.sent).toBe(closure.length - firstClosure.length);
  });

  it('lets the target substitute from a binary cache first, and sends only what the cache lacks', async () => {
    const root = storeRoot();
    const closure = await localClosure([toplevel]);
    const deps = closure.slice(0, -1);
    // A signed file:// binary cache on the target holding every dependency, not the toplevel.
    const cache = mkdtempSync(join(tmpdir(), 'vps-nixos-bincache-'));
    const sk = join(cache, 'secret');
    writeFileSync(sk, nixSync(['key', 'generate-secret', '--key-name', 'vps-nixos-test-1']));
    const pk = execFileSync(
      'nix',
      ['--extra-experimental-features', 'nix-command', 'key', 'convert-secret-to-public'],
      {
        input: readFileSync(sk),
        encoding: 'utf8',
        env,
      },
    ).trim();
    nixSync(['copy', '--to', `file://${cache}/c?secret-key=${sk}&compression=none`, ...deps]);
    const r = await sendClosure(session, [toplevel], {
      storeRoot: root,
      substitute: true,
      substituters: { urls: [`file://${cache}/c`], publicKeys: [pk] },
      log: (l) => lines.push(l),
    });
    expect(r).toMatchObject({ present: 0, substituted: deps.length, sent: 1 });
    expect(r.bytesSent).toBeLessThan(narBytes(deps));
    expect(invalidIn(root, closure)).toEqual([]);
    execFileSync('nix-store', ['--store', root, '--verify-path', ...closure], { env });
    // An unsigned cache is not trusted: everything is sent.
    const root2 = storeRoot();
    const r2 = await sendClosure(session, [toplevel], {
      storeRoot: root2,
      substitute: true,
      substituters: { urls: [`file://${cache}/c`], publicKeys: [] },
      log: () => {},
    });
    expect(r2).toMatchObject({ substituted: 0, sent: closure.length });
  });

  it('says which store it could not query when the store root is unusable', async () => {
    await expect(
      sendClosure(session, [toplevel], {
        storeRoot: '/proc/no-such-root',
        log: () => {},
      }),
    ).rejects.toThrow(/cannot query the target's store at \/proc\/no-such-root/);
  });
});
