import {
  alreadyRuns,
  decide,
  entryStages,
  wantsEvaluation,
  type DecideConfig,
  type DecideInput,
  type Entry,
} from '../../src/pipeline/decide';
import { plan, type PlanConfig, type PlanFacts } from '../../src/plan/plan';

const MiB = 2 ** 20;
const SYS = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-vps-25.11';
const OLD = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-vps-25.11';
const cfg: DecideConfig & PlanConfig = {
  planOnly: false,
  deployAction: 'switch',
  flake: { ref: '.', name: 'vps' },
  method: 'auto',
  minRamKexecBytes: 400 * MiB,
  minRamInfectBytes: 700 * MiB,
  allowLowRam: false,
  reinstall: false,
  forceSwitch: false,
};
const debian: PlanFacts = {
  memTotalBytes: 457 * MiB,
  virtualization: 'kvm',
  isNixos: false,
  osVariantId: undefined,
  osId: 'debian',
};
const nixos: PlanFacts = { ...debian, isNixos: true, osId: 'nixos' };
const running = { currentSystem: SYS, systemProfile: SYS, failedUnits: [] };

const input = (
  entry: Entry,
  facts: PlanFacts,
  over: Partial<typeof cfg> = {},
  host?: DecideInput['host'],
  evaluated?: string,
): DecideInput => {
  const c = { ...cfg, ...over };
  return { entry, cfg: c, plan: plan(facts, c), host, evaluated };
};
const ran = (d: ReturnType<typeof decide>) =>
  d.stages.map((s) => `${s.name}:${s.run ? 'run' : 'skip'}`);

describe('what runs, decided once', () => {
  it('an unchanged push-to-deploy: nothing built, checked or installed; the deploy confirms', () => {
    const d = decide(input('action', nixos, {}, running, SYS));
    expect(d.unchanged).toBe(true);
    expect(d.build).toEqual({ system: false, diskScript: false, layout: false, installer: false });
    expect(ran(d)).toEqual([
      'probe:run',
      'plan:run',
      'build:skip',
      'check:skip',
      'bootstrap:skip',
      'deploy:run',
    ]);
    expect(d.stages.find((s) => s.name === 'build')!.why).toMatch(
      /already runs .*nothing to build/,
    );
    expect(d.stages.find((s) => s.name === 'bootstrap')!.why).toBe(
      `nothing to bootstrap: the host runs NixOS ${SYS}`,
    );
    // NixOS without a /run/current-system (just converted, no flake): it still says so
    const bare = decide(input('bootstrap', nixos, { flake: undefined }, {}, undefined));
    expect(bare.stages.find((s) => s.name === 'bootstrap')!.why).toBe(
      'nothing to bootstrap: the host runs NixOS',
    );
  });

  it('a changed deploy builds the system, never the installer', () => {
    const d = decide(
      input('action', nixos, {}, { ...running, currentSystem: OLD, systemProfile: OLD }, SYS),
    );
    expect(d.unchanged).toBe(false);
    expect(d.build).toEqual({ system: true, diskScript: false, layout: false, installer: false });
    expect(ran(d)).toContain('check:run');
  });

  it('force-switch deploys what the host runs anyway, and says it was forced', () => {
    const d = decide(input('action', nixos, { forceSwitch: true }, running, SYS));
    expect(d.unchanged).toBe(false);
    expect(d.forced).toBe(true);
    expect(d.build.system).toBe(true);
  });

  it('a failed unit or a profile that points elsewhere is not unchanged', () => {
    expect(alreadyRuns('switch', { ...running, failedUnits: ['nginx.service'] }, SYS)).toBe(false);
    expect(alreadyRuns('switch', { ...running, systemProfile: OLD }, SYS)).toBe(false);
    expect(alreadyRuns('switch', { currentSystem: SYS, systemProfile: SYS }, SYS)).toBe(false);
    expect(alreadyRuns('boot', { ...running, currentSystem: OLD }, SYS)).toBe(true);
    expect(alreadyRuns('test', { ...running, systemProfile: OLD }, SYS)).toBe(true);
    expect(alreadyRuns('dry-activate', running, SYS)).toBe(false);
  });

  it('a fresh 512 MB host: the installer, the disk script and the layout, then everything', () => {
    const d = decide(input('action', debian, {}, undefined, undefined));
    expect(d.build).toEqual({
      system: true,
      diskScript: 'required',
      layout: true,
      installer: true,
    });
    expect(ran(d).every((s) => s.endsWith(':run'))).toBe(true);
  });

  it('build-host: a fresh host still gets its closure built here (it streams from the runner)', () => {
    const fresh = decide(input('action', debian, { buildHost: 'builder@b' }));
    expect(fresh.build.system).toBe(true);
    expect(ran(fresh)).toContain('build:run');
    const installed = decide(
      input('action', nixos, { buildHost: 'builder@b' }, { ...running, currentSystem: OLD }, SYS),
    );
    expect(installed.build.system).toBe(false);
    expect(installed.stages.find((s) => s.name === 'build')!.why).toMatch(/build-host given/);
  });

  it('the deploy switches to the system built here itself; nixos-rebuild only with build-host', () => {
    const changed = { ...running, currentSystem: OLD, systemProfile: OLD };
    const ours = decide(input('action', nixos, {}, changed, SYS));
    expect(ours.deployWith).toBe('switch');
    // it needs the system here: the build stage realises it (no second evaluation on the target)
    expect(ours.build.system).toBe(true);
    expect(
      decide(input('action', nixos, { toplevel: SYS, flake: undefined }, changed, SYS)).deployWith,
    ).toBe('switch');
    const remote = decide(input('action', nixos, { buildHost: 'builder@b' }, changed, SYS));
    expect(remote.deployWith).toBe('nixos-rebuild');
    expect(remote.build.system).toBe(false);
    // a prebuilt toplevel is here already, build-host or not
    expect(
      decide(input('action', nixos, { buildHost: 'builder@b', toplevel: SYS }, changed, SYS))
        .deployWith,
    ).toBe('switch');
  });

  it('prebuilt store paths: nothing built; the installer still resolved for a kexec plan', () => {
    const d = decide(
      input('action', debian, { toplevel: SYS, diskScript: `${SYS}-disko`, flake: undefined }),
    );
    expect(d.build).toEqual({ system: false, diskScript: false, layout: false, installer: true });
  });

  it('a refused plan builds nothing; the bootstrap stage fails with the refusal', () => {
    const d = decide(input('action', { ...debian, memTotalBytes: 200 * MiB }));
    expect(d.build.installer).toBe(false);
    expect(ran(d)).toEqual([
      'probe:run',
      'plan:run',
      'build:skip',
      'check:run',
      'bootstrap:run',
      'deploy:skip',
    ]);
  });

  it('vps-nixos deploy to a host that is not NixOS yet is blocked before any build', () => {
    const d = decide(input('deploy', debian));
    expect(d.blocked?.message).toMatch(/does not run NixOS yet/);
    expect(d.blocked?.fix).toMatch(/vps-nixos bootstrap/);
    expect(d.build.system).toBe(false);
  });

  it('plan-only and action build stop where they say', () => {
    expect(entryStages('action', { planOnly: true, deployAction: 'switch' })).toEqual([
      'probe',
      'plan',
      'check',
    ]);
    const b = decide(
      input('action', nixos, { deployAction: 'build' }, { ...running, currentSystem: OLD }, SYS),
    );
    expect(b.stages.map((s) => s.name)).toEqual(['probe', 'plan', 'build', 'check']);
    expect(b.build.system).toBe(true);
    const same = decide(input('action', nixos, { deployAction: 'build' }, running, SYS));
    expect(same.unchanged).toBe(true);
    expect(same.build.system).toBe(false);
  });

  it('evaluates only when an unchanged deploy is possible', () => {
    const ask = (entry: Entry, facts: PlanFacts, host?: DecideInput['host'], over = {}) => {
      const i = input(entry, facts, over, host);
      return wantsEvaluation(i);
    };
    expect(ask('action', nixos, running)).toBe(true);
    expect(ask('deploy', nixos, running)).toBe(true);
    expect(ask('action', debian)).toBe(false);
    expect(ask('bootstrap', nixos, running)).toBe(false);
    expect(ask('action', nixos, running, { toplevel: SYS })).toBe(false);
  });
});

