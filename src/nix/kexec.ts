/**
 * The kexec installer tarball: the one released with this version (downloaded, checked against
 * the sha256 committed in the release), ours built from nix/, a local file, or a download checked
 * by the sha256 given.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  createReadStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { pipeline } from 'node:stream/promises';
import type { CacheStore } from '../cache/store';
import { InputError, VpsNixosError } from '../errors';
import { displayUrl, download, type Downloaded } from '../net/download';
import type { ReleasedChoice } from '../release/installers';
import { formatBytes } from '../size';
import { BudgetExceeded, BuildError } from './build';
import { nixErrorText, type Nix } from './nix';

export interface KexecTarball {
  path: string;
  sha256: string;
  bytes: number;
  source: 'released' | 'built' | 'file' | 'url';
  /** Where it came from: the flake attribute, the file or the URL. */
  from: string;
  /** Kernel and initrd sizes, read from the tarball's member headers (what must fit the RAM). */
  sizes?: KexecSizes;
  /** Why `sizes` is missing: the tarball cannot be listed, or lacks kexec/bzImage or kexec/initrd. */
  sizesProblem?: string;
}

/** What the kexec installer takes in RAM, in bytes. */
export interface KexecSizes {
  /** kexec/bzImage as stored (compressed). */
  kernelBytes: number;
  /** kexec/initrd as stored (compressed; `run` appends a few KiB of keys and network to it). */
  initrdBytes: number;
  /**
   * The initrd unpacked into the boot tmpfs: known from the build's sizes.env
   * (INITRD_UNPACKED_BYTES) when it describes this tarball; unknown for a third-party one.
   */
  initrdUnpackedBytes?: number;
  /**
   * The installer's kernel takes `initramfs_options=size=…` (Linux 6.18, backported to stable), so
   * the rootfs the initrd unpacks into may grow past its default cap of half the RAM
   * (sizes.env INITRAMFS_OPTIONS=yes, written by the build that passes it).
   */
  rootfsGrows?: boolean;
  /**
   * Its `run` boots the kernel with `rootfstype=ramfs` when told to (VPS_NIXOS_ROOTFS=ramfs): a
   * root without the tmpfs cap, for an initrd over half the RAM on a kernel without
   * initramfs_options= (sizes.env ROOTFS_RAMFS=yes: ours; nixos-images' run does not know it).
   */
  rootfsRamfs?: boolean;
}

/** One member of a `tar -tv` listing. */
export interface TarMember {
  name: string;
  /** First letter of the mode column: '-' regular file, 'l' symlink, 'h' hard link, 'd' directory. */
  kind: string;
  bytes: number;
}

/** Parses GNU tar's `-tv` listing (LC_ALL=C). Pure. */
export function parseTarListing(text: string): TarMember[] {
  const members: TarMember[] = [];
  const re = /^(\S)\S*\s+\S+\s+(\d+)\s+\d{4}-\d\d-\d\d\s+\d\d:\d\d(?::\d\d)?\s+(.+)$/;
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    const name = m[3]!.replace(/ (->|link to) .*$/, '').replace(/^\.\//, '');
    members.push({ name, kind: m[1]!, bytes: Number(m[2]) });
  }
  return members;
}

/** `KEY=value` lines of a sizes.env. Pure. */
export function parseSizesEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=["']?([^"'\s]*)["']?\s*$/.exec(line);
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

/**
 * The kernel and initrd sizes from the listing, and the unpacked initrd from sizes.env when that
 * file describes this tarball (its INITRD_BYTES, and KERNEL_BYTES if given, match the members). Pure.
 */
