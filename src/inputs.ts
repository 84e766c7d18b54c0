import { statSync } from 'node:fs';
import { z } from 'zod';
import { utils as sshUtils } from 'ssh2';
import { InputError } from './errors';
import { parseSize } from './size';
import { namesPort, parseTarget } from './target';
import { parseKnownHosts, pinFor } from './ssh/hostkeys';
import { displayUrl } from './net/download';
import { DEPLOY_ACTIONS } from './deploy/rebuild';
import {
  INFECT_DEFAULT_CHANNEL,
  INFECT_DEFAULT_REVISION,
  INFECT_DEFAULT_SHA256,
  infectRawUrl,
} from './infect/script';

/** How the planner may install NixOS. */
export const METHODS = ['auto', 'kexec', 'infect', 'deploy-only'] as const;
export type MethodInput = (typeof METHODS)[number];

const PATCH_UDEVADM = ['auto', 'true', 'false'] as const;

/** Where `push-to` sends what the binary caches do not serve: `cachix push NAME`, `attic push CACHE`. */
export interface PushTarget {
  tool: 'cachix' | 'attic';
  cache: string;
}

/** A flake output reference, `path#name`. */
export interface FlakeRef {
  ref: string;
  name: string;
}

/** One input as action.yml documents it. */
export interface InputSpec {
  description: string;
  required: boolean;
  default?: string;
  secret?: boolean;
}

/** An input as documented, plus the Config field it fills and the schema that parses its text. */
interface InputField extends InputSpec {
  key: string;
  /**
   * Parses the given text, or the default. Without a default the Config field is optional, unless
   * this supplies the value for "not given" itself with .default() (lists: empty).
   */
  parse: z.ZodType;
}

type Ctx = z.RefinementCtx;

/** Reports a bad input with its fix; `path` (a Config field) is for checks over the whole object. */
function fail(ctx: Ctx, message: string, fix: string, path?: string[]): typeof z.NEVER {
  ctx.addIssue({ code: 'custom', message, params: { fix }, ...(path && { path }) });
  return z.NEVER;
}

const booleanInput = z.string().transform((s, ctx) => {
  if (/^(true|True|TRUE)$/.test(s.trim())) return true;
  if (/^(false|False|FALSE)$/.test(s.trim())) return false;
  return fail(ctx, `'${s}' is not a boolean`, 'write true or false');
});

/** One word from a fixed list. */
const oneOf = <T extends string>(values: readonly T[], what: string, fix: string) =>
  z
    .string()
    .transform(
      (s, ctx) => values.find((v) => v === s.trim()) ?? fail(ctx, `'${s}' is not ${what}`, fix),
    );

const sizeInput = z.string().transform((s, ctx) => {
  const bytes = parseSize(s);
  if (typeof bytes === 'string')
    return fail(ctx, bytes, 'write a size such as 700MiB, 1GiB or 768M');
  return bytes;
});

const countInput = (min: number, max: number, unit: string) =>
  z.string().transform((s, ctx) => {
    const n = Number(s.trim());
    if (!/^\s*\d+\s*$/.test(s) || n < min || n > max) {
      return fail(
        ctx,
        `'${s}' is not a whole number from ${min} to ${max}`,
        `write ${unit} as a whole number`,
      );
    }
    return n;
  });

const targetInput = z.string().transform((s, ctx) => {
  const t = parseTarget(s.trim());
  if (typeof t === 'string') {
    return fail(
      ctx,
      `'${s}' is not a valid target: ${t}`,
      'write user@host[:port], e.g. root@203.0.113.7 or root@[2001:db8::7]:2222',
    );
  }
  return t;
});

