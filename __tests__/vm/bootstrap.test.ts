/**
 * The bootstrap phases, in order, on one real 1 GB QEMU test VPS. Phase 0 (prep) (no swap, /tmp a 64 MB tmpfs, cpio missing,
 * a Debian apt repository inside the test network): tools installed with apt for real, zram and
 * a swapfile on disk, idempotent on a second run; never a swapfile on the tmpfs /tmp.
 */
import { connect, type RemoteSession } from '../../src/ssh/session';
import { pinFor } from '../../src/ssh/hostkeys';
import { probe } from '../../src/probe/probe';
import { plan } from '../../src/plan/plan';
import { runPhases, type PhaseLogger } from '../../src/phases/phase';
import { prepPhase, type PrepContext } from '../../src/phases/prep';
import { kexecPhase, whoAnswers, type KexecContext } from '../../src/phases/kexec';
import { installerPrepPhase } from '../../src/phases/installer-prep';
import { currentVps, standins, vpsConfig } from '../helpers/vps';
import { fingerprint } from '../../src/ssh/hostkeys';

jest.setTimeout(300_000);
const vps = currentVps();
const cfg = vpsConfig(vps);
const lines: string[] = [];
const log: PhaseLogger = {
  info: (l) => lines.push(l),
  warn: (l) => lines.push(l),
  group: (_t, fn) => fn(),
};
let session: RemoteSession;

const open = (timeoutMs: number, retries: number) =>
  connect({
    target: cfg.target!,
    privateKey: cfg.sshPrivateKey!,
    pin: pinFor(cfg.target!.knownHostsName, cfg.knownHosts, []),
    connectTimeoutMs: timeoutMs,
    retries,
  });

beforeAll(async () => {
  session = await open(30_000, 3);
});
afterAll(() => session?.close());

const swaps = async () => (await session.exec('cat /proc/swaps')).stdout;

describe('prep on the test VPS', () => {
  it('installs cpio with apt, sets up zram and a swapfile on disk, and skips when run again', async () => {
    const facts = await probe(session);
    expect(facts.tools.cpio).toBeUndefined();
    expect(facts.swapTotalBytes).toBe(0);
    expect(facts.tmp?.fsType).toBe('tmpfs');
    const p = plan(facts, cfg);
    const ctx: PrepContext = {
      session,
      plan: p,
      isContainer: facts.isContainer,
      log: (l) => lines.push(l),
    };

    const first = await runPhases([prepPhase], ctx, log);
    process.stderr.write(
      `prep phase: ${first.records[0]?.seconds.toFixed(1)} s: ${first.records[0]?.detail}\n`,
    );
    expect(first.error).toBeUndefined();
    expect(first.records[0]).toMatchObject({ name: 'prep', status: 'done' });
    expect(first.records[0]!.detail).toMatch(/installed cpio/);
    expect((await session.exec('command -v cpio')).code).toBe(0);
    const s = await swaps();
    expect(s).toMatch(/^\/dev\/zram\d+\s+partition/m);
    expect(s).toMatch(/^\/var\/lib\/vps-nixos\/swapfile\s+file/m);

    const second = await runPhases([prepPhase], ctx, log);
    expect(second.records[0]).toMatchObject({ status: 'skipped' });
    expect(second.records[0]!.detail).toMatch(
      /tools present, zram \/dev\/zram\d+, swapfile \/var\/lib\/vps-nixos\/swapfile/,
    );
    expect((await swaps()).split('\n').filter((l) => l.includes('zram')).length).toBe(1);
  });

  it('never puts a swapfile on the tmpfs /tmp', async () => {
    const ctx: PrepContext = {
      session,
      plan: { zramBytes: 0, swapfileBytes: 64 * 2 ** 20 },
      swapfilePath: '/tmp/vps-nixos.swap',
      isContainer: false,
      log: (l) => lines.push(l),
    };
    const r = await runPhases([prepPhase], ctx, log);
    expect(r.records[0]!.status).toBe('done');
    expect(r.records[0]!.detail).toMatch(/swapfile none/);
    expect(lines.join('\n')).toMatch(/no swapfile: \/tmp is on tmpfs/);
    expect(await swaps()).not.toMatch(/\/tmp\//);
    expect((await session.exec('test -e /tmp/vps-nixos.swap')).code).not.toBe(0);
  });
});

describe('kexec on the test VPS (stand-in installer, ballast 0)', () => {
  it('uploads, kexecs and comes back as the installer with the same pinned key on the same address', async () => {
    const before = await whoAnswers(session);
    const pinned = fingerprint(session.hostKey.blob);
    const s = standins();
    const ctx: KexecContext = {
      session,
      reconnect: () => open(10_000, 0),
      tarball: {
        path: s.kexecTarball,
        sha256: s.kexecSha256,
        bytes: s.kexecBytes,
        source: 'file',
        from: s.kexecTarball,
      },
      log: (l) => lines.push(l),
    };
    const r = await runPhases([kexecPhase], ctx, log);
    process.stderr.write(
      `kexec phase: ${r.records[0]?.seconds.toFixed(1)} s: ${r.records[0]?.detail}\n`,
    );
    expect(r.error).toBeUndefined();
    expect(r.records[0]).toMatchObject({ name: 'kexec', status: 'done' });
    session = ctx.session;
    const after = await whoAnswers(session);
    expect(after.bootId).not.toBe(before.bootId);
    expect(after).toMatchObject({ variantId: 'installer', isNixos: true });
    expect(fingerprint(session.hostKey.blob)).toBe(pinned);
    expect(session.target.host).toBe(vps.address);
    const facts = await probe(session);
    expect(facts.isInstaller).toBe(true);
    expect(plan(facts, cfg).phases[0]).toBe('installer-prep');

    // A re-run finds the installer and does nothing.
    const again = await runPhases([kexecPhase], ctx, log);
    expect(again.records[0]).toMatchObject({ status: 'skipped' });
    expect(again.records[0]!.detail).toMatch(/VARIANT_ID=installer/);
  });
});

describe('installer prep on the test VPS (in the stand-in installer)', () => {
  it('sets up zram again and keeps Nix GC limits below the store tmpfs, once', async () => {
    expect((await whoAnswers(session)).variantId).toBe('installer');
    const ctx = { session, zramBytes: 512 * 2 ** 20, log: (l: string) => lines.push(l) };
    const r = await runPhases([installerPrepPhase], ctx, log);
    process.stderr.write(
      `installer-prep phase: ${r.records[0]?.seconds.toFixed(1)} s: ${r.records[0]?.detail}\n`,
    );
    expect(r.records[0]).toMatchObject({ status: 'done' });
    expect(await swaps()).toMatch(/^\/dev\/zram\d+\s+partition/m);
    const conf = (await session.exec('cat /etc/nix/nix.conf')).stdout;
    const min = Number(/^min-free = (\d+)$/m.exec(conf)?.[1]);
    const max = Number(/^max-free = (\d+)$/m.exec(conf)?.[1]);
    const free = Number(
      (await session.exec("df -kP /nix/.rw-store | awk 'NR==2{print $4*1024}'")).stdout,
    );
    expect(min).toBeGreaterThan(0);
    expect(min).toBeLessThanOrEqual(max);
    expect(max).toBeLessThanOrEqual(free);
    const again = await runPhases([installerPrepPhase], ctx, log);
    expect(again.records[0]).toMatchObject({ status: 'skipped' });
  });
});
