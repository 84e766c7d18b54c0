/**
 * A host's deploy description: `nixosConfigurations.NAME.config.vpsNixos.deploy` (the option of
 * our NixOS module, nix/modules/vps.nix), read as JSON. Each field fills one input and is checked
 * by that input's own schema (src/inputs.ts); explicit options and workflow inputs win over it.
 * Pure: the JSON in, a typed description or a DescriptionError naming the host and field out.
 */
import { InputError } from '../errors';
import { checkInput, looksLikeKeyMaterial, type InputName, type RawInputs } from '../inputs';
import { keyTypeOf } from '../ssh/hostkeys';
import { parseTarget, type Target } from '../target';

/** What a field's JSON value must be: the type its option has in the module. */
type FieldType = 'string' | 'strings' | 'bool' | 'int';

/**
 * The fields of `vpsNixos.deploy` and the input each fills. No field confirms a wipe, and none
 * holds a secret: wiping is confirmed per run, and a configuration is readable in the Nix store.
 */
export const DESCRIPTION_FIELDS = {
  target: { input: 'target', type: 'string' },
  hostKey: { input: 'known-hosts', type: 'strings' },
  hostKeyFingerprint: { input: 'host-key-fingerprint', type: 'strings' },
  method: { input: 'method', type: 'string' },
  buildHost: { input: 'build-host', type: 'string' },
  useSudo: { input: 'use-sudo', type: 'bool' },
  confirmTimeout: { input: 'confirm-timeout', type: 'int' },
  healthCheck: { input: 'health-check', type: 'string' },
  healthUrl: { input: 'health-url', type: 'string' },
  healthTimeout: { input: 'health-timeout', type: 'int' },
} as const satisfies Record<string, { input: InputName; type: FieldType }>;

export type DescriptionField = keyof typeof DESCRIPTION_FIELDS;
const FIELD_NAMES = Object.keys(DESCRIPTION_FIELDS) as DescriptionField[];

/** The inputs a description can fill. */
export const DESCRIBED_INPUTS: InputName[] = FIELD_NAMES.map((f) => DESCRIPTION_FIELDS[f].input);

/** Where a described value is written, for messages: `vpsNixos.deploy.hostKey of web`. */
export const fieldPath = (host: string, field: DescriptionField): string =>
  `vpsNixos.deploy.${field} of ${host}`;

/** A description is wrong: the host, the field and the fix. Raised before any connection. */
export class DescriptionError extends InputError {
  constructor(
    readonly host: string,
    readonly field: string,
    problem: string,
    fix: string,
  ) {
    super(`vpsNixos.deploy${field ? `.${field}` : ''}`, problem, fix);
    this.message = `host '${host}': vpsNixos.deploy${field ? `.${field}` : ''}: ${problem}`;
  }
}

/** What the evaluation (src/hosts/eval.ts) found for one configuration name. */
export type DescriptionState =
  { state: 'missing' } | { state: 'failed' } | { state: 'read'; description: unknown };

/** Configuration names that may be asked for (eval.ts writes them into its expression as JSON). */
export const CONFIG_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** One host as its configuration describes it; every value checked. */
export interface HostDescription {
  /** nixosConfigurations.NAME */
  name: string;
  /** `user@host[:port]`, as written. */
  target: string;
  /** Public host keys, `type base64` (any comment dropped): the pin, for whatever name the target has. */
  hostKeys: string[];
  /** The other fields' values as the inputs' text (never target or known-hosts). */
  inputs: RawInputs;
  /** The fields that were set. */
  fields: DescriptionField[];
}

/** Fields people may try, and why each is not one. */
const NOT_FIELDS: Record<string, string> = {
  confirmWipe:
    'wiping a disk is confirmed per run, never by the description: give --confirm-wipe /dev/vda (the workflow input confirm-wipe) for the run that installs',
  disk: 'the disk comes from the disko layout, and wiping it is confirmed per run: --confirm-wipe /dev/vda (the workflow input confirm-wipe)',
  knownHosts:
    'write the key alone as hostKey = "ssh-ed25519 AAAA…"; (the host name in the pin comes from target)',
  sshPrivateKey:
    'the private key is never described (a configuration is readable in the Nix store): the CLI takes it from the ssh-agent, --ssh-private-key-file or $VPS_NIXOS_SSH_PRIVATE_KEY, the workflows from the ssh-private-key secret',
  trustOnFirstUse: 'pin the key instead: hostKey = "ssh-ed25519 AAAA…"; (ssh-keyscan HOST)',
  flake: 'the configuration is the one the description is in',
  name: "the name is the configuration's: nixosConfigurations.NAME",
};
NOT_FIELDS.privateKey = NOT_FIELDS.sshPrivateKey!;
NOT_FIELDS.sshKey = NOT_FIELDS.sshPrivateKey!;