const privateKeyInput = z.string().transform((s, ctx) => {
  const text = s.trim() + '\n';
  const parsed = sshUtils.parseKey(text);
  if (parsed instanceof Error) {
    const msg = parsed.message;
    if (/encrypted/i.test(msg)) {
      return fail(
        ctx,
        'the private key is encrypted with a passphrase',
        'use a dedicated deploy key without a passphrase: ssh-keygen -t ed25519 -N "" -f deploy_key',
      );
    }
    if (!/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
      return fail(
        ctx,
        'this is not a private key',
        'paste the whole private key file, from -----BEGIN OPENSSH PRIVATE KEY----- to the END line',
      );
    }
    return fail(
      ctx,
      `the private key format is not supported (${msg})`,
      'convert it to the OpenSSH format in place: ssh-keygen -p -N "" -f KEYFILE, or make a new one with ssh-keygen -t ed25519',
    );
  }
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || !key.isPrivateKey()) {
    return fail(
      ctx,
      'this is a public key, not a private key',
      'give the private key file (without .pub)',
    );
  }
  return text;
});

const knownHostsInput = z.string().transform((s, ctx) => {
  const { entries, errors } = parseKnownHosts(s);
  if (errors.length)
    return fail(
      ctx,
      `is not valid known_hosts: ${errors.join('; ')}`,
      'use lines as printed by ssh-keyscan HOST',
    );
  if (entries.length === 0)
    return fail(ctx, 'has no host key lines', 'use lines as printed by ssh-keyscan HOST');
  return s;
});

const fingerprintInput = z.string().transform((s, ctx) => {
  const fps = s.split(/[\s,]+/).filter(Boolean);
  const bad = fps.find((f) => !/^SHA256:[A-Za-z0-9+/]{43}$/.test(f));
  if (bad !== undefined || fps.length === 0) {
    return fail(
      ctx,
      `'${bad ?? s}' is not a SHA256 host key fingerprint`,
      'write SHA256:<43 base64 characters>, as printed by ssh-keyscan HOST | ssh-keygen -lf -',
    );
  }
  return fps;
});

