/**
 * Sending a closure over the pinned session into a store root on the target (the installer's
 * `/mnt`), against a real sshd on loopback. This machine is the target and the store root is a
 * fresh directory, like the new disk: there is no Nix in it but the one the closure carries (the
 * harness's nix-standin: Debian's nix-bin made self-contained as a store path), which hashes and
 * registers in a chroot of the root, as in the real installer.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSshd, type Sshd } from '../helpers/sshd';
import { OFFLINE_NIX_CONFIG, nixSync } from '../helpers/nixflake';
import { connect, type RemoteSession } from '../../src/ssh/session';
import { pinFor } from '../../src/ssh/hostkeys';
import { parseTarget, type Target } from '../../src/target';
import { localClosure, narHashHex, sendClosure, TransferCorrupt } from '../../src/nix/transfer';

jest.setTimeout(300_000);
let sshd: Sshd;
let session: RemoteSession;
let toplevel: string;
let nix: string;
const lines: string[] = [];
const env = { ...process.env, NIX_CONFIG: OFFLINE_NIX_CONFIG };
const STANDINS = join(__dirname, '../../test/vps/standins');

beforeAll(async () => {
  sshd = await startSshd();
  // A small system: the stand-in Nix, two layers of dependencies and a text file to corrupt.
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-transfer-'));
  writeFileSync(
    join(dir, 'default.nix'),
    `let
      mk = name: script: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" script ]; };
      nix = derivation { name = "nix-standin-2.8"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ ${STANDINS}/nix-standin.sh ]; };
      libA = mk "liba-1.2" "/usr/bin/head -c 100000 /dev/urandom > $out";
      libB = mk "libb-2.0" "/bin/mkdir $out; echo \${libA} > $out/deps; echo 'a text the wire may flip' > $out/text";
    in mk "nixos-system-transfer-test" "/bin/mkdir -p $out/sw/bin; echo \${libB} > $out/deps; /bin/ln -s \${nix}/bin/nix-store $out/sw/bin/nix-store"`,
  );
  toplevel = execFileSync('nix-build', ['--no-out-link', join(dir, 'default.nix')], {
    encoding: 'utf8',
    env,
  }).trim();
  nix = (await localClosure([toplevel])).find((p) => p.endsWith('-nix-standin-2.8'))!;
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

describe('narHashHex', () => {
  it('reads the forms Nix prints: nix32 (nix-store -q --hash), SRI (path-info), hex', () => {
    const [nix32] = execFileSync('nix-store', ['-q', '--hash', nix], { encoding: 'utf8', env })
      .trim()
      .split('\n');
    const hex = nixSync(['hash', 'path', '--type', 'sha256', '--base16', nix]).trim();
    const sri = nixSync(['hash', 'path', '--type', 'sha256', nix]).trim();
    expect(nix32).toMatch(/^sha256:[0-9a-z]{52}$/);
    expect(narHashHex(nix32!)).toBe(hex);
    expect(narHashHex(sri)).toBe(hex);
    expect(narHashHex(`sha256:${hex}`)).toBe(hex);
    expect(() => narHashHex('md5:abc')).toThrow(/unrecognised NAR hash/);
  });
});

describe('sendClosure into a store root with the closure’s own Nix', () => {
  it('sends the Nix first, then the rest; every path hash-checked and registered; nothing twice', async () => {
    const root = storeRoot();
    const closure = await localClosure([toplevel]);
    const r = await sendClosure(session, [toplevel], {
      storeRoot: root,
      nix,
      log: (l) => lines.push(l),
    });
    expect(r).toMatchObject({ present: 0, substituted: 0, sent: closure.length });
    expect(lines.some((l) => /closure's Nix first/.test(l))).toBe(true);
    // zstd on the wire: never more than the tar (the random blob keeps it near 1:1 here)
    expect(r.bytesSent).toBeLessThanOrEqual(r.tarBytes);
    expect(r.tarBytes).toBeGreaterThanOrEqual(narBytes(closure) * 0.9);
    expect(invalidIn(root, closure)).toEqual([]);
    // The registered hashes match the files (what Nix checks before trusting them).
    execFileSync('nix-store', ['--store', root, '--verify-path', ...closure], { env });
    const again = await sendClosure(session, [toplevel], { storeRoot: root, nix, log: () => {} });
    expect(again).toMatchObject({ present: closure.length, sent: 0, bytesSent: 0 });
  });

  it('resumes after an interrupted copy: an unregistered, read-only leftover is replaced', async () => {
    const root = storeRoot();
    const closure = await localClosure([toplevel]);
    const leftover = join(root, toplevel);
    mkdirSync(leftover, { recursive: true });
    writeFileSync(join(leftover, 'half-written'), 'x');
    chmodSync(leftover, 0o555);
    const r = await sendClosure(session, [toplevel], { storeRoot: root, nix, log: () => {} });
    expect(r.sent).toBe(closure.length);
    expect(invalidIn(root, closure)).toEqual([]);
    execFileSync('nix-store', ['--store', root, '--verify-path', toplevel], { env });
  });

  it('sends only what the target lacks', async () => {
    const root = storeRoot();
    const closure = await localClosure([toplevel]);
    const nixClosure = await localClosure([nix]);
    await sendClosure(session, [nix], { storeRoot: root, nix, log: () => {} });
    const r = await sendClosure(session, [toplevel], { storeRoot: root, nix, log: () => {} });
    expect(r.present).toBe(nixClosure.length);
    expect(r.sent).toBe(closure.length - nixClosure.length);
  });

  it('a byte flipped on the way is caught by the NAR hash: deleted, never registered', async () => {
    const root = storeRoot();
    const closure = await localClosure([toplevel]);
    const libB = closure.find((p) => p.endsWith('-libb-2.0'))!;
    // The wire between us: flips one letter in the second stream (the one after the Nix).
    let receives = 0;
    const tampering: RemoteSession = {
      target: session.target,
      hostKey: session.hostKey,
      close: () => {},
      exec: (command, opts) => {
        if (command.includes("'receive'") && ++receives === 2)
          command = `zstd -dc | sed 's/the wire may flip/the wire may flop/' | zstd -q -c | ${command}`;
        return session.exec(command, opts);
      },
    };
    await expect(
      sendClosure(tampering, [toplevel], { storeRoot: root, nix, log: () => {} }),
    ).rejects.toThrow(TransferCorrupt);
    // Nothing of the corrupted batch is registered; the Nix sent before it is.
    expect(invalidIn(root, [libB, toplevel]).sort()).toEqual([libB, toplevel].sort());
    expect(invalidIn(root, [nix])).toEqual([]);
    // A clean re-run finishes the copy.
    const r = await sendClosure(session, [toplevel], { storeRoot: root, nix, log: () => {} });
    expect(r.sent).toBeGreaterThan(0);
    expect(invalidIn(root, closure)).toEqual([]);
  });

  it('a connection dropped mid-stream fails the copy and leaves no tar or zstd running here', async () => {
    // Big enough to be still streaming when the connection drops.
    const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-transfer-big-'));
    writeFileSync(
      join(dir, 'default.nix'),
      `derivation { name = "big-${Date.now()}"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "/usr/bin/head -c 268435456 /dev/urandom > $out" ]; }`,
    );
    const big = execFileSync('nix-build', ['--no-out-link', join(dir, 'default.nix')], {
      encoding: 'utf8',
      env,
    }).trim();
    const target = parseTarget(`root@127.0.0.1:${sshd.port}`) as Target;
    const own = await connect({
      target,
      privateKey: readFileSync(sshd.clientKeyFile, 'utf8'),
      pin: pinFor(target.knownHostsName, readFileSync(sshd.knownHostsFile, 'utf8'), []),
      connectTimeoutMs: 10_000,
      retries: 0,
    });
    // The connection goes away 300 ms into the stream (sshd killed, the link reset).
    const dropping: RemoteSession = {
      ...own,
      exec: (command, opts) => {
        if (command.includes("'receive'")) setTimeout(() => own.close(), 300);
        return own.exec(command, opts);
      },
    };
    await expect(
      sendClosure(dropping, [big], { storeRoot: storeRoot(), log: () => {} }),
    ).rejects.toThrow();
    const children = execFileSync('ps', ['--ppid', String(process.pid), '-o', 'comm='], {
      encoding: 'utf8',
    });
    expect(children.split('\n').filter((c) => c === 'tar' || c === 'zstd')).toEqual([]);
  });

  it('lets the target substitute from a binary cache first, and sends only what the cache lacks', async () => {
    const root = storeRoot();
    const closure = await localClosure([toplevel]);
    const nixClosure = new Set(await localClosure([nix]));
    const deps = closure.filter((p) => p !== toplevel && !nixClosure.has(p));
    // A signed file:// binary cache inside the store root (the chroot sees it as /cache).
    const cache = join(root, 'cache');
    mkdirSync(cache);
    const sk = join(tmpdir(), `vps-nixos-cache-key-${process.pid}`);
    writeFileSync(sk, nixSync(['key', 'generate-secret', '--key-name', 'vps-nixos-test-1']));
    const pk = execFileSync(
      'nix',
      ['--extra-experimental-features', 'nix-command', 'key', 'convert-secret-to-public'],
      { input: readFileSync(sk), encoding: 'utf8', env },
    ).trim();
    nixSync(['copy', '--to', `file://${cache}/c?secret-key=${sk}&compression=none`, ...deps]);
    const r = await sendClosure(session, [toplevel], {
      storeRoot: root,
      nix,
      substitute: true,
      substituters: { urls: ['file:///cache/c'], publicKeys: [pk] },
      log: (l) => lines.push(l),
    });
    expect(r).toMatchObject({ present: 0, substituted: deps.length });
    expect(r.sent).toBe(closure.length - deps.length);
    expect(invalidIn(root, closure)).toEqual([]);
    execFileSync('nix-store', ['--store', root, '--verify-path', ...closure], { env });
    // An unsigned cache is not trusted: everything is sent.
    const root2 = storeRoot();
    mkdirSync(join(root2, 'cache'));
    execFileSync('cp', ['-a', `${cache}/c`, join(root2, 'cache')]);
    const r2 = await sendClosure(session, [toplevel], {
      storeRoot: root2,
      nix,
      substitute: true,
      substituters: { urls: ['file:///cache/c'], publicKeys: [] },
      log: () => {},
    });
    expect(r2).toMatchObject({ substituted: 0, sent: closure.length });
  });

  it('without a Nix (the disk script into the installer), files are checked by sha256', async () => {
    const root = storeRoot();
    const libB = (await localClosure([toplevel])).find((p) => p.endsWith('-libb-2.0'))!;
    const r = await sendClosure(session, [libB], { storeRoot: root, log: () => {} });
    expect(r.sent).toBe(2);
    expect(readFileSync(join(root, libB, 'text'), 'utf8')).toMatch(/the wire may flip/);
    const again = await sendClosure(session, [libB], { storeRoot: root, log: () => {} });
    expect(again).toMatchObject({ present: 2, sent: 0 });
  });

  it('refuses a closure that does not carry the Nix it was given', async () => {
    const libB = (await localClosure([toplevel])).find((p) => p.endsWith('-libb-2.0'))!;
    await expect(
      sendClosure(session, [libB], { storeRoot: storeRoot(), nix, log: () => {} }),
    ).rejects.toThrow(/is not in the closure/);
  });

  it('says which store step failed when the store root is unusable', async () => {
    await expect(
      sendClosure(session, [toplevel], { storeRoot: '/proc/no-such-root', nix, log: () => {} }),
    ).rejects.toThrow(/store step 'invalid' failed: cannot enter \/proc\/no-such-root/);
  });
});
