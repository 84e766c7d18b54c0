/**
 * The one downloader (issue 20): the kexec tarball and the nixos-infect script both come through
 * here. https, or plain http only when the caller pins a sha256; an idle timeout (connect, answer,
 * and between bytes) and an overall deadline; a size cap checked against Content-Length before
 * reading and again while streaming; at most a few redirects, never from https to http. The body
 * streams into `<file>.part` in a private directory with its sha256 computed on the way, and only a
 * complete, matching file is renamed into place; on any failure the part is removed.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, openSync, renameSync, rmSync } from 'node:fs';
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InputError, VpsNixosError } from '../errors';
import { formatBytes } from '../size';

/** Above this a download is refused unless the caller gives its own cap. */
export const DOWNLOAD_MAX_BYTES = 1024 ** 3;
/** Connect, wait for the answer, or wait between two reads: each at most this long. */
export const DOWNLOAD_IDLE_TIMEOUT_MS = 30_000;
/** The whole download, redirects included. */
export const DOWNLOAD_DEADLINE_MS = 15 * 60_000;
export const DOWNLOAD_MAX_REDIRECTS = 5;

export interface DownloadRequest {
  /** An https URL, or http together with `sha256`. */
  url: string;
  /** The pinned sha256 (hex, any case). Required for http; a mismatch fails and keeps no file. */
  sha256?: string;
  /** A private directory (created 0700 if missing); the file is written 0600. */
  dir: string;
  fileName: string;
  /** How messages name the file: `kexec-tarball`, `the infect script`. */
  what: string;
  /** The input that holds the URL (`kexec-tarball`) and the one that pins its hash. */
  input: string;
  sha256Input: string;
  /** Size cap in bytes (default DOWNLOAD_MAX_BYTES); exactly this many is fine. */
  maxBytes?: number;
  /** How the cap reads in a message, e.g. `installer-budget 400.0 MiB` (default `the … limit`). */
  limitName?: string;
  /** The fix shown when the cap is hit. */
  limitFix?: string;
  /** The fix shown when the sha256 differs. */
  sha256Fix?: string;
  idleTimeoutMs?: number;
  deadlineMs?: number;
  maxRedirects?: number;
  /** PEM certificates trusted instead of Node's bundled CAs (tests; a private mirror). */
  ca?: string | Buffer;
  log?: (line: string) => void;
}

export interface Downloaded {
  path: string;
  bytes: number;
  /** sha256 of the bytes written, lower-case hex. */
  sha256: string;
  /** The URL that served the body, as displayUrl shows it. */
  finalUrl: string;
  redirects: number;
}

export type DownloadFailure =
  | 'connect'
  | 'status'
  | 'too-large'
  | 'truncated'
  | 'idle-timeout'
  | 'deadline'
  | 'redirects'
  | 'insecure-redirect'
  | 'sha256'
  | 'write';

/** A download that failed after its URL was accepted; no file is left behind. */
export class DownloadError extends VpsNixosError {
  constructor(
    readonly reason: DownloadFailure,
    message: string,
    fix: string,
  ) {
    super(message, fix);
  }
}

/**
 * The URL as messages and logs show it: user info and query values replaced by `***` (they are
 * where tokens live), the fragment dropped. A URL with none of these is returned unchanged. Pure.
 */
