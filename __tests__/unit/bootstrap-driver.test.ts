/**
 * The bootstrap driver (runBootstrap) against a fake VPS at the SSH edge (fakes/bootstrap-target):
 * the real phases, scripts' output formats and parsers, in milliseconds. The VM suites stay the
 * proof that the host really ends up installed; these catch the wiring: which phases run in which
 * order, over which session, with which arguments, what a resumed run skips, where a failure stops,
 * and what the result reports.
 *
 * The closure transfer is stood in for at src/nix/transfer.ts (it needs a local Nix store); the
 * waits after kexec and reboot poll every 3 s, which the driver does not let a caller shorten, so
 * the clock is Jest's fake one, moved on while the run is pending.
 */
jest.mock('../../src/nix/transfer', () => ({
  ...jest.requireActual<object>('../../src/nix/transfer'),
  localClosure: jest.fn(),
  filesPresent: jest.fn(),
  sendClosure: jest.fn(),
}));

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readAsset } from '../../src/assets';
import { InputError, VpsNixosError } from '../../src/errors';
import { prepareInfect, type PreparedInfect } from '../../src/infect/script';
import { filesPresent, localClosure, sendClosure } from '../../src/nix/transfer';
import {
  runBootstrap,
  type BootstrapArtifacts,
  type BootstrapOptions,
} from '../../src/phases/bootstrap';
import { INFECT_DIR } from '../../src/phases/infect';
import { KEXEC_DIR } from '../../src/phases/kexec';
import { DEFAULT_SWAPFILE, INFECT_TOOLS, KEXEC_TOOLS } from '../../src/phases/prep';
import { plan, type PlanConfig } from '../../src/plan/plan';
import { parseFacts, type Facts } from '../../src/probe/facts';
import {
  FakeBootTarget,
  INFECTED_SYSTEM,
  RunnerStore,
  USED_BYTES,
  kexecTarballFile,
  type BootstrapTargetOptions,
} from './fakes/bootstrap-target';

const MiB = 2 ** 20;
const fixture = (name: string): Facts =>
  parseFacts(readFileSync(join(__dirname, '../fixtures/facts', `${name}.txt`), 'utf8'));
const debian = fixture('debian-12-kvm');
const inInstaller = fixture('nixos-kexec-installer');

const cfg: PlanConfig = {
  method: 'auto',
  minRamKexecBytes: 700 * MiB,
  minRamInfectBytes: 700 * MiB,
  allowLowRam: false,
  reinstall: false,
  flake: { ref: '.', name: 'vps' },
};
const kexecPlan = plan(debian, cfg);
const resumePlan = plan(inInstaller, cfg);
const infectPlan = plan(debian, { ...cfg, method: 'infect' });

const DEPLOY_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployKeyOfTheRunner deploy@ci';
const SUBSTITUTERS = { urls: ['https://cache.example.org'], publicKeys: ['cache.example.org-1:k'] };

const dir = mkdtempSync(join(tmpdir(), 'bootstrap-driver-'));
const runner = new RunnerStore();
const tarball = kexecTarballFile(dir);
const kexecArtifacts: BootstrapArtifacts = {
  kexec: tarball,
  toplevel: runner.toplevel,
  diskScript: runner.diskScript,
};
const resumeArtifacts: BootstrapArtifacts = {
  toplevel: runner.toplevel,
  diskScript: runner.diskScript,
};
let prepared: PreparedInfect;

function useRunner(store: RunnerStore): void {
  jest.mocked(localClosure).mockImplementation(store.localClosure);
  jest.mocked(filesPresent).mockImplementation(store.filesPresent);
  jest.mocked(sendClosure).mockImplementation(store.sendClosure);
}

beforeAll(async () => {
  prepared = await prepareInfect({
    url: join(__dirname, '..', '..', 'test', 'standins', 'nixos-infect'),
    revision: 'a'.repeat(40),
    channel: 'nixos-25.11',
    downloadDir: join(dir, 'infect'),
    log: () => undefined,
  });
});
beforeEach(() => {
  useRunner(runner);
  jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask', 'setImmediate'] });
});
afterEach(() => jest.useRealTimers());
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(runner.dir, { recursive: true, force: true });
});

