/**
 * Sending store paths into the kexec installer over the pinned SSH session (no second SSH client,
 * no second host-key policy). The installer has no Nix of its own: the paths go as one
 * zstd-compressed tar stream straight under the store root (`/mnt`, the new disk: bounded memory,
 * where `nix-store --import` holds each whole NAR in RAM), and the closure's OWN Nix, sent first,
 * does the rest in a chroot of that root: it hashes every received path (its NAR sha256 must be
 * the one this runner's store has, or nothing is registered) and registers them
 * (`nix-store --load-db` of this runner's `--dump-db`). Once that Nix is there, the target fetches
 * what its binary caches have itself and only the rest is sent (like `nix copy
 * --substitute-on-destination`). Without a Nix (the disk script, unpacked into the installer's
 * RAM to be run), the files are checked against sha256 sums instead and nothing is registered.
 * An interrupted copy leaves unregistered paths, which the next run deletes and sends again.
 */
import { spawnChild } from '../children';
import type { ChildProcess } from 'node:child_process';
import { Transform, type Readable } from 'node:stream';
import { SshConnectError, VpsNixosError } from '../errors';
import type { RemoteSession } from '../ssh/session';
import { NixError } from './nix';
import { runScript } from '../ssh/script';

export interface TransferOptions {
  /** The target's store root: `/mnt` writes into the installed system's store, on disk. */
  storeRoot: string;
  /**
   * The closure's Nix (its store path, inside the closure of the roots): it checks and registers
   * the paths in a chroot of the store root. Without it, files are checked by sha256 only.
   */
  nix?: string;
  /** Let the target fetch what its binary caches have (needs `nix`) before we send the rest. */
  substitute?: boolean;
  /** Binary caches for the target to use besides its Nix's defaults (URLs and their signing keys). */
  substituters?: { urls: string[]; publicKeys: string[] };
  log: (line: string) => void;
  /** For tests: the local `nix-store`. */
  nixStoreBin?: string;
}

export interface TransferResult {
  /** Every path of the closure, dependencies first. */
  closure: string[];
  /** Already valid on the target before anything was done. */
  present: number;
  /** Fetched by the target from its own caches. */
  substituted: number;
  /** Seconds the target spent asking its caches (also when they gave nothing). */
  substituteSeconds: number;
  /** Sent from the runner. */
  sent: number;
  /** Bytes that crossed the SSH session (zstd-compressed tar). */
  bytesSent: number;
  /** Bytes of the tar stream before compression. */
  tarBytes: number;
  /** Seconds the target spent hashing what arrived (NAR sha256, checked before registration). */
  verifySeconds: number;
}

/** Paths whose bytes on the target are not what this runner's store has; nothing was registered. */
export class TransferCorrupt extends VpsNixosError {}

function runLocal(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'ENOENT'
          ? new NixError(`'${bin}' not found on PATH`, `install ${bin} on the runner`)
          : e,
      ),
    );
    child.on('close', (code) =>
      code === 0
        ? resolve(out)
        : reject(new NixError(`${bin} ${args[0]} failed: ${err.trim()}`, 'check the local store')),
    );
  });
}

/** The closure of `roots` in the runner's store, dependencies first (nix-store -qR's order). */
export async function localClosure(roots: string[], bin = 'nix-store'): Promise<string[]> {
  const out = await runLocal(bin, ['--query', '--requisites', ...roots]);
  return out.split('\n').filter((l) => l.startsWith('/nix/store/'));
}

const NIX32 = '0123456789abcdfghijklmnpqrsvwxyz';

/**
 * A NAR hash as Nix prints it (`sha256:<nix32>`, `sha256:<hex>`, SRI `sha256-<base64>`, or bare
 * hex/nix32) in lower-case hex. Pure.
 */
