/** The CLI's commands, built on the same pipeline as the action. */
import { INPUTS, isBooleanInput, parseConfig, type InputName, type RawInputs } from '../inputs';
import { stopChildren } from '../children';
import { privateRunDir, sweepKilledRuns } from '../secrets';
import { InputError, describeError } from '../errors';
import { runPipeline, type Logger } from '../pipeline/run';
import { finalStatus } from '../pipeline/status';
import { jsonText, renderText } from '../report/render';
import { loadFacts, readFileOption } from './facts-file';
import { FACTS_TO_NIX_OPTIONS, factsToNixCommand } from './facts-to-nix';
import { INIT_OPTIONS, initCommand } from './init';
import type { RunRecord } from '../pipeline/record';
import { entryStages, type Entry } from '../pipeline/decide';
import type { KexecTarball } from '../nix/kexec';
import type { OptionSpec } from './args';
import { homedir, tmpdir } from 'node:os';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { LocalDirCacheStore } from '../cache/store';
import { TOOL_VERSION } from '../version';
import type { BuildResult } from '../nix/build';

/** The `build --json` contract: toplevel, closure totals and top contributors, disk script, cache. */
function buildJson(b: BuildResult, installer?: KexecTarball): Record<string, unknown> {
  return {
    toplevel: b.toplevel,
    drvPath: b.drvPath,
    diskScript: b.diskScript ?? null,
    closure: {
      pathCount: b.closure.pathCount,
      narBytes: b.closure.narBytes,
      top: b.closure.top,
      topOwn: b.closure.topOwn,
      leaks: b.closure.leaks,
      trimming: b.closure.trimming ?? null,
    },
    cache: b.cache ?? null,
    kexecTarball: installer ?? null,
    seconds: b.seconds,
  };
}

export interface Command {
  name: string;
  summary: string;
  /** The pipeline entry it is (what runs is decided from it, the inputs and the plan). */
  entry?: Exclude<Entry, 'action'>;
  options: OptionSpec[];
  /** A command that is not a pipeline run: returns its stdout. */
  custom?: (options: Record<string, string>) => string;
  /** A command that runs another's pipeline and does more with its record (init). */
  run?: (options: Record<string, string>, log: Logger) => Promise<CommandResult>;
}

const BUILDING: InputName[] = [
  'flake',
  'method',
  'closure-budget',
  'disko-with-deps',
  'cache',
  'cache-max-size',
  'push-to',
  'kexec-tarball',
  'kexec-tarball-sha256',
  'installer-budget',
  'measure-trimming',
];
const CONNECTION: InputName[] = [
  'target',
  'ssh-private-key',
  'known-hosts',
  'host-key-fingerprint',
  'trust-on-first-use',
  'connect-timeout',
  'connect-retries',
];
const PLANNING: InputName[] = [
  'method',
  'flake',
  'min-ram-kexec',
  'min-ram-infect',
  'allow-low-ram',
  'reinstall',
];

const BOOTSTRAPPING: InputName[] = [
  'confirm-wipe',
  'zram-size',
  'swap-size',
  'patch-udevadm',
  'toplevel',
  'disk-script',
  'substituters',
  'trusted-public-keys',
  'allow-preflight-errors',
  'infect-revision',
  'infect-url',
  'infect-sha256',
  'nixos-channel',
];

const DEPLOYING: InputName[] = [
  'flake',
  'toplevel',
  'action',
  'build-host',
  'use-sudo',
  'confirm-timeout',
  'health-check',
  'health-url',
  'health-timeout',
  'rollback',
  'force-switch',
  'method',
  'reinstall',
  'closure-budget',
  'cache',
  'cache-max-size',
  'push-to',
  'allow-preflight-errors',
];

/** Where the CLI reads the deploy key when no --ssh-private-key-file is given. */
export const KEY_ENV = 'VPS_NIXOS_SSH_PRIVATE_KEY';
const KEY_HOW = `--ssh-private-key-file FILE, or the environment variable ${KEY_ENV}`;

const inputOption = (name: InputName): OptionSpec => {
  const spec: { description: string; default?: string } = INPUTS[name];
  return {
    name,
    // Known, so that giving it is refused with the fix rather than as an unknown option.
    description:
      name === 'ssh-private-key'
        ? `Not taken on the command line (the process list shows it to every user): use ${KEY_HOW}`
        : spec.description,
    default: spec.default,
    boolean: isBooleanInput(name),
  };
};