/** The real setTimeout, taken before any test fakes the timers. */
const realSetTimeout = globalThis.setTimeout;

/** Moves the fake clock on (the 3 s polls) until `run` settles; real I/O gets its turns between. */
async function drive<T>(run: Promise<T>): Promise<T> {
  let settled = false;
  run.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; !settled; i++) {
    if (i > 2000) throw new Error('the bootstrap did not settle within 1000 fake seconds');
    await jest.advanceTimersByTimeAsync(500);
    // A real pause, not only a turn of the event loop: the fake target's real I/O (processes,
    // files) gets wall-clock time however loaded the machine is, so the fake clock cannot race
    // past it (with setImmediate alone a loaded CI box ran out the 2000 turns first).
    await new Promise((r) => realSetTimeout(r, 2));
  }
  return run;
}

function target(opts: BootstrapTargetOptions = {}) {
  const fake = new FakeBootTarget({ bootId: debian.bootId, machineId: debian.machineId, ...opts });
  return { fake, first: fake.session() };
}

function options(fake: FakeBootTarget, over: Partial<BootstrapOptions> = {}) {
  const info: string[] = [];
  const warn: string[] = [];
  const reconnect = jest.fn(() => fake.connect());
  const opts: BootstrapOptions = {
    confirmWipe: '/dev/vda',
    patchUdevadm: 'auto',
    substituters: SUBSTITUTERS,
    deployPublicKeys: [DEPLOY_KEY],
    user: 'root',
    reconnect,
    log: { info: (l) => info.push(l), warn: (l) => warn.push(l), group: (_t, fn) => fn() },
    memorySampleMs: 0,
    ...over,
  };
  return { opts, reconnect, info, warn };
}

/** The arguments one kind of command was sent with, each time. */
const argsOf = (fake: FakeBootTarget, what: string) =>
  fake.commands.filter((c) => c.what === what).map((c) => c.args);

/** The fake in the installer with prep, the disk script and the partitioning done there. */
function partlyInstalled(fake: FakeBootTarget, store: RunnerStore = runner): void {
  fake.zram = '/dev/zram0';
  for (const p of store.closureOf(store.diskScript)) fake.installerStore.add(p);
  fake.diskoPatched = true;
  fake.diskoMarker = `/dev/vda ${store.diskScript}`;
  fake.mntMounted = true;
  for (const p of store.closureOf(store.nix)) fake.mntStore.add(p);
}