export function kexecSizes(
  members: TarMember[],
  sizesEnv?: Record<string, string>,
): { sizes?: KexecSizes; problem?: string } {
  const file = (name: string) => members.find((m) => m.name === name && m.kind === '-');
  const kernel = file('kexec/bzImage');
  const initrd = file('kexec/initrd');
  if (!kernel || !initrd) {
    const missing = [kernel ? '' : 'kexec/bzImage', initrd ? '' : 'kexec/initrd'].filter(Boolean);
    return {
      problem: `it holds no ${missing.join(' and ')} as a regular file, so it is not a kexec installer tarball (nixos-images layout: kexec/run, kexec/bzImage, kexec/initrd)`,
    };
  }
  const sizes: KexecSizes = { kernelBytes: kernel.bytes, initrdBytes: initrd.bytes };
  const num = (k: string) => (sizesEnv?.[k] !== undefined ? Number(sizesEnv[k]) : undefined);
  const unpacked = num('INITRD_UNPACKED_BYTES');
  const describesThis =
    num('INITRD_BYTES') === initrd.bytes &&
    (num('KERNEL_BYTES') === undefined || num('KERNEL_BYTES') === kernel.bytes);
  if (describesThis && unpacked !== undefined && Number.isSafeInteger(unpacked) && unpacked > 0)
    sizes.initrdUnpackedBytes = unpacked;
  if (describesThis && sizesEnv?.INITRAMFS_OPTIONS === 'yes') sizes.rootfsGrows = true;
  if (describesThis && sizesEnv?.ROOTFS_RAMFS === 'yes') sizes.rootfsRamfs = true;
  return { sizes };
}

const execFileP = promisify(execFile);

/**
 * Lists the tarball's member headers (no unpacking to disk) and reads its sizes.env: a file beside
 * it, or the values the release committed.
 */
export async function readKexecSizes(
  path: string,
  sizesEnv?: string | Record<string, string>,
): Promise<{ sizes?: KexecSizes; problem?: string }> {
  let listing: string;
  try {
    // GNU tar detects gzip, xz and zstd by their magic bytes when reading a file.
    listing = (
      await execFileP('tar', ['-tvf', path], {
        env: { ...process.env, LC_ALL: 'C', TZ: 'UTC' },
        maxBuffer: 16 * 2 ** 20,
      })
    ).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const why = (e.stderr || e.message).trim().split('\n').slice(-2).join(' | ');
    return { problem: `tar cannot list it (${why})` };
  }
  const env =
    typeof sizesEnv === 'object'
      ? sizesEnv
      : sizesEnv && existsSync(sizesEnv)
        ? parseSizesEnv(readFileSync(sizesEnv, 'utf8'))
        : undefined;
  return kexecSizes(parseTarListing(listing), env);
}

export interface KexecRequest {
  /** Keeps our built tarball between runs (keyed on nix/'s files, the system and this release). */
  cache?: { store: CacheStore; dir: string; toolVersion: string };
  /** `kexec-tarball` input: a path, an http(s) URL, or `build` (ours, built from nix/). */
  tarball?: string;
  /** The installer released with this version for the system, when there is one. */
  released?: ReleasedChoice;
  sha256?: string;
  system: string;
  budgetBytes?: number;
  /** Where downloads go (a private temp dir). */
  downloadDir: string;
  log: (line: string) => void;
}

/** sha256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

/** The directory of our own flake (nix/), shipped beside the code. */
export function ourFlakeDir(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'nix', 'flake.nix'))) return join(dir, 'nix');
    dir = dirname(dir);
  }
  throw new BuildError(
    `vps-nixos is incomplete: nix/flake.nix not found near ${__dirname}`,
    'reinstall vps-nixos, or pass kexec-tarball',
  );
}

/** A downloaded tarball above this is refused when installer-budget does not set the cap. */
export const KEXEC_DOWNLOAD_MAX_BYTES = 1024 ** 3;
/** The whole tarball download; a few hundred MiB take seconds on a hosted runner. */
export const KEXEC_DOWNLOAD_DEADLINE_MS = 15 * 60_000;

