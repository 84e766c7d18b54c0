/**
 * The pipeline's wiring, in milliseconds: a fake at the SSH edge (it answers the probe with a
 * recorded facts.sh output) and a fake Nix that records every call. The VM suites are the proof;
 * these catch what runs when, and what is never touched.
 */
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseConfig, type RawInputs } from '../../src/inputs';
import { runPipeline } from '../../src/pipeline/run';
import type { Entry } from '../../src/pipeline/decide';
import type { StageName } from '../../src/pipeline/record';
import { scriptCommand } from '../../src/ssh/script';
import type { RemoteSession } from '../../src/ssh/session';
import type { Nix, NixResult } from '../../src/nix/nix';
import { keyPair } from '../helpers/keys';

const { privateKey } = keyPair();
const fixture = (name: string) =>
  readFileSync(join(__dirname, '../fixtures/facts', `${name}.txt`), 'utf8');
const NIXOS = fixture('nixos-24.11');
const PROBE = scriptCommand('facts.sh');
const RUNS = /nixos\.current_system=(\S+)/.exec(NIXOS)![1]!;
const OTHER = '/nix/store/00000000000000000000000000000000-nixos-system-my-vps-24.11.new';

/** A store in a temp dir whose toplevel has the closure's Nix, as findSystemNix wants it. */
function fakeStore(): { top: string; disko: string } {
  const store = mkdtempSync(join(tmpdir(), 'vps-nixos-store-'));
  const nix = join(store, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nix-2.28');
  mkdirSync(join(nix, 'bin'), { recursive: true });
  for (const b of ['nix-store', 'nix-env']) writeFileSync(join(nix, 'bin', b), '');
  const top = join(store, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-vps');
  mkdirSync(join(top, 'sw', 'bin'), { recursive: true });
  symlinkSync(join(nix, 'bin', 'nix-store'), join(top, 'sw', 'bin', 'nix-store'));
  const disko = join(store, 'cccccccccccccccccccccccccccccccc-disko');
  writeFileSync(disko, '#!/bin/sh\n');
  return { top, disko };
}

/** A real (small) installer tarball with its sizes, so the fit check runs for real. */
function smallInstaller(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-kexec-'));
  mkdirSync(join(dir, 'kexec'));
  writeFileSync(join(dir, 'kexec', 'run'), '#!/bin/sh\n');
  writeFileSync(join(dir, 'kexec', 'bzImage'), Buffer.alloc(2 * 2 ** 20, 1));
  writeFileSync(join(dir, 'kexec', 'initrd'), Buffer.alloc(8 * 2 ** 20, 2));
  execFileSync('tar', ['-C', dir, '-czf', join(dir, 'installer.tar.gz'), 'kexec']);
  writeFileSync(
    join(dir, 'sizes.env'),
    'INITRD_BYTES=8388608\nKERNEL_BYTES=2097152\nINITRD_UNPACKED_BYTES=25165824\n',
  );
  return join(dir, 'installer.tar.gz');
}

interface World {
  facts: string;
  /** What `nix eval` says the configuration's toplevel is. */
  evaluated: string;
  top?: string;
  disko?: string;
  /** `nix path-info TOP` says the toplevel is valid in the runner's store already. */
  valid?: boolean;
  /** How long `nix build` of the toplevel takes, and whether it fails. */
  buildMs?: number;
  buildFails?: boolean;
}

function harness(world: World) {
  const execs: string[] = [];
  const nixCalls: string[][] = [];
  /** Starts and ends of the probe's facts.sh and of nix's calls, in the order they happened. */
  const events: string[] = [];
  let connects = 0;
  const session: RemoteSession = {
    target: { user: 'root', host: '203.0.113.7', port: 22, knownHostsName: '203.0.113.7' },
    hostKey: { type: 'ssh-ed25519', blob: Buffer.from('key') },
    exec: async (command) => {
      const probe = command === PROBE;
      execs.push(probe ? 'facts.sh' : command);
      if (probe) {
        events.push('facts.sh start');
        // The answer takes a while, as over a network: the evaluation may overlap it.
        await new Promise((r) => setTimeout(r, 20));
        events.push('facts.sh end');
        return { code: 0, stdout: world.facts, stderr: '' };
      }
      if (command.startsWith('nix-store -qR /run/current-system'))
        return { code: 0, stdout: `${RUNS}\n`, stderr: '' };
      return { code: 127, stdout: '', stderr: `the fake target does not know: ${command}` };
    },
    close: () => undefined,
  } as RemoteSession;
  const ok = (stdout: string): NixResult => ({ code: 0, stdout, stderr: '' });
  const nix: Nix = {
    run: async (args, opts) => {
      nixCalls.push(args);
      events.push(`nix ${args[0]}`);
      const a = args.join(' ');
      if (a === '--version') return ok('nix (Nix) 2.28.3\n');
      // The preflight's evaluation: it takes a while, or ends when aborted.
      if (args[0] === 'eval' && a.endsWith('--option eval-cache false')) {
        events.push('preflight eval start');
        const aborted = await new Promise<boolean>((resolve) => {
          const t = setTimeout(() => resolve(false), 40);
          opts?.signal?.addEventListener('abort', () => {
            clearTimeout(t);
            resolve(true);
          });
        });
        events.push(aborted ? 'preflight eval aborted' : 'preflight eval end');
        return aborted ? { code: 143, stdout: '', stderr: 'terminated' } : ok('{}');
      }
      if (args[0] === 'build' && /config\.system\.build\.toplevel|\.drv/.test(a)) {
        await new Promise((r) => setTimeout(r, world.buildMs ?? 0));
        events.push('nix build end');
        if (world.buildFails) return { code: 1, stdout: '', stderr: 'error: builder failed' };
      }
      if (args[0] === 'eval' && a.includes('config.system.build.toplevel'))
        return ok(
          JSON.stringify({ drv: '/nix/store/x.drv', out: world.evaluated, system: 'x86_64-linux' }),
        );
      if (args[0] === 'build' && /config\.system\.build\.toplevel|\/nix\/store\/x\.drv/.test(a))
        return ok(JSON.stringify([{ outputs: { out: world.top } }]));
      if (args[0] === 'build' && a.includes('destroyFormatMountNoDeps'))
        return ok(JSON.stringify([{ outputs: { out: world.disko } }]));
      if (args[0] === 'path-info' && args.length === 2 && world.valid && args[1] === world.top)
        return ok(`${world.top}\n`);
      if (args[0] === 'path-info' && args.includes('--json'))
        return ok(
          JSON.stringify([{ path: world.top, narSize: 1000, closureSize: 1000, references: [] }]),
        );
      return { code: 1, stdout: '', stderr: `error: the fake nix does not know: ${a}` };
    },
  };
  const run = (entry: Entry, raw: RawInputs, only?: StageName[]) =>
    runPipeline(
      parseConfig({
        target: 'root@203.0.113.7',
        'ssh-private-key': privateKey,
        'trust-on-first-use': 'true',
        flake: '/flake#vps',
        cache: 'false',
        ...raw,
      }),
      { entry, only },
      {
        log: { info: () => undefined, warn: () => undefined },
        nix,
        tempDir: mkdtempSync(join(tmpdir(), 'vps-nixos-run-')),
        toolVersion: 'test',
        connect: async () => {
          connects++;
          return session;
        },
      },
    );
  return { run, execs, nixCalls, events, connects: () => connects };
}

const stages = (r: Awaited<ReturnType<ReturnType<typeof harness>['run']>>) =>
  r.stages.map((s) => `${s.name}:${s.status}`);

describe('an unchanged push-to-deploy', () => {
  it('costs one probe and one evaluation: nothing built, copied, checked or activated', async () => {
    const h = harness({ facts: `${NIXOS}nixos.failed_units=\n`, evaluated: RUNS });
    const r = await h.run('action', {});
    expect(r.error).toBeUndefined();
    expect(stages(r)).toEqual([
      'probe:done',
      'plan:done',
      'build:skipped',
      'check:skipped',
      'bootstrap:skipped',
      'deploy:done',
    ]);
    expect(h.connects()).toBe(1);
    expect(h.execs).toEqual(['facts.sh']); // the probe: one round trip
    expect(h.nixCalls.map((a) => a[0])).toEqual(['--version', 'eval']);
    // The evaluation ran beside the probe, not after it.
    expect(h.events.indexOf('nix eval')).toBeLessThan(h.events.indexOf('facts.sh end'));
    expect(r.deploy).toMatchObject({
      changed: false,
      skipped: 'unchanged',
      systemPath: RUNS,
      previousSystemPath: RUNS,
      hostRuns: RUNS,
      rolledBack: false,
      bytesSent: 0,
    });
  });

  it('is not unchanged when a unit has failed, or when the failed units were not read', async () => {
    for (const facts of [`${NIXOS}nixos.failed_units=nginx.service \n`, NIXOS]) {
      const h = harness({ facts, evaluated: RUNS, top: RUNS });
      const r = await h.run('action', {}, ['probe', 'plan', 'build']);
      expect(r.decision!.unchanged).toBe(false);
      expect(h.nixCalls.some((a) => a[0] === 'build')).toBe(true);
    }
  });

  it("a change whose system is in the runner's store already is not built (nor evaluated) again", async () => {
    const facts = `${NIXOS}nixos.failed_units=\n`;
    const built = harness({ facts, evaluated: OTHER, top: OTHER, valid: true });
    const r = await built.run('action', {}, ['probe', 'plan', 'build']);
    expect(r.error).toBeUndefined();
    expect(r.build?.toplevel).toBe(OTHER);
    expect(built.nixCalls.map((a) => a[0])).toEqual([
      '--version',
      'eval',
      'path-info',
      'path-info',
    ]);
    // Not in the store: built from the same evaluation's derivation, not the flake attribute
    // (which would evaluate the whole configuration again).
    const fresh = harness({ facts, evaluated: OTHER, top: OTHER });
    await fresh.run('action', {}, ['probe', 'plan', 'build']);
    expect(fresh.nixCalls.map((a) => a[0])).toEqual([
      '--version',
      'eval',
      'path-info',
      'build',
      'path-info',
    ]);
    expect(fresh.nixCalls.find((a) => a[0] === 'build')!.at(-1)).toBe('/nix/store/x.drv^out');
    // A Nix that builds something else from it: the flake attribute after all.
    const odd = harness({ facts, evaluated: OTHER, top: RUNS });
    const o = await odd.run('action', {}, ['probe', 'plan', 'build']);
    expect(odd.nixCalls.filter((a) => a[0] === 'build').map((a) => a.at(-1))).toEqual([
      '/nix/store/x.drv^out',
      '/flake#nixosConfigurations.vps.config.system.build.toplevel',
    ]);
    expect(o.build?.toplevel).toBe(RUNS);
  });

  it('force-switch runs the deploy with our own switch: no nixos-rebuild is looked for', async () => {
    const h = harness({ facts: `${NIXOS}nixos.failed_units=\n`, evaluated: RUNS, top: RUNS });
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const r = await h.run('action', { 'force-switch': 'true' }, ['probe', 'plan', 'build']);
      expect(r.decision).toMatchObject({ forced: true, unchanged: false, deployWith: 'switch' });
      expect(h.nixCalls.some((a) => a.join(' ').includes('pkgs.path'))).toBe(false);
    } finally {
      process.env.PATH = path;
    }
  });

  it('with build-host, force-switch runs a pinned nixos-rebuild, never a registry one', async () => {
    const h = harness({ facts: `${NIXOS}nixos.failed_units=\n`, evaluated: RUNS });
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const r = await h.run(
        'action',
        { 'force-switch': 'true', 'build-host': 'root@198.51.100.9' },
        ['probe', 'plan', 'deploy'],
      );
      expect(r.decision).toMatchObject({ forced: true, deployWith: 'nixos-rebuild' });
      // none on PATH: the configuration's nixpkgs is asked for it (the fake cannot evaluate it)
      const asked = h.nixCalls.find((a) => a.join(' ').includes('pkgs.path'));
      expect(asked).toEqual(['eval', '--raw', '/flake#nixosConfigurations.vps.pkgs.path']);
      expect(h.nixCalls.some((a) => a.join(' ').includes('nixpkgs#'))).toBe(false);
      expect(r.error!.message).toMatch(
        /no nixos-rebuild on PATH, and .*pkgs\.path .*could not be evaluated/,
      );
    } finally {
      process.env.PATH = path;
    }
  });
});

