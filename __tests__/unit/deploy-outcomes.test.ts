/**
 * The deploy stage's rollback decisions (runDeploy), in milliseconds: a fake target behind
 * RemoteSession (fakes/session.ts) answers as state.sh, after.sh, guard.sh and closure.sh would,
 * and a nixos-rebuild stand-in on PATH "switches" it. Each outcome checks the DeployResult and the
 * execs the target saw, in order, and how many there were before and after nixos-rebuild: on a
 * cheap VPS each one is a round trip of 0.3–0.6 s (issue 18).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  runDeploy,
  type DeployLogger,
  type DeployOptions,
  type DeployResult,
} from '../../src/deploy/deploy';
import { scriptCommand } from '../../src/ssh/script';
import { VpsNixosError } from '../../src/errors';
import type { RemoteSession } from '../../src/ssh/session';
import {
  FakeTarget,
  installCopyStandIn,
  installRebuildStandIn,
  nixosSystem,
  type FakeTargetOptions,
  type FakeSystem,
} from './fakes/session';

const OLD = nixosSystem('25.05.20250101.aaaaaaa', {
  packages: { 'glibc-2.40-66': 30_000_000, 'nginx-1.26.2': 2_000_000 },
});
const NEW = nixosSystem('25.05.20250201.bbbbbbb', {
  packages: { 'glibc-2.40-66': 30_000_000, 'nginx-1.28.0': 2_100_000 },
});
/** NEW's configuration on a newer kernel: it needs a reboot. */
const NEW_KERNEL = nixosSystem('25.05.20250301.ccccccc', {
  kernel: 'linux-6.12.20',
  packages: { 'glibc-2.40-66': 30_000_000, 'nginx-1.28.0': 2_100_000 },
});
/** What OLD → NEW sends: NEW's system path and nginx 1.28 (the kernel and glibc are there). */
const NEW_BYTES = 20_000 + 2_100_000;
const FLAKE = { ref: '/src/flake', name: 'vps' };
const UNITS_FAILED = 'warning: the following units failed: nginx.service';
const EXIT_4_OUTPUT = `${UNITS_FAILED}\nwarning: error(s) occurred while switching to the new configuration`;
const NEW_SYSTEM_MAY_CUT_SSH = /did not confirm within 0\.05 s after the switch/;
const CONSOLE_FIX = 'nix-env -p /nix/var/nix/profiles/system --rollback';

/** A login user that is not root, on another port: root commands go through sudo -n. */
const SUDO_TARGET = {
  user: 'deploy',
  host: '203.0.113.7',
  port: 2222,
  knownHostsName: '[203.0.113.7]:2222',
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let root: string;
let bin: string;
let hostUnderTest: FakeTarget | undefined;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'deploy-outcomes-'));
  bin = join(root, 'bin');
  mkdirSync(bin);
  installRebuildStandIn(bin);
  installCopyStandIn(bin);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));
afterEach(() => {
  // every command deploy.ts sent was one the fake knows, on a session still open
  expect(hostUnderTest?.unknown).toEqual([]);
  hostUnderTest = undefined;
});

function host(opts: Partial<Omit<FakeTargetOptions, 'rebuildReport'>> = {}): FakeTarget {
  const t = new FakeTarget({
    systems: [OLD, NEW, NEW_KERNEL],
    current: OLD,
    ...opts,
    rebuildReport: join(mkdtempSync(join(root, 'host-')), 'rebuild-report'),
  });
  hostUnderTest = t;
  return t;
}

/** What the nixos-rebuild stand-in does: activate `system` (or fail before), print, exit. */
interface RebuildBehaviour {
  system?: FakeSystem;
  exit?: number;
  output?: string;
  /** What the nix-copy-closure stand-in does (our own switch). */
  copy?: { exit?: number; output?: string };
}

