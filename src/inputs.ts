import { z } from 'zod';
import { utils as sshUtils } from 'ssh2';
import { InputError } from './errors';
import { parseSize } from './size';
import { parseTarget, type Target } from './target';
import { parseKnownHosts, pinFor } from './ssh/hostkeys';
import { DEPLOY_ACTIONS, type DeployAction } from './deploy/rebuild';
import {
  INFECT_DEFAULT_CHANNEL,
  INFECT_DEFAULT_REVISION,
  INFECT_DEFAULT_SHA256,
  infectRawUrl,
} from './infect/script';

/** How the planner may install NixOS. */
export const METHODS = ['auto', 'kexec', 'infect', 'deploy-only'] as const;
export type MethodInput = (typeof METHODS)[number];

/** A flake output reference, `path#name`. */
export interface FlakeRef {
  ref: string;
  name: string;
}

/** Everything downstream needs, validated. Nothing else reads raw inputs. */
export interface Config {
  target?: Target;
  sshPrivateKey?: string;
  knownHosts?: string;
  hostKeyFingerprints: string[];
  trustOnFirstUse: boolean;
  method: MethodInput;
  planOnly: boolean;
  flake?: FlakeRef;
  minRamKexecBytes: number;
  minRamInfectBytes: number;
  allowLowRam: boolean;
  reinstall: boolean;
  connectTimeoutSeconds: number;
  connectRetries: number;
  closureBudgetBytes?: number;
  installerBudgetBytes?: number;
  diskoWithDeps: boolean;
  cache: boolean;
  cacheMaxBytes: number;
  kexecTarball?: string;
  kexecTarballSha256?: string;
  allowPreflightErrors: boolean;
  /** The disk the install may wipe (e.g. /dev/vda); nothing is wiped without it. */
  confirmWipe?: string;
  zramBytes?: number;
  swapBytes?: number;
  patchUdevadm: 'auto' | 'true' | 'false';
  /** Prebuilt store paths: skip the build (like nixos-anywhere's --store-paths). */
  toplevel?: string;
  diskScript?: string;
  /** Extra binary caches the target fetches from during the install, and their keys. */
  substituters: string[];
  trustedPublicKeys: string[];
  measureTrimming: boolean;
  /** Deploy: nixos-rebuild's action, where it builds, sudo on the target, the safety net. */
  deployAction: DeployAction;
  buildHost?: string;
  useSudo: boolean;
  confirmTimeoutSeconds: number;
  healthCheck?: string;
  healthUrl?: string;
  healthTimeoutSeconds: number;
  rollback: boolean;
  /** The in-place path: where nixos-infect comes from, the hash it must have, its channel. */
  infectRevision: string;
  /** http(s) URL or a file; defaults to the raw file at infectRevision. */
  infectUrl: string;
  /** Required for URLs other than the pinned default (whose hash is known). */
  infectSha256?: string;
  nixosChannel: string;
}

/** One input as action.yml documents it; the schema below is built from these. */
export interface InputSpec {
  description: string;
  required: boolean;
  default?: string;
  secret?: boolean;
}