describe('runBootstrap, kexec plan, on a fresh host', () => {
  it('runs prep → kexec → installer-prep → install → reboot, each over the session that is live then', async () => {
    expect(kexecPlan.phases).toEqual([
      'prep',
      'kexec',
      'installer-prep',
      'install',
      'reboot',
      'deploy',
    ]);
    const { fake, first } = target({ downConnects: 1 });
    const { opts, reconnect, info } = options(fake);

    const r = await drive(runBootstrap(first, debian, kexecPlan, kexecArtifacts, opts));

    expect(r.error).toBeUndefined();
    expect(r.phases.map((p) => [p.name, p.status])).toEqual([
      ['prep', 'done'],
      ['kexec', 'done'],
      ['installer-prep', 'done'],
      ['install', 'done'],
      ['reboot', 'done'],
    ]);
    // Everything that changed the host, in order, with the session it came over: the distro's
    // (1), the installer's after kexec (2); the installed system's (3) only answers at the end.
    expect(fake.changes).toEqual([
      '1: prep',
      '1: kexec-stage receive',
      '1: kexec-stage load',
      '2: prep',
      '2: store receive /',
      '2: disko-patch apply',
      '2: install disko',
      '2: store receive /mnt',
      '2: install finish',
      '2: reboot',
    ]);
    expect(fake.commands.at(-1)).toMatchObject({ what: 'who', session: 3, on: 'installed' });
    // kexec and the reboot each ended their session and took the one reconnect() gave
    expect(fake.sessions.map((s) => s.closed)).toEqual([true, true, false]);
    expect(r.session).toBe(fake.sessions[2]);
    expect(reconnect).toHaveBeenCalledTimes(4); // one refused, one answering, twice
    expect(fake.onDeadSessions).toEqual([]);
    expect(fake.unknown).toEqual([]);
    expect(fake.kind).toBe('installed');
    expect(fake.currentSystem).toBe(runner.toplevel);

    // what each phase was told comes from the plan, the facts, the artifacts and the options
    expect(argsOf(fake, 'prep')).toEqual([
      [KEXEC_TOOLS, `${kexecPlan.zramBytes}`, `${kexecPlan.swapfileBytes}`, DEFAULT_SWAPFILE],
      ['sh', `${kexecPlan.zramBytes}`, '0', DEFAULT_SWAPFILE],
    ]);
    expect(argsOf(fake, 'kexec-stage receive')).toEqual([[KEXEC_DIR, tarball.sha256]]);
    expect(argsOf(fake, 'kexec-stage load')).toEqual([[KEXEC_DIR, tarball.sha256, 'tmpfs']]);
    expect(fake.uploadedBytes).toBe(tarball.bytes);
    expect(argsOf(fake, 'install disko')).toEqual([['/dev/vda', runner.diskScript]]);
    expect(argsOf(fake, 'install finish')).toEqual([[runner.toplevel, runner.nix]]);
    expect(fake.sends.map((s) => [s.root, s.opts.nix, s.opts.substituters])).toEqual([
      ['/', undefined, undefined],
      ['/mnt', runner.nix, SUBSTITUTERS],
    ]);
    expect(info).toContain(
      `identity: machine-id ${debian.machineId} (matches the probe), /dev/vda 25.0 GiB, pinned host key`,
    );
    expect(r.phases[1]!.detail).toMatch(/the installer answered .* same pinned host key/);
    expect(r.phases[4]!.detail).toContain(`into ${runner.toplevel}`);
  });

  it('reports bytes sent, per phase and in all, the host now and the memory of whichever system answered', async () => {
    const { fake, first } = target();
    const { opts } = options(fake, { memorySampleMs: 1000 });

    const r = await drive(runBootstrap(first, debian, kexecPlan, kexecArtifacts, opts));

    expect(r.error).toBeUndefined();
    const diskScriptWire = runner.wireBytes(runner.closureOf(runner.diskScript));
    const systemWire = runner.wireBytes(runner.closureOf(runner.toplevel));
    expect(r.phases.map((p) => [p.name, p.bytesSent])).toEqual([
      ['prep', 0],
      ['kexec', tarball.bytes],
      ['installer-prep', diskScriptWire],
      ['install', systemWire],
      ['reboot', 0],
    ]);
    expect(r.bytesSent).toBe(fake.uploadedBytes + diskScriptWire + systemWire);
    expect(fake.sends.map((s) => [s.root, s.paths])).toEqual([
      ['/', runner.closureOf(runner.diskScript)],
      ['/mnt', runner.closureOf(runner.toplevel)],
    ]);
    // what answers at the end, not what the probe saw
    expect(r.host).toEqual({
      isNixos: true,
      currentSystem: runner.toplevel,
      bootId: fake.bootId,
      variantId: '',
    });
    expect(r.host.bootId).not.toBe(debian.bootId);
    // samples come from the session that is current: the distro's, then the installer's
    const peak = Object.fromEntries(r.phases.map((p) => [p.name, p.peakMemBytes]));
    expect(peak.prep).toBe(USED_BYTES.distro);
    expect(peak['installer-prep']).toBe(USED_BYTES.installer);
    expect(peak.install).toBe(USED_BYTES.installer);
    // only samples were tried on a session the phase had closed (and they count for nothing)
    expect(fake.onDeadSessions.every((c) => c.endsWith('cat /proc/meminfo'))).toBe(true);
  });
});