export function narHashHex(hash: string): string {
  const h = hash.trim();
  if (h.startsWith('sha256-')) return Buffer.from(h.slice(7), 'base64').toString('hex');
  const body = h.startsWith('sha256:') ? h.slice(7) : h;
  if (/^[0-9a-f]{64}$/.test(body)) return body;
  if (body.length === 52 && [...body].every((c) => NIX32.includes(c))) {
    // Nix's base32: the last character holds the lowest bits; bytes are little-endian.
    const bytes = Buffer.alloc(32);
    for (let n = 0; n < 52; n++) {
      const digit = NIX32.indexOf(body[51 - n]!);
      const b = n * 5;
      const i = b >> 3;
      const j = b & 7;
      bytes[i]! |= (digit << j) & 0xff;
      if (i + 1 < 32) bytes[i + 1]! |= digit >> (8 - j);
    }
    return bytes.toString('hex');
  }
  throw new NixError(
    `unrecognised NAR hash '${hash}'`,
    'check the local Nix (nix-store -q --hash)',
  );
}

/** The NAR sha256 (hex) of each path, from the runner's store. */
async function localNarHashes(paths: string[], bin: string): Promise<string[]> {
  const out = (await runLocal(bin, ['--query', '--hash', ...paths])).split('\n').filter(Boolean);
  if (out.length !== paths.length)
    throw new NixError(
      `nix-store -q --hash printed ${out.length} hashes for ${paths.length} paths`,
      'check the local store',
    );
  return out.map(narHashHex);
}

/** Runs scripts/phases/store.sh on the target. */
async function store(
  session: RemoteSession,
  action: string,
  args: string[],
  stdin: string | Readable,
  timeoutMs: number,
): Promise<string> {
  const r = await runScript(session, 'phases/store.sh', {
    args: [action, ...args],
    stdin,
    timeoutMs,
  });
  // A channel that closes without an exit status: the connection went, not the step.
  if (r.code === -1 && !r.signal)
    throw new SshConnectError(
      `the connection to the target dropped during the store step '${action}'`,
      'check the host answers (a reset or a cut link), then re-run to resume: registered paths are not sent again',
    );
  if (r.code !== 0) {
    const why =
      /^error=(.*)$/m.exec(r.stdout)?.[1] ?? r.stderr.trim().split('\n').slice(-3).join(' | ');
    throw new VpsNixosError(
      `the target's store step '${action}' failed: ${why}`,
      action === 'receive'
        ? `check free space on the target (df -h ${args[0]}); re-run to resume: registered paths are not sent again`
        : 're-run to resume; the output above says what failed',
    );
  }
  return r.stdout;
}

/** The paths among `paths` that are not valid in the target's store under `root` (order kept). */
export async function remoteInvalid(
  session: RemoteSession,
  paths: string[],
  root: string,
  nix?: string,
): Promise<string[]> {
  if (paths.length === 0) return [];
  const out = await store(
    session,
    'invalid',
    [root, nix ?? ''],
    paths.join('\n') + '\n',
    5 * 60_000,
  );
  const invalid = new Set(out.split('\n').filter((l) => l.startsWith('/nix/store/')));
  return paths.filter((p) => invalid.has(p));
}

/** sha256sum lines for every regular file under `paths`, relative to `/` (for a store root). */
async function manifest(paths: string[]): Promise<string> {
  const out = await runLocal('find', [...paths, '-type', 'f', '-print0']);
  const files = out.split('\0').filter(Boolean);
  if (files.length === 0) return '';
  const sums = await runLocal('sha256sum', ['--', ...files]);
  // "HASH  /nix/store/…" → "HASH  ./nix/store/…" (checked from the store root)
  return sums.replace(/^([0-9a-f]{64}) {2}\//gm, '$1  ./');
}

/** Are all files of `paths` under `root` as this runner has them? (No Nix there: the disk script.) */
export async function filesPresent(
  session: RemoteSession,
  paths: string[],
  root: string,
): Promise<boolean> {
  const m = await manifest(paths);
  const out = await store(session, 'check', [root], m, 5 * 60_000);
  return /^ok=yes$/m.test(out);
}

/** Kills the local end of a stream whose remote end is gone, and lets go of its pipes. */
function stopStream(children: ChildProcess[], streams: Transform[]): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const p of [c.stdin, c.stdout, c.stderr]) p?.destroy();
  }
  for (const t of streams) t.destroy();
}