/** The action's inputs (same names as the CLI's options). action.yml must say the same. */
export const INPUTS = {
  target: {
    description: 'SSH target: user@host[:port] (IPv4, [IPv6] or hostname); user defaults to root',
    required: true,
  },
  'ssh-private-key': {
    description:
      'Private key (OpenSSH format) that logs in to the target; masked, kept 0600, removed in the post step',
    required: true,
    secret: true,
  },
  'known-hosts': {
    description:
      'known_hosts lines pinning the target host key (plain, [host]:port and hashed |1| entries)',
    required: false,
  },
  'host-key-fingerprint': {
    description:
      'Pinned host key fingerprint(s), SHA256:… as printed by ssh-keygen -lf; comma separated',
    required: false,
  },
  'trust-on-first-use': {
    description:
      'Accept the host key the target presents when nothing is pinned; it is printed and written to the host-key output',
    required: false,
    default: 'false',
  },
  method: {
    description: 'auto | kexec | infect | deploy-only',
    required: false,
    default: 'auto',
  },
  'plan-only': {
    description: 'Probe and plan, print the plan, change nothing on the target',
    required: false,
    default: 'false',
  },
  flake: {
    description: 'Flake output to install/deploy, e.g. .#my-vps (optional in plan-only mode)',
    required: false,
  },
  'min-ram-kexec': {
    description:
      'Least MemTotal for the kexec method (MemTotal is below nominal RAM: a 512 MB VPS reports ~457 MiB; measured: installs at 457 MiB with the initrd-only installer)',
    required: false,
    default: '400MiB',
  },
  'min-ram-infect': {
    description: 'Least MemTotal for the in-place infect method',
    required: false,
    default: '700MiB',
  },
  'allow-low-ram': {
    description: 'Plan below the RAM floors anyway, with a warning',
    required: false,
    default: 'false',
  },
  reinstall: {
    description: 'Allow re-installing a host that already runs NixOS',
    required: false,
    default: 'false',
  },
  'connect-timeout': {
    description: 'Seconds to wait for one SSH connection (TCP + handshake)',
    required: false,
    default: '20',
  },
  'connect-retries': {
    description:
      'Extra SSH connection attempts after a network failure (never after a key mismatch or a refused login)',
    required: false,
    default: '3',
  },
  'closure-budget': {
    description:
      'Largest allowed system closure (NAR bytes, e.g. 3GiB); over it the run fails before any SSH connection',
    required: false,
  },
  'installer-budget': {
    description: 'Largest allowed compressed kexec tarball (e.g. 400MiB)',
    required: false,
  },
  'disko-with-deps': {
    description:
      "Build disko's diskoScript (tools included) instead of diskoScriptNoDeps (the installer already has them)",
    required: false,
    default: 'false',
  },
  cache: {
    description: 'Cache the built closure (a zstd file binary cache) between runs',
    required: false,
    default: 'true',
  },
  'cache-max-size': {
    description:
      'Do not save a closure cache larger than this (the Actions cache holds 10 GB per repository)',
    required: false,
    default: '4GiB',
  },
  'kexec-tarball': {
    description:
      'Kexec installer tarball to use instead of ours: a path, or an http(s) URL (then kexec-tarball-sha256 is required)',
    required: false,
  },
  'kexec-tarball-sha256': {
    description:
      'sha256 (hex) the kexec tarball must have; checked on the runner and again on the target',
    required: false,
  },
  'allow-preflight-errors': {
    description:
      'Go on even when the preflight check of the configuration finds errors (they are still reported)',
    required: false,
    default: 'false',
  },
  'confirm-wipe': {
    description:
      'The disk the install wipes, e.g. /dev/vda: must name the disk the probe found and the disk script formats; nothing is wiped without it',
    required: false,
  },
  'zram-size': {
    description: 'zram swap size (e.g. 1GiB); default: the RAM size, at most 4 GiB',
    required: false,
  },
  'swap-size': {
    description: 'Swapfile on the root disk before kexec (e.g. 2GiB, 0 for none); never on a tmpfs',
    required: false,
    default: '2GiB',
  },
  'patch-udevadm': {
    description:
      "Patch the disk script's udevadm trigger/settle (SIGBUS on virtual disks): auto (virtual disks), true or false",
    required: false,
    default: 'auto',
  },
  toplevel: {
    description:
      'Prebuilt system toplevel store path to install (with disk-script: skips the build)',
    required: false,
  },
  'disk-script': {
    description:
      'Prebuilt disko destroy,format,mount script store path (with toplevel: skips the build)',
    required: false,
  },
  substituters: {
    description:
      'Extra binary caches (URLs, space or newline separated) the target fetches the closure from during the install, besides its own (cache.nixos.org); the runner sends only what they lack',
    required: false,
  },
  'trusted-public-keys': {
    description: 'Signing keys of those caches (name:base64, space or newline separated)',
    required: false,
  },
  'measure-trimming': {
    description:
      'Also build the configuration without the vpsNixos module and report the bytes the module saves (a second system build)',
    required: false,
    default: 'false',
  },
  action: {
    description:
      'What the deploy does: switch, boot (next boot), test (activate, not the boot default), dry-activate, or build (build and compare with what the host runs; change nothing)',
    required: false,
    default: 'switch',
  },
  'build-host': {
    description:
      "Build on this host instead of the runner (nixos-rebuild's --build-host, user@host)",
    required: false,
  },
  'use-sudo': {
    description: 'The target user is not root: run activation and the rollback guard with sudo',
    required: false,
    default: 'false',
  },
  'confirm-timeout': {
    description:
      'Seconds the runner has, after the switch, to reconnect over a new SSH session and confirm; else the target rolls back by itself',
    required: false,
    default: '60',
  },
  'health-check': {
    description:
      'A command run on the target after the switch; non-zero exit rolls back (retried until health-timeout)',
    required: false,
  },
  'health-url': {
    description:
      'A URL fetched from the runner after the switch; a status other than 2xx/3xx rolls back',
    required: false,
  },
  'health-timeout': {
    description: 'Seconds the health checks may take to pass (they are retried)',
    required: false,
    default: '60',
  },
  rollback: {
    description:
      'Roll back to the previous generation when the deploy fails (false: keep the new system and fail)',
    required: false,
    default: 'true',
  },
  'infect-revision': {
    description:
      'Commit of elitak/nixos-infect the in-place method runs (its raw file is downloaded on the runner and checked)',
    required: false,
    default: INFECT_DEFAULT_REVISION,
  },
  'infect-url': {
    description:
      'Where nixos-infect is downloaded from instead (http(s) URL or a file); default: the raw file at infect-revision',
    required: false,
  },
  'infect-sha256': {
    description:
      "sha256 the nixos-infect script must have; default: the default revision's; required for any other URL",
    required: false,
  },
  'nixos-channel': {
    description: 'The channel nixos-infect installs NixOS from (NIX_CHANNEL)',
    required: false,
    default: INFECT_DEFAULT_CHANNEL,
  },
} as const satisfies Record<string, InputSpec>;

