/**
 * Host descriptions in the CLI: `vps-nixos hosts` (the described hosts of a flake; `--json` is
 * the reusable workflows' fan-out matrix), and the description of the configuration a connecting
 * command's --flake names, merged under its explicit options.
 */
import { InputError } from '../errors';
import { checkInput, type InputName, type RawInputs } from '../inputs';
import { NixError, localNix, type Nix } from '../nix/nix';
import type { Logger } from '../pipeline/run';
import { jsonText } from '../report/render';
import {
  DESCRIPTION_FIELDS,
  fieldPath,
  mergeDescription,
  parseDescription,
  DescriptionError,
  CONFIG_NAME_RE,
  type DescriptionField,
} from '../hosts/description';
import { readDescriptions } from '../hosts/eval';
import {
  ROW_INPUTS,
  describedFleet,
  planFleet,
  splitFlake,
  type Fleet,
  type HostRow,
} from '../hosts/fleet';
import { readFileOption } from './facts-file';

/** The description field that fills an input. */
const FIELD_OF = Object.fromEntries(
  (Object.keys(DESCRIPTION_FIELDS) as DescriptionField[]).map((f) => [
    DESCRIPTION_FIELDS[f].input,
    f,
  ]),
) as Partial<Record<InputName, DescriptionField>>;

/** The explicit per-host inputs of `hosts`' options (--known-hosts-file read). */
function explicitInputs(options: Record<string, string>): RawInputs {
  const raw: RawInputs = {};
  for (const n of ROW_INPUTS)
    if (options[n] !== undefined && options[n] !== '') raw[n] = options[n];
  const file = options['known-hosts-file'];
  if (file !== undefined && file !== '') {
    if (raw['known-hosts'] !== undefined)
      throw new InputError(
        'known-hosts-file',
        'and --known-hosts are both given',
        'give one of them',
      );
    raw['known-hosts'] = readFileOption('known-hosts-file', file);
  }
  return raw;
}

/** The fan-out for `hosts`' options: one `nix eval` (none for the old JSON list). */
export async function fleetFor(
  options: Record<string, string>,
  nix: Nix = localNix(),
): Promise<Fleet> {
  const req = {
    flake: options.flake ?? '.',
    hosts: options.hosts,
    explicit: explicitInputs(options),
    targetOptional: options['target-optional'] === 'true',
  };
  const plan = planFleet(req);
  if (plan.kind === 'list') return { rows: plan.rows, undescribed: [], descriptions: new Map() };
  return describedFleet(plan, await readDescriptions(nix, plan.ref, plan.names), req);
}

/** How a row's host key is pinned, in a few words. */
function pinText(r: HostRow, fleet: Fleet, explicit: RawInputs): string {
  if (explicit['known-hosts'] || explicit['host-key-fingerprint']) return 'pin: given';
  const d = fleet.descriptions.get(r.name);
  const keys = d?.hostKeys.length ?? 0;
  const fps = r['host-key-fingerprint'] ? r['host-key-fingerprint'].split(',').length : 0;
  if (keys + fps === 0) return 'pin: none described (the CLI then reads ~/.ssh/known_hosts)';
  return `pin: ${[keys && `${keys} host key(s)`, fps && `${fps} fingerprint(s)`].filter(Boolean).join(' + ')}`;
}