describe('a changed deploy', () => {
  it('builds the system and compares it with what the host runs; no installer', async () => {
    const { top } = fakeStore();
    const h = harness({ facts: `${NIXOS}nixos.failed_units=\n`, evaluated: OTHER, top });
    const r = await h.run('action', { action: 'build' }, ['probe', 'plan', 'build']);
    expect(r.error).toBeUndefined();
    expect(r.build!.toplevel).toBe(top);
    expect(r.installer).toBeUndefined();
    // action build: no deploy says what would change, so the build stage asks the host
    expect(h.execs).toEqual(['facts.sh', 'nix-store -qR /run/current-system']);
    expect(r.build!.closure.diff).toBeDefined();
    // a deploy says it itself: the build stage does not ask
    const d = harness({ facts: `${NIXOS}nixos.failed_units=\n`, evaluated: OTHER, top });
    await d.run('action', {}, ['probe', 'plan', 'build']);
    expect(d.execs).toEqual(['facts.sh']);
    // one evaluation, reused by the build
    expect(h.nixCalls.filter((a) => a[0] === 'eval')).toHaveLength(1);
  });
});

describe('the preflight of a change', () => {
  it('is evaluated beside the build, and stopped when the build fails', async () => {
    const { top } = fakeStore();
    const facts = `${NIXOS}nixos.failed_units=\n`;
    const h = harness({ facts, evaluated: OTHER, top, buildMs: 30 });
    const r = await h.run('action', {}, ['probe', 'plan', 'build', 'check']);
    expect(r.error).toBeUndefined();
    expect(stages(r)).toEqual(['probe:done', 'plan:done', 'build:done', 'check:done']);
    expect(h.events.indexOf('preflight eval start')).toBeLessThan(
      h.events.indexOf('nix build end'),
    );
    // once: the check stage uses the evaluation started beside the build
    expect(h.events.filter((e) => e === 'preflight eval start')).toHaveLength(1);

    const failing = harness({ facts, evaluated: OTHER, top, buildMs: 5, buildFails: true });
    const f = await failing.run('action', {}, ['probe', 'plan', 'build', 'check']);
    expect(f.error!.message).toMatch(/building the system failed/);
    expect(stages(f)).toEqual(['probe:done', 'plan:done', 'build:failed']);
    expect(failing.events).toContain('preflight eval aborted');
    // stopped: not retried part by part
    expect(failing.events.filter((e) => e === 'preflight eval start')).toHaveLength(1);
  });
});

