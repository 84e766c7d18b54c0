/**
 * The fan-out: which hosts a run covers (`all` described hosts of a flake, some names, one
 * configuration, or the old JSON list) and the matrix row of each, with every per-host input
 * resolved (explicit values first, then the description). Pure: the descriptions come in as the
 * evaluation found them (src/hosts/eval.ts). The reusable workflows fan out over these rows.
 */
import { InputError } from '../errors';
import { checkInput, type InputName, type RawInputs } from '../inputs';
import { formatTarget, parseTarget } from '../target';
import {
  CONFIG_NAME_RE,
  DescriptionError,
  mergeDescription,
  parseDescription,
  type DescriptionState,
  type HostDescription,
} from './description';

/**
 * The inputs a row carries besides its name and flake: the per-host ones (every input a
 * description fills, and confirm-wipe, which only a run gives).
 */
export const ROW_INPUTS = [
  'target',
  'confirm-wipe',
  'known-hosts',
  'host-key-fingerprint',
  'method',
  'build-host',
  'use-sudo',
  'confirm-timeout',
  'health-check',
  'health-url',
  'health-timeout',
] as const satisfies readonly InputName[];

/** One host of the fan-out: a job of the workflows' matrix. Every value a string ('' = not given). */
export type HostRow = {
  /** The job's name: the configuration's, or (old list) the entry's. */
  name: string;
  /** `REF#NAME`. */
  flake: string;
  /** The machine, `host[:port]` lower-case: one concurrency group per machine. */
  key: string;
  /** The name, safe in file and artifact names. */
  id: string;
} & Record<(typeof ROW_INPUTS)[number], string>;

/** What the caller asked for. */
export interface FleetRequest {
  /** `REF` or `REF#NAME` (the old list: the default flake of its entries). */
  flake: string;
  /** `all`, names (space or comma separated), or the old JSON list; '' or undefined: none. */
  hosts?: string;
  /** Explicit per-host inputs (options, workflow inputs): they win over the descriptions. */
  explicit: RawInputs;
  /** A host may have no target (update.yml then compares the old lock's system with the new). */
  targetOptional?: boolean;
}

/** What to evaluate: every configuration, some names, or nothing (the old list). */
export type FleetPlan =
  { kind: 'describe'; ref: string; names: string[] | 'all' } | { kind: 'list'; rows: HostRow[] };

const slug = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, '-');