const camel = (s: string): string => s.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase());

/** Short enough to quote in a message. */
const shown = (v: unknown): string => {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > 48 ? `${s.slice(0, 45)}…` : s;
};

const jsonType = (v: unknown): string =>
  v === null
    ? 'null'
    : Array.isArray(v)
      ? 'a list'
      : typeof v === 'object'
        ? 'an attribute set'
        : `a ${typeof v}`;

/** `ssh-ed25519 AAAA… [comment]` → `ssh-ed25519 AAAA…`, or what is wrong with it. */
export function publicKeyLine(text: string): string | { problem: string; fix: string } {
  const fix =
    'write the host key as /etc/ssh/ssh_host_ed25519_key.pub on the host holds it, or as ssh-keyscan HOST prints it without the host name: hostKey = "ssh-ed25519 AAAA…";';
  const f = text.trim().split(/\s+/);
  const isKey = (type?: string, b64?: string) =>
    !!type && !!b64 && keyTypeOf(Buffer.from(b64, 'base64')) === type;
  if (isKey(f[0], f[1])) return `${f[0]} ${f[1]}`;
  if (isKey(f[1], f[2]))
    return {
      problem: `'${shown(text)}' is a known_hosts line: it starts with the host name`,
      fix: `give the key alone: hostKey = "${f[1]} ${shown(f[2])}"; (the name comes from target)`,
    };
  return { problem: `'${shown(text)}' is not an SSH public key`, fix };
}

/**
 * Checks one configuration's `vpsNixos.deploy` (JSON). Returns undefined when the host is not
 * described (no module, null, or no field set), else the description; throws DescriptionError.
 */
export function parseDescription(host: string, value: unknown): HostDescription | undefined {
  function fail(field: string, problem: string, fix: string): never {
    throw new DescriptionError(host, field, problem, fix);
  }
  if (value === null || value === undefined) return undefined;
  if (typeof value !== 'object' || Array.isArray(value))
    fail(
      '',
      `is ${jsonType(value)}, not an attribute set`,
      `write vpsNixos.deploy = { target = "root@203.0.113.7"; hostKey = "ssh-ed25519 AAAA…"; }; in nixosConfigurations.${host}`,
    );
  const given = Object.entries(value as Record<string, unknown>).filter(
    // null and [ ] are the module's "not set"
    ([k, v]) => k !== '_module' && v !== null && !(Array.isArray(v) && v.length === 0),
  );
  for (const [k, v] of given) {
    if (typeof v === 'string' && looksLikeKeyMaterial(v))
      fail(
        k,
        'holds a private key (not shown)',
        `remove it now: everything in a configuration is readable in the Nix store; ${NOT_FIELDS.sshPrivateKey}`,
      );
    if (k in DESCRIPTION_FIELDS) continue;
    const known = FIELD_NAMES.join(', ');
    const why = NOT_FIELDS[k] ?? NOT_FIELDS[camel(k)];
    // health-url, health_url, healthurl: the field meant
    const meant = FIELD_NAMES.find((f) => f.toLowerCase() === camel(k).toLowerCase());
    fail(
      k,
      'is not a field of the description',
      why ?? (meant ? `write ${meant}` : `remove it; the fields are ${known}`),
    );
  }
  if (given.length === 0) return undefined;

  const inputs: RawInputs = {};
  const fields: DescriptionField[] = [];
  let hostKeys: string[] = [];
  let target: string | undefined;
  // In the order of DESCRIPTION_FIELDS, whatever order the JSON had.
  const values = new Map(given);
  for (const field of FIELD_NAMES.filter((f) => values.has(f))) {
    const v = values.get(field);
    const { input, type } = DESCRIPTION_FIELDS[field];
    const example = EXAMPLES[field];
    let text: string;
    let list: string[] = [];
    if (type === 'string') {
      if (typeof v !== 'string')
        fail(field, `is ${jsonType(v)}, not a string`, `write ${field} = ${example};`);
      text = (v as string).trim();
      if (text === '') fail(field, 'is empty', `leave it out, or write ${field} = ${example};`);
    } else if (type === 'strings') {
      list =
        typeof v === 'string'
          ? [v]
          : Array.isArray(v)
            ? (v as unknown[]).map((x) => x as string)
            : [];
      if ((typeof v !== 'string' && !Array.isArray(v)) || list.some((x) => typeof x !== 'string'))
        fail(
          field,
          `is ${jsonType(v)}, not a string or a list of strings`,
          `write ${field} = ${example};`,
        );
      list = list.map((x) => x.trim()).filter((x) => x !== '');
      if (list.length === 0) continue; // [ ]: not set
      text = list.join(',');
    } else if (type === 'bool') {
      if (typeof v !== 'boolean')
        fail(
          field,
          `is ${jsonType(v)} (${shown(v)}), not true or false`,
          `write ${field} = ${example};`,
        );
      text = String(v);
    } else {
      if (typeof v !== 'number' || !Number.isInteger(v))
        fail(
          field,
          `is ${jsonType(v)} (${shown(v)}), not a whole number`,
          `write ${field} = ${example};`,
        );
      text = String(v);
    }
    fields.push(field);
    if (field === 'hostKey') {
      hostKeys = list.map((line) => {
        const key = publicKeyLine(line);
        return typeof key === 'string' ? key : fail(field, key.problem, key.fix);
      });
      continue;
    }
    // The input's own schema: the same words as a bad --option or workflow input gets.
    const bad = checkInput(input, field === 'hostKeyFingerprint' ? list.join(',') : text);
    if (bad) fail(field, bad.problem, bad.fix);
    if (field === 'target') target = text;
    else inputs[input] = text;
  }
  if (target === undefined)
    fail(
      'target',
      `is missing: the host is described (${fields.join(', ')}), but not where it is`,
      `add target = "root@203.0.113.7"; to vpsNixos.deploy of nixosConfigurations.${host}`,
    );
  return { name: host, target: target as string, hostKeys, inputs, fields };
}

