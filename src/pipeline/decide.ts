/**
 * What runs, decided once: from the entry point (the action or a CLI command), the inputs, the
 * plan and the host's running system. Pure: the pipeline asks, runs what it is told, and records
 * the reason for every stage it does not run.
 */
import type { Config } from '../inputs';
import type { Facts } from '../probe/facts';
import type { DeployWith } from '../deploy/switch';
import type { Plan } from '../plan/plan';
import type { StageName } from './record';

/** Who asks: the action's main step, or one CLI command. */
export type Entry = 'action' | 'probe' | 'plan' | 'build' | 'check' | 'bootstrap' | 'deploy';

/** The one order of the stages; an entry runs a subset of it. */
export const STAGE_ORDER: readonly StageName[] = [
  'probe',
  'plan',
  'build',
  'check',
  'bootstrap',
  'deploy',
];

const CLI_STAGES: Record<Exclude<Entry, 'action'>, StageName[]> = {
  probe: ['probe'],
  plan: ['probe', 'plan'],
  build: ['build'],
  // plans from --facts when given; never connects (--target names the user the key checks are for)
  check: ['plan', 'check'],
  bootstrap: ['probe', 'plan', 'build', 'check', 'bootstrap'],
  deploy: ['probe', 'plan', 'build', 'check', 'deploy'],
};

export type DecideConfig = Pick<
  Config,
  'planOnly' | 'deployAction' | 'flake' | 'toplevel' | 'diskScript' | 'method' | 'buildHost'
> &
  Partial<Pick<Config, 'forceSwitch' | 'kexecTarball'>>;

/** The stages an entry may run, before anything is known about the host. */
export function entryStages(
  entry: Entry,
  cfg: Pick<DecideConfig, 'planOnly' | 'deployAction'>,
): StageName[] {
  if (entry !== 'action') return CLI_STAGES[entry];
  if (cfg.planOnly) return ['probe', 'plan', 'check'];
  if (cfg.deployAction === 'build') return ['probe', 'plan', 'build', 'check'];
  return [...STAGE_ORDER];
}

/** What the build stage must produce. */
export interface BuildNeeds {
  /** Realise the configuration's toplevel on the runner (else it is given, or built elsewhere). */
  system: boolean;
  /** Build disko's script: required when the plan partitions, optional for a bare `build`. */
  diskScript: 'required' | 'optional' | false;
  /** Evaluate the disko layout (the installer's tools, the disks it formats). */
  layout: boolean;
  /** Resolve the kexec installer (build, cache, download or a given file). */
  installer: boolean;
}

export interface StageDecision {
  name: StageName;
  run: boolean;
  /** Why it does not run (shown as the skipped stage's detail). */
  why?: string;
}

export interface Decision {
  stages: StageDecision[];
  build: BuildNeeds;
  /**
   * The host already runs the configuration's evaluated toplevel (and, for switch, its profile
   * points there and no unit failed): nothing is built, copied or activated.
   */
  unchanged: boolean;
  /** force-switch made a deploy run that would have been unchanged. */
  forced: boolean;
  /**
   * How the deploy puts the system on the host: `switch`, ours (the runner built it or was given
   * it: copy it, then switch-to-configuration under the guard, no second evaluation, no
   * nixos-rebuild needed); `nixos-rebuild` with build-host (the system is built there).
   */
  deployWith: DeployWith;
  /** This entry cannot do what the plan needs (deploy to a host that is not NixOS yet). */
  blocked?: { message: string; fix: string };
}

export interface DecideInput {
  entry: Entry;
  cfg: DecideConfig;
  /** Facts were read from a file (CLI --facts): no probe, and no connection for later stages. */
  factsFromFile?: boolean;
  plan?: Plan;
  host?: Pick<Facts, 'currentSystem' | 'systemProfile' | 'failedUnits'>;
  /** The configuration's toplevel from one evaluation (or the given toplevel): no build. */
  evaluated?: string;
}

const NOTHING: BuildNeeds = { system: false, diskScript: false, layout: false, installer: false };

/** Prebuilt store paths stand in for the build (like nixos-anywhere's --store-paths). */
function prebuilt(cfg: DecideConfig): boolean {
  return !!cfg.toplevel && (!!cfg.diskScript || cfg.method === 'infect' || !cfg.flake);
}

/** Whether the host already runs `evaluated`, as the deploy action would leave it. */
export function alreadyRuns(
  action: Config['deployAction'],
  host: NonNullable<DecideInput['host']>,
  evaluated: string,
): boolean {
  const noFailed = (host.failedUnits ?? ['unknown']).length === 0;
  switch (action) {
    case 'switch':
      return host.currentSystem === evaluated && host.systemProfile === evaluated && noFailed;
    case 'test':
      return host.currentSystem === evaluated && noFailed;
    case 'boot':
      return host.systemProfile === evaluated;
    case 'build':
      return host.currentSystem === evaluated;
    case 'dry-activate':
      return false;
  }
}

/** Whether the pipeline should evaluate the flake's toplevel before deciding (one `nix eval`). */
export function wantsEvaluation(input: Omit<DecideInput, 'evaluated'>): boolean {
  const { cfg, plan, host } = input;
  const stages = entryStages(input.entry, cfg);
  return (
    !!cfg.flake &&
    !cfg.toplevel &&
    !!plan &&
    plan.method === 'deploy-only' &&
    !!host?.currentSystem &&
    (stages.includes('deploy') || (stages.includes('build') && cfg.deployAction === 'build'))
  );
}