/** Streams `paths` as a zstd tar under `root`; returns [bytes on the wire, tar bytes]. */
async function streamPaths(
  session: RemoteSession,
  paths: string[],
  root: string,
): Promise<[number, number]> {
  // Leftovers of an interrupted copy are unregistered and read-only: remove them first.
  await store(session, 'clear', [root], paths.join('\n') + '\n', 10 * 60_000);
  const tar = spawnChild(
    'tar',
    [
      '-C',
      '/',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-cf',
      '-',
      ...paths.map((p) => p.slice(1)),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // zstd -3: cheap here, and decompression is cheap on a slow target too (no --long: its window
  // would cost the target 128 MiB of RAM).
  const zstd = spawnChild('zstd', ['-q', '-3', '-T0', '-c'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  tar.stderr.on('data', (d: Buffer) => (err += d.toString()));
  zstd.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const spawnError = new Promise<never>((_, reject) => {
    zstd.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        new NixError(
          e.code === 'ENOENT' ? "'zstd' not found on PATH" : `zstd: ${e.message}`,
          'install zstd on the runner (apt-get install zstd)',
        ),
      ),
    );
  });
  const tarDone = new Promise<number>((resolve) => tar.on('close', (c) => resolve(c ?? -1)));
  const zstdDone = new Promise<number>((resolve) => zstd.on('close', (c) => resolve(c ?? -1)));
  let tarBytes = 0;
  let wireBytes = 0;
  // Counters: a 'data' listener would start the flow before the channel is piped.
  const countTar = new Transform({
    transform(chunk: Buffer, _enc, done) {
      tarBytes += chunk.length;
      done(null, chunk);
    },
  });
  const countWire = new Transform({
    transform(chunk: Buffer, _enc, done) {
      wireBytes += chunk.length;
      done(null, chunk);
    },
  });
  tar.stdout.pipe(countTar).pipe(zstd.stdin);
  zstd.stdout.pipe(countWire);
  try {
    await Promise.race([store(session, 'receive', [root], countWire, 6 * 60 * 60_000), spawnError]);
  } catch (err) {
    // The target's end is gone (the connection dropped, the receiver failed): stop ours. Else tar
    // and zstd block on a pipe no one reads any more, and their open pipes keep this process
    // alive after the error (the fault campaign's "sshd killed mid-transfer" hung so).
    stopStream([tar, zstd], [countTar, countWire]);
    await Promise.all([tarDone, zstdDone]);
    throw err;
  }
  const [tc, zc] = await Promise.all([tarDone, zstdDone]);
  if (tc !== 0 || zc !== 0)
    throw new NixError(
      `tar | zstd of the store paths failed here: ${err.trim()}`,
      'check the local store',
    );
  return [wireBytes, tarBytes];
}

/**
 * Checks what arrived against this runner's NAR hashes with the closure's Nix, then registers it.
 * A path whose bytes differ is deleted and never registered.
 */
async function verifyAndRegister(
  session: RemoteSession,
  paths: string[],
  root: string,
  nix: string,
  bin: string,
  log: (line: string) => void,
): Promise<number> {
  const want = await localNarHashes(paths, bin);
  const t0 = Date.now();
  const out = await store(session, 'hash', [root, nix], paths.join('\n') + '\n', 60 * 60_000);
  const seconds = (Date.now() - t0) / 1000;
  const got = out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const bad = paths.filter((p, i) => {
    try {
      return narHashHex(got[i] ?? '') !== want[i];
    } catch {
      return true;
    }
  });
  if (got.length !== paths.length || bad.length > 0) {
    await store(session, 'clear', [root], bad.join('\n') + '\n', 10 * 60_000);
    throw new TransferCorrupt(
      `${bad.length} of ${paths.length} paths arrived with contents that differ from this runner's store (first: ${bad[0] ?? 'none'}): nothing of them was registered, and they were deleted`,
      're-run to send them again; if it repeats, something between the runner and the host alters the stream',
    );
  }
  log(
    `the ${paths.length} paths that arrived match this runner's NAR hashes (hashed on the target in ${seconds.toFixed(1)} s)`,
  );
  const db = await runLocal(bin, ['--dump-db', ...paths]);
  await store(session, 'register', [root, nix], db, 10 * 60_000);
  const left = await remoteInvalid(session, paths, root, nix);
  if (left.length > 0)
    throw new VpsNixosError(
      `${left.length} paths are still not valid on the target after the copy (first: ${left[0]})`,
      're-run to resume',
    );
  return seconds;
}

/** Copies the closure of `roots` into the target's store under `storeRoot`; returns what it did. */
export async function sendClosure(
  session: RemoteSession,
  roots: string[],
  opts: TransferOptions,
): Promise<TransferResult> {
  const bin = opts.nixStoreBin ?? 'nix-store';
  const root = opts.storeRoot;
  const closure = await localClosure(roots, bin);
  const result: TransferResult = {
    closure,
    present: 0,
    substituted: 0,
    substituteSeconds: 0,
    sent: 0,
    bytesSent: 0,
    tarBytes: 0,
    verifySeconds: 0,
  };
  const send = async (paths: string[]) => {
    const [wire, tarBytes] = await streamPaths(session, paths, root);
    result.bytesSent += wire;
    result.tarBytes += tarBytes;
    result.sent += paths.length;
  };

  if (!opts.nix) {
    if (await filesPresent(session, closure, root)) {
      result.present = closure.length;
      return result;
    }
    opts.log(`sending ${closure.length} paths (checked by sha256: no Nix on the target)`);
    await send(closure);
    if (!(await filesPresent(session, closure, root)))
      throw new TransferCorrupt(
        `the files sent under ${root} differ from this runner's store`,
        're-run to send them again',
      );
    return result;
  }

  const nix = opts.nix;
  if (!closure.includes(nix))
    throw new VpsNixosError(
      `${nix} is not in the closure of ${roots.join(' ')}`,
      'the system must carry its own Nix (nix.enable = true)',
    );
  let missing = await remoteInvalid(session, closure, root, nix);
  result.present = closure.length - missing.length;
  // The closure's Nix first: it checks and registers everything after it.
  const nixClosure = new Set(await localClosure([nix], bin));
  const nixMissing = missing.filter((p) => nixClosure.has(p));
  if (nixMissing.length > 0) {
    opts.log(`sending the closure's Nix first (${nixMissing.length} paths)`);
    await send(nixMissing);
    result.verifySeconds += await verifyAndRegister(session, nixMissing, root, nix, bin, opts.log);
    missing = missing.filter((p) => !nixClosure.has(p));
  }
  if (missing.length > 0 && opts.substitute) {
    const extra = opts.substituters?.urls.length
      ? [opts.substituters.urls.join(' '), opts.substituters.publicKeys.join(' ')]
      : [];
    const t0 = Date.now();
    await store(
      session,
      'substitute',
      [root, nix, ...extra],
      missing.join('\n') + '\n',
      60 * 60_000,
    );
    const before = missing.length;
    missing = await remoteInvalid(session, missing, root, nix);
    result.substituted = before - missing.length;
    result.substituteSeconds = (Date.now() - t0) / 1000;
    const took = `${result.substituteSeconds.toFixed(1)} s`;
    if (result.substituted > 0)
      opts.log(`the target fetched ${result.substituted} paths from its binary caches (${took})`);
    else opts.log(`the target could not substitute any path (${took}): sending the rest`);
  }
  if (missing.length > 0) {
    opts.log(`sending ${missing.length} of ${closure.length} paths`);
    await send(missing);
    result.verifySeconds += await verifyAndRegister(session, missing, root, nix, bin, opts.log);
  }
  return result;
}