const FILE_OPTIONS: OptionSpec[] = [
  {
    name: 'ssh-private-key-file',
    description: `Read ssh-private-key from this file (else from $${KEY_ENV})`,
  },
  { name: 'known-hosts-file', description: 'Read known-hosts from this file' },
];
const JSON_OPTION: OptionSpec = {
  name: 'json',
  description: 'Print one JSON document on stdout',
  boolean: true,
};

export const COMMANDS: Command[] = [
  {
    name: 'probe',
    summary: 'Connect over pinned SSH and print what the target is (read-only)',
    entry: 'probe',
    options: [...CONNECTION.map(inputOption), ...FILE_OPTIONS, JSON_OPTION],
  },
  {
    name: 'plan',
    summary: 'Probe (or read --facts) and print how the target would be installed; changes nothing',
    entry: 'plan',
    options: [
      ...CONNECTION.map(inputOption),
      ...FILE_OPTIONS,
      ...PLANNING.map(inputOption),
      {
        name: 'facts',
        description: 'Plan from a saved `probe --json` (or facts) JSON file instead of connecting',
      },
      JSON_OPTION,
    ],
  },
  {
    name: 'build',
    summary:
      "Build the system closure (and disk script) with this machine's Nix, report its size, enforce the budget, cache it",
    entry: 'build',
    options: [
      ...BUILDING.map(inputOption),
      {
        name: 'cache-dir',
        description: 'Directory that keeps closure caches between runs',
        default: '~/.cache/vps-nixos',
      },
      JSON_OPTION,
    ],
  },
  {
    name: 'check',
    summary:
      'Preflight: evaluate the configuration and report the traps that lock you out or break a low-RAM install',
    entry: 'check',
    options: [
      inputOption('flake'),
      {
        name: 'facts',
        description:
          'Facts JSON from `vps-nixos probe --json`: enables the checks against the host',
      },
      inputOption('target'),
      inputOption('ssh-private-key'),
      {
        name: 'ssh-private-key-file',
        description: `Read ssh-private-key from this file (else from $${KEY_ENV}); its public half must stay authorized`,
      },
      inputOption('method'),
      inputOption('min-ram-kexec'),
      inputOption('min-ram-infect'),
      inputOption('allow-low-ram'),
      inputOption('reinstall'),
      inputOption('allow-preflight-errors'),
      JSON_OPTION,
    ],
  },
  {
    name: 'bootstrap',
    summary:
      'Install NixOS on the target: prep, kexec into the installer, partition (confirm-wipe), install, reboot; or convert it in place with nixos-infect (method infect: verified, detached, then reboot); resumes where a previous run stopped',
    entry: 'bootstrap',
    options: [
      ...CONNECTION.map(inputOption),
      ...FILE_OPTIONS,
      ...[...new Set<InputName>([...PLANNING, ...BUILDING, ...BOOTSTRAPPING])].map(inputOption),
      {
        name: 'cache-dir',
        description: 'Directory that keeps closure caches between runs',
        default: '~/.cache/vps-nixos',
      },
      JSON_OPTION,
    ],
  },
  {
    name: 'deploy',
    summary:
      'Deploy the flake (or a prebuilt --toplevel) to an installed NixOS host with nixos-rebuild over the pinned key; health-check, roll back on failure',
    entry: 'deploy',
    options: [
      ...CONNECTION.map(inputOption),
      ...FILE_OPTIONS,
      ...DEPLOYING.map(inputOption),
      {
        name: 'cache-dir',
        description: 'Directory that keeps closure caches between runs',
        default: '~/.cache/vps-nixos',
      },
      JSON_OPTION,
    ],
  },
  {
    name: 'init',
    summary:
      'Probe the target (read-only) and write a starter repository for it: flake, configuration, host module, disk layout, known_hosts, the deploy and update workflows',
    options: [
      ...CONNECTION.map(inputOption),
      ...FILE_OPTIONS,
      ...PLANNING.map(inputOption),
      ...INIT_OPTIONS,
    ],
    run: (options, log) => initCommand(findCommand('plan')!, options, log, runCommand),
  },
  {
    name: 'facts-to-nix',
    summary:
      'Write the NixOS module for this host (static network, disk, drivers, boot loader) from saved facts',
    options: FACTS_TO_NIX_OPTIONS,
    custom: factsToNixCommand,
  },
];

export function findCommand(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}

