/**
 * The nixos-infect script for the in-place path (issue #10): fetched on the runner at a pinned
 * revision, checked by sha256 before anything uses it, then patched as plain text, each patch
 * reported so the summary can show it. The target never runs `curl | bash`.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, VpsNixosError } from '../errors';
import { displayUrl, download } from '../net/download';
import { shellQuote } from '../shell';
import { formatBytes } from '../size';

/**
 * The pinned default: elitak/nixos-infect master as of 2026-01-21 ("Add hostmyserver (#253)"),
 * whose nixos-infect last changed in 3fa642b "Support RHEL-based distros (#251)" and defaults
 * NIX_CHANNEL to nixos-25.11. How these were obtained: the repository's snapshot fetched into
 * /work/.mirror/elitak+nixos-infect, `git log -1 --format=%H` for the revision,
 * `git show <rev>:nixos-infect | sha256sum` for the hash (14005 bytes). raw.githubusercontent.com
 * serves the blob's bytes unchanged, so the download hashes the same.
 */
export const INFECT_DEFAULT_REVISION = '7563801d3ae68c975e4027f4e31a3906dca95f30';
export const INFECT_DEFAULT_SHA256 =
  '4cc3b5f8e4333ab4f02906d80a836c1b36e2887a51abf4eba4d9113b33934393';

/** The raw file of nixos-infect at a revision (a commit SHA, or a branch or tag). */
export function infectRawUrl(revision: string): string {
  return `https://raw.githubusercontent.com/elitak/nixos-infect/${revision}/nixos-infect`;
}
export const INFECT_DEFAULT_URL = infectRawUrl(INFECT_DEFAULT_REVISION);
/**
 * The channel `nixos-channel` defaults to: the NixOS release nix/flake.nix pins (a test keeps them
 * equal), not the pinned script's own default (nixos-25.11, end of life since 2026-06-30).
 */
export const INFECT_DEFAULT_CHANNEL = 'nixos-26.11';

/** The real script is about 14 KB; anything near this is not it. */
export const INFECT_MAX_BYTES = 1024 * 1024;
/** The whole download: 14 KB from GitHub takes well under a second. */
export const INFECT_FETCH_TIMEOUT_MS = 60_000;

export interface InfectFetchRequest {
  /** `infect-url`: an http(s) URL or a local file. */
  url: string;
  /** `infect-sha256`: required for URLs; the default URL gets the pinned hash. */
  sha256?: string;
  /** Where the verified script is written (a private temp dir). */
  downloadDir: string;
  log: (line: string) => void;
  maxBytes?: number;
  /** Overall deadline of the download (default INFECT_FETCH_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Connect, answer and between-bytes timeout (default DOWNLOAD_IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number;
}

export interface InfectScript {
  /** The verified file, written only after its sha256 matched. */
  path: string;
  text: string;
  sha256: string;
  bytes: number;
  source: 'url' | 'file';
  from: string;
  /** False only for a local file given without infect-sha256 (the user's own copy). */
  verified: boolean;
}

function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

const INFECT_SHA256_FIX =
  'if nixos-infect changed on purpose, review the new script and update infect-sha256 ' +
  '(and infect-revision); otherwise do not use it';

function tooBig(from: string, what: string, max: number): VpsNixosError {
  return new VpsNixosError(
    `infect script ${from} is ${what}, over the ${formatBytes(max)} limit; nixos-infect is about 14 KiB`,
    'check infect-url: it should name the raw nixos-infect file, not a page or an archive',
  );
}

/**
 * Downloads (or reads) nixos-infect and checks its sha256 before returning it. A mismatch throws
 * naming both hashes and the source, and nothing is written. `http://` needs `infect-sha256`.
 */
