/** The CLI's commands, built on the same pipeline as the action. */
import {
  INPUTS,
  isBooleanInput,
  parseConfig,
  type Config,
  type InputName,
  type RawInputs,
} from '../inputs';
import { stopChildren } from '../children';
import { privateRunDir, sweepKilledRuns } from '../secrets';
import { InputError, describeError } from '../errors';
import { runPipeline, type Logger, type PipelineDeps } from '../pipeline/run';
import { finalStatus } from '../pipeline/status';
import { jsonText, renderText } from '../report/render';
import { loadFacts, readFileOption } from './facts-file';
import { FACTS_TO_NIX_OPTIONS, factsToNixCommand } from './facts-to-nix';
import { INIT_OPTIONS, initCommand } from './init';
import { hostsCommand, withDescription, type Described } from './hosts';
import { ROW_INPUTS } from '../hosts/fleet';
import type { Nix } from '../nix/nix';
import type { RunRecord } from '../pipeline/record';
import { entryStages, type Entry } from '../pipeline/decide';
import type { KexecTarball } from '../nix/kexec';
import type { OptionSpec } from './args';
import { homedir, tmpdir } from 'node:os';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LocalDirCacheStore } from '../cache/store';
import { TOOL_VERSION } from '../version';
import { KEY_ENV } from '../constants';
import type { BuildResult } from '../nix/build';
import { connect as sshConnect, type ConnectOptions } from '../ssh/session';
import { agentKeys, publicKeyOf } from '../ssh/keys';
import {
  fingerprint,
  parseKnownHosts,
  pinFor,
  userKnownHostsPath,
  whyNotPinned,
  type HostKey,
} from '../ssh/hostkeys';

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
  custom?: (options: Record<string, string>, log: Logger) => string | Promise<string>;
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
export { KEY_ENV };
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
    description: `Read ssh-private-key from this file (else from $${KEY_ENV}, else log in with the ssh-agent's keys: SSH_AUTH_SOCK)`,
  },
  {
    name: 'known-hosts-file',
    description:
      'Read known-hosts from this file (with no pin given: ~/.ssh/known_hosts, whose line for the host is the pin)',
  },
];