describe('runBootstrap, resumed', () => {
  it('in the installer (the plan resumes at installer-prep): skips what is done with its evidence, finishes the install without wiping again', async () => {
    expect(resumePlan.phases).toEqual(['installer-prep', 'install', 'reboot', 'deploy']);
    const { fake, first } = target({ boot: 'installer', bootId: inInstaller.bootId });
    partlyInstalled(fake);
    const { opts, info } = options(fake);

    const r = await drive(runBootstrap(first, inInstaller, resumePlan, resumeArtifacts, opts));

    expect(r.error).toBeUndefined();
    expect(r.phases.map((p) => [p.name, p.status])).toEqual([
      ['installer-prep', 'skipped'],
      ['install', 'done'],
      ['reboot', 'done'],
    ]);
    const evidence =
      'tools present, zram /dev/zram0, swapfile none; disk script present, udevadm patched in 1 of 1 files';
    expect(r.phases[0]!.detail).toBe(evidence);
    expect(info).toContain(`installer-prep: already done (${evidence}); skipping`);
    expect(r.phases[1]!.detail).toMatch(
      /^\/dev\/vda already partitioned by this installer \(resumed\); closure 4 paths: 2 there, 0 substituted by the target \([\d.]+ s\), 2 sent/,
    );
    // no prep, no second upload of the disk script, no disko: only the rest of the closure
    expect(fake.changes).toEqual(['1: store receive /mnt', '1: install finish', '1: reboot']);
    const [, , kernel, toplevel] = runner.closureOf(runner.toplevel);
    expect(fake.sends.map((s) => s.paths)).toEqual([[kernel, toplevel]]);
    expect(r.phases[1]!.bytesSent).toBe(runner.wireBytes([kernel!, toplevel!]));
    // the probe ran in the installer: the machine-id is the carried one, not compared
    expect(info).toContain(
      `identity: machine-id ${debian.machineId} (carried, from /var/lib/vps-nixos/carried/machine-id), /dev/vda 25.0 GiB, pinned host key`,
    );
    expect(fake.sessions.map((s) => s.closed)).toEqual([true, false]);
    expect(r.session).toBe(fake.sessions[1]);
    expect(fake.unknown).toEqual([]);
  });

  it('in the installer with the install complete: only the reboot runs', async () => {
    const { fake, first } = target({ boot: 'installer', bootId: inInstaller.bootId });
    partlyInstalled(fake);
    for (const p of runner.closureOf(runner.toplevel)) fake.mntStore.add(p);
    fake.mntProfile = fake.installedMarker = fake.bootsInto = runner.toplevel;
    fake.hostKeysCopied = true;
    const { opts } = options(fake);

    const r = await drive(runBootstrap(first, inInstaller, resumePlan, resumeArtifacts, opts));

    expect(r.phases.map((p) => [p.name, p.status, p.detail])).toEqual([
      ['installer-prep', 'skipped', expect.stringContaining('disk script present')],
      [
        'install',
        'skipped',
        `/mnt's system profile is ${runner.toplevel} and the host keys are in /mnt/etc/ssh`,
      ],
      ['reboot', 'done', expect.stringContaining(`into ${runner.toplevel}`)],
    ]);
    expect(fake.changes).toEqual(['1: reboot']);
    expect(r.bytesSent).toBe(0);
    expect(r.host.currentSystem).toBe(runner.toplevel);
  });

  it('on the distribution after prep and the upload: prep is skipped and the installer not sent again (a ramfs root asked for)', async () => {
    const { fake, first } = target({
      tools: ['sh', 'cpio', 'tar', 'setsid'],
    });
    fake.zram = '/dev/zram0';
    fake.swapfile = DEFAULT_SWAPFILE;
    fake.kexecTarball = { sha256: tarball.sha256, bytes: tarball.bytes };
    const { opts, info } = options(fake);

    const r = await drive(
      runBootstrap(first, debian, kexecPlan, { ...kexecArtifacts, kexecRootfs: 'ramfs' }, opts),
    );

    expect(r.error).toBeUndefined();
    // the install checks' choice reaches kexec/run (VPS_NIXOS_ROOTFS)
    expect(argsOf(fake, 'kexec-stage load')).toEqual([[KEXEC_DIR, tarball.sha256, 'ramfs']]);
    expect(r.phases[0]).toMatchObject({
      name: 'prep',
      status: 'skipped',
      detail: `tools present, zram /dev/zram0, swapfile ${DEFAULT_SWAPFILE}`,
    });
    expect(r.phases.slice(1).map((p) => p.status)).toEqual(['done', 'done', 'done', 'done']);
    expect(fake.log).not.toContain('kexec-stage receive');
    expect(fake.changes[0]).toBe('1: kexec-stage load');
    expect(r.phases[1]!.bytesSent).toBe(0);
    expect(info).toContain(
      `the installer is already on the target (sha256 ${tarball.sha256}): not uploading again`,
    );
  });
});