export async function fetchInfectScript(req: InfectFetchRequest): Promise<InfectScript> {
  const max = req.maxBytes ?? INFECT_MAX_BYTES;
  const url = req.url.trim();
  let expected = req.sha256?.trim().toLowerCase() || undefined;
  if (expected !== undefined && !/^[0-9a-f]{64}$/.test(expected)) {
    throw new InputError(
      'infect-sha256',
      `'${req.sha256}' is not a sha256`,
      'write the 64 hex digits sha256sum prints',
    );
  }
  if (!expected && url === INFECT_DEFAULT_URL) expected = INFECT_DEFAULT_SHA256;

  let data: Buffer;
  let source: InfectScript['source'];
  const isUrl = /^https?:\/\//i.test(url);
  const from = isUrl ? displayUrl(url) : url;
  if (isUrl) {
    if (!expected) {
      throw new InputError(
        'infect-sha256',
        `is required with infect-url ${from}: the script is checked, never run unverified`,
        `review the script, then pin its hash: curl -sL ${from} | sha256sum`,
      );
    }
    // The shared downloader checks the sha256 as it streams; the file is read, then removed,
    // so the script is written below only once every check passed.
    const got = await download({
      url,
      sha256: expected,
      dir: req.downloadDir,
      fileName: 'nixos-infect.download',
      what: 'the infect script',
      input: 'infect-url',
      sha256Input: 'infect-sha256',
      maxBytes: max,
      limitFix:
        'check infect-url: it should name the raw nixos-infect file (about 14 KiB), not a page or an archive',
      sha256Fix: INFECT_SHA256_FIX,
      deadlineMs: req.timeoutMs ?? INFECT_FETCH_TIMEOUT_MS,
      idleTimeoutMs: req.idleTimeoutMs,
      log: req.log,
    });
    try {
      data = readFileSync(got.path);
    } finally {
      rmSync(got.path, { force: true });
    }
    source = 'url';
  } else {
    if (!existsSync(url) || !statSync(url).isFile()) {
      throw new InputError(
        'infect-url',
        `'${url}' is neither an http(s) URL nor a file`,
        `give the raw nixos-infect URL (default ${INFECT_DEFAULT_URL}) or the path of a copy`,
      );
    }
    const size = statSync(url).size;
    if (size > max) throw tooBig(url, formatBytes(size), max);
    data = readFileSync(url);
    source = 'file';
  }

  const sha256 = sha256Hex(data);
  if (expected && expected !== sha256) {
    throw new VpsNixosError(
      `infect script ${from} has sha256 ${sha256}, expected ${expected}; it was not used and nothing was uploaded`,
      INFECT_SHA256_FIX,
    );
  }
  const text = data.toString('utf8');
  if (!text.startsWith('#!') || text.includes('\0')) {
    throw new VpsNixosError(
      `infect script ${from} is not a shell script (it does not start with #!)`,
      'check infect-url: it should name the raw nixos-infect file',
    );
  }
  if (!expected) {
    req.log(
      `warning: infect script ${from} has no infect-sha256 to check; its sha256 is ${sha256}`,
    );
  }
  mkdirSync(req.downloadDir, { recursive: true, mode: 0o700 });
  const path = join(req.downloadDir, 'nixos-infect');
  writeFileSync(path, data, { mode: 0o600 });
  req.log(`infect script: ${formatBytes(data.length)}, sha256 ${sha256}`);
  return { path, text, sha256, bytes: data.length, source, from, verified: !!expected };
}

export interface InfectPatch {
  id: 'tmp-on-disk' | 'do-net-conf' | 'nix-channel';
  /** One line for the summary. */
  what: string;
  applied: boolean;
  /** Why it was not applied (the anchor that was missing). */
  why?: string;
}

export interface PatchOptions {
  /** `nixos-channel`, e.g. nixos-26.11 or nixos-unstable. */
  channel: string;
  /** Where the swapfile and temp files go instead of /tmp: a directory on the real disk. */
  tmpDir?: string;
}

export interface PatchedInfectScript {
  text: string;
  patches: InfectPatch[];
}

/** Marks the block we insert; the summary and a resumed run can find it. */
export const PATCH_MARKER = '# --- vps-nixos patches';