/** Downloads a kexec-tarball URL, capped at installer-budget, checked against its sha256. */
async function downloadTarball(
  req: KexecRequest,
  url: string,
  sha256: string,
): Promise<Downloaded> {
  const budget = req.budgetBytes;
  return download({
    url,
    sha256,
    dir: req.downloadDir,
    fileName: 'kexec-installer.tar.gz',
    what: 'kexec-tarball',
    input: 'kexec-tarball',
    sha256Input: 'kexec-tarball-sha256',
    maxBytes: budget ?? KEXEC_DOWNLOAD_MAX_BYTES,
    limitName:
      budget !== undefined
        ? `installer-budget ${formatBytes(budget)}`
        : `the ${formatBytes(KEXEC_DOWNLOAD_MAX_BYTES)} download limit`,
    limitFix:
      budget !== undefined
        ? 'use our slim installer (leave kexec-tarball empty) or raise installer-budget; every MiB of it sits in RAM after kexec'
        : 'check kexec-tarball: it should name a kexec installer tarball; use our slim installer (leave kexec-tarball empty), or set installer-budget to allow a larger one',
    sha256Fix:
      'if the tarball changed on purpose, update kexec-tarball-sha256; otherwise do not use it',
    deadlineMs: KEXEC_DOWNLOAD_DEADLINE_MS,
    log: req.log,
  });
}

/** Downloads the installer released with this version, checked against the committed sha256. */
async function downloadReleased(req: KexecRequest, r: ReleasedChoice): Promise<Downloaded> {
  return download({
    url: r.url,
    sha256: r.installer.sha256,
    dir: req.downloadDir,
    fileName: r.installer.file,
    what: 'the released kexec installer',
    input: 'kexec-tarball',
    sha256Input: 'kexec-tarball-sha256',
    // Exactly what the release says, not a byte more.
    maxBytes: r.installer.bytes,
    limitName: `its released size, ${formatBytes(r.installer.bytes)}`,
    limitFix:
      'the download is not the released file: check the mirror (VPS_NIXOS_INSTALLER_MIRROR), or set kexec-tarball: build to build ours',
    sha256Fix:
      'the download is not the released file: nothing was uploaded. Check the mirror (VPS_NIXOS_INSTALLER_MIRROR) or the network, or set kexec-tarball: build to build ours',
    deadlineMs: KEXEC_DOWNLOAD_DEADLINE_MS,
    log: req.log,
  });
}

async function buildOurs(
  nix: Nix,
  system: string,
  log: (l: string) => void,
): Promise<{ path: string; from: string }> {
  const installable = `path:${ourFlakeDir()}#packages.${system}.kexec-installer`;
  log(`building the kexec installer: ${installable}`);
  const r = await nix.run(['build', '--no-link', '--json', installable], {
    onStderr: (l) => l.trim() && log(l),
  });
  if (r.code !== 0) {
    throw new BuildError(
      `building our kexec installer failed: ${nixErrorText(r.stderr)}`,
      'the runner needs the internet (nixpkgs) to build it; or pass kexec-tarball (a file, or an https URL with kexec-tarball-sha256)',
    );
  }
  const out = (JSON.parse(r.stdout) as { outputs: Record<string, string> }[])[0]?.outputs.out ?? '';
  const tar = readdirSync(out).find((f) => /\.tar(\.gz|\.zst|\.xz)?$/.test(f));
  if (!tar)
    throw new BuildError(
      `the kexec installer build ${out} holds no tarball`,
      'report this: nix/flake.nix should produce *.tar.gz',
    );
  return { path: join(out, tar), from: installable };
}

/** Hash of everything under nix/ (sources and lock): what determines our installer. */
export function flakeDirHash(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        h.update(relative(dir, p) + '\0');
        h.update(readFileSync(p));
      }
    }
  };
  walk(dir);
  return h.digest('hex').slice(0, 32);
}

/** Written by our installer's build next to the tarball (nix/README.md): its sizes. */
const SIZES_ENV = 'sizes.env';

/** Our tarball from the cache when this release's nix/ was built before, else built (and saved). */
async function cachedOurs(nix: Nix, req: KexecRequest): Promise<{ path: string; from: string }> {
  if (!req.cache) return buildOurs(nix, req.system, req.log);
  const key =
    `vps-nixos-kexec-${req.cache.toolVersion}-${req.system}-${flakeDirHash(ourFlakeDir())}`.replace(
      /[^A-Za-z0-9._-]/g,
      '_',
    );
  const file = join(req.cache.dir, 'kexec-installer.tar');
  if ((await req.cache.store.restore(req.cache.dir, key, [])) === key && existsSync(file)) {
    req.log(`kexec installer: cache hit (${key})`);
    return { path: file, from: `cache ${key}` };
  }
  const built = await buildOurs(nix, req.system, req.log);
  rmSync(req.cache.dir, { recursive: true, force: true });
  mkdirSync(req.cache.dir, { recursive: true });
  copyFileSync(built.path, file);
  const env = join(dirname(built.path), SIZES_ENV);
  if (existsSync(env)) copyFileSync(env, join(req.cache.dir, SIZES_ENV));
  await req.cache.store.save(req.cache.dir, key);
  return built;
}