export type InputName = keyof typeof INPUTS;
/** Raw values as the action or the CLI found them; '' and undefined both mean "not given". */
export type RawInputs = Partial<Record<InputName, string>>;

type Ctx = z.RefinementCtx;

function fail(ctx: Ctx, message: string, fix: string): typeof z.NEVER {
  ctx.addIssue({ code: 'custom', message, params: { fix } });
  return z.NEVER;
}

const booleanInput = z.string().transform((s, ctx) => {
  if (/^(true|True|TRUE)$/.test(s.trim())) return true;
  if (/^(false|False|FALSE)$/.test(s.trim())) return false;
  return fail(ctx, `'${s}' is not a boolean`, 'write true or false');
});

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

const flakeInput = z.string().transform((s, ctx) => {
  const m = /^([^#\s]+)#([^#\s]+)$/.exec(s.trim());
  if (!m)
    return fail(
      ctx,
      `'${s}' is not a flake output reference`,
      'write PATH#NAME for nixosConfigurations.NAME, e.g. .#my-vps',
    );
  return { ref: m[1] as string, name: m[2] as string };
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

const FIELDS = {
  target: targetInput,
  'ssh-private-key': privateKeyInput,
  'known-hosts': knownHostsInput,
  'host-key-fingerprint': fingerprintInput,
  'trust-on-first-use': booleanInput,
  method: z
    .string()
    .transform((s, ctx) =>
      (METHODS as readonly string[]).includes(s.trim())
        ? (s.trim() as MethodInput)
        : fail(ctx, `'${s}' is not a method`, `write one of ${METHODS.join(', ')}`),
    ),
  'plan-only': booleanInput,
  flake: flakeInput,
  'min-ram-kexec': sizeInput,
  'min-ram-infect': sizeInput,
  'allow-low-ram': booleanInput,
  reinstall: booleanInput,
  'connect-timeout': countInput(1, 600, 'seconds'),
  'connect-retries': countInput(0, 20, 'the number of retries'),
  'closure-budget': sizeInput,
  'installer-budget': sizeInput,
  'disko-with-deps': booleanInput,
  cache: booleanInput,
  'cache-max-size': sizeInput,
  'allow-preflight-errors': booleanInput,
  'kexec-tarball': z.string().transform((s) => s.trim()),
  'kexec-tarball-sha256': sha256Input,
  'confirm-wipe': z
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
  'zram-size': sizeInput,
  'swap-size': sizeInput,
  'patch-udevadm': z
    .string()
    .transform((s, ctx) =>
      ['auto', 'true', 'false'].includes(s.trim())
        ? (s.trim() as 'auto' | 'true' | 'false')
        : fail(ctx, `'${s}' is not auto, true or false`, 'write auto, true or false'),
    ),
  toplevel: storePathInput,
  'disk-script': storePathInput,
  substituters: z.string().transform((s, ctx) => {
    const urls = s.split(/\s+/).filter(Boolean);
    const bad = urls.find((u) => !/^(https?|file|s3):\/\/\S+$/.test(u));
    return bad
      ? fail(ctx, `'${bad}' is not a binary cache URL`, 'write https://… (or file://, s3://) URLs')
      : urls;
  }),
  'trusted-public-keys': z.string().transform((s, ctx) => {
    const keys = s.split(/\s+/).filter(Boolean);
    const bad = keys.find((k) => !/^[^:\s]+:[A-Za-z0-9+/]+=*$/.test(k));
    return bad
      ? fail(ctx, `'${bad}' is not a Nix public key`, 'write name:base64, as in nix.conf')
      : keys;
  }),
  'measure-trimming': booleanInput,
  action: z
    .string()
    .transform((s, ctx) =>
      (DEPLOY_ACTIONS as readonly string[]).includes(s.trim())
        ? (s.trim() as DeployAction)
        : fail(ctx, `'${s}' is not a deploy action`, `write one of ${DEPLOY_ACTIONS.join(', ')}`),
    ),
  'build-host': z.string().transform((s, ctx) => {
    const t = parseTarget(s.trim());
    return typeof t === 'string'
      ? fail(ctx, t, 'write user@host (the port, if any, goes in your ssh config)')
      : s.trim();
  }),
  'use-sudo': booleanInput,
  'confirm-timeout': countInput(5, 3600, 'seconds'),
  'health-check': z.string().transform((s) => s.trim()),
  'health-url': z
    .string()
    .transform((s, ctx) =>
      /^https?:\/\/\S+$/.test(s.trim())
        ? s.trim()
        : fail(ctx, `'${s}' is not an http(s) URL`, 'write http://HOST[:PORT]/PATH or https://…'),
    ),
  'health-timeout': countInput(1, 3600, 'seconds'),
  rollback: booleanInput,
  'infect-revision': z
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
  'infect-url': z.string().transform((s) => s.trim()),
  'infect-sha256': sha256Input,
  'nixos-channel': z
    .string()
    .transform((s, ctx) =>
      /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(s.trim())
        ? s.trim()
        : fail(
            ctx,
            `'${s}' is not a channel name`,
            'use a name from https://nixos.org/channels, e.g. nixos-25.11 or nixos-unstable',
          ),
    ),
} satisfies Record<InputName, z.ZodType>;

/** The zod schema of the inputs, after defaults are filled in (see withDefaults). */
export const inputSchema = z.object(
  Object.fromEntries(
    (Object.keys(FIELDS) as InputName[]).map((name) => [name, FIELDS[name].optional()]),
  ) as unknown as {
    [K in InputName]: z.ZodOptional<(typeof FIELDS)[K]>;
  },
);

/** '' and undefined mean "not given": both become the documented default (or stay absent). */
export function withDefaults(raw: RawInputs): RawInputs {
  const out: RawInputs = {};
  for (const name of Object.keys(INPUTS) as InputName[]) {
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
}

/** Turns raw inputs into a Config, or throws the first InputError. No connection is made. */
export function parseConfig(raw: RawInputs, opts: ParseOptions = {}): Config {
  const shown = (n: InputName) => opts.shownAs?.[n] ?? n;
  const result = inputSchema.safeParse(withDefaults(raw));
  if (!result.success) {
    const issue = result.error.issues[0];
    const name = (issue?.path[0] ?? 'inputs') as InputName;
    const fix =
      (issue && 'params' in issue ? (issue.params as { fix?: string })?.fix : undefined) ??
      'see --help';
    throw new InputError(shown(name), issue?.message ?? 'invalid', fix);
  }
  const v = result.data;
  const cfg: Config = {
    target: v.target,
    sshPrivateKey: v['ssh-private-key'],
    knownHosts: v['known-hosts'],
    hostKeyFingerprints: v['host-key-fingerprint'] ?? [],
    trustOnFirstUse: v['trust-on-first-use'] as boolean,
    method: v.method as MethodInput,
    planOnly: v['plan-only'] as boolean,
    flake: v.flake,
    minRamKexecBytes: v['min-ram-kexec'] as number,
    minRamInfectBytes: v['min-ram-infect'] as number,
    allowLowRam: v['allow-low-ram'] as boolean,
    reinstall: v.reinstall as boolean,
    connectTimeoutSeconds: v['connect-timeout'] as number,
    connectRetries: v['connect-retries'] as number,
    closureBudgetBytes: v['closure-budget'],
    installerBudgetBytes: v['installer-budget'],
    diskoWithDeps: v['disko-with-deps'] as boolean,
    cache: v.cache as boolean,
    cacheMaxBytes: v['cache-max-size'] as number,
    kexecTarball: v['kexec-tarball'],
    kexecTarballSha256: v['kexec-tarball-sha256'],
    allowPreflightErrors: v['allow-preflight-errors'] as boolean,
    confirmWipe: v['confirm-wipe'],
    zramBytes: v['zram-size'],
    swapBytes: v['swap-size'],
    patchUdevadm: v['patch-udevadm'] as Config['patchUdevadm'],
    toplevel: v.toplevel,
    diskScript: v['disk-script'],
    substituters: v.substituters ?? [],
    trustedPublicKeys: v['trusted-public-keys'] ?? [],
    measureTrimming: v['measure-trimming'] as boolean,
    deployAction: v.action as DeployAction,
    buildHost: v['build-host'],
    useSudo: v['use-sudo'] as boolean,
    confirmTimeoutSeconds: v['confirm-timeout'] as number,
    healthCheck: v['health-check'] || undefined,
    healthUrl: v['health-url'],
    healthTimeoutSeconds: v['health-timeout'] as number,
    rollback: v.rollback as boolean,
    ...infectSource(v['infect-revision'] as string, v['infect-url'], v['infect-sha256']),
    nixosChannel: v['nixos-channel'] as string,
  };
  checkTogether(cfg, opts, shown);
  return cfg;
}

/**
 * Where nixos-infect comes from: infect-url, else the raw file at infect-revision. Only the pinned
 * default's hash is known; any other URL needs infect-sha256 (a local file is the user's own copy).
 */
function infectSource(
  revision: string,
  url: string | undefined,
  sha256: string | undefined,
): Pick<Config, 'infectRevision' | 'infectUrl' | 'infectSha256'> {
  const infectUrl = url || infectRawUrl(revision);
  const known = infectUrl === infectRawUrl(INFECT_DEFAULT_REVISION);
  const infectSha256 = sha256 ?? (known ? INFECT_DEFAULT_SHA256 : undefined);
  if (!infectSha256 && /^https?:\/\//i.test(infectUrl)) {
    throw new InputError(
      'infect-sha256',
      url
        ? `is required with infect-url ${infectUrl}: the script is checked, never run unverified`
        : `is required with infect-revision ${revision}: only the default revision's hash is known`,
      `review the script, then pin its hash: curl -sL ${infectUrl} | sha256sum`,
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
  if (!cfg.sshPrivateKey) {
    throw new InputError(
      shown('ssh-private-key'),
      'is required to connect',
      'pass the deploy key (a secret in CI: ssh-private-key: ${{ secrets.VPS_SSH_KEY }})',
    );
  }
  const name = cfg.target.knownHostsName;
  const pinned = cfg.knownHosts !== undefined || cfg.hostKeyFingerprints.length > 0;
  if (!pinned && !cfg.trustOnFirstUse) {
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