describe('a fresh host', () => {
  it('with build-host, the closure is still built here for the install (the old bug)', async () => {
    const { top, disko } = fakeStore();
    const h = harness({ facts: fixture('debian-12-kvm'), evaluated: top, top, disko });
    const r = await h.run(
      'bootstrap',
      { 'build-host': 'builder@b', 'kexec-tarball': smallInstaller(), 'allow-low-ram': 'true' },
      ['probe', 'plan', 'build'],
    );
    expect(r.error).toBeUndefined();
    expect(r.plan!.method).toBe('kexec');
    expect(r.build!.toplevel).toBe(top);
    expect(r.build!.diskScript).toBe(disko);
    expect(r.installer!.sizes!.initrdUnpackedBytes).toBe(24 * 2 ** 20);
    expect(stages(r)).toEqual(['probe:done', 'plan:done', 'build:done']);
  });

  it('a stage the plan does not need is recorded once as skipped, with its reason', async () => {
    // NixOS already, method infect and no flake: nothing to convert, nothing to deploy
    const h = harness({ facts: `${NIXOS}nixos.failed_units=\n`, evaluated: RUNS });
    const r = await h.run('action', { method: 'infect', flake: '' });
    expect(r.error).toBeUndefined();
    expect(stages(r)).toEqual([
      'probe:done',
      'plan:done',
      'build:skipped',
      'check:skipped',
      'bootstrap:skipped',
      'deploy:skipped',
    ]);
    expect(r.stages.at(-1)!.detail).toMatch(/no deploy/);
  });

  it('vps-nixos deploy says to bootstrap first, before building anything', async () => {
    const h = harness({ facts: fixture('debian-12-kvm'), evaluated: OTHER });
    const r = await h.run('deploy', {});
    expect(r.error!.message).toMatch(/does not run NixOS yet/);
    expect(r.error!.fix).toMatch(/vps-nixos bootstrap/);
    // The evaluation beside the probe may have run (read-only); nothing was built.
    expect(h.nixCalls.map((c) => c[0])).not.toContain('build');
    expect(stages(r)).toEqual(['probe:done', 'plan:done']);
  });
});