/** The nix-copy-closure runs the last deployTo made: `ARGS|NIX_SSHOPTS` each. */
let copyReport = '';
const copies = (): string[] => {
  try {
    return readFileSync(copyReport, 'utf8').trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
};

async function deployTo(
  t: FakeTarget,
  rebuild: RebuildBehaviour,
  opts: Partial<DeployOptions> = {},
) {
  const logged = { info: [] as string[], warn: [] as string[] };
  const log: DeployLogger = {
    info: (l) => logged.info.push(l),
    warn: (l) => logged.warn.push(l),
    group: (_title, fn) => fn(),
  };
  const env = {
    ...process.env,
    PATH: `${bin}:${process.env.PATH}`,
    FAKE_REBUILD_REPORT: t.rebuildReport,
    FAKE_REBUILD_SYSTEM: rebuild.system?.path ?? '',
    FAKE_REBUILD_EXIT: String(rebuild.exit ?? 0),
    FAKE_REBUILD_OUTPUT: rebuild.output ?? '',
    FAKE_COPY_REPORT: (copyReport = join(mkdtempSync(join(root, 'copy-')), 'report')),
    FAKE_COPY_EXIT: String(rebuild.copy?.exit ?? 0),
    FAKE_COPY_OUTPUT: rebuild.copy?.output ?? '',
  };
  const done = await runDeploy(t.session(), {
    flake: FLAKE,
    useSudo: false,
    confirmTimeoutSeconds: 1,
    healthTimeoutSeconds: 0.01,
    rollback: true,
    action: 'switch',
    deployWith: 'nixos-rebuild',
    privateKey: 'fake private key',
    tempDir: mkdtempSync(join(root, 'run-')),
    reconnect: () => t.connect(),
    log,
    rollbackWaitMs: 2000,
    pollMs: 5,
    env,
    ...opts,
  });
  return { ...done, logged };
}

/** The command kinds in order, a poll loop's repeats counted once. */
const steps = (t: FakeTarget) => t.log.filter((w, i, all) => w !== all[i - 1]);

/** guard.sh verbs in order, wherever they ran (alone, or inside state.sh / after.sh). */
const guardCommands = (t: FakeTarget) => t.guardLog;

/** Execs (round trips) on the target before and after nixos-rebuild. */
function execs(t: FakeTarget): { before: number; after: number } {
  const rebuild = t.commands.findIndex((c) => c.session === 0);
  return { before: rebuild, after: t.commands.length - rebuild - 1 };
}

const guardCall = (t: FakeTarget, verb: string) => t.guardCalls.find((c) => c.verb === verb);

/** runDeploy returns the one live session and closed every other one it opened. */
function expectOnlyOpen(t: FakeTarget, session: RemoteSession | undefined) {
  const open = t.sessions.filter((s) => !s.closed);
  expect(open).toHaveLength(1);
  expect(open[0]).toBe(session);
  expect(t.sessions[0]?.closed).toBe(true);
}

function expectNoError(result: DeployResult) {
  expect(result.error).toBeUndefined();
  expect(result.rolledBack).toBe(false);
  expect(result.rollback).toBeUndefined();
}

const UNITS_OK = { name: 'systemctl --failed', ok: true, detail: 'none', seconds: 0 };

describe('runDeploy: switch', () => {
  it('arms the guard, switches, confirms over a new session: the host keeps the new system', async () => {
    const t = host();
    const { result, session } = await deployTo(t, { system: NEW });

    expectNoError(result);
    expect(result).toMatchObject({
      action: 'switch',
      changed: true,
      systemPath: NEW.path,
      previousSystemPath: OLD.path,
      hostRuns: NEW.path,
      nothingToRollBackTo: false,
      failedUnits: [],
      rebootNeeded: [],
      bytesSent: NEW_BYTES,
      pathsSent: 2,
      rebuild: {
        code: 0,
        args: ['switch', '--flake', '/src/flake#vps', '--target-host', 'root@203.0.113.7'],
      },
    });
    expect(result.checks).toEqual([UNITS_OK]);
    expect(result.diff?.changed).toContainEqual({ name: 'nginx', from: '1.26.2', to: '1.28.0' });
    expect(steps(t)).toEqual([
      'state, guard install, guard arm',
      'nixos-rebuild switch',
      'guard status, guard confirm, units, closure',
    ]);
    // before: state, guard upload, guard arm; after: status, confirm, units, running, closure
    expect(execs(t)).toEqual({ before: 1, after: 1 });
    // armed against what the same exec read, before anything changed
    expect(guardCall(t, 'arm')?.args.slice(1)).toEqual([OLD.path, 'system-7-link', '1', 'switch']);
    // the confirm proves a NEW session reaches the host: not the one the run started with
    expect(guardCall(t, 'confirm')?.session).toBeGreaterThan(1);
    expect(t.rebuilds[0]?.sshOpts).toContain('-o StrictHostKeyChecking=yes');
    // confirmed: the watcher's deadline passing changes nothing any more
    t.expireWatcher();
    expect(t.current).toBe(NEW.path);
    expect(t.profile).toBe(NEW.path);
    expectOnlyOpen(t, session);
  });

  it("takes the new closure from the runner's build: the target does not list it again", async () => {
    const t = host();
    const fromBuild = NEW.closure.map((p) => ({ ...p, references: [] }));
    const { result } = await deployTo(
      t,
      { system: NEW },
      { toplevel: NEW.path, toplevelClosure: fromBuild },
    );
    expectNoError(result);
    expect(t.closuresKnown).toEqual([NEW.path]);
    expect(result).toMatchObject({ systemPath: NEW.path, bytesSent: NEW_BYTES, pathsSent: 2 });
    expect(result.diff?.changed).toContainEqual({ name: 'nginx', from: '1.26.2', to: '1.28.0' });
  });

  it('lists the closure on the target when what runs is not the system the runner built', async () => {
    const t = host();
    const other = [
      { path: '/nix/store/00000000000000000000000000000000-other', narBytes: 1, references: [] },
    ];
    const { result } = await deployTo(
      t,
      { system: NEW },
      { toplevel: OLD.path, toplevelClosure: other },
    );
    // the known closure is OLD's; NEW runs: its paths come from the target, not from `other`
    expect(result.bytesSent).toBe(NEW_BYTES);
    expect(result.pathsSent).toBe(2);
  });

  it('first deploy: no previous system, so no guard and nothing to roll back to', async () => {
    const t = host({ current: undefined });
    const { result, session, logged } = await deployTo(t, { system: NEW });

    expectNoError(result);
    expect(result).toMatchObject({
      changed: true,
      systemPath: NEW.path,
      previousSystemPath: '',
      hostRuns: NEW.path,
      nothingToRollBackTo: true,
      // an empty store: the whole closure was sent
      bytesSent: NEW.closure.reduce((s, p) => s + p.narBytes, 0),
      pathsSent: NEW.closure.length,
    });
    expect(result.diff).toBeUndefined();
    expect(result.checks).toEqual([UNITS_OK]);
    expect(guardCommands(t)).toEqual([]);
    expect(steps(t)).toEqual(['state', 'nixos-rebuild switch', 'units, closure']);
    // was 1 and 4 (running, state units, running, closure)
    expect(execs(t)).toEqual({ before: 1, after: 1 });
    expect(t.closures).toEqual([[NEW.path]]);
    expect(logged.info).toContain(
      'first deploy to this host: there is no previous system to roll back to',
    );
    expectOnlyOpen(t, session);
  });

  it('nixos-rebuild fails before switching: nothing changed, the guard is disarmed', async () => {
    const t = host();
    const buildError = "error: builder for '/nix/store/x-nginx.conf.drv' failed with exit code 1";
    const { result, session } = await deployTo(t, { exit: 1, output: buildError });

    expect(result.changed).toBe(false);
    expect(result.rolledBack).toBe(false);
    expect(result.rollback).toBeUndefined();
    expect(result.hostRuns).toBe(OLD.path);
    expect(result.error?.message).toBe(
      `nixos-rebuild switch failed (exit 1) before switching: nothing changed, the host runs ${OLD.path}`,
    );
    expect(result.error?.fix).toContain(buildError);
    // no health checks for a deploy that did not switch
    expect(result.checks).toEqual([]);
    expect(steps(t)).toEqual([
      'state, guard install, guard arm',
      'nixos-rebuild switch',
      'guard status, guard disarm, units, closure',
    ]);
    // was 3 and 4 (status, disarm, running, closure)
    expect(execs(t)).toEqual({ before: 1, after: 1 });
    expect(t.guards.values().next().value?.result).toBe('disarmed');
    expectOnlyOpen(t, session);
  });
});

describe('runDeploy: rollback by the runner', () => {
  it('switch-to-configuration exits 4 with failed units: rolls back to the previous generation', async () => {
    const t = host({
      failedUnits: {
        [OLD.path]: ['old-cron.service'],
        [NEW.path]: ['old-cron.service', 'nginx.service'],
      },
    });
    t.rollbackMs = 20; // a few status polls while the previous system comes back
    const { result, session } = await deployTo(t, { system: NEW, exit: 4, output: EXIT_4_OUTPUT });

    const reason = 'switch-to-configuration reported failed units (exit 4): nginx.service';
    expect(result).toMatchObject({
      changed: true,
      systemPath: NEW.path,
      hostRuns: OLD.path,
      rolledBack: true,
      rollback: { by: 'runner', reason },
      // only what this deploy broke: old-cron.service had failed before
      failedUnits: ['nginx.service'],
      checks: [],
      error: {
        message: `deploy failed and was rolled back: ${reason}`,
        fix: 'the host runs the previous system again; fix the configuration and deploy again',
      },
    });
    // the failed units are read after the status and before the rollback, as the decision needs
    expect(steps(t)).toEqual([
      'state, guard install, guard arm',
      'nixos-rebuild switch',
      'guard status, units, closure',
      'guard rollback',
      'guard status',
    ]);
    // was 3 and 5 + the polls (status, state units, rollback, status…, running, closure)
    expect(execs(t).before).toBe(1);
    expect(execs(t).after - t.log.filter((w) => w === 'guard status').length).toBe(2);
    expect(guardCommands(t)).not.toContain('guard confirm');
    expect(guardCall(t, 'rollback')?.args[1]).toBe(reason);
    // the profile is back on the generation that ran before
    expect(t.current).toBe(OLD.path);
    expect(t.profileLink).toBe('system-7-link');
    expectOnlyOpen(t, session);
  });

  it('the rollback itself fails: the error gives the console commands', async () => {
    const t = host({ failedUnits: { [NEW.path]: ['nginx.service'] } });
    t.rollbackFailsWith = 1;
    const { result } = await deployTo(t, { system: NEW, exit: 4, output: EXIT_4_OUTPUT });

    expect(result.rolledBack).toBe(false);
    expect(result.rollback).toBeUndefined();
    expect(result.hostRuns).toBe(NEW.path);
    expect(result.error?.message).toBe(
      'deploy failed (switch-to-configuration reported failed units (exit 4): nginx.service) and the rollback failed (switch-to-configuration exit 1)',
    );
    expect(result.error?.fix).toContain(CONSOLE_FIX);
    expect(result.error?.fix).toContain(`(the previous system was ${OLD.path})`);
  });

  it('the rollback does not finish in time: the error gives the console commands', async () => {
    const t = host({ failedUnits: { [NEW.path]: ['nginx.service'] } });
    t.rollbackMs = Infinity;
    const { result } = await deployTo(
      t,
      { system: NEW, exit: 4, output: EXIT_4_OUTPUT },
      { confirmTimeoutSeconds: 0.05, rollbackWaitMs: 100 },
    );

    expect(result.rolledBack).toBe(false);
    expect(result.error?.message).toMatch(/and the rollback did not finish in time$/);
    expect(result.error?.fix).toContain(CONSOLE_FIX);
  });

  it('the health-check command fails on the target after the confirm: rolls back', async () => {
    const t = host();
    t.healthCheck = (current) =>
      current === NEW.path
        ? { code: 7, stdout: '', stderr: 'curl: (7) Failed to connect to localhost port 8080' }
        : { code: 0, stdout: 'ok', stderr: '' };
    const healthCheck = 'curl -fsS http://localhost:8080/';
    const { result } = await deployTo(t, { system: NEW }, { healthCheck });

    const failed = {
      name: `health-check: ${healthCheck}`,
      ok: false,
      detail: 'exit 7: curl: (7) Failed to connect to localhost port 8080 (1 try)',
    };
    expect(result.checks).toEqual([UNITS_OK, { ...failed, seconds: expect.any(Number) }]);
    const reason = `health check failed: ${failed.name} (${failed.detail})`;
    expect(result).toMatchObject({
      systemPath: NEW.path,
      hostRuns: OLD.path,
      rolledBack: true,
      rollback: { by: 'runner', reason },
      error: { message: `deploy failed and was rolled back: ${reason}` },
    });
    // the check's first try runs right after the confirm, in the same exec
    expect(steps(t)).toEqual([
      'state, guard install, guard arm',
      'nixos-rebuild switch',
      'guard status, guard confirm, units, health-check, closure',
      'guard rollback',
      'guard status',
    ]);
    // was 3 and 8 (status, confirm, state units, health-check, rollback, status, running, closure)
    expect(execs(t)).toEqual({ before: 1, after: 3 });
    expect(t.healthChecks).toEqual([healthCheck]);
  });

  it('a unit fails after a clean switch (newly failed): rolls back', async () => {
    const t = host({
      failedUnits: {
        [OLD.path]: ['old-cron.service'],
        [NEW.path]: ['old-cron.service', 'nginx.service'],
      },
    });
    const { result } = await deployTo(t, { system: NEW });

    const check = {
      name: 'systemctl --failed',
      ok: false,
      detail: 'newly failed: nginx.service',
      seconds: 0,
    };
    expect(result).toMatchObject({
      failedUnits: ['nginx.service'],
      checks: [check],
      hostRuns: OLD.path,
      rolledBack: true,
      rollback: {
        by: 'runner',
        reason: `health check failed: systemctl --failed (${check.detail})`,
      },
    });
    expect(guardCommands(t)).toEqual([
      'guard install',
      'guard arm',
      'guard status',
      'guard confirm',
      'guard rollback',
      'guard status',
    ]);
  });

  it('a unit that had failed before is no reason to roll back', async () => {
    const t = host({
      failedUnits: {
        [OLD.path]: ['old-cron.service'],
        [NEW.path]: ['old-cron.service'],
      },
    });
    const { result } = await deployTo(t, { system: NEW });

    expectNoError(result);
    expect(result.failedUnits).toEqual([]);
    expect(result.checks).toEqual([
      {
        name: 'systemctl --failed',
        ok: true,
        detail: 'none new (already failed before: old-cron.service)',
        seconds: 0,
      },
    ]);
    expect(t.current).toBe(NEW.path);
  });

  it('action test: the rollback reactivates the previous system and leaves the profile alone', async () => {
    const t = host({ failedUnits: { [NEW.path]: ['nginx.service'] } });
    const { result } = await deployTo(
      t,
      { system: NEW, exit: 4, output: EXIT_4_OUTPUT },
      { action: 'test' },
    );

    expect(result).toMatchObject({
      rolledBack: true,
      rollback: { by: 'runner' },
      hostRuns: OLD.path,
    });
    expect(guardCall(t, 'arm')?.args[4]).toBe('test');
    expect(t.current).toBe(OLD.path);
    expect(t.profileLink).toBe('system-7-link');
  });
});

describe('runDeploy: rollback by the target', () => {
  it('the host does not answer after the switch: the target rolls back by itself', async () => {
    const t = host();
    t.cutsSsh.add(NEW.path);
    // sshd stays away while the previous system comes back: no session before the rollback ends
    t.rollbackMs = 100;
    const { result, session, logged } = await deployTo(
      t,
      { system: NEW },
      { confirmTimeoutSeconds: 0.05 },
    );

    expect(result).toMatchObject({
      changed: true,
      // the new session came after the rollback: the guard says what the switch went to
      systemPath: NEW.path,
      hostRuns: OLD.path,
      rolledBack: true,
      rollback: { by: 'target', reason: expect.stringMatching(NEW_SYSTEM_MAY_CUT_SSH) },
      checks: [],
      error: {
        message: expect.stringMatching(/^deploy failed and was rolled back by the target itself: /),
        fix: 'the host runs the previous system again; fix the configuration and deploy again',
      },
    });
    expect(logged.warn).toContainEqual(
      expect.stringMatching(
        /^no new SSH session within 0\.05 s \(.*ECONNREFUSED\): waiting for the target to roll back by itself$/,
      ),
    );
    // the polls' last status says what runs and what the switch went to: only the closure is left
    expect(steps(t)).toEqual([
      'state, guard install, guard arm',
      'nixos-rebuild switch',
      'guard status',
      'closure',
    ]);
    expect(execs(t).before).toBe(1);
    expect(guardCommands(t)).not.toContain('guard confirm');
    expect(guardCommands(t)).not.toContain('guard rollback');
    expect(t.current).toBe(OLD.path);
    expect(t.profileLink).toBe('system-7-link');
    expectOnlyOpen(t, session);
  });

  it('the confirm arrives just after the deadline: the target is rolling back, the runner waits', async () => {
    const t = host();
    t.rollbackMs = 20;
    // the watcher's deadline passes between the runner's status and its confirm
    t.beforeGuard = (verb, h) => {
      if (verb === 'confirm') h.expireWatcher();
    };
    const { result, logged } = await deployTo(t, { system: NEW });

    expect(result).toMatchObject({
      systemPath: NEW.path,
      hostRuns: OLD.path,
      rolledBack: true,
      rollback: { by: 'target', reason: expect.stringMatching(/did not confirm within 1 s/) },
      error: { message: expect.stringMatching(/rolled back by the target itself/) },
      // no health checks on a system that is being rolled back
      checks: [],
    });
    expect(logged.warn).toContain('too late to confirm: the target is rolling-back');
    expect(steps(t)).toEqual([
      'state, guard install, guard arm',
      'nixos-rebuild switch',
      'guard status, guard confirm, units, closure',
      'guard status',
    ]);
  });

  it('the first new session comes after the window: the target is already rolling back', async () => {
    const t = host();
    t.rollbackMs = 20;
    const { result, logged } = await deployTo(
      t,
      { system: NEW },
      {
        confirmTimeoutSeconds: 0.05,
        reconnect: async () => {
          await sleep(120);
          return t.connect();
        },
      },
    );

    expect(result).toMatchObject({
      systemPath: NEW.path,
      hostRuns: OLD.path,
      rolledBack: true,
      rollback: { by: 'target', reason: expect.stringMatching(NEW_SYSTEM_MAY_CUT_SSH) },
      checks: [],
    });
    expect(logged.warn).toContainEqual(
      expect.stringMatching(/^the target is already rolling-back: the runner did not confirm/),
    );
    // no confirm and no rollback of its own: it waits for the target's
    expect(steps(t)).toEqual([
      'state, guard install, guard arm',
      'nixos-rebuild switch',
      'guard status, units, closure',
      'guard status',
    ]);
  });
});

describe('runDeploy: no guard', () => {
  it('rollback false: a failed switch is reported and the host keeps the new system', async () => {
    const t = host({ failedUnits: { [NEW.path]: ['nginx.service'] } });
    const { result } = await deployTo(
      t,
      { system: NEW, exit: 4, output: EXIT_4_OUTPUT },
      { rollback: false },
    );

    expect(result).toMatchObject({
      changed: true,
      systemPath: NEW.path,
      hostRuns: NEW.path,
      rolledBack: false,
      failedUnits: ['nginx.service'],
      error: {
        message: 'switch-to-configuration reported failed units (exit 4): nginx.service',
        fix: 'rollback is false: the host keeps the new system; fix it and deploy again',
      },
    });
    expect(result.rollback).toBeUndefined();
    expect(guardCommands(t)).toEqual([]);
    expect(t.current).toBe(NEW.path);
  });

  it('action boot: sets the profile, activates nothing, says a reboot is needed', async () => {
    const t = host();
    const { result, session } = await deployTo(t, { system: NEW_KERNEL }, { action: 'boot' });

    expectNoError(result);
    expect(result).toMatchObject({
      action: 'boot',
      changed: true,
      systemPath: NEW_KERNEL.path,
      previousSystemPath: OLD.path,
      hostRuns: OLD.path,
      rebootNeeded: ['kernel', 'initrd', 'kernel-modules'],
      checks: [],
      failedUnits: [],
    });
    expect(steps(t)).toEqual(['state', 'nixos-rebuild boot', 'closure']);
    // was 1 and 2 (running, closure)
    expect(execs(t)).toEqual({ before: 1, after: 1 });
    expect(t.closures).toEqual([[NEW_KERNEL.path, OLD.path]]);
    expect(t.current).toBe(OLD.path);
    expect(t.profile).toBe(NEW_KERNEL.path);
    expectOnlyOpen(t, session);
  });

  it('no systemd-run on the target: warns, deploys without a guard', async () => {
    const t = host({ hasSystemdRun: false });
    const { result, logged } = await deployTo(t, { system: NEW });

    expectNoError(result);
    expect(result).toMatchObject({ changed: true, systemPath: NEW.path, hostRuns: NEW.path });
    expect(logged.warn).toContain(
      'no systemd-run on the target: the automatic rollback cannot be armed',
    );
    expect(guardCommands(t)).toEqual([]);
  });

  it('no systemd-run and a failed switch: no rollback, the host keeps the new system', async () => {
    const t = host({ hasSystemdRun: false, failedUnits: { [NEW.path]: ['nginx.service'] } });
    const { result } = await deployTo(t, { system: NEW, exit: 4, output: EXIT_4_OUTPUT });

    expect(result).toMatchObject({
      hostRuns: NEW.path,
      rolledBack: false,
      failedUnits: ['nginx.service'],
      error: {
        message: 'switch-to-configuration reported failed units (exit 4): nginx.service',
        // the real reason, not "no previous system" (there was one; rollback is true)
        fix: 'the target has no systemd-run, so no rollback could be armed: the host keeps the new system; fix it and deploy again',
      },
    });
    expect(guardCommands(t)).toEqual([]);
  });

  it('no systemd-run and a failing health check: says why nothing rolls back', async () => {
    const t = host({ hasSystemdRun: false });
    t.healthCheck = () => ({ code: 1, stdout: '', stderr: 'down' });
    const { result } = await deployTo(t, { system: NEW }, { healthCheck: 'check-it' });

    expect(result.rolledBack).toBe(false);
    expect(result.hostRuns).toBe(NEW.path);
    expect(result.error?.message).toBe(
      'health check failed: health-check: check-it (exit 1: down (1 try))',
    );
    expect(result.error?.fix).toMatch(
      /^the target has no systemd-run, so no rollback could be armed/,
    );
    expect(execs(t)).toEqual({ before: 1, after: 1 });
  });
});

describe('runDeploy: the new session drops', () => {
  it('before the confirm: the runner does not confirm, the target rolls back by itself', async () => {
    const t = host();
    let first = true;
    t.drops = (exec) => {
      if (exec !== 'after' || !first) return undefined;
      first = false;
      return 'before';
    };
    const { result, session, logged } = await deployTo(
      t,
      { system: NEW },
      { confirmTimeoutSeconds: 0.05 },
    );

    expect(result).toMatchObject({
      systemPath: NEW.path,
      hostRuns: OLD.path,
      rolledBack: true,
      rollback: { by: 'target', reason: expect.stringMatching(NEW_SYSTEM_MAY_CUT_SSH) },
      error: { message: expect.stringMatching(/rolled back by the target itself/) },
      checks: [],
    });
    expect(logged.warn).toContain(
      'the new SSH session dropped before it answered (no exit status from after.sh: the SSH session dropped): not confirming; reading the rollback guard over another session',
    );
    // the second session reads the guard and never confirms
    expect(steps(t)).toEqual([
      'state, guard install, guard arm',
      'nixos-rebuild switch',
      'after (dropped before)',
      'guard status, units, closure',
      'guard status',
    ]);
    expect(guardCommands(t)).not.toContain('guard confirm');
    expect(t.current).toBe(OLD.path);
    expectOnlyOpen(t, session);
  });

  it('after the confirm landed: another session finds it confirmed, the host keeps the new system', async () => {
    const t = host();
    let first = true;
    t.drops = (exec) => {
      if (exec !== 'after' || !first) return undefined;
      first = false;
      return 'after';
    };
    t.healthCheck = () => ({ code: 0, stdout: 'ok', stderr: '' });
    const { result, session } = await deployTo(t, { system: NEW }, { healthCheck: 'check-it' });

    expectNoError(result);
    expect(result).toMatchObject({ systemPath: NEW.path, hostRuns: NEW.path, changed: true });
    expect(result.checks.map((c) => [c.name, c.ok])).toEqual([
      ['systemctl --failed', true],
      ['health-check: check-it', true],
    ]);
    expect(steps(t)).toEqual([
      'state, guard install, guard arm',
      'nixos-rebuild switch',
      'guard status, guard confirm, units, health-check, closure (dropped after)',
      'guard status, units, health-check, closure',
    ]);
    // one confirm only, over the first new session
    expect(t.guardCalls.filter((c) => c.verb === 'confirm')).toHaveLength(1);
    t.expireWatcher();
    expect(t.current).toBe(NEW.path);
    expectOnlyOpen(t, session);
  });

  it('while asking for the rollback: asks again over a new session, the runner rolls back', async () => {
    const t = host();
    t.healthCheck = (current) => ({ code: current === NEW.path ? 1 : 0, stdout: '', stderr: '' });
    let first = true;
    t.drops = (exec) => {
      if (exec !== 'guard rollback' || !first) return undefined;
      first = false;
      return 'before';
    };
    const { result, session } = await deployTo(t, { system: NEW }, { healthCheck: 'check-it' });

    expect(result).toMatchObject({
      hostRuns: OLD.path,
      rolledBack: true,
      rollback: { by: 'runner', reason: expect.stringMatching(/^health check failed: /) },
    });
    expect(steps(t)).toEqual([
      'state, guard install, guard arm',
      'nixos-rebuild switch',
      'guard status, guard confirm, units, health-check, closure',
      'guard rollback (dropped before)',
      'guard rollback',
      'guard status',
    ]);
    expect(t.current).toBe(OLD.path);
    expectOnlyOpen(t, session);
  });
});

describe('runDeploy: a guard left armed by an earlier run', () => {
  it('is stopped when this deploy arms its own: it cannot roll back the confirmed switch', async () => {
    const t = host();
    // a run cancelled after arming (its nixos-rebuild never ran, nothing ever confirms it)
    const cancelled = await t.session().exec(
      scriptCommand('deploy/state.sh', {
        args: ['arm', 'cancelled-run', '1', 'switch'],
        embed: { guard_sh: 'deploy/guard.sh' },
      }),
    );
    expect(cancelled.stdout).toContain('guard_armed=vps-nixos-guard-cancelled-run\n');
    t.commands.length = 0;

    const { result, logged } = await deployTo(t, { system: NEW });

    expectNoError(result);
    expect(logged.warn).toContain(
      'stopped the rollback guard of an earlier run (cancelled-run) that was still armed: it would have rolled this deploy back',
    );
    expect(t.guards.get('cancelled-run')?.result).toBe('disarmed');
    // every watcher's deadline passes: the host keeps what this deploy confirmed
    t.expireWatcher();
    expect(t.current).toBe(NEW.path);
    expect(t.profile).toBe(NEW.path);
  });
});

describe('runDeploy: the health-check command', () => {
  it('its first try runs after the confirm in the same exec, and times out as an exec of its own would', async () => {
    const t = host();
    t.healthCheck = () => ({ code: 124, stdout: '', stderr: '' });
    t.healthCheckSeconds = 5;
    const { result } = await deployTo(t, { system: NEW }, { healthCheck: 'sleep 999' });

    expect(result.checks[1]).toMatchObject({
      name: 'health-check: sleep 999',
      ok: false,
      detail: "remote command timed out after 5s: sh -c 'sleep 999' (1 try)",
    });
    expect(result).toMatchObject({ rolledBack: true, rollback: { by: 'runner' } });
  });

  it('a command that exits 124 by itself is no timeout', async () => {
    const t = host();
    t.healthCheck = () => ({ code: 124, stdout: 'x', stderr: '' });
    const { result } = await deployTo(t, { system: NEW }, { healthCheck: 'exit-124' });

    expect(result.checks[1]?.detail).toBe('exit 124: x (1 try)');
  });
});

describe('runDeploy: the target', () => {
  it('a target that does not run NixOS: throws before anything changes', async () => {
    const t = host({ isNixos: false });
    const run = deployTo(t, { system: NEW });

    await expect(run).rejects.toThrow(VpsNixosError);
    await expect(run).rejects.toThrow(/does not run NixOS \(\/etc\/NIXOS is missing\)/);
    expect(t.rebuilds).toEqual([]);
    expect(t.log).toEqual(['state']);
    expect(t.sessions.every((s) => s.closed)).toBe(true);
  });

  it('a user that is not root with use-sudo: every root command goes through sudo -n', async () => {
    const t = host({ target: SUDO_TARGET });
    t.healthCheck = () => ({ code: 0, stdout: '', stderr: '' });
    const { result } = await deployTo(t, { system: NEW }, { useSudo: true, healthCheck: 'true' });

    expectNoError(result);
    expect(result.rebuild.args).toEqual([
      'switch',
      '--flake',
      '/src/flake#vps',
      '--target-host',
      'deploy@203.0.113.7',
      '--use-remote-sudo',
    ]);
    expect(t.rebuilds[0]?.sshOpts).toMatch(/-p 2222$/);
    const onTarget = t.commands.filter((c) => c.session > 0);
    expect(onTarget.map((c) => c.what)).toEqual([
      'state, guard install, guard arm',
      'guard status, guard confirm, units, health-check, closure',
    ]);
    expect(onTarget.filter((c) => !c.sudo)).toEqual([]);
    expect(t.healthChecks).toEqual(['true']);
  });
});

/** Our own switch (deployWith 'switch'): the runner built NEW, copies it, switches over session 1. */
describe('runDeploy: our own switch (copy, then switch.sh under the guard)', () => {
  const ours = (over: Partial<DeployOptions> = {}): Partial<DeployOptions> => ({
    deployWith: 'switch',
    toplevel: NEW.path,
    ...over,
  });

  it('copies the built system with the pin, switches in the exec after the arm, confirms over a new session', async () => {
    const t = host();
    const { result, session, logged } = await deployTo(t, {}, ours());

    expectNoError(result);
    expect(result).toMatchObject({
      changed: true,
      systemPath: NEW.path,
      previousSystemPath: OLD.path,
      hostRuns: NEW.path,
      bytesSent: NEW_BYTES,
      pathsSent: 2,
      rebuild: { code: 0, args: ['switch', NEW.path] },
    });
    expect(result.rebuild.from).toMatch(/nix-copy-closure, then switch-to-configuration/);
    // no nixos-rebuild at all: no second evaluation, no pinned nixos-rebuild needed
    expect(t.rebuilds).toEqual([]);
    const [copy] = copies();
    expect(copies()).toHaveLength(1);
    expect(copy?.split('|')[0]).toBe(`--to root@203.0.113.7 ${NEW.path}`);
    expect(copy?.split('|')[1]).toContain('-o StrictHostKeyChecking=yes');
    // three round trips: state + arm, the switch (same session), the confirm on a NEW session
    expect(t.log).toEqual([
      'state, guard install, guard arm',
      'switch switch',
      'guard status, guard confirm, units, closure',
    ]);
    expect(t.commands.map((c) => c.session)).toEqual([1, 1, 2]);
    expect(t.switches).toEqual([['switch', NEW.path]]);
    expect(t.profile).toBe(NEW.path);
    expect(guardCall(t, 'confirm')?.session).toBe(2);
    expect(
      logged.info.some((l) => /^copied .* in \d+\.\d s \(nix-copy-closure, exit 0\)$/.test(l)),
    ).toBe(true);
    t.expireWatcher();
    expect(t.current).toBe(NEW.path);
    expectOnlyOpen(t, session);
  });

  it('the copy fails: switch.sh never runs, nothing changed, the guard is disarmed', async () => {
    const t = host();
    const { result } = await deployTo(
      t,
      { copy: { exit: 1, output: 'error: cannot add path: disk full' } },
      ours(),
    );
    expect(t.switches).toEqual([]);
    expect(result).toMatchObject({ changed: false, rolledBack: false, hostRuns: OLD.path });
    expect(result.error?.message).toMatch(
      /^nix-copy-closure failed \(exit 1\) before switching: nothing changed/,
    );
    expect(result.error?.fix).toContain('disk full');
    expect(guardCommands(t)).toEqual([
      'guard install',
      'guard arm',
      'guard status',
      'guard disarm',
    ]);
    expect(t.current).toBe(OLD.path);
    expect(t.profile).toBe(OLD.path);
  });

  it('switch-to-configuration exits 4: the failed units are named and the runner rolls back', async () => {
    const t = host({ failedUnits: { [NEW.path]: ['nginx.service'] } });
    t.switchAnswer = { exit: 4, output: EXIT_4_OUTPUT };
    const { result } = await deployTo(t, {}, ours());

    expect(result.rolledBack).toBe(true);
    expect(result.rollback?.by).toBe('runner');
    expect(result.failedUnits).toEqual(['nginx.service']);
    expect(result.error?.message).toMatch(/reported failed units \(exit 4\): nginx\.service/);
    expect(t.current).toBe(OLD.path);
    expect(t.profile).toBe(OLD.path);
  });

  it('a system that cuts SSH: no new session, the target rolls back by itself', async () => {
    const t = host();
    t.cutsSsh.add(NEW.path);
    const { result } = await deployTo(
      t,
      {},
      ours({ confirmTimeoutSeconds: 0.05, rollbackWaitMs: 100 }),
    );

    expect(result.rolledBack).toBe(true);
    expect(result.rollback?.by).toBe('target');
    expect(result.error?.message).toMatch(NEW_SYSTEM_MAY_CUT_SSH);
    expect(t.current).toBe(OLD.path);
  });

  it('the session drops during the switch: the outcome is in doubt, so it is rolled back', async () => {
    const t = host();
    t.drops = (exec) => (exec === 'switch' ? 'after' : undefined);
    const { result, logged } = await deployTo(t, {}, ours());

    expect(logged.info).toContain('the SSH session dropped during the switch (no exit status)');
    expect(result.rolledBack).toBe(true);
    expect(result.error?.message).toMatch(/switch-to-configuration exited 255 after switching/);
    expect(t.current).toBe(OLD.path);
  });

  it('boot: the profile gets the system, nothing is activated, no guard', async () => {
    const t = host();
    const { result } = await deployTo(t, {}, ours({ action: 'boot' }));

    expectNoError(result);
    expect(t.switches).toEqual([['boot', NEW.path]]);
    expect(t.current).toBe(OLD.path);
    expect(t.profile).toBe(NEW.path);
    expect(guardCommands(t)).toEqual([]);
    expect(result).toMatchObject({ systemPath: NEW.path, changed: true, hostRuns: OLD.path });
  });

  it('with use-sudo the switch goes through sudo -n like every root command', async () => {
    const t = host({ target: SUDO_TARGET });
    const { result } = await deployTo(t, {}, ours({ useSudo: true }));

    expectNoError(result);
    expect(copies()[0]?.split('|')[0]).toBe(`--to deploy@203.0.113.7 ${NEW.path}`);
    expect(copies()[0]).toMatch(/-p 2222$/);
    expect(t.commands.filter((c) => !c.sudo)).toEqual([]);
  });

  it('no system to switch to: refused before anything runs on the target', async () => {
    const t = host();
    await expect(deployTo(t, {}, ours({ toplevel: undefined }))).rejects.toThrow(
      /no system to switch to/,
    );
    expect(t.commands).toEqual([]);
    expect(copies()).toEqual([]);
  });
});