export function usage(cmd?: Command): string {
  if (!cmd) {
    return [
      'usage: vps-nixos <command> [--option value …]',
      '',
      'commands:',
      ...COMMANDS.map((c) => `  ${c.name.padEnd(8)} ${c.summary}`),
      '',
      'Options have the names of the action inputs. `vps-nixos <command> --help` lists them.',
      '`vps-nixos --version` prints the version.',
    ].join('\n');
  }
  const lines = cmd.options.map((o) => {
    const left = `  --${o.name}${o.boolean ? ' [true|false]' : ' VALUE'}`;
    return `${left.padEnd(40)} ${o.description}${o.default !== undefined ? ` (default: ${o.default})` : ''}`;
  });
  return [
    `usage: vps-nixos ${cmd.name} [--option value …]`,
    '',
    cmd.summary,
    '',
    'options:',
    ...lines,
  ].join('\n');
}

export interface CommandResult {
  record: RunRecord;
  exitCode: number;
  output: string;
  /** Why it failed (or what it did), for stderr. */
  message: string;
}

/** A command line's raw inputs, and the option or variable each one came from (for messages). */
export interface CliInputs {
  raw: RawInputs;
  shownAs: Partial<Record<InputName, string>>;
}

/**
 * The raw inputs of a command line: its options, the files its file options name, and the key
 * from KEY_ENV when no key file is given. A key on the command line is refused: every user sees
 * it in the process list. Deletes KEY_ENV from `env`, so no child process (nix, ssh) inherits it.
 */
export function cliInputs(
  cmd: Command,
  options: Record<string, string>,
  env: NodeJS.ProcessEnv,
): CliInputs {
  const fromEnv = env[KEY_ENV];
  delete env[KEY_ENV];
  if (options['ssh-private-key'] !== undefined) {
    throw new InputError(
      'ssh-private-key',
      'is not taken on the command line: every user of this machine can read it in the process list',
      `use ${KEY_HOW} (e.g. ${KEY_ENV}="$(cat ~/.ssh/deploy_key)"); it may be in your shell history now`,
    );
  }
  const raw: RawInputs = {};
  const shownAs: Partial<Record<InputName, string>> = {};
  for (const [k, v] of Object.entries(options)) if (k in INPUTS) raw[k as InputName] = v;
  for (const [fileOpt, input] of [
    ['ssh-private-key-file', 'ssh-private-key'],
    ['known-hosts-file', 'known-hosts'],
  ] as const) {
    const path = options[fileOpt];
    if (path === undefined) continue;
    if (raw[input] !== undefined)
      throw new InputError(fileOpt, `and --${input} are both given`, 'give one of them');
    raw[input] = readFileOption(fileOpt, path);
    shownAs[input] = fileOpt;
  }
  const takesKey = cmd.options.some((o) => o.name === 'ssh-private-key-file');
  if (takesKey && raw['ssh-private-key'] === undefined && fromEnv) {
    raw['ssh-private-key'] = fromEnv;
    shownAs['ssh-private-key'] = KEY_ENV;
  }
  return { raw, shownAs };
}

type SignalListener = (signal: NodeJS.Signals) => void;
/** The part of `process` removeOnSignal uses (tests hand in their own). */
export interface SignalProcess {
  on(signal: NodeJS.Signals, listener: SignalListener): unknown;
  removeListener(signal: NodeJS.Signals, listener: SignalListener): unknown;
  exit(code: number): void;
}

/** The signals that end a CLI run, and the exit status a shell reports for each (128 + number). */
export const EXIT_ON_SIGNAL = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

/**
 * When SIGINT, SIGTERM or SIGHUP ends the process (a signal skips `finally`): stops the child
 * processes (a nixos-rebuild mid-switch: the armed guard then rolls the target back), removes
 * `dir` (the run's key files), then exits with 128 + the signal's number. Children are not
 * waited for: ssh has read the key by then. Returns the function that takes the handlers off.
 */
export function removeOnSignal(dir: string, proc: SignalProcess = process): () => void {
  const signals = Object.keys(EXIT_ON_SIGNAL) as (keyof typeof EXIT_ON_SIGNAL)[];
  const off = () => {
    for (const s of signals) proc.removeListener(s, onSignal);
  };
  function onSignal(signal: NodeJS.Signals): void {
    off();
    stopChildren('SIGTERM');
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // exiting anyway; nothing better to do than leave it (mkdtemp made it 0700)
    }
    proc.exit(EXIT_ON_SIGNAL[signal as keyof typeof EXIT_ON_SIGNAL] ?? 1);
  }
  for (const s of signals) proc.on(s, onSignal);
  return off;
}