describe('runBootstrap, a phase fails', () => {
  it('install finds another machine: it stops there, nothing is wiped, the error is in the result and the installer session comes back live', async () => {
    const { fake, first } = target({ machineId: 'ffffffffffffffffffffffffffffffff' });
    const { opts } = options(fake);

    const r = await drive(runBootstrap(first, debian, kexecPlan, kexecArtifacts, opts));

    expect(r.phases.map((p) => [p.name, p.status])).toEqual([
      ['prep', 'done'],
      ['kexec', 'done'],
      ['installer-prep', 'done'],
      ['install', 'failed'],
    ]);
    expect(r.error).toBeInstanceOf(VpsNixosError);
    expect((r.error as Error).message).toMatch(
      `the installer carries machine-id ffffffffffffffffffffffffffffffff, the probed system had ${debian.machineId}: this is not the machine that was probed`,
    );
    expect(r.phases[3]!.detail).toMatch(/fix: nothing was wiped/);
    // the check came before any wipe, and the reboot never ran
    expect(fake.log.filter((c) => c.startsWith('install '))).toEqual([
      'install state',
      'install state',
      'install identity',
    ]);
    expect(fake.log).not.toContain('reboot');
    expect(fake.distroOnDisk).toBe(true);
    expect(r.session).toBe(fake.sessions[1]);
    expect(fake.sessions.map((s) => s.closed)).toEqual([true, false]);
    expect(r.host).toEqual({
      isNixos: true,
      currentSystem: null,
      bootId: fake.bootId,
      variantId: 'installer',
    });
  });

  it('the kexec load is refused: the later phases never run and the session the run began with comes back open', async () => {
    const { fake, first } = target({
      kexecLoadFails: 'kexec/run failed: kexec_load: Invalid argument',
    });
    const { opts, reconnect } = options(fake);

    const r = await drive(runBootstrap(first, debian, kexecPlan, kexecArtifacts, opts));

    expect(r.phases.map((p) => [p.name, p.status])).toEqual([
      ['prep', 'done'],
      ['kexec', 'failed'],
    ]);
    expect((r.error as Error).message).toBe(
      'kexec load failed on the target: kexec/run failed: kexec_load: Invalid argument',
    );
    expect(r.phases[1]!.detail).toMatch(/fix: the kernel refused the image/);
    expect(r.phases[1]!.bytesSent).toBe(tarball.bytes);
    expect(r.bytesSent).toBe(tarball.bytes);
    expect(reconnect).not.toHaveBeenCalled();
    expect(r.session).toBe(first);
    expect(first.closed).toBe(false);
    expect(fake.log.at(-1)).toBe('kexec-stage load');
    expect(r.host).toEqual({
      isNixos: false,
      currentSystem: null,
      bootId: debian.bootId,
      variantId: '',
    });
  });
});