/** Lines that are not comments, with their 1-based numbers. */
function codeLines(text: string): { n: number; line: string }[] {
  return text
    .split('\n')
    .map((line, i) => ({ n: i + 1, line }))
    .filter(({ line }) => !/^\s*#/.test(line));
}

/** A path that starts with /tmp as a word, not /var/tmp or $TMPDIR. */
const TMP_PATH = /(^|[\s"'=(:])\/tmp(?=[/\s"';)]|$)/;

/**
 * Patches nixos-infect's text. Pure. Each patch reports whether its anchor was found; the caller
 * must refuse to run the script when one is not applied. Where the script honours an environment
 * variable (doNetConf, NIX_CHANNEL, TMPDIR for Nix's installer and builds) the patch sets it in a
 * block after the shebang; only the swapfile path, hard-coded as /tmp/nixos-infect.*, is rewritten.
 */
export function patchInfectScript(text: string, opts: PatchOptions): PatchedInfectScript {
  const tmpDir = (opts.tmpDir ?? '/var/tmp').replace(/\/+$/, '');
  if (!/^\/[A-Za-z0-9._/-]+$/.test(tmpDir) || tmpDir.includes('..') || TMP_PATH.test(tmpDir)) {
    throw new Error(`infect tmpDir '${opts.tmpDir}' is not an absolute directory outside /tmp`);
  }
  const channel = opts.channel.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(channel)) {
    throw new InputError(
      'nixos-channel',
      `'${opts.channel}' is not a channel name`,
      'use a name from https://nixos.org/channels, e.g. nixos-26.11 or nixos-unstable',
    );
  }
  const patches: InfectPatch[] = [];
  const code = () => codeLines(out).map((l) => l.line);
  let out = text;

  // (a) The swapfile: `mktemp /tmp/nixos-infect.XXXXX.swp` then `rm -vf /tmp/nixos-infect.*.swp`.
  {
    const what = `swapfile and temp files in ${tmpDir}, not /tmp (a small tmpfs /tmp breaks it: nixos-infect #245)`;
    const anchor = /\bmktemp\s+(-\S+\s+)*\/tmp\/nixos-infect/;
    if (!code().some((l) => anchor.test(l))) {
      patches.push({
        id: 'tmp-on-disk',
        what,
        applied: false,
        why: 'no `mktemp /tmp/nixos-infect…` line (the swapfile) found',
      });
    } else {
      out = out.replace(
        /(^|[^\w/.$-])\/tmp\/nixos-infect/gm,
        (_m, pre: string) => `${pre}${tmpDir}/nixos-infect`,
      );
      const left = codeLines(out).find(({ line }) => TMP_PATH.test(line));
      patches.push(
        left
          ? {
              id: 'tmp-on-disk',
              what,
              applied: false,
              why: `line ${left.n} still uses /tmp: ${left.line.trim()}`,
            }
          : { id: 'tmp-on-disk', what, applied: true },
      );
    }
  }

  // (b) doNetConf=y: the script writes networking.nix (static addresses) when it is non-empty.
  const readsNetConf = code().some((l) => /\$\{?doNetConf\b/.test(l));
  patches.push({
    id: 'do-net-conf',
    what: 'doNetConf=y: the current static addresses, routes and DNS go into networking.nix',
    applied: readsNetConf,
    ...(readsNetConf ? {} : { why: 'the script never reads $doNetConf' }),
  });

  // (c) NIX_CHANNEL: the script defaults it only when empty, then adds that channel.
  const readsChannel = code().some((l) => /\$\{?NIX_CHANNEL\b/.test(l));
  patches.push({
    id: 'nix-channel',
    what: `NIX_CHANNEL=${channel}`,
    applied: readsChannel,
    ...(readsChannel ? {} : { why: 'the script never reads $NIX_CHANNEL' }),
  });

  const block = [
    `${PATCH_MARKER}: ${patches
      .filter((p) => p.applied)
      .map((p) => p.id)
      .join(', ')} ---`,
    `export doNetConf=y`,
    `export NIX_CHANNEL=${shellQuote(channel)}`,
    `export TMPDIR=${shellQuote(tmpDir)}`,
    `mkdir -p ${shellQuote(tmpDir)}`,
    '# --- end of vps-nixos patches ---',
  ].join('\n');
  const nl = out.indexOf('\n');
  out =
    out.startsWith('#!') && nl >= 0
      ? `${out.slice(0, nl + 1)}${block}\n${out.slice(nl + 1)}`
      : `${block}\n${out}`;
  return { text: out, patches };
}

/** The patches that were not applied, as one message; empty when all were. */
export function unappliedPatches(patches: readonly InfectPatch[]): string {
  return patches
    .filter((p) => !p.applied)
    .map((p) => `${p.id} (${p.why ?? 'anchor not found'})`)
    .join('; ');
}

/** The script as it will run: verified source, patched text, and the hash of what is uploaded. */
export interface PreparedInfect {
  /** Where it came from and the sha256 it was verified against (of the unpatched download). */
  source: Omit<InfectScript, 'text' | 'path'>;
  /** The pinned revision, when the URL is that revision's raw file. */
  revision?: string;
  channel: string;
  /** The patched text that is uploaded. */
  text: string;
  /** sha256 of the patched text: the target checks the upload against it. */
  sha256: string;
  patches: InfectPatch[];
}

/**
 * Fetch, verify, patch: everything the in-place path needs from the runner, done before the host
 * is touched. A patch whose anchor is missing refuses the script (it would run unpatched).
 */
export async function prepareInfect(
  req: InfectFetchRequest & { revision: string; channel: string },
): Promise<PreparedInfect> {
  const script = await fetchInfectScript(req);
  const patched = patchInfectScript(script.text, { channel: req.channel });
  const missing = unappliedPatches(patched.patches);
  if (missing)
    throw new VpsNixosError(
      `nixos-infect from ${script.from} cannot be patched as it must be: ${missing}; nothing was uploaded`,
      'use the default infect-revision, or one whose script still has these lines',
    );
  return {
    source: {
      sha256: script.sha256,
      bytes: script.bytes,
      source: script.source,
      from: script.from,
      verified: script.verified,
    },
    revision: script.from === infectRawUrl(req.revision) ? req.revision : undefined,
    channel: req.channel,
    text: patched.text,
    sha256: sha256Hex(Buffer.from(patched.text, 'utf8')),
    patches: patched.patches,
  };
}
