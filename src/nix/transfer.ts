/**
 * Sending store paths to the target over the pinned SSH session, so no second SSH client (and no
 * second host-key policy) is involved. The paths go as one tar stream (`tar -x` on the target
 * writes file by file: bounded memory, where `nix-store --import` holds each whole NAR in RAM,
 * which a 1 GB host cannot do for a 300 MB firmware path), then their registrations
 * (`nix-store --dump-db` here, `--load-db` there: hash, size, references, deriver). Only the
 * paths the target lacks are sent; the target first tries its own binary caches for them (like
 * `nix copy --substitute-on-destination`). An interrupted copy leaves unregistered paths, which
 * the next run deletes and sends again.
 */
import { spawn } from 'node:child_process';
import { Transform } from 'node:stream';
import { VpsNixosError } from '../errors';
import { shellQuote } from '../shell';
import type { RemoteSession } from '../ssh/session';
import { NixError } from './nix';

export interface TransferOptions {
  /** The target's store root: `/mnt` writes into the installed system's store, on disk. */
  storeRoot?: string;
  /** Let the target fetch what its configured substituters have before we send anything. */
  substitute?: boolean;
  /** Binary caches for the target to use besides its own (URLs and their signing keys). */
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
  /** Sent from the runner. */
  sent: number;
  /** Bytes of the export stream that crossed the SSH session. */
  bytesSent: number;
}

const storeOpt = (root?: string) => (root ? `--store ${shellQuote(root)} ` : '');

function runLocal(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'ENOENT'
          ? new NixError(`'${bin}' not found on PATH`, 'install Nix on the runner')
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

/** The paths among `paths` that are not valid in the target's store (order kept). */
export async function remoteInvalid(
  session: RemoteSession,
  paths: string[],
  storeRoot?: string,
): Promise<string[]> {
  if (paths.length === 0) return [];
  const r = await session.exec(
    `xargs nix-store ${storeOpt(storeRoot)}--check-validity --print-invalid`,
    { stdin: paths.join('\n') + '\n', timeoutMs: 5 * 60_000 },
  );
  if (r.code !== 0)
    throw new VpsNixosError(
      `cannot query the target's store${storeRoot ? ` at ${storeRoot}` : ''}: ${r.stderr.trim()}`,
      'check that Nix works on the target (nix-store --version) and the store is mounted',
    );
  const invalid = new Set(r.stdout.split('\n').filter((l) => l.startsWith('/nix/store/')));
  return paths.filter((p) => invalid.has(p));
}

/** Streams `paths` (invalid on the target) as tar into `root`, then registers them. Returns bytes sent. */
async function sendPaths(
  session: RemoteSession,
  paths: string[],
  root: string,
  bin: string,
): Promise<number> {
  // Leftovers of an interrupted copy are unregistered and read-only: remove them first.
  const clean = await session.exec(
    `cd ${shellQuote(root)} && while read -r p; do if [ -e ".$p" ]; then chmod -R u+w ".$p" && rm -rf ".$p"; fi; done`,
    { stdin: paths.join('\n') + '\n', timeoutMs: 10 * 60_000 },
  );
  if (clean.code !== 0)
    throw new VpsNixosError(
      `cannot clear partial store paths under ${root}: ${clean.stderr.trim()}`,
      'check the target store is writable',
    );
  const tar = spawn(
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
  let err = '';
  tar.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number>((resolve) => tar.on('close', (c) => resolve(c ?? -1)));
  let bytes = 0;
  // Counts what goes through; a 'data' listener would start the flow before the channel is piped.
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  tar.stdout.pipe(counter);
  const r = await session.exec(
    `mkdir -p ${shellQuote(root)}/nix/store && tar -C ${shellQuote(root)} --no-same-owner -xf -`,
    { stdin: counter, timeoutMs: 6 * 60 * 60_000 },
  );
  const code = await exited;
  if (code !== 0)
    throw new NixError(
      `tar of the store paths failed here: ${err.trim()}`,
      'check the local store',
    );
  if (r.code !== 0)
    throw new VpsNixosError(
      `the target could not unpack the closure into ${root}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`,
      `check free space on the target (df -h ${root}); re-run to resume: registered paths are not sent again`,
    );
  const db = await runLocal(bin, ['--dump-db', ...paths]);
  const load = await session.exec(
    `nix-store ${storeOpt(root === '/' ? undefined : root)}--load-db`,
    {
      stdin: db,
      timeoutMs: 10 * 60_000,
    },
  );
  if (load.code !== 0)
    throw new VpsNixosError(
      `the target could not register the copied paths: ${load.stderr.trim()}`,
      're-run to resume',
    );
  const left = await remoteInvalid(session, paths, root === '/' ? undefined : root);
  if (left.length > 0)
    throw new VpsNixosError(
      `${left.length} paths are still not valid on the target after the copy (first: ${left[0]})`,
      're-run to resume',
    );
  return bytes;
}

/** Copies the closure of `roots` into the target's store; returns what it did. */
export async function sendClosure(
  session: RemoteSession,
  roots: string[],
  opts: TransferOptions,
): Promise<TransferResult> {
  const bin = opts.nixStoreBin ?? 'nix-store';
  const root = opts.storeRoot ?? '/';
  const closure = await localClosure(roots, bin);
  let missing = await remoteInvalid(session, closure, opts.storeRoot);
  const present = closure.length - missing.length;
  let substituted = 0;
  if (missing.length > 0 && opts.substitute) {
    // keep-going: fetch what the caches have even when some paths (ours) are in none of them.
    const extra = opts.substituters?.urls.length
      ? ` --option extra-substituters ${shellQuote(opts.substituters.urls.join(' '))} --option extra-trusted-public-keys ${shellQuote(opts.substituters.publicKeys.join(' '))}`
      : '';
    const r = await session.exec(
      `xargs nix-store ${storeOpt(opts.storeRoot)}--realise --option keep-going true --option connect-timeout 10${extra} >/dev/null`,
      { stdin: missing.join('\n') + '\n', timeoutMs: 60 * 60_000 },
    );
    const before = missing.length;
    missing = await remoteInvalid(session, missing, opts.storeRoot);
    substituted = before - missing.length;
    if (substituted > 0) opts.log(`the target fetched ${substituted} paths from its binary caches`);
    else if (r.code !== 0) opts.log('the target could not substitute any path: sending all');
  }
  let bytesSent = 0;
  if (missing.length > 0) {
    opts.log(`sending ${missing.length} of ${closure.length} paths`);
    bytesSent = await sendPaths(session, missing, root, bin);
  }
  return { closure, present, substituted, sent: missing.length, bytesSent };
}