describe('runBootstrap refuses a wrong confirm-wipe before anything is sent', () => {
  const sdaRunner = new RunnerStore({ diskScriptText: '#!/bin/sh\nsgdisk --zap-all /dev/sda\n' });
  afterAll(() => rmSync(sdaRunner.dir, { recursive: true, force: true }));

  it.each<[string, string | undefined, RunnerStore, RegExp]>([
    ['missing', undefined, runner, /'confirm-wipe': is required: the install wipes a disk/],
    ['a partition', '/dev/vda1', runner, /names \/dev\/vda1, a partition of \/dev\/vda/],
    ['not a disk here', '/dev/vdb', runner, /names \/dev\/vdb, which is not a disk of this host/],
    [
      'not the disk the script formats',
      '/dev/vda',
      sdaRunner,
      /the disk script formats \/dev\/sda/,
    ],
  ])('%s', async (_case, confirmWipe, store, message) => {
    useRunner(store);
    const { fake, first } = target();
    const { opts, reconnect } = options(fake, { confirmWipe });
    const artifacts = { kexec: tarball, toplevel: store.toplevel, diskScript: store.diskScript };

    const run = runBootstrap(first, debian, kexecPlan, artifacts, opts);

    await expect(run).rejects.toBeInstanceOf(InputError);
    await expect(run).rejects.toThrow(message);
    expect(fake.commands).toEqual([]);
    expect(reconnect).not.toHaveBeenCalled();
    expect(first.closed).toBe(false);
  });

  it('the same when resuming in the installer', async () => {
    const { fake, first } = target({ boot: 'installer', bootId: inInstaller.bootId });
    const { opts } = options(fake, { confirmWipe: '/dev/loop0' });
    await expect(
      runBootstrap(first, inInstaller, resumePlan, resumeArtifacts, opts),
    ).rejects.toThrow(/names \/dev\/loop0, which is not a disk of this host/);
    expect(fake.commands).toEqual([]);
  });
});