const EXAMPLES: Record<DescriptionField, string> = {
  target: '"root@203.0.113.7"',
  hostKey: '"ssh-ed25519 AAAA…"',
  hostKeyFingerprint: '"SHA256:…"',
  method: '"auto"',
  buildHost: '"builder@build.example"',
  useSudo: 'true',
  confirmTimeout: '60',
  healthCheck: '"systemctl is-active nginx.service"',
  healthUrl: '"https://203.0.113.7/"',
  healthTimeout: '60',
};

/** known_hosts lines pinning these keys for the target. */
export function knownHostsLines(target: Target, keys: readonly string[]): string {
  return keys.map((k) => `${target.knownHostsName} ${k}\n`).join('');
}

const PINS: InputName[] = ['known-hosts', 'host-key-fingerprint'];
const given = (v: string | undefined): v is string => v !== undefined && v !== '';

export interface Merged {
  raw: RawInputs;
  /** The inputs the description filled. */
  described: InputName[];
  /** The inputs the description sets that explicit values replaced. */
  overridden: InputName[];
}

/**
 * The inputs of a run of this host: explicit ones (options, workflow inputs) win, the description
 * fills the rest. The pin is one unit: any explicit pin replaces both of the description's, so
 * an explicit known-hosts never lets a described fingerprint in beside it. The described keys
 * pin the name of the target the run uses (an explicit target elsewhere must present them too).
 */
export function mergeDescription(explicit: RawInputs, d: HostDescription): Merged {
  const raw: RawInputs = { ...explicit };
  const described: InputName[] = [];
  const overridden: InputName[] = [];
  const fill = (name: InputName, value: string | undefined) => {
    if (!given(value)) return;
    if (given(explicit[name])) overridden.push(name);
    else {
      raw[name] = value;
      described.push(name);
    }
  };
  fill('target', d.target);
  const explicitPin = PINS.some((p) => given(explicit[p]));
  const target = parseTarget((raw.target ?? '').trim());
  const pins: RawInputs = {
    'known-hosts':
      d.hostKeys.length > 0 && typeof target !== 'string'
        ? knownHostsLines(target, d.hostKeys)
        : undefined,
    'host-key-fingerprint': d.inputs['host-key-fingerprint'],
  };
  for (const p of PINS) {
    if (!given(pins[p])) continue;
    if (explicitPin) overridden.push(p);
    else {
      raw[p] = pins[p];
      described.push(p);
    }
  }
  for (const [name, value] of Object.entries(d.inputs) as [InputName, string][])
    if (!PINS.includes(name)) fill(name, value);
  return { raw, described, overridden };
}