/** `REF` or `REF#NAME`. */
export function splitFlake(text: string): { ref: string; name?: string } {
  const m = /^([^#\s]+)(?:#([^#\s]+))?$/.exec(text.trim());
  if (!m)
    throw new InputError(
      'flake',
      `'${text}' is not a flake, or a flake output reference`,
      'write the flake (., ./infra, github:you/infra) for its described hosts, or PATH#NAME for nixosConfigurations.NAME',
    );
  return { ref: m[1]!, name: m[2] };
}

const nameError = (n: string) =>
  new InputError(
    'hosts',
    `'${n}' is not a configuration name`,
    'write the NAME of nixosConfigurations.NAME (letters, digits, _ . -), names separated by spaces or commas, or all',
  );

/** Reads the request (no evaluation yet): what must be evaluated, or the old list's rows. */
export function planFleet(req: FleetRequest): FleetPlan {
  const hosts = (req.hosts ?? '').trim();
  const target = req.explicit.target ?? '';
  const { ref, name } = splitFlake(req.flake);
  if (hosts !== '' && target !== '')
    throw new InputError(
      'hosts',
      'and target are both given',
      'give target (one host) or hosts, not both',
    );
  if (hosts.startsWith('[') || hosts.startsWith('{'))
    return { kind: 'list', rows: listRows(hosts, req) };
  if (hosts !== '') {
    if (name !== undefined)
      throw new InputError(
        'flake',
        `names one configuration (${name}) while hosts is ${hosts === 'all' ? 'all' : 'a list of names'}`,
        `give the flake alone (${ref}) with hosts, or drop hosts`,
      );
    if (hosts === 'all') return { kind: 'describe', ref, names: 'all' };
    const names = [...new Set(hosts.split(/[\s,]+/).filter(Boolean))];
    const bad = names.find((n) => !CONFIG_NAME_RE.test(n));
    if (bad !== undefined) throw nameError(bad);
    return { kind: 'describe', ref, names };
  }
  if (name !== undefined) {
    if (!CONFIG_NAME_RE.test(name)) throw nameError(name);
    return { kind: 'describe', ref, names: [name] };
  }
  if (target !== '')
    throw new InputError(
      'flake',
      `'${req.flake}' names no configuration for target ${target}`,
      `write flake PATH#NAME (e.g. ${ref}#my-vps) with target, or describe the host and use hosts`,
    );
  return { kind: 'describe', ref, names: 'all' };
}

/** The machine a target is: `host[:port]` lower-case, as the concurrency group names it. */
function machineKey(target: string): string {
  const t = parseTarget(target.trim());
  if (typeof t === 'string') return target.replace(/^[^@]*@/, '').toLowerCase();
  return formatTarget({ ...t, host: t.host.toLowerCase() }).replace(/^[^@]*@/, '');
}

function row(name: string, flake: string, inputs: RawInputs): HostRow {
  const r = { name, flake, key: inputs.target ? machineKey(inputs.target) : '', id: slug(name) };
  return Object.assign(r, ...ROW_INPUTS.map((n) => ({ [n]: inputs[n] ?? '' }))) as HostRow;
}

/** The result of a fan-out: the rows, and the configurations that describe no host. */
export interface Fleet {
  rows: HostRow[];
  /** Configurations read that describe no host (no module, or no target). */
  undescribed: string[];
  /** The descriptions the rows came from, by name. */
  descriptions: Map<string, HostDescription>;
}

/**
 * The rows of the described hosts asked for: each description checked, explicit inputs merged
 * over it; then no machine twice. Throws DescriptionError (host and field) or InputError.
 */
export function describedFleet(
  plan: Extract<FleetPlan, { kind: 'describe' }>,
  found: Map<string, DescriptionState>,
  req: FleetRequest,
): Fleet {
  const rows: HostRow[] = [];
  const undescribed: string[] = [];
  const descriptions = new Map<string, HostDescription>();
  const names = plan.names === 'all' ? [...found.keys()].sort() : plan.names;
  for (const name of names) {
    const state = found.get(name) ?? { state: 'missing' };
    if (state.state === 'missing')
      throw new InputError(
        'hosts',
        `${plan.ref} has no nixosConfigurations.${name}`,
        `check the name (vps-nixos hosts --flake ${plan.ref} lists the described hosts)`,
      );
    if (state.state === 'failed')
      throw new DescriptionError(
        name,
        '',
        'does not evaluate (the configuration throws)',
        `see why: nix eval '${plan.ref}#nixosConfigurations.${name}.config.vpsNixos.deploy' --show-trace`,
      );
    const d = parseDescription(name, state.description);
    if (d) descriptions.set(name, d);
    const flake = `${plan.ref}#${name}`;
    if (!d && plan.names === 'all') {
      undescribed.push(name);
      continue;
    }
    const { raw } = d ? mergeDescription(req.explicit, d) : { raw: { ...req.explicit } };
    if (!raw.target && !req.targetOptional)
      throw new DescriptionError(
        name,
        'target',
        `is not set in nixosConfigurations.${name}, and no target is given`,
        `describe the host: vpsNixos.deploy.target = "root@203.0.113.7"; (and hostKey) in its configuration, with our module imported (nixosModules.default); or give target`,
      );
    rows.push(row(name, flake, checked(name, raw)));
  }
  if (rows.length === 0)
    throw new InputError(
      'hosts',
      `${plan.ref} describes no host${undescribed.length ? ` (not described: ${undescribed.join(', ')})` : ''}`,
      'set vpsNixos.deploy.target (and hostKey) in the configurations to deploy, with our module imported (nixosModules.default)',
    );
  distinct(rows, descriptions);
  return { rows, undescribed, descriptions };
}

/** The explicit inputs of a row, each by its schema (the described ones were checked already). */
function checked(host: string, raw: RawInputs): RawInputs {
  for (const n of ROW_INPUTS) {
    const v = raw[n];
    if (v === undefined || v === '') continue;
    const bad = checkInput(n, v);
    if (bad) throw new InputError(n, `${bad.problem} (host ${host})`, bad.fix);
  }
  return raw;
}

/** No machine under two names, no name twice. */
function distinct(rows: HostRow[], descriptions?: Map<string, HostDescription>): void {
  const byKey = new Map<string, HostRow>();
  const byId = new Map<string, HostRow>();
  for (const r of rows) {
    const other = r.key ? byKey.get(r.key) : undefined;
    if (other) {
      const both = descriptions?.has(r.name) && descriptions.has(other.name);
      if (both)
        throw new DescriptionError(
          r.name,
          'target',
          `is ${r.target}, the machine ${other.name} is described at too (${other.target}): two names for one machine`,
          `one configuration per machine: correct vpsNixos.deploy.target of ${r.name} or of ${other.name}, or remove one`,
        );
      throw new InputError(
        'hosts',
        `the same host twice: ${r.key} (${other.name} and ${r.name})`,
        'list each machine once',
      );
    }
    if (byId.has(r.id))
      throw new InputError(
        'hosts',
        `the same name twice: ${r.name}`,
        'give each entry its own name',
      );
    if (r.key) byKey.set(r.key, r);
    byId.set(r.id, r);
  }
}

const LIST_KEYS = ['target', 'flake', 'name', 'confirm-wipe'];

/**
 * The old form: a JSON list of "user@host" or {target, flake, name, confirm-wipe}. Its hosts'
 * descriptions are not read: each entry says all there is, the explicit inputs the rest.
 */
function listRows(text: string, req: FleetRequest): HostRow[] {
  const fail = (problem: string, fix = 'see the hosts input of deploy.yml') =>
    new InputError('hosts', problem, fix);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw fail(
      `is not valid JSON: ${(err as Error).message}`,
      'write all, host names, or a JSON list',
    );
  }
  if (!Array.isArray(value) || value.length === 0)
    throw fail(`must be a non-empty JSON list, not ${JSON.stringify(value)}`);
  const rows = value.map((entry: unknown) => {
    const e: Record<string, unknown> =
      typeof entry === 'string'
        ? { target: entry }
        : entry && typeof entry === 'object' && !Array.isArray(entry)
          ? (entry as Record<string, unknown>)
          : (() => {
              throw fail(
                `each entry is "user@host" or {"target": "user@host", "flake": ..., "name": ...}, not ${JSON.stringify(entry)}`,
              );
            })();
    const extra = Object.keys(e).filter((k) => !LIST_KEYS.includes(k));
    if (extra.length > 0)
      throw fail(
        `unknown key ${extra.join(', ')} in ${JSON.stringify(e)} (known: ${LIST_KEYS.join(', ')})`,
      );
    if (LIST_KEYS.some((k) => e[k] !== undefined && e[k] !== null && typeof e[k] !== 'string'))
      throw fail(`target, flake, name and confirm-wipe are strings: ${JSON.stringify(e)}`);
    const str = (k: string) => (typeof e[k] === 'string' ? (e[k] as string) : '');
    const target = str('target');
    if (target === '' && !req.targetOptional)
      throw fail(`entry without a target: ${JSON.stringify(e)}`);
    const flake = str('flake') || req.flake;
    if (!flake.includes('#'))
      throw fail(
        `no flake for ${target || JSON.stringify(e)}: give the flake input as PATH#NAME or a flake in the entry`,
      );
    const name =
      str('name') || (target ? target.replace(/^[^@]*@/, '') : flake.replace(/^[^#]*#/, ''));
    const inputs: RawInputs = {
      ...req.explicit,
      target,
      'confirm-wipe': str('confirm-wipe') || req.explicit['confirm-wipe'],
    };
    if (checkInput('flake', flake)) throw fail(`'${flake}' is not PATH#NAME (${name})`);
    return row(name, flake, checked(name, inputs));
  });
  distinct(rows);
  return rows;
}