describe('runBootstrap, infect plan', () => {
  it('runs prep → infect → reboot: the tools nixos-infect needs, the verified script uploaded and started once, the infect reboot with its access checks', async () => {
    expect(infectPlan.phases).toEqual(['prep', 'infect', 'reboot', 'deploy']);
    const { fake, first } = target({
      infectLog: ['installing Nix', 'building the system', 'installing the boot loader'],
      authorizedKeys: { '/root/.ssh/authorized_keys': [DEPLOY_KEY] },
    });
    const { opts, info } = options(fake);

    const r = await drive(runBootstrap(first, debian, infectPlan, { infect: prepared }, opts));

    expect(r.error).toBeUndefined();
    expect(r.phases.map((p) => [p.name, p.status])).toEqual([
      ['prep', 'done'],
      ['infect', 'done'],
      ['reboot', 'done'],
    ]);
    expect(fake.changes).toEqual([
      '1: prep',
      '1: infect network',
      `1: upload ${INFECT_DIR}/infect.sh`,
      `1: upload ${INFECT_DIR}/nixos-infect`,
      '1: infect start',
      '1: reboot',
    ]);
    expect(argsOf(fake, 'prep')[0]![0]).toBe(INFECT_TOOLS);
    expect(r.phases[0]!.detail).toMatch(/^installed bzcat xzcat, zram \/dev\/zram0/);
    // the patched text is what went up, checked on the target against the prepared hash
    expect(fake.files.get(`${INFECT_DIR}/nixos-infect`)).toBe(prepared.text);
    expect(argsOf(fake, 'infect start')).toEqual([[prepared.sha256, '0', DEFAULT_SWAPFILE]]);
    expect(info).toEqual(expect.arrayContaining(['installing Nix', 'installing the boot loader']));
    expect(r.phases[2]!.detail).toMatch(
      /into NixOS .*; deploy key in \/root\/\.ssh\/authorized_keys; addresses kept: 192\.0\.2\.10\/24, 2001:db8:1::10\/64$/,
    );
    expect(fake.sessions.map((s) => s.closed)).toEqual([true, false]);
    expect(r.session).toBe(fake.sessions[1]);
    expect(r.host).toMatchObject({ isNixos: true, currentSystem: INFECTED_SYSTEM });
    expect(r.infect).toEqual({
      source: prepared.source,
      revision: prepared.revision,
      channel: prepared.channel,
      sha256: prepared.sha256,
      patches: prepared.patches,
    });
    expect(fake.unknown).toEqual([]);
  });

  it('no key file readable after the reboot: the deploy key is missing, the addresses are not', async () => {
    const { fake, first } = target({ infectLog: ['done'], authorizedKeys: {} });
    const { opts } = options(fake);
    const r = await drive(runBootstrap(first, debian, infectPlan, { infect: prepared }, opts));
    expect(r.error).toBeUndefined();
    // `---` is then the first line of the answer: the addresses after it are still read
    expect(r.phases[2]!.detail).toMatch(
      /the deploy key is in neither .*; addresses kept: 192\.0\.2\.10\/24, 2001:db8:1::10\/64$/,
    );
  });

  it('nixos-infect already running (a cut-off run): followed to its end, not uploaded or started again', async () => {
    const running: Facts = { ...debian, infect: { bootId: debian.bootId, running: true } };
    const resumeInfect = plan(running, { ...cfg, method: 'infect' });
    expect(resumeInfect.phases).toEqual(['infect', 'reboot', 'deploy']);
    const { fake, first } = target({
      infectLog: ['still building'],
      authorizedKeys: { '/etc/ssh/authorized_keys.d/root': [DEPLOY_KEY] },
    });
    fake.files.set(`${INFECT_DIR}/infect.sh`, readAsset('scripts/phases/infect.sh'));
    fake.network = '# addresses (ip -o addr show scope global)\nens3 inet 192.0.2.10/24\n';
    fake.infect = {
      dir: INFECT_DIR,
      startedIn: debian.bootId,
      started: 1_700_000_000,
      scriptSha256: prepared.sha256,
      log: 'installing Nix\n',
      linesLeft: ['still building'],
    };
    const { opts, info } = options(fake);

    const r = await drive(runBootstrap(first, running, resumeInfect, { infect: prepared }, opts));

    expect(r.error).toBeUndefined();
    expect(r.phases.map((p) => [p.name, p.status])).toEqual([
      ['infect', 'done'],
      ['reboot', 'done'],
    ]);
    expect(fake.changes).toEqual(['1: reboot']);
    expect(info).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^nixos-infect is already running \(pid 4242/),
        'installing Nix',
        'still building',
      ]),
    );
    expect(r.phases[1]!.detail).toMatch(
      /deploy key in \/etc\/ssh\/authorized_keys\.d\/root; addresses kept: 192\.0\.2\.10\/24$/,
    );
  });
});

describe('runBootstrap, warnings', () => {
  const byId = new RunnerStore({
    diskScriptText: '#!/bin/sh\nsgdisk --zap-all /dev/disk/by-id/virtio-vps-root\n',
  });
  afterAll(() => rmSync(byId.dir, { recursive: true, force: true }));

  it('a disk script that names its disk by id: the run goes on, the preflight warning is logged and in the result', async () => {
    useRunner(byId);
    const { fake, first } = target({ boot: 'installer', bootId: inInstaller.bootId });
    partlyInstalled(fake, byId);
    const { opts, warn } = options(fake);
    const artifacts = { toplevel: byId.toplevel, diskScript: byId.diskScript };

    const r = await drive(runBootstrap(first, inInstaller, resumePlan, artifacts, opts));

    const w =
      'the disk script names its disk by id (/dev/disk/by-id/virtio-vps-root): cannot check it is /dev/vda';
    expect(r.warnings).toEqual([w]);
    expect(warn).toEqual([w]);
    expect(r.phases.map((p) => p.status)).toEqual(['skipped', 'done', 'done']);
  });
});