/** Finds or builds the tarball, checks its sha256 (when given) and the installer budget. */
export async function resolveKexecTarball(nix: Nix, req: KexecRequest): Promise<KexecTarball> {
  let path: string;
  let source: KexecTarball['source'];
  let from: string;
  let downloaded: Downloaded | undefined;
  if (req.tarball && /^https?:\/\//i.test(req.tarball)) {
    from = displayUrl(req.tarball);
    if (!req.sha256) {
      throw new InputError(
        'kexec-tarball-sha256',
        `is required with a URL in kexec-tarball (${from})`,
        "set kexec-tarball-sha256 to the tarball's sha256 (sha256sum FILE)",
      );
    }
    // Checked against the sha256 and capped at installer-budget while it streams.
    downloaded = await downloadTarball(req, req.tarball, req.sha256);
    path = downloaded.path;
    source = 'url';
  } else if (req.tarball === 'build') {
    ({ path, from } = await cachedOurs(nix, req));
    source = 'built';
  } else if (req.tarball) {
    if (!existsSync(req.tarball) || !statSync(req.tarball).isFile()) {
      throw new InputError(
        'kexec-tarball',
        `'${req.tarball}' is not a file`,
        'give the path of a kexec tarball (kexec/run, kexec/bzImage, kexec/initrd inside), or an https URL',
      );
    }
    path = req.tarball;
    source = 'file';
    from = req.tarball;
  } else if (req.released) {
    from = `${displayUrl(req.released.url)} (released with this version, sha256 ${req.released.installer.sha256})`;
    req.log(`kexec installer: the one released with this version, ${displayUrl(req.released.url)}`);
    downloaded = await downloadReleased(req, req.released);
    path = downloaded.path;
    source = 'released';
  } else {
    ({ path, from } = await cachedOurs(nix, req));
    source = 'built';
  }
  const sha256 = downloaded?.sha256 ?? (await sha256File(path));
  const expected = req.sha256?.trim().toLowerCase();
  if (expected && expected !== sha256) {
    throw new VpsNixosError(
      `kexec-tarball ${from} has sha256 ${sha256}, expected ${expected}; nothing was uploaded`,
      'if the tarball changed on purpose, update kexec-tarball-sha256; otherwise do not use it',
    );
  }
  const bytes = downloaded?.bytes ?? statSync(path).size;
  if (req.budgetBytes !== undefined && bytes > req.budgetBytes) {
    throw new BudgetExceeded(
      `the kexec tarball is ${formatBytes(bytes)}, over installer-budget ${formatBytes(req.budgetBytes)}`,
      'use our slim installer (leave kexec-tarball empty) or raise installer-budget; every MiB of it sits in RAM after kexec',
    );
  }
  // A downloaded file has no build beside it; a local one may (our build's output directory); the
  // released one's sizes are in the release.
  const { sizes, problem } = await readKexecSizes(
    path,
    source === 'released'
      ? req.released!.installer.sizes
      : source === 'url'
        ? undefined
        : join(dirname(path), SIZES_ENV),
  );
  if (sizes)
    req.log(
      `kexec installer: kernel ${formatBytes(sizes.kernelBytes)}, initrd ${formatBytes(sizes.initrdBytes)}${sizes.initrdUnpackedBytes !== undefined ? ` (${formatBytes(sizes.initrdUnpackedBytes)} unpacked)` : ` (unpacked size unknown: no ${SIZES_ENV} for ${basename(path)})`}`,
    );
  return { path, sha256, bytes, source, from, ...(sizes ? { sizes } : { sizesProblem: problem }) };
}