describe('the CLI and the action run the same stages for the same inputs', () => {
  // Installed hosts: the action is `vps-nixos deploy`. Fresh hosts: it is `bootstrap`, then `deploy`.
  const hosts: [string, PlanFacts, DecideInput['host'], string | undefined, Entry][] = [
    ['unchanged NixOS', nixos, running, SYS, 'deploy'],
    ['changed NixOS', nixos, { ...running, currentSystem: OLD, systemProfile: OLD }, SYS, 'deploy'],
    ['fresh Debian', debian, undefined, undefined, 'bootstrap'],
    ['refused', { ...debian, memTotalBytes: 200 * MiB }, undefined, undefined, 'bootstrap'],
  ];
  const configs: Partial<typeof cfg>[] = [
    {},
    { buildHost: 'b@builder' },
    { forceSwitch: true },
    { toplevel: SYS, flake: undefined },
    { method: 'infect' },
    { deployAction: 'boot' },
  ];
  it.each(hosts)('%s', (_name, facts, host, evaluated, entry) => {
    for (const over of configs) {
      const action = decide(input('action', facts, over, host, evaluated));
      const cli = decide(input(entry, facts, over, host, evaluated));
      const names = new Set(entryStages(entry, cfg));
      const runs = (d: typeof cli) =>
        d.stages.filter((s) => names.has(s.name)).map((s) => `${s.name}:${s.run}`);
      expect({
        over,
        stages: runs(cli),
        build: cli.build,
        unchanged: cli.unchanged,
        deployWith: cli.deployWith,
      }).toEqual({
        over,
        stages: runs(action),
        build: action.build,
        unchanged: action.unchanged,
        deployWith: action.deployWith,
      });
    }
  });
  it('the CLI deploy runs the check, as the action does', () => {
    expect(entryStages('deploy', cfg)).toContain('check');
  });
});
