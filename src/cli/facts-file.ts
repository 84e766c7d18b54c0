/** Reading the CLI's file options: key, known_hosts and saved facts. */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { InputError } from '../errors';
import { parseFacts, type Facts } from '../probe/facts';
import { looksLikeKeyMaterial } from '../inputs';

/** Reads the file a file option names; throws an InputError naming the option. */
export function readFileOption(name: string, path: string): string {
  // The messages below quote the path: never a key pasted where the path goes.
  if (looksLikeKeyMaterial(path))
    throw new InputError(
      name,
      'is given a private key instead of a path (not shown)',
      `write --${name} PATH, the path of the file`,
    );
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new InputError(
      name,
      `cannot read '${path}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      'give the path of an existing, readable file',
    );
  }
}

const SAVE_FACTS = 'save it with: vps-nixos probe … --json > facts.json';

type RequiredKeys<T> = { [K in keyof T]-?: undefined extends T[K] ? never : K }[keyof T];
type OptionalKeys<T> = Exclude<keyof T, RequiredKeys<T>>;

const bytes = z.number().nonnegative();
const family = z.enum(['inet', 'inet6']);
const fs = z.looseObject({
  fsType: z.string(),
  sizeBytes: bytes,
  availBytes: bytes,
  mountpoint: z.string(),
});

/**
 * What plan(), the preflight checks, facts-to-nix and the report read without looking first: a
 * file lacking one would fail later as a TypeError. The compiler checks the keys against Facts.
 */
const REQUIRED = {
  memTotalBytes: bytes,
  swapTotalBytes: bytes,
  virtualization: z.string(),
  virtualizationSource: z.enum(['systemd-detect-virt', 'hints']),
  isContainer: z.boolean(),
  osId: z.string(),
  isNixos: z.boolean(),
  isInstaller: z.boolean(),
  arch: z.string(),
  kernel: z.string(),
  bootId: z.string(),
  efi: z.boolean(),
  disks: z.array(
    z.looseObject({
      name: z.string(),
      path: z.string(),
      sizeBytes: bytes,
      partitions: z.array(z.looseObject({ name: z.string(), path: z.string(), sizeBytes: bytes })),
    }),
  ),
  interfaces: z.array(
    z.looseObject({
      name: z.string(),
      addresses: z.array(
        z.looseObject({ family, address: z.string(), prefixLength: z.number().int() }),
      ),
    }),
  ),
  routes: z.array(z.looseObject({ family, dst: z.string() })),
  dns: z.array(z.string()),
  tools: z.record(z.string(), z.string()),
} satisfies Record<RequiredKeys<Facts>, z.ZodType>;

/** Optional facts, checked when present (a wrong type would fail later too). */
const OPTIONAL = {
  memAvailableBytes: bytes,
  osVersionId: z.string(),
  osVariantId: z.string(),
  osPrettyName: z.string(),
  currentSystem: z.string(),
  systemProfile: z.string(),
  failedUnits: z.array(z.string()),
  rebootPending: z.array(z.string()),
  infect: z.looseObject({ bootId: z.string(), running: z.boolean() }),
  machineId: z.string(),
  kexecLoadDisabled: z.boolean(),
  root: fs,
  rootSource: z.string(),
  tmp: fs,
  varTmp: fs,
  rootDisk: z.string(),
  packageManager: z.string(),
} satisfies Record<OptionalKeys<Facts>, z.ZodType>;

const factsSchema = z.looseObject({
  ...REQUIRED,
  ...Object.fromEntries(Object.entries(OPTIONAL).map(([k, s]) => [k, s.optional()])),
});

/** `disks[0].sizeBytes` */
function pathText(path: PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`))
    .join('');
}

function valueAt(doc: unknown, path: PropertyKey[]): unknown {
  let v = doc;
  for (const p of path)
    v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

/**
 * Checks a facts object read from a file; throws an InputError naming every field that is missing
 * or of the wrong type (so a hand-edited or truncated file fails here, not as a TypeError later).
 */
export function checkFacts(doc: unknown, path: string): Facts {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    throw new InputError('facts', `'${path}' holds no facts object`, SAVE_FACTS);
  const result = factsSchema.safeParse(doc);
  if (result.success) return doc as Facts;
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const issue of result.error.issues) {
    const where = pathText(issue.path);
    if (valueAt(doc, issue.path) === undefined) missing.push(where);
    else if (issue.code === 'invalid_type')
      wrong.push(
        `${where} is not ${/^[aeiou]/.test(issue.expected) ? 'an' : 'a'} ${issue.expected}`,
      );
    else wrong.push(`${where}: ${issue.message}`);
  }
  const list = (items: string[], sep: string) =>
    items.slice(0, 12).join(sep) + (items.length > 12 ? ` … and ${items.length - 12} more` : '');
  const problems = [
    ...(missing.length ? [`lacks ${list(missing, ', ')}`] : []),
    ...(wrong.length ? [list(wrong, '; ')] : []),
  ];
  throw new InputError(
    'facts',
    `'${path}' is not complete facts: ${problems.join('; ')}`,
    `${SAVE_FACTS} (probe again if it was saved by an older vps-nixos or edited)`,
  );
}

/** Reads saved facts: `probe --json` / `plan --json` output, bare facts JSON, or facts.sh output. */
export function loadFacts(path: string): Facts {
  const text = readFileOption('facts', path);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    if (/^facts\.version=/m.test(text)) {
      try {
        return parseFacts(text);
      } catch (err) {
        throw new InputError('facts', `'${path}': ${(err as Error).message}`, SAVE_FACTS);
      }
    }
    throw new InputError('facts', `'${path}' is neither JSON nor facts.sh output`, SAVE_FACTS);
  }
  if (doc && typeof doc === 'object' && 'facts' in doc) {
    const facts = (doc as { facts: unknown }).facts;
    if (facts === null || typeof facts !== 'object')
      throw new InputError(
        'facts',
        `'${path}' has no facts: the run that saved it did not probe the host`,
        SAVE_FACTS,
      );
    return checkFacts(facts, path);
  }
  return checkFacts(doc, path);
}