/** `vps-nixos hosts`: a line per host (or the matrix JSON); changes nothing, connects nowhere. */
export async function hostsCommand(
  options: Record<string, string>,
  _log?: Logger,
  nix?: Nix,
): Promise<string> {
  const fleet = await fleetFor(options, nix);
  if (options.json === 'true') return jsonText({ host: fleet.rows });
  const explicit = explicitInputs(options);
  const w = (k: 'name' | 'target') =>
    Math.max(0, ...fleet.rows.map((r) => (r[k] || '(no target)').length));
  const lines = fleet.rows.map((r) => {
    const more = ROW_INPUTS.filter(
      (n) => r[n] && !['target', 'known-hosts', 'host-key-fingerprint'].includes(n),
    ).map((n) => `${n} ${r[n]}`);
    return [
      r.name.padEnd(w('name')),
      (r.target || '(no target)').padEnd(w('target')),
      pinText(r, fleet, explicit),
      ...more,
    ].join('  ');
  });
  const skipped = fleet.undescribed.length
    ? [`not described (no vpsNixos.deploy.target): ${fleet.undescribed.join(', ')}`]
    : [];
  return [...lines, ...skipped].join('\n') + '\n';
}

/** What a connecting command gets from the description of the configuration --flake names. */
export interface Described {
  raw: RawInputs;
  shownAs: Partial<Record<InputName, string>>;
  /** Where the pin came from, when the description gave it. */
  pinSource?: string;
}

/**
 * Reads the description of the configuration `raw.flake` names (one `nix eval`) and fills the
 * inputs the options leave open. Nothing to read (no flake, no module, no target described) keeps
 * the options as they are; with no --target either, that is refused here, before any connection.
 */
export async function withDescription(
  raw: RawInputs,
  shownAs: Partial<Record<InputName, string>>,
  log: Logger,
  nix: Nix = localNix(),
): Promise<Described> {
  const same = { raw, shownAs };
  if (raw.flake === undefined || checkInput('flake', raw.flake)) return same;
  const { ref, name } = splitFlake(raw.flake);
  if (name === undefined || !CONFIG_NAME_RE.test(name)) return same;
  const target = raw.target !== undefined && raw.target !== '';
  let found;
  try {
    found = (await readDescriptions(nix, ref, [name])).get(name);
  } catch (err) {
    // Everything is given: a runner without Nix can still probe and plan.
    if (err instanceof NixError && target) {
      log.warn(`no host description read (${err.message}); going on with the options given`);
      return same;
    }
    throw err;
  }
  if (found?.state === 'failed')
    throw new DescriptionError(
      name,
      '',
      'does not evaluate (the configuration throws)',
      `see why: nix eval '${ref}#nixosConfigurations.${name}.config.vpsNixos.deploy' --show-trace`,
    );
  const d = found?.state === 'read' ? parseDescription(name, found.description) : undefined;
  if (!d) {
    if (target) return same;
    throw new InputError(
      'target',
      found?.state === 'missing'
        ? `is not given, and ${ref} has no nixosConfigurations.${name} to describe it`
        : `is not given, and nixosConfigurations.${name} describes no host (no vpsNixos.deploy.target)`,
      `give --target user@host[:port], or describe the host in its configuration: vpsNixos.deploy = { target = "root@203.0.113.7"; hostKey = "ssh-ed25519 AAAA…"; }; (our module: nixosModules.default)`,
    );
  }
  const merged = mergeDescription(raw, d);
  const shown = { ...shownAs };
  for (const n of merged.described) {
    const field = n === 'known-hosts' ? 'hostKey' : FIELD_OF[n];
    if (field) shown[n] = fieldPath(name, field);
  }
  const fields = merged.described.map((n) => (n === 'known-hosts' ? 'hostKey' : FIELD_OF[n]));
  log.info(
    `host description: nixosConfigurations.${name}.config.vpsNixos.deploy: ${fields.join(', ') || 'nothing the options leave open'}` +
      (merged.overridden.length
        ? `; the options given replace its ${merged.overridden.map((n) => (n === 'known-hosts' ? 'hostKey' : FIELD_OF[n])).join(', ')}`
        : ''),
  );
  const pinSource = merged.described.includes('known-hosts')
    ? fieldPath(name, 'hostKey')
    : merged.described.includes('host-key-fingerprint')
      ? fieldPath(name, 'hostKeyFingerprint')
      : undefined;
  return { raw: merged.raw, shownAs: shown, pinSource };
}