const flakeInput = z.string().transform((s, ctx): FlakeRef => {
  const [, ref, name] = /^([^#\s]+)#([^#\s]+)$/.exec(s.trim()) ?? [];
  if (!ref || !name)
    return fail(
      ctx,
      `'${s}' is not a flake output reference`,
      'write PATH#NAME for nixosConfigurations.NAME, e.g. .#my-vps',
    );
  return { ref, name };
});

const sha256Input = z
  .string()
  .transform((s, ctx) =>
    /^[0-9a-fA-F]{64}$/.test(s.trim())
      ? s.trim().toLowerCase()
      : fail(ctx, `'${s}' is not a sha256`, 'write the 64 hex digits sha256sum prints'),
  );

const storePathInput = z
  .string()
  .transform((s, ctx) =>
    /^\/nix\/store\/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+$/.test(s.trim())
      ? s.trim()
      : fail(ctx, `'${s}' is not a Nix store path`, 'give a /nix/store/… path from nix build'),
  );

/**
 * A file on the runner or a download: an http(s) URL (scheme case-insensitive, written lowercase
 * after) or the path of a file that exists now. Other schemes (file://, ftp://) are refused: a
 * local file is given as a path; whether a hash is needed is checked with the other inputs.
 * Messages show a URL without its user info and query (where tokens live).
 */
const fileOrUrlInput = (fix: string, keywords: readonly string[] = []) =>
  z.string().transform((s, ctx) => {
    const v = s.trim();
    if (v === '') return undefined; // blank is "not given", as '' is
    if (keywords.includes(v)) return v;
    const shown = displayUrl(v);
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(v)?.[1];
    if (scheme !== undefined) {
      const lower = scheme.toLowerCase();
      if (lower === 'file')
        return fail(ctx, `'${shown}' is a file:// URL`, `give the file as a path instead; ${fix}`);
      if (lower !== 'https' && lower !== 'http')
        return fail(ctx, `'${shown}': ${lower}:// is not supported`, fix);
      let host = '';
      try {
        host = new URL(v).hostname;
      } catch {
        // reported below
      }
      if (!host) return fail(ctx, `'${shown}' is not a valid URL`, fix);
      return lower + v.slice(scheme.length);
    }
    if (/^https?:/i.test(v)) return fail(ctx, `'${shown}' is not a valid URL`, fix);
    let isFile: boolean;
    try {
      isFile = statSync(v).isFile();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return fail(
        ctx,
        `'${v}' is not a file: ${code === 'ENOENT' ? 'it does not exist' : `cannot read it (${code})`}`,
        fix,
      );
    }
    if (!isFile) return fail(ctx, `'${v}' is not a file (a directory?)`, fix);
    return v;
  });

/**
 * The action's inputs (same names as the CLI's options), in action.yml's order: how each is
 * documented, the Config field it fills and how its text is parsed. action.yml must say the same.
 */
export const INPUTS = {
  target: {
    key: 'target',
    description: 'SSH target: user@host[:port] (IPv4, [IPv6] or hostname); user defaults to root',
    required: true,
    parse: targetInput,
  },
  'ssh-private-key': {
    key: 'sshPrivateKey',
    description:
      'Private key (OpenSSH format) that logs in to the target; masked, kept 0600, removed in the post step',
    required: true,
    secret: true,
    parse: privateKeyInput,
  },
  'known-hosts': {
    key: 'knownHosts',
    description:
      'known_hosts lines pinning the target host key (plain, [host]:port and hashed |1| entries)',
    required: false,
    parse: knownHostsInput,
  },
  'host-key-fingerprint': {
    key: 'hostKeyFingerprints',
    description:
      'Pinned host key fingerprint(s), SHA256:… as printed by ssh-keygen -lf; comma separated',
    required: false,
    parse: fingerprintInput.default(() => []),
  },
  'trust-on-first-use': {
    key: 'trustOnFirstUse',
    description:
      'Accept the host key the target presents when nothing is pinned; it is printed and written to the host-key output',
    required: false,
    default: 'false',
    parse: booleanInput,
  },
  method: {
    key: 'method',
    description: 'auto | kexec | infect | deploy-only',
    required: false,
    default: 'auto',
    parse: oneOf(METHODS, 'a method', `write one of ${METHODS.join(', ')}`),
  },
  'plan-only': {
    key: 'planOnly',
    description: 'Probe and plan, print the plan, change nothing on the target',
    required: false,
    default: 'false',
    parse: booleanInput,
  },
  flake: {
    key: 'flake',
    description: 'Flake output to install/deploy, e.g. .#my-vps (optional in plan-only mode)',
    required: false,
    parse: flakeInput,
  },
  'min-ram-kexec': {
    key: 'minRamKexecBytes',
    description:
      'Least MemTotal for the kexec method (MemTotal is below nominal RAM: a 384 MB VPS reports ~331 MiB, a 512 MB one ~457 MiB; measured: both install with the initrd-only installer, the 384 MB one with its root on ramfs)',
    required: false,
    default: '320MiB',
    parse: sizeInput,
  },
  'min-ram-infect': {
    key: 'minRamInfectBytes',
    description: 'Least MemTotal for the in-place infect method',
    required: false,
    default: '700MiB',
    parse: sizeInput,
  },
  'allow-low-ram': {
    key: 'allowLowRam',
    description: 'Plan below the RAM floors anyway, with a warning',
    required: false,
    default: 'false',
    parse: booleanInput,
  },
  reinstall: {
    key: 'reinstall',
    description: 'Allow re-installing a host that already runs NixOS',
    required: false,
    default: 'false',
    parse: booleanInput,
  },
  'connect-timeout': {
    key: 'connectTimeoutSeconds',
    description: 'Seconds to wait for one SSH connection (TCP + handshake)',
    required: false,
    default: '20',
    parse: countInput(1, 600, 'seconds'),
  },
  'connect-retries': {
    key: 'connectRetries',
    description:
      'Extra SSH connection attempts after a network failure (never after a key mismatch or a refused login)',
    required: false,
    default: '3',
    parse: countInput(0, 20, 'the number of retries'),
  },
  'closure-budget': {
    key: 'closureBudgetBytes',
    description:
      'Largest allowed system closure (NAR bytes, e.g. 3GiB); over it the run fails before any SSH connection',
    required: false,
    parse: sizeInput,
  },
  'installer-budget': {
    key: 'installerBudgetBytes',
    description: 'Largest allowed compressed kexec tarball (e.g. 400MiB)',
    required: false,
    parse: sizeInput,
  },
  'disko-with-deps': {
    key: 'diskoWithDeps',
    description:
      "Build disko's destroyFormatMount (tools included) instead of destroyFormatMountNoDeps (the installer already has them); the legacy names diskoScript(NoDeps) are used when absent",
    required: false,
    default: 'false',
    parse: booleanInput,
  },
  cache: {
    key: 'cache',
    description: 'Cache the built closure (a zstd file binary cache) between runs',
    required: false,
    default: 'true',
    parse: booleanInput,
  },
  'cache-max-size': {
    key: 'cacheMaxBytes',
    description:
      'Do not save a closure cache larger than this (the Actions cache holds 10 GB per repository)',
    required: false,
    default: '4GiB',
    parse: sizeInput,
  },
  'push-to': {
    key: 'pushTo',
    description:
      "Push the closure's paths the binary caches do not serve to your own binary cache instead of the Actions cache: cachix:NAME or attic:CACHE (that CLI on PATH, logged in)",
    required: false,
    parse: z.string().transform((s, ctx): PushTarget => {
      const m = /^(cachix|attic):([A-Za-z0-9][A-Za-z0-9._:/-]*)$/.exec(s.trim());
      return m
        ? { tool: m[1] as PushTarget['tool'], cache: m[2]! }
        : fail(
            ctx,
            `'${s}' is not cachix:NAME or attic:CACHE`,
            'write e.g. cachix:my-cache or attic:my-server:my-cache',
          );
    }),
  },
  'github-token': {
    key: 'githubToken',
    description:
      "Token that deletes this configuration's previous closure-cache entry once a new one is saved (needs permissions: actions: write); without it old entries wait for GitHub's 7-day eviction",
    required: false,
    secret: true,
    parse: z.string().transform((s) => s.trim()),
  },
  'allow-preflight-errors': {
    key: 'allowPreflightErrors',
    description:
      'Go on even when the preflight check of the configuration finds errors (they are still reported)',
    required: false,
    default: 'false',
    parse: booleanInput,
  },
  'kexec-tarball': {
    key: 'kexecTarball',
    description:
      'Kexec installer tarball: empty for the one released with this version (checked against the sha256 in the release; built from nix/ when this version has none), build to build ours from nix/, a path, or an http(s) URL (then kexec-tarball-sha256 is required)',
    required: false,
    parse: fileOrUrlInput(
      'give the path of a kexec tarball (kexec/run, kexec/bzImage, kexec/initrd inside), an https:// URL with kexec-tarball-sha256, build (ours, built from nix/), or leave it empty for the released one',
      ['build'],
    ),
  },
  'kexec-tarball-sha256': {
    key: 'kexecTarballSha256',
    description:
      'sha256 (hex) the kexec tarball must have; checked on the runner and again on the target',
    required: false,
    parse: sha256Input,
  },
  'confirm-wipe': {
    key: 'confirmWipe',
    description:
      'The disk the install wipes, e.g. /dev/vda: must name the disk the probe found and the disk script formats; nothing is wiped without it',
    required: false,
    parse: z
      .string()
      .transform((s, ctx) =>
        /^\/dev\/[A-Za-z0-9._/-]+$/.test(s.trim()) && !s.includes('..')
          ? s.trim()
          : fail(
              ctx,
              `'${s}' is not a disk device path`,
              'write the whole disk, e.g. /dev/vda or /dev/sda',
            ),
      ),
  },
  'zram-size': {
    key: 'zramBytes',
    description: 'zram swap size (e.g. 1GiB); default: the RAM size, at most 4 GiB',
    required: false,
    parse: sizeInput,
  },
  'swap-size': {
    key: 'swapBytes',
    description: 'Swapfile on the root disk before kexec (e.g. 2GiB, 0 for none); never on a tmpfs',
    required: false,
    default: '2GiB',
    parse: sizeInput,
  },
  'patch-udevadm': {
    key: 'patchUdevadm',
    description:
      "Patch the disk script's udevadm trigger/settle (SIGBUS on virtual disks): auto (virtual disks), true or false",
    required: false,
    default: 'auto',
    parse: oneOf(PATCH_UDEVADM, 'auto, true or false', 'write auto, true or false'),
  },
  toplevel: {
    key: 'toplevel',
    description:
      'Prebuilt system toplevel store path to install (with disk-script: skips the build)',
    required: false,
    parse: storePathInput,
  },
  'disk-script': {
    key: 'diskScript',
    description:
      'Prebuilt disko destroy,format,mount script store path (with toplevel: skips the build)',
    required: false,
    parse: storePathInput,
  },
  substituters: {
    key: 'substituters',
    description:
      'Extra binary caches (URLs, space or newline separated) the target fetches the closure from during the install, besides its own (cache.nixos.org); the runner sends only what they lack',
    required: false,
    parse: z
      .string()
      .transform((s, ctx) => {
        const urls = s.split(/\s+/).filter(Boolean);
        const bad = urls.find((u) => !/^(https?|file|s3):\/\/\S+$/.test(u));
        return bad
          ? fail(
              ctx,
              `'${displayUrl(bad)}' is not a binary cache URL`,
              'write https://… (or file://, s3://) URLs',
            )
          : urls;
      })
      .default(() => []),
  },
  'trusted-public-keys': {
    key: 'trustedPublicKeys',
    description: 'Signing keys of those caches (name:base64, space or newline separated)',
    required: false,
    parse: z
      .string()
      .transform((s, ctx) => {
        const keys = s.split(/\s+/).filter(Boolean);
        const bad = keys.find((k) => !/^[^:\s]+:[A-Za-z0-9+/]+=*$/.test(k));
        return bad
          ? fail(ctx, `'${bad}' is not a Nix public key`, 'write name:base64, as in nix.conf')
          : keys;
      })
      .default(() => []),
  },
  'measure-trimming': {
    key: 'measureTrimming',
    description:
      'Also build the configuration without the vpsNixos module and report the bytes the module saves (a second system build)',
    required: false,
    default: 'false',
    parse: booleanInput,
  },
  action: {
    key: 'deployAction',
    description:
      'What the deploy does: switch, boot (next boot), test (activate, not the boot default), dry-activate, or build (build and compare with what the host runs; change nothing)',
    required: false,
    default: 'switch',
    parse: oneOf(DEPLOY_ACTIONS, 'a deploy action', `write one of ${DEPLOY_ACTIONS.join(', ')}`),
  },
  'build-host': {
    key: 'buildHost',
    description:
      "Build on this host instead of the runner (nixos-rebuild's --build-host, user@host)",
    required: false,
    parse: z.string().transform((s, ctx) => {
      const v = s.trim();
      const fix =
        'write user@host; a port, or an IPv6 address, goes in your ssh config (a Host alias with Port/HostName)';
      // nixos-rebuild hands it to ssh as the destination: ssh takes neither :port nor [brackets].
      if (namesPort(v)) return fail(ctx, `'${v}' names a port, which is not supported`, fix);
      const t = parseTarget(v);
      if (typeof t === 'string') return fail(ctx, t, fix);
      if (v.includes('[')) return fail(ctx, `'${v}': ssh does not take [brackets] here`, fix);
      return v;
    }),
  },
  'use-sudo': {
    key: 'useSudo',
    description: 'The target user is not root: run activation and the rollback guard with sudo',
    required: false,
    default: 'false',
    parse: booleanInput,
  },
  'confirm-timeout': {
    key: 'confirmTimeoutSeconds',
    description:
      'Seconds the runner has, after the switch, to reconnect over a new SSH session and confirm; else the target rolls back by itself',
    required: false,
    default: '60',
    parse: countInput(5, 3600, 'seconds'),
  },
  'health-check': {
    key: 'healthCheck',
    description:
      'A command run on the target after the switch; non-zero exit rolls back (retried until health-timeout)',
    required: false,
    parse: z.string().transform((s) => s.trim() || undefined),
  },
  'health-url': {
    key: 'healthUrl',
    description:
      'A URL fetched from the runner after the switch; a status other than 2xx/3xx rolls back',
    required: false,
    parse: z
      .string()
      .transform((s, ctx) =>
        /^https?:\/\/\S+$/.test(s.trim())
          ? s.trim()
          : fail(
              ctx,
              `'${displayUrl(s)}' is not an http(s) URL`,
              'write http://HOST[:PORT]/PATH or https://…',
            ),
      ),
  },
  'health-timeout': {
    key: 'healthTimeoutSeconds',
    description: 'Seconds the health checks may take to pass (they are retried)',
    required: false,
    default: '60',
    parse: countInput(1, 3600, 'seconds'),
  },
  rollback: {
    key: 'rollback',
    description:
      'Roll back to the previous generation when the deploy fails (false: keep the new system and fail)',
    required: false,
    default: 'true',
    parse: booleanInput,
  },
  'force-switch': {
    key: 'forceSwitch',
    description:
      "Deploy even when the host already runs this configuration's system (an unchanged deploy otherwise builds, copies and activates nothing)",
    required: false,
    default: 'false',
    parse: booleanInput,
  },
  'infect-revision': {
    key: 'infectRevision',
    description:
      'Commit of elitak/nixos-infect the in-place method runs (its raw file is downloaded on the runner and checked)',
    required: false,
    default: INFECT_DEFAULT_REVISION,
    parse: z
      .string()
      .transform((s, ctx) =>
        /^[0-9a-f]{40}$/.test(s.trim())
          ? s.trim()
          : fail(
              ctx,
              `'${s}' is not a commit SHA`,
              'write the full 40-hex commit of elitak/nixos-infect (a branch or tag can change under the same name)',
            ),
      ),
  },
  'infect-url': {
    key: 'infectUrl',
    description:
      'Where nixos-infect is downloaded from instead (http(s) URL or a file); default: the raw file at infect-revision',
    required: false,
    parse: fileOrUrlInput(
      'give the path of a nixos-infect script, or an https:// URL of the raw file with infect-sha256',
    ),
  },
  'infect-sha256': {
    key: 'infectSha256',
    description:
      "sha256 the nixos-infect script must have; default: the default revision's; required for any other URL",
    required: false,
    parse: sha256Input,
  },
  'nixos-channel': {
    key: 'nixosChannel',
    description: 'The channel nixos-infect installs NixOS from (NIX_CHANNEL)',
    required: false,
    default: INFECT_DEFAULT_CHANNEL,
    parse: z
      .string()
      .transform((s, ctx) =>
        /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(s.trim())
          ? s.trim()
          : fail(
              ctx,
              `'${s}' is not a channel name`,
              'use a name from https://nixos.org/channels, e.g. nixos-26.11 or nixos-unstable',
            ),
      ),
  },
} as const satisfies Record<string, InputField>;

export type InputName = keyof typeof INPUTS;
/** Raw values as the action or the CLI found them; '' and undefined both mean "not given". */
export type RawInputs = Partial<Record<InputName, string>>;

const INPUT_NAMES = Object.keys(INPUTS) as InputName[];

/** Whether an input is a true/false flag (the CLI takes it without a value). */
export function isBooleanInput(name: InputName): boolean {
  return INPUTS[name].parse === booleanInput;
}

type Inputs = typeof INPUTS;
/**
 * An input's field in the schema: always there when it has a default (withDefaults fills it in),
 * else optional unless its parser has a .default(). fieldSchema does the same at run time.
 */
type FieldSchema<F extends InputField> = F extends { default: string }
  ? F['parse']
  : F['parse'] extends z.ZodDefault
    ? F['parse']
    : z.ZodOptional<F['parse']>;

function fieldSchema(field: InputField): z.ZodType {
  return field.default !== undefined || field.parse instanceof z.ZodDefault
    ? field.parse
    : field.parse.optional();
}

/** Each input's parser under the name of the Config field it fills; takes withDefaults' output. */
export const inputSchema = z.object(
  // Object.fromEntries forgets the keys; this says what it builds, so Config is inferred from it.
  Object.fromEntries(INPUT_NAMES.map((n) => [INPUTS[n].key, fieldSchema(INPUTS[n])])) as {
    [N in InputName as Inputs[N]['key']]: FieldSchema<Inputs[N]>;
  },
);

/** The inputs' fields, then where nixos-infect comes from (that takes three of them). */
export const configSchema = inputSchema.transform((fields, ctx) => ({
  ...fields,
  ...infectSource(fields.infectRevision, fields.infectUrl, fields.infectSha256, ctx),
}));

/** Everything downstream needs, validated. Nothing else reads raw inputs. */
export type Config = z.output<typeof configSchema>;

/** '' and undefined mean "not given": both become the documented default (or stay absent). */
export function withDefaults(raw: RawInputs): RawInputs {
  const out: RawInputs = {};
  for (const name of INPUT_NAMES) {
    const spec: InputSpec = INPUTS[name];
    const v = raw[name];
    const value = v === undefined || v === '' ? spec.default : v;
    if (value !== undefined) out[name] = value;
  }
  return out;
}

export interface ParseOptions {
  /** Nothing connects (plan from a saved facts file, or build only): no target, key or pin is needed. */
  noConnection?: boolean;
  /** What the user actually typed for an input (CLI file options), for messages. */
  shownAs?: Partial<Record<InputName, string>>;
  /** How this entry point takes the deploy key, for messages (default: the action input). */
  keyHow?: string;
  /**
   * The CLI: with no key given, it logs in with the ssh-agent at `socket` (SSH_AUTH_SOCK); no
   * socket: the missing-key message says so. The action always needs its key.
   */
  sshAgent?: { socket?: string };
  /**
   * The CLI: with no pin given, the host key is checked against ~/.ssh/known_hosts (and refused,
   * shown, when that has no line for the host), so a missing pin is not refused here.
   */
  userKnownHosts?: boolean;
}

const KEY_MATERIAL = [
  // PEM armour of any private key: OPENSSH, RSA, EC, DSA, ENCRYPTED, PKCS#8, PGP … BLOCK
  /-{5} *(BEGIN|END) [A-Z0-9 ]*PRIVATE KEY/i,
  // base64 of "openssh-key-v1\0": how every OpenSSH private key body starts
  /b3BlbnNzaC1rZXktdjE/,
  /PuTTY-User-Key-File-\d/,
];

/** Whether a text holds private key material (an armoured key, or an OpenSSH key body). */
export function looksLikeKeyMaterial(text: string): boolean {
  return KEY_MATERIAL.some((re) => re.test(text));
}

/** What is wrong with one input's text, by the input's own schema; undefined when it parses. */
export function checkInput(
  name: InputName,
  text: string,
): { problem: string; fix: string } | undefined {
  const parser: z.ZodType = INPUTS[name].parse;
  const result = parser.safeParse(text);
  if (result.success) return undefined;
  const issue = result.error.issues[0];
  const fix: unknown = issue?.code === 'custom' ? issue.params?.fix : undefined;
  return {
    problem: issue?.message ?? 'is not valid',
    fix: typeof fix === 'string' ? fix : INPUTS[name].description,
  };
}

/**
 * Turns raw inputs into a Config, or throws the first InputError. No connection is made. Errors
 * quote what was given, so a private key anywhere but ssh-private-key is refused unquoted first.
 */
export function parseConfig(raw: RawInputs, opts: ParseOptions = {}): Config {
  const shown = (n: InputName) => opts.shownAs?.[n] ?? n;
  const given = withDefaults(raw);
  for (const name of INPUT_NAMES) {
    const value = given[name];
    if (name === 'ssh-private-key' || value === undefined || !looksLikeKeyMaterial(value)) continue;
    throw new InputError(
      shown(name),
      'holds a private key (its value is not shown)',
      `give the key only as ${opts.keyHow ?? 'the ssh-private-key input (a secret)'}, and this input what it documents: ${INPUTS[name].description}`,
    );
  }
  const result = configSchema.safeParse(
    Object.fromEntries(INPUT_NAMES.map((n) => [INPUTS[n].key, given[n]])),
  );
  if (!result.success) {
    const issue = result.error.issues[0];
    const name = INPUT_NAMES.find((n) => INPUTS[n].key === issue?.path[0]);
    const fix: unknown = issue?.code === 'custom' ? issue.params?.fix : undefined;
    throw new InputError(
      name ? shown(name) : 'inputs',
      issue?.message ?? 'invalid',
      typeof fix === 'string' ? fix : 'see --help',
    );
  }
  checkTogether(result.data, opts, shown);
  return result.data;
}

/**
 * Where nixos-infect comes from: infect-url, else the raw file at infect-revision. Only the pinned
 * default's hash is known; any other URL needs infect-sha256 (a local file is the user's own copy).
 */
function infectSource(
  revision: string,
  url: string | undefined,
  sha256: string | undefined,
  ctx: Ctx,
): { infectRevision: string; infectUrl: string; infectSha256?: string } {
  const infectUrl = url || infectRawUrl(revision);
  const known = infectUrl === infectRawUrl(INFECT_DEFAULT_REVISION);
  const infectSha256 = sha256 ?? (known ? INFECT_DEFAULT_SHA256 : undefined);
  if (!infectSha256 && /^https?:\/\//i.test(infectUrl)) {
    const shown = displayUrl(infectUrl);
    return fail(
      ctx,
      url
        ? `is required with infect-url ${shown}: the script is checked, never run unverified`
        : `is required with infect-revision ${revision}: only the default revision's hash is known`,
      `review the script, then pin its hash: curl -sL ${shown} | sha256sum`,
      [INPUTS['infect-sha256'].key],
    );
  }
  return { infectRevision: revision, infectUrl, infectSha256 };
}

/** Rules that involve more than one input. */
function checkTogether(cfg: Config, opts: ParseOptions, shown: (n: InputName) => string): void {
  // method infect converts with nixos-infect's own configuration: without a flake it stops there.
  if (!cfg.planOnly && !cfg.flake && !cfg.toplevel && cfg.method !== 'infect') {
    throw new InputError(
      'flake',
      'is required unless plan-only is true (or prebuilt toplevel and disk-script are given, or method is infect)',
      'set flake to PATH#NAME (e.g. .#my-vps), or plan-only: true to only see the plan',
    );
  }
  if (cfg.diskScript && !cfg.toplevel)
    throw new InputError(
      'disk-script',
      'is given without toplevel',
      'give both prebuilt store paths, or neither (then the flake is built)',
    );
  if (cfg.kexecTarball && /^https?:\/\//.test(cfg.kexecTarball) && !cfg.kexecTarballSha256) {
    throw new InputError(
      'kexec-tarball-sha256',
      'is required when kexec-tarball is a URL',
      "set it to the tarball's sha256 (sha256sum FILE)",
    );
  }
  if (opts.noConnection) return;
  if (!cfg.target) throw new InputError('target', 'is required', 'set target to user@host[:port]');
  if (!cfg.sshPrivateKey && !opts.sshAgent?.socket) {
    const agent = opts.sshAgent
      ? ', or run an ssh-agent with the key loaded (SSH_AUTH_SOCK is not set)'
      : '';
    throw new InputError(
      shown('ssh-private-key'),
      'is required to connect',
      `pass the deploy key: ${opts.keyHow ?? 'a secret, ssh-private-key: ${{ secrets.VPS_SSH_KEY }}'}${agent}`,
    );
  }
  const name = cfg.target.knownHostsName;
  const pinned = cfg.knownHosts !== undefined || cfg.hostKeyFingerprints.length > 0;
  if (!pinned && !cfg.trustOnFirstUse && !opts.userKnownHosts) {
    const p = cfg.target.port === 22 ? '' : `-p ${cfg.target.port} `;
    throw new InputError(
      'known-hosts',
      `no host key is pinned for ${name}`,
      `get the key with 'ssh-keyscan ${p}${cfg.target.host}', check its fingerprint out of band (provider console: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), and pass it as known-hosts or host-key-fingerprint; or set trust-on-first-use: true`,
    );
  }
  if (cfg.knownHosts !== undefined && cfg.hostKeyFingerprints.length === 0) {
    const pin = pinFor(name, cfg.knownHosts, []);
    if (pin.keys.length === 0) {
      const p = cfg.target.port === 22 ? '' : `-p ${cfg.target.port} `;
      throw new InputError(
        shown('known-hosts'),
        `has no entry for ${name}`,
        `add the host's line: ssh-keyscan ${p}${cfg.target.host} (entries for another port must be written [host]:port)`,
      );
    }
  }
}