/** The one decision of what runs. */
export function decide(input: DecideInput): Decision {
  const { cfg, plan } = input;
  const stages = entryStages(input.entry, cfg);
  const phases = plan?.phases ?? [];
  const canBootstrap = stages.includes('bootstrap');
  const installs = phases.includes('install') && canBootstrap;
  const bootstraps = phases.some((p) => p !== 'deploy');
  const deploys = phases.includes('deploy') && stages.includes('deploy');
  // `vps-nixos deploy` to a host that is not NixOS yet: say so before building anything.
  const blocked =
    deploys && bootstraps && !canBootstrap && !plan?.refusal
      ? {
          message: `the host does not run NixOS yet (the plan is ${plan?.method}: ${phases.join(', ')}): deploy cannot install it`,
          fix: 'run vps-nixos bootstrap first (or the action, which installs and deploys)',
        }
      : undefined;
  const matches =
    !!plan &&
    plan.method === 'deploy-only' &&
    !!input.host &&
    !!input.evaluated &&
    alreadyRuns(cfg.deployAction, input.host, input.evaluated);
  const unchanged = matches && !cfg.forceSwitch;
  const forced = matches && !!cfg.forceSwitch;

  const build = blocked ? NOTHING : buildNeeds(input, { installs, deploys, unchanged });
  const out: StageDecision[] = [];
  for (const name of stages) {
    out.push({ name, ...stageRun(name, input, { build, bootstraps, deploys, unchanged }) });
  }
  return {
    stages: out,
    build,
    unchanged,
    forced,
    deployWith: deployWith(cfg),
    ...(blocked ? { blocked } : {}),
  };
}

/** Ours unless the system is built elsewhere (build-host): then nixos-rebuild builds and copies it. */
export function deployWith(cfg: Pick<DecideConfig, 'buildHost' | 'toplevel'>): DeployWith {
  return cfg.buildHost && !cfg.toplevel ? 'nixos-rebuild' : 'switch';
}

function buildNeeds(
  input: DecideInput,
  d: { installs: boolean; deploys: boolean; unchanged: boolean },
): BuildNeeds {
  const { cfg, plan } = input;
  const stages = entryStages(input.entry, cfg);
  if (!stages.includes('build')) return NOTHING;
  const installer = plan
    ? plan.phases.includes('kexec') && stages.includes('bootstrap')
    : // `vps-nixos build` with no plan: the installer only when asked for (offline, ours cannot be built)
      cfg.method === 'kexec' || !!cfg.kexecTarball;
  if (plan?.refusal || d.unchanged) return NOTHING;
  if (!cfg.flake || prebuilt(cfg)) return { ...NOTHING, installer };
  if (!plan) {
    return {
      system: true,
      diskScript: cfg.method === 'kexec' ? 'required' : 'optional',
      layout: cfg.method === 'kexec' || cfg.method === 'auto',
      installer,
    };
  }
  // An install streams the closure from here even with build-host (the installer has no Nix).
  const system =
    d.installs ||
    (plan.phases.includes('infect') && stages.includes('bootstrap')) ||
    (d.deploys && !cfg.buildHost) ||
    (!stages.includes('deploy') && cfg.deployAction === 'build');
  return {
    system,
    diskScript: d.installs && !cfg.diskScript ? 'required' : false,
    layout: d.installs,
    installer,
  };
}

function stageRun(
  name: StageName,
  input: DecideInput,
  d: { build: BuildNeeds; bootstraps: boolean; deploys: boolean; unchanged: boolean },
): { run: boolean; why?: string } {
  const { cfg, plan } = input;
  const here = input.host?.currentSystem ?? input.evaluated;
  const skip = (why: string) => ({ run: false, why });
  switch (name) {
    case 'probe':
      return input.factsFromFile ? skip('facts read from a file') : { run: true };
    case 'plan':
      return { run: true };
    case 'build': {
      const b = d.build;
      if (b.system || b.diskScript || b.layout || b.installer) return { run: true };
      if (plan?.refusal) return skip('the plan refused: nothing to build');
      if (d.unchanged) return skip(`the host already runs ${here}: nothing to build`);
      if (cfg.flake && prebuilt(cfg))
        return skip('prebuilt store paths given (toplevel, disk-script)');
      if (!cfg.flake)
        return skip(
          'no flake: nothing to build (method infect converts with its own configuration)',
        );
      if (cfg.buildHost) return skip(`build-host given: nixos-rebuild builds on ${cfg.buildHost}`);
      return skip('the plan needs nothing built');
    }
    case 'check':
      if (!cfg.flake) return skip('no flake: nothing to check');
      if (d.unchanged) return skip(`the host already runs ${here}: nothing to check`);
      return { run: true };
    case 'bootstrap':
      if (input.factsFromFile) return skip('facts read from a file: nothing connects');
      if (!plan) return skip('no plan');
      if (plan.refusal) return { run: true }; // it fails with the refusal, before any phase
      if (d.bootstraps) return { run: true };
      return skip(
        plan.method === 'deploy-only'
          ? `nothing to bootstrap: the host runs NixOS${input.host?.currentSystem ? ` ${input.host.currentSystem}` : ''}`
          : `nothing to bootstrap: ${plan.reasons.at(-1) ?? ''}`,
      );
    case 'cache':
      return d.build.system ? { run: true } : skip('nothing was built');
    case 'deploy':
      if (input.factsFromFile) return skip('facts read from a file: nothing connects');
      if (!plan) return skip('no plan');
      if (plan.refusal) return skip('the plan refused');
      if (!d.deploys) return skip('the plan has no deploy (no flake or toplevel)');
      if (cfg.deployAction === 'build')
        return skip('action build: built and compared with what the host runs; nothing deployed');
      return { run: true };
  }
}