/** Runs one command with already split options; throws InputError for bad input (before any connection). */
export async function runCommand(
  cmd: Command,
  options: Record<string, string>,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<CommandResult> {
  const { raw, shownAs } = cliInputs(cmd, options, env);
  const planned = entryStages(cmd.entry ?? 'probe', { planOnly: false, deployAction: 'switch' });
  const building = planned.includes('build');
  // probe, plan and check never change the target; build and check need a flake.
  if (!building && !planned.includes('check')) raw['plan-only'] = 'true';
  const facts = options.facts !== undefined ? loadFacts(options.facts) : undefined;
  const cfg = parseConfig(raw, {
    noConnection: facts !== undefined || !planned.includes('probe'),
    shownAs,
    keyHow: KEY_HOW,
  });
  const stages = entryStages(cmd.entry ?? 'probe', cfg);
  const cacheRoot =
    options['cache-dir'] ??
    join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'vps-nixos');
  for (const dir of sweepKilledRuns(tmpdir()))
    log.warn(`removed ${dir}: a run killed before it could clean up left it (with its key files)`);
  const tempDir = privateRunDir(tmpdir());
  const signalsOff = removeOnSignal(tempDir);
  let record: RunRecord;
  try {
    record = await runPipeline(
      cfg,
      { entry: cmd.entry ?? 'probe', facts },
      {
        log,
        tempDir,
        toolVersion: TOOL_VERSION,
        cache: building
          ? {
              store: new LocalDirCacheStore(join(cacheRoot, 'entries')),
              dir: join(cacheRoot, 'work', 'closure'),
            }
          : undefined,
      },
    );
  } finally {
    signalsOff();
    rmSync(tempDir, { recursive: true, force: true });
  }
  // CLI commands stop where they stop: a plan is a result, never "the rest is not released".
  const status = finalStatus(record, { ...cfg, planOnly: true });
  const json = options.json === 'true';
  let output: string;
  if (json) {
    const doc: Record<string, unknown> = {};
    if (stages.includes('probe')) doc.facts = record.facts;
    if (stages.includes('plan')) doc.plan = record.plan;
    if (record.build)
      Object.assign(doc, buildJson(record.build, record.installer), {
        cacheSave: record.cacheSave ?? null,
      });
    else if (record.installer) doc.kexecTarball = record.installer;
    if (stages.includes('check')) doc.findings = record.preflight?.findings ?? null;
    if (stages.includes('bootstrap')) {
      doc.phases = record.bootstrap?.phases ?? [];
      // without a bootstrap (nothing to do) the host is what the probe found
      const f = record.facts;
      doc.host =
        record.bootstrap?.host ??
        (f
          ? {
              isNixos: f.isNixos,
              currentSystem: f.currentSystem ?? null,
              bootId: f.bootId,
              variantId: f.osVariantId ?? '',
            }
          : null);
      doc.bytesSent = record.bootstrap?.bytesSent ?? 0;
      if (record.bootstrap?.infect) doc.infect = record.bootstrap.infect;
    }
    if (stages.includes('deploy')) {
      const d = record.deploy;
      Object.assign(doc, {
        changed: d?.changed ?? false,
        unchanged: d?.skipped === 'unchanged',
        forced: d?.forced ?? false,
        bytesSent: d?.bytesSent ?? 0,
        pathsSent: d?.pathsSent ?? 0,
        systemPath: d?.systemPath ?? null,
        previousSystemPath: d?.previousSystemPath ?? null,
        rolledBack: d?.rolledBack ?? false,
        rollback: d?.rollback ?? null,
        nothingToRollBackTo: d?.nothingToRollBackTo ?? false,
        rebootNeeded: d?.rebootNeeded ?? [],
        failedUnits: d?.failedUnits ?? [],
        checks: d?.checks ?? [],
        diff: d?.diff ?? null,
        hostRuns: d?.hostRuns ?? null,
        rebuild: d?.rebuild ?? null,
        deploySeconds: d?.seconds ?? null,
      });
    }
    if (record.cacheSave) doc.cacheSave = record.cacheSave;
    if (record.hostKey) doc.hostKey = record.hostKey;
    if (record.error) doc.error = record.error;
    output = jsonText(doc);
  } else {
    output = renderText(record);
  }
  return { record, exitCode: status.ok ? 0 : 1, output, message: status.message };
}

export { describeError };