/** How a command that connects finds its key and its pin when the options leave them open. */
const CONNECTION_NOTES = [
  '',
  'With --flake PATH#NAME, the host description nixosConfigurations.NAME.config.vpsNixos.deploy',
  '(target, hostKey, method, health checks, …: see vps-nixos hosts --help) fills every option not',
  'given; an option given replaces its field (any pin given replaces hostKey and hostKeyFingerprint).',
  `The key: --ssh-private-key-file, else $${KEY_ENV}, else the keys of the ssh-agent at`,
  '$SSH_AUTH_SOCK (nix-copy-closure and nixos-rebuild use the same agent).',
  'The host key: --known-hosts-file / --known-hosts and --host-key-fingerprint, else the lines for',
  'the host in ~/.ssh/known_hosts (hashed, [host]:port and @revoked lines are read). With no line',
  'for it, the key the host presents is shown and refused; nothing is trusted on first use unless',
  '--trust-on-first-use is given.',
];
/** What `hosts --help` says about the description. */
const HOSTS_NOTES = [
  '',
  'A host is described in its NixOS configuration with our module (nixosModules.default):',
  '  vpsNixos.deploy = {',
  '    target = "root@203.0.113.7";          # required: where it is',
  '    hostKey = "ssh-ed25519 AAAA…";        # the pin: /etc/ssh/ssh_host_ed25519_key.pub',
  '    # hostKeyFingerprint, method, buildHost, useSudo, confirmTimeout,',
  '    # healthCheck, healthUrl, healthTimeout: the inputs of the same names',
  '  };',
  'Then `vps-nixos deploy --flake .#NAME` needs no other option (the key: the ssh-agent, a file',
  'or $VPS_NIXOS_SSH_PRIVATE_KEY). Options given here replace the fields in every row, as they',
  'would for deploy. Nothing described confirms a wipe: --confirm-wipe is given per run. Two',
  'described hosts with the same host and port, a missing target, a malformed key or an unknown',
  'field are refused, naming the host and the field.',
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
    options: [
      ...CONNECTION.map(inputOption),
      ...FILE_OPTIONS,
      {
        name: 'flake',
        description:
          'PATH#NAME: probe the host nixosConfigurations.NAME describes (vpsNixos.deploy), as deploy would',
      },
      JSON_OPTION,
    ],
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
      'Deploy the flake (or a prebuilt --toplevel) to an installed NixOS host over the pinned key: copy the system built here, switch to it under a rollback guard; health-check, roll back on failure',
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
      'Probe the target (read-only) and write a starter repository for it: flake, configuration with the host description (target, host key), host module, disk layout, the deploy and update workflows',
    options: [
      ...CONNECTION.map(inputOption),
      ...FILE_OPTIONS,
      ...PLANNING.map(inputOption),
      ...INIT_OPTIONS,
    ],
    run: (options, log) => initCommand(findCommand('plan')!, options, log, runCommand),
  },
  {
    name: 'hosts',
    summary:
      'List the hosts a flake describes (nixosConfigurations.*.config.vpsNixos.deploy) and what a run of each uses; --json prints the fan-out matrix of the reusable workflows. Connects nowhere',
    options: [
      {
        name: 'flake',
        description: 'The flake: every described host of it, or PATH#NAME for one configuration',
        default: '.',
      },
      {
        name: 'hosts',
        description:
          'all (every described host), or configuration names separated by spaces or commas; the JSON list of targets deploy.yml took before is still read (its entries are not looked up)',
      },
      // Not given: '' in the row, and the run's own default applies.
      ...ROW_INPUTS.map(inputOption).map((o) => ({
        ...o,
        default: undefined,
        description:
          o.name === 'target'
            ? 'One host: this target instead of the one described (with --flake PATH#NAME)'
            : o.description,
      })),
      FILE_OPTIONS[1]!,
      {
        name: 'target-optional',
        description:
          'A named configuration may describe no target (its row then has none: update.yml compares the old and the new lock without a host)',
        boolean: true,
      },
      {
        ...JSON_OPTION,
        description:
          'Print the matrix, {"host": [{name, flake, target, key, id, and each per-host input}]}',
      },
    ],
    custom: hostsCommand,
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
  const connects = cmd.name !== 'hosts' && cmd.options.some((o) => o.name === 'known-hosts-file');
  return [
    `usage: vps-nixos ${cmd.name} [--option value …]`,
    '',
    cmd.summary,
    '',
    'options:',
    ...lines,
    ...(connects ? CONNECTION_NOTES : []),
    ...(cmd.name === 'hosts' ? HOSTS_NOTES : []),
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

/** What messages call the user's own known_hosts (userKnownHostsPath: $HOME/.ssh/known_hosts). */
const USER_KNOWN_HOSTS = '~/.ssh/known_hosts';

/** `type SHA256:…` of a public key line (`type base64`). */
const keyFingerprint = (line: string): string => {
  const [type, b64 = ''] = line.split(' ');
  return `${type} ${fingerprint(Buffer.from(b64, 'base64'))}`;
};

/**
 * How a CLI run that connects logs in and checks the host key, where its options leave that
 * open. No key given: the ssh-agent's keys (asked for now, so a dead or empty agent is refused
 * before any connection). No pin given: the host's lines in ~/.ssh/known_hosts; with none there,
 * the host's keys are shown and refused (or trusted on first use when asked). Logs where the key
 * and the pin come from. Returns the Config with that known_hosts, and the connect to use.
 */
export async function cliSsh(
  cfg: Config,
  options: Record<string, string>,
  env: NodeJS.ProcessEnv,
  log: Logger,
  /** The host description the pin came from (messages name it, as they name the file). */
  pinSource?: string,
): Promise<{ cfg: Config; connect: PipelineDeps['connect']; agentKeys?: string[] }> {
  const target = cfg.target!;
  const name = target.knownHostsName;
  let agent: string | undefined;
  let keys: string[] | undefined;
  if (cfg.sshPrivateKey !== undefined) {
    const pub = publicKeyOf(cfg.sshPrivateKey);
    const from = options['ssh-private-key-file'] ?? `$${KEY_ENV}`;
    log.info(`ssh login: the key from ${from}${pub ? ` (${keyFingerprint(pub)})` : ''}`);
  } else {
    agent = env.SSH_AUTH_SOCK as string; // parseConfig refused a run with neither
    try {
      keys = await agentKeys(agent);
    } catch (err) {
      throw new InputError(
        'SSH_AUTH_SOCK',
        `no ssh-agent answers at ${agent} (${(err as Error).message}), and no key is given`,
        `start one and load the deploy key (eval "$(ssh-agent)"; ssh-add KEY), or give ${KEY_HOW}`,
      );
    }
    if (keys.length === 0)
      throw new InputError(
        'SSH_AUTH_SOCK',
        `the ssh-agent at ${agent} holds no keys, and no key is given`,
        `load the deploy key: ssh-add KEY (ssh-add -l lists what it holds), or give ${KEY_HOW}`,
      );
    log.info(
      `ssh login: the ssh-agent at ${agent} (SSH_AUTH_SOCK): ${keys.map(keyFingerprint).join(', ')}`,
    );
  }
  const withAgent = (o: ConnectOptions): ConnectOptions =>
    o.privateKey === undefined ? { ...o, agent } : o;

  if (cfg.knownHosts !== undefined || cfg.hostKeyFingerprints.length > 0) {
    const file = options['known-hosts-file'];
    const from: string[] = [];
    if (pinSource !== undefined) from.push(pinSource);
    else {
      if (cfg.knownHosts !== undefined)
        from.push(file !== undefined ? `--known-hosts-file ${file}` : '--known-hosts');
      if (cfg.hostKeyFingerprints.length > 0) from.push('--host-key-fingerprint');
    }
    log.info(`host key pin: from ${from.join(' and ')}`);
    if (pinSource === undefined)
      return { cfg, connect: (o) => sshConnect(withAgent(o)), agentKeys: keys };
    return {
      cfg,
      agentKeys: keys,
      // A mismatch says to replace the key where it is written: the description.
      connect: (o) =>
        sshConnect({
          ...withAgent(o),
          pin:
            typeof o.pin === 'object' && o.pin.knownHosts ? { ...o.pin, source: pinSource } : o.pin,
        }),
    };
  }

  const path = userKnownHostsPath(env);
  let text: string | undefined;
  let absent = 'does not exist';
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') absent = `cannot be read (${code})`;
  }
  const mine = pinFor(name, text, [], USER_KNOWN_HOSTS);
  const unusable = text === undefined ? [] : parseKnownHosts(text).errors;
  if (unusable.length > 0)
    log.warn(`${path}: skipped lines it cannot use: ${unusable.slice(0, 3).join('; ')}`);
  // Undefined when it has a key for the host; its @revoked lines count either way.
  const why = text === undefined ? `${USER_KNOWN_HOSTS} ${absent}` : whyNotPinned(mine, name);
  const named = mine.keys.length > 0 || mine.revoked.length > 0;
  const lines = (keys: { line?: number }[]) => keys.map((k) => k.line).join(', ');
  if (why === undefined) {
    const revoked = mine.revoked.length ? `; @revoked: line ${lines(mine.revoked)}` : '';
    log.info(
      `host key pin: from ${USER_KNOWN_HOSTS} (${path}), as no pin is given: ${mine.keys.length} key(s) for ${name} (line ${lines(mine.keys)})${revoked}`,
    );
  } else {
    const tofu = cfg.trustOnFirstUse && !named;
    log.info(
      `host key pin: none: no pin is given, and ${why} (${path}); ${tofu ? 'trust-on-first-use accepts the key the host presents' : 'the key the host presents is shown and refused'}`,
    );
  }
  const p = target.port === 22 ? '' : `-p ${target.port} `;
  const fix = (presented: readonly HostKey[]): string => {
    const fp = presented[0] ? fingerprint(presented[0].blob) : 'SHA256:…';
    return (
      `compare ${fp} with the host's own key on the provider console (ssh-keygen -lf ` +
      `/etc/ssh/ssh_host_ed25519_key.pub); if they agree, pin it: --host-key-fingerprint ${fp}, ` +
      `or --known-hosts-file FILE with the host's line (ssh-keyscan ${p}${target.host}), or add ` +
      `that line to ${USER_KNOWN_HOSTS}`
    );
  };
  const unknownHost = why === undefined ? undefined : { why: `no pin is given, and ${why}`, fix };
  return {
    // Its lines for the host are the pin (the pipeline builds it from this text).
    cfg: named ? { ...cfg, knownHosts: text } : cfg,
    agentKeys: keys,
    connect: (o) => {
      // The first session's pin is built from that text (it says how it was used): name it so.
      const pin =
        named && typeof o.pin === 'object' && o.pin.knownHosts
          ? { ...o.pin, source: USER_KNOWN_HOSTS }
          : o.pin;
      return sshConnect({ ...withAgent(o), pin, unknownHost });
    },
  };
}

/**
 * A check with no connection and no key given: the ssh-agent's keys, if one answers, for the
 * deploy-key check (none: that check says it was skipped).
 */
async function checkAgentKeys(
  cfg: Config,
  planned: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<string[] | undefined> {
  if (!planned.includes('check') || cfg.sshPrivateKey !== undefined || !env.SSH_AUTH_SOCK)
    return undefined;
  return agentKeys(env.SSH_AUTH_SOCK).catch(() => undefined);
}

/** Runs one command with already split options; throws InputError for bad input (before any connection). */
export async function runCommand(
  cmd: Command,
  options: Record<string, string>,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
  nix?: Nix,
): Promise<CommandResult> {
  const given = cliInputs(cmd, options, env);
  const planned = entryStages(cmd.entry ?? 'probe', { planOnly: false, deployAction: 'switch' });
  const building = planned.includes('build');
  // probe, plan and check never change the target; build and check need a flake.
  if (!building && !planned.includes('check')) given.raw['plan-only'] = 'true';
  const facts = options.facts !== undefined ? loadFacts(options.facts) : undefined;
  const connects = facts === undefined && planned.includes('probe');
  // What was typed is checked first, on its own (nothing may be missing yet: the description may
  // give it): a bad option is refused naming it, before Nix reads any description.
  if (connects)
    parseConfig(given.raw, {
      noConnection: true,
      shownAs: given.shownAs,
      keyHow: KEY_HOW,
      sshAgent: { socket: env.SSH_AUTH_SOCK || undefined },
      userKnownHosts: true,
    });
  // The host --flake names describes what the options leave open (before any connection).
  const { raw, shownAs, pinSource }: Described = connects
    ? await withDescription(given.raw, given.shownAs, log, nix)
    : given;
  const parsed = parseConfig(raw, {
    noConnection: !connects,
    shownAs,
    keyHow: KEY_HOW,
    sshAgent: { socket: env.SSH_AUTH_SOCK || undefined },
    userKnownHosts: true,
  });
  const ssh = connects ? await cliSsh(parsed, options, env, log, pinSource) : undefined;
  const cfg = ssh?.cfg ?? parsed;
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
        connect: ssh?.connect,
        agentKeys: ssh ? ssh.agentKeys : await checkAgentKeys(cfg, planned, env),
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