export function displayUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw.trim());
  } catch {
    return raw.replace(/\/\/[^/?#\s]*@/, '//***@').replace(/[?#].*$/, '?***');
  }
  if (!u.username && !u.password && !u.search && !u.hash) return raw.trim();
  const userinfo = u.username || u.password ? '***@' : '';
  const query = u.search
    ? '?' +
      u.search
        .slice(1)
        .split('&')
        .map((p) => (p.includes('=') ? `${p.slice(0, p.indexOf('='))}=***` : '***'))
        .join('&')
    : '';
  return `${u.protocol}//${userinfo}${u.host}${u.pathname}${query}`;
}

/** The subset of DownloadRequest that says whether a URL may be fetched at all. */
export type DownloadSubject = Pick<DownloadRequest, 'url' | 'sha256' | 'input' | 'sha256Input'>;

/**
 * Accepts https, and http only with a well-formed sha256; throws InputError otherwise, before any
 * connection. Pure.
 */
export function checkDownloadUrl(s: DownloadSubject): URL {
  const shown = displayUrl(s.url);
  const expected = s.sha256?.trim().toLowerCase() || undefined;
  let url: URL;
  try {
    url = new URL(s.url.trim());
  } catch {
    throw new InputError(s.input, `'${shown}' is not a URL`, 'give an https URL or a local file');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InputError(
      s.input,
      `'${shown}' is not an http(s) URL`,
      'give an https URL or a local file',
    );
  }
  if (expected !== undefined && !/^[0-9a-f]{64}$/.test(expected)) {
    throw new InputError(
      s.sha256Input,
      `'${s.sha256}' is not a sha256`,
      'write the 64 hex digits sha256sum prints',
    );
  }
  if (url.protocol === 'http:' && !expected) {
    throw new InputError(
      s.sha256Input,
      `is required to download ${shown} over plain http`,
      `use https, or pin the file's sha256 in ${s.sha256Input} (sha256sum FILE)`,
    );
  }
  return url;
}

/**
 * Where a redirect leads, or why it is not followed: a missing Location, a scheme other than
 * http(s), or https to http (which would drop the transport's protection). Pure.
 */
export function redirectTarget(
  from: URL,
  location: string | undefined,
): URL | { reason: 'redirects' | 'insecure-redirect'; why: string } {
  if (!location) return { reason: 'redirects', why: 'a redirect without a Location header' };
  let to: URL;
  try {
    to = new URL(location, from);
  } catch {
    return { reason: 'redirects', why: `a redirect to '${displayUrl(location)}', not a URL` };
  }
  if (to.protocol !== 'https:' && to.protocol !== 'http:')
    return { reason: 'redirects', why: `a redirect to ${displayUrl(to.href)}, not http(s)` };
  if (from.protocol === 'https:' && to.protocol === 'http:')
    return {
      reason: 'insecure-redirect',
      why: `it redirects to ${displayUrl(to.href)}: https to plain http is never followed`,
    };
  return to;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const secs = (ms: number) => `${ms / 1000} s`;

/** Streams `req.url` into `req.dir/req.fileName` and returns its path, size and sha256. */
export async function download(req: DownloadRequest): Promise<Downloaded> {
  const shown = displayUrl(req.url);
  let url = checkDownloadUrl(req);
  const expected = req.sha256?.trim().toLowerCase() || undefined;
  const maxBytes = req.maxBytes ?? DOWNLOAD_MAX_BYTES;
  const idleMs = req.idleTimeoutMs ?? DOWNLOAD_IDLE_TIMEOUT_MS;
  const deadlineMs = req.deadlineMs ?? DOWNLOAD_DEADLINE_MS;
  const maxRedirects = req.maxRedirects ?? DOWNLOAD_MAX_REDIRECTS;
  const limitName = req.limitName ?? `the ${formatBytes(maxBytes)} limit`;
  const reach = `check ${req.input} and that the runner can reach it`;
  const slow = `${reach}; or download it beforehand and give ${req.input} the local file`;
  const fail = (reason: DownloadFailure, why: string, fix = reach) =>
    new DownloadError(reason, `cannot download ${req.what} ${shown}: ${why}`, fix);
  const tooLarge = (size: string) =>
    new DownloadError(
      'too-large',
      `${req.what} ${shown} is ${size}, over ${limitName}`,
      req.limitFix ?? `check ${req.input}: it should name the file itself, not a page`,
    );

  mkdirSync(req.dir, { recursive: true, mode: 0o700 });
  const path = join(req.dir, req.fileName);
  const part = `${path}.part`;
  req.log?.(`downloading ${req.what} ${shown}`);

  let current: ClientRequest | undefined;
  let failure: DownloadError | undefined;
  let phase: 'connect' | 'answer' | 'body' = 'connect';
  let bytes = 0;
  let redirects = 0;
  const stop = (err: DownloadError) => {
    failure ??= err;
    current?.destroy(err);
  };
  const deadline = setTimeout(
    () =>
      stop(
        fail(
          'deadline',
          `not finished within ${secs(deadlineMs)} (the overall deadline; ${formatBytes(bytes)} received)`,
          slow,
        ),
      ),
    deadlineMs,
  );
  const onIdle = () =>
    stop(
      phase === 'connect'
        ? fail('idle-timeout', `could not connect within ${secs(idleMs)}`)
        : phase === 'answer'
          ? fail('idle-timeout', `no answer within ${secs(idleMs)}`)
          : fail(
              'idle-timeout',
              `the server sent nothing for ${secs(idleMs)} after ${formatBytes(bytes)} (idle timeout)`,
              slow,
            ),
    );

  try {
    let res: IncomingMessage;
    for (; ; redirects++) {
      if (failure) throw failure;
      phase = 'connect';
      res = await get(url, { idleMs, ca: req.ca }, (r) => {
        current = r;
        r.on('timeout', onIdle);
        r.on('socket', (s) => s.once('connect', () => (phase = 'answer')));
      });
      phase = 'body';
      const status = res.statusCode ?? 0;
      if (!REDIRECTS.has(status)) break;
      res.destroy();
      const to = redirectTarget(url, res.headers.location);
      if (!(to instanceof URL)) {
        throw fail(
          to.reason,
          to.why,
          to.reason === 'insecure-redirect'
            ? `give ${req.input} an https URL that stays on https`
            : `check ${req.input}`,
        );
      }
      if (redirects + 1 > maxRedirects) {
        throw fail(
          'redirects',
          `more than ${maxRedirects} redirects (the last to ${displayUrl(to.href)})`,
          `give ${req.input} the final URL`,
        );
      }
      url = to;
    }

    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) {
      res.destroy();
      throw fail(
        'status',
        `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`,
        `check ${req.input}`,
      );
    }
    const length = res.headers['content-length'];
    const declared = length && /^\d+$/.test(length) ? Number(length) : undefined;
    if (declared !== undefined && declared > maxBytes) {
      res.destroy();
      throw tooLarge(`${formatBytes(declared)} (Content-Length)`);
    }

    const hash = createHash('sha256');
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        bytes += chunk.length;
        if (bytes > maxBytes) {
          failure ??= tooLarge(`more than ${formatBytes(maxBytes)}`);
          done(failure);
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    rmSync(part, { force: true });
    // Opened here, not inside the stream, so the file exists (and is removed) whatever fails next.
    const fd = openSync(part, 'wx', 0o600);
    await pipeline(res, meter, createWriteStream('', { fd }));
    if (failure) throw failure;
    if (declared !== undefined && bytes !== declared) {
      throw fail(
        'truncated',
        `the connection closed after ${bytes} of ${declared} bytes`,
        `${reach}; try again`,
      );
    }
    const sha256 = hash.digest('hex');
    if (expected !== undefined && expected !== sha256) {
      throw new DownloadError(
        'sha256',
        `${req.what} ${shown} has sha256 ${sha256}, expected ${expected}; it was not used and nothing was uploaded`,
        req.sha256Fix ??
          `if the file changed on purpose, update ${req.sha256Input}; otherwise do not use it`,
      );
    }
    renameSync(part, path);
    return { path, bytes, sha256, finalUrl: displayUrl(url.href), redirects };
  } catch (err) {
    rmSync(part, { force: true });
    if (failure) throw failure;
    if (err instanceof VpsNixosError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.path !== undefined)
      throw fail(
        'write',
        `cannot write ${e.path}: ${e.message}`,
        "free space in the runner's temp dir",
      );
    if (phase === 'body' && (e.code === 'ECONNRESET' || e.message === 'aborted'))
      throw fail(
        'truncated',
        `the connection closed after ${formatBytes(bytes)}`,
        `${reach}; try again`,
      );
    throw fail('connect', e.message);
  } finally {
    clearTimeout(deadline);
    current?.destroy();
  }
}

/** One GET, resolved with the response head; `onRequest` sees the request before it is sent. */
function get(
  url: URL,
  opts: { idleMs: number; ca?: string | Buffer },
  onRequest: (r: ClientRequest) => void,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const options = {
      // A fresh connection per request: nothing lingers in a pool after the download.
      agent: false as const,
      // Before the socket connects too, so it bounds the connect as well.
      timeout: opts.idleMs,
      // Plain bytes, so Content-Length is the file's size and the sha256 is of the file as served.
      headers: { 'accept-encoding': 'identity', 'user-agent': 'vps-nixos' },
    };
    const r =
      url.protocol === 'https:'
        ? https.request(url, opts.ca ? { ...options, ca: opts.ca } : options, resolve)
        : http.request(url, options, resolve);
    onRequest(r);
    r.on('error', reject);
    r.end();
  });
}
