/**
 * The one downloader against servers this test starts on 127.0.0.1: plain HTTP (node:http) and
 * HTTPS with a throwaway self-signed certificate made by openssl for this run. Each failure names
 * the URL (without its token), the limit that was hit, and leaves no file behind.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../src/errors';
import { DownloadError, download, type DownloadRequest } from '../../src/net/download';

jest.setTimeout(30_000);

const body = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7) % 251));
const sha = createHash('sha256').update(body).digest('hex');
const KiB = 1024;
const MiB = 1024 * KiB;

const work = mkdtempSync(join(tmpdir(), 'vps-nixos-download-'));
let http: Server;
let tls: Server;
let base: string;
let tlsBase: string;
let ca: string;
const requests: string[] = [];
/** Responses the tests leave hanging; ended in afterAll. */
const open: ServerResponse[] = [];

function route(req: IncomingMessage, res: ServerResponse): void {
  requests.push(req.url ?? '');
  const url = new URL(req.url ?? '/', 'http://x');
  const p = url.pathname;
  if (p === '/file') res.end(body);
  else if (p === '/headers') res.end(JSON.stringify(req.headers));
  else if (p === '/trickle') {
    // One byte, then a long pause: the idle timeout must end it.
    res.writeHead(200, { 'content-length': String(body.length) });
    res.write(body.subarray(0, 1));
    open.push(res);
  } else if (p === '/drip') {
    // A byte every 50 ms, never idle for long, never done: the overall deadline must end it.
    res.writeHead(200, { 'content-length': String(body.length) });
    const t = setInterval(() => res.write(body.subarray(0, 1)), 50);
    res.on('close', () => clearInterval(t));
  } else if (p === '/mute') {
    // Accepts the request, never answers.
    open.push(res);
  } else if (p === '/huge-declared') {
    // 500 MiB announced, nothing sent: refusing it must not wait for (or read) a body.
    res.writeHead(200, { 'content-length': String(500 * MiB) });
    res.flushHeaders();
    open.push(res);
  } else if (p === '/grows') {
    // No Content-Length: the cap must hold while streaming.
    res.writeHead(200, { 'transfer-encoding': 'chunked' });
    for (let i = 0; i < 16; i++) res.write(Buffer.alloc(64 * KiB, 0x23));
    res.end();
  } else if (p === '/cut') {
    res.writeHead(200, { 'content-length': String(body.length) });
    res.write(body.subarray(0, 1000), () => res.socket?.destroy());
  } else if (p.startsWith('/hop/')) {
    // /hop/N redirects N more times, then serves the file.
    const n = Number(p.slice(5));
    if (n > 0) res.writeHead(302, { location: `/hop/${n - 1}` }).end();
    else res.end(body);
  } else if (p === '/to-http') {
    res.writeHead(301, { location: `${base}/file` }).end();
  } else if (p === '/to-https') {
    res.writeHead(307, { location: `${tlsBase}/file` }).end();
  } else res.writeHead(404).end();
}

const listen = (s: Server) =>
  new Promise<string>((r) =>
    s.listen(0, '127.0.0.1', () => r(`127.0.0.1:${(s.address() as { port: number }).port}`)),
  );

beforeAll(async () => {
  const key = join(work, 'key.pem');
  const cert = join(work, 'cert.pem');
  execFileSync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  ca = readFileSync(cert, 'utf8');
  http = createServer(route);
  tls = createTlsServer({ key: readFileSync(key), cert: ca }, route);
  base = `http://${await listen(http)}`;
  tlsBase = `https://${await listen(tls)}`;
});
afterAll(async () => {
  for (const res of open) res.destroy();
  for (const s of [http, tls]) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  rmSync(work, { recursive: true, force: true });
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(work, 'dl-'));
});

const req = (url: string, extra: Partial<DownloadRequest> = {}): DownloadRequest => ({
  url,
  sha256: sha,
  dir,
  fileName: 'thing.bin',
  what: 'the thing',
  input: 'thing-url',
  sha256Input: 'thing-sha256',
  ca,
  ...extra,
});

/** The rejection of a download that must fail. */
async function failure(r: DownloadRequest): Promise<DownloadError> {
  const err = await download(r).then(
    () => new Error('the download succeeded'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DownloadError);
  return err as DownloadError;
}

/** Nothing, not even a partial file, is left in the download directory. */
const expectNoFile = () => expect(readdirSync(dir)).toEqual([]);

describe('download', () => {
  it('streams a file over http with its sha256 pinned, 0600 in a 0700 dir', async () => {
    const logs: string[] = [];
    const r = await download(
      req(`${base}/file`, { sha256: sha.toUpperCase(), log: (l) => logs.push(l) }),
    );
    expect(r).toMatchObject({ bytes: body.length, sha256: sha, redirects: 0 });
    expect(r.path).toBe(join(dir, 'thing.bin'));
    expect(readFileSync(r.path).equals(body)).toBe(true);
    expect(statSync(r.path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['thing.bin']);
    expect(logs).toEqual([`downloading the thing ${base}/file`]);
  });

  it('streams a file over https without a sha256, reporting the one it computed', async () => {
    const r = await download(req(`${tlsBase}/file`, { sha256: undefined }));
    expect(r).toMatchObject({ bytes: body.length, sha256: sha });
    const nested = join(dir, 'a', 'b');
    const n = await download(req(`${tlsBase}/file`, { dir: nested }));
    expect(statSync(nested).mode & 0o777).toBe(0o700);
    expect(n.sha256).toBe(sha);
  });

  it('asks for the bytes as they are stored (no content coding)', async () => {
    const r = await download(req(`${tlsBase}/headers`, { sha256: undefined }));
    const headers = JSON.parse(readFileSync(r.path, 'utf8')) as Record<string, string>;
    expect(headers['accept-encoding']).toBe('identity');
  });

  it('accepts exactly maxBytes and refuses one byte less', async () => {
    await expect(download(req(`${base}/file`, { maxBytes: body.length }))).resolves.toMatchObject({
      bytes: body.length,
    });
    rmSync(join(dir, 'thing.bin'));
    const e = await failure(req(`${base}/file`, { maxBytes: body.length - 1 }));
    expect(e.reason).toBe('too-large');
    expectNoFile();
  });

  it('refuses a wrong sha256, naming both hashes, and keeps no file', async () => {
    const wrong = 'a'.repeat(64);
    const e = await failure(req(`${base}/file`, { sha256: wrong }));
    expect(e.reason).toBe('sha256');
    expect(e.message).toContain(sha);
    expect(e.message).toContain(wrong);
    expect(e.message).toContain(`${base}/file`);
    expect(e.fix).toMatch(/thing-sha256/);
    expectNoFile();
  });

  it('stops a server that goes quiet mid-body at the idle timeout and removes the partial file', async () => {
    const t0 = Date.now();
    const pending = failure(req(`${base}/trickle`, { idleTimeoutMs: 600 }));
    // Mid-download the byte so far sits in a .part file...
    await new Promise((r) => setTimeout(r, 300));
    expect(readdirSync(dir)).toEqual(['thing.bin.part']);
    const e = await pending;
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(e.reason).toBe('idle-timeout');
    expect(e.message).toBe(
      `cannot download the thing ${base}/trickle: the server sent nothing for 0.6 s after 1 B (idle timeout)`,
    );
    expect(e.fix).toMatch(/thing-url/);
    // ...which is gone once it failed.
    expectNoFile();
  });

  it('stops a server that never answers at the idle timeout', async () => {
    const e = await failure(req(`${base}/mute`, { idleTimeoutMs: 300 }));
    expect(e.reason).toBe('idle-timeout');
    expect(e.message).toMatch(/no answer within 0\.3 s$/);
    expectNoFile();
  });

  it('stops a trickle that never goes idle at the overall deadline', async () => {
    const t0 = Date.now();
    const e = await failure(req(`${base}/drip`, { idleTimeoutMs: 1_000, deadlineMs: 600 }));
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(e.reason).toBe('deadline');
    expect(e.message).toMatch(
      /not finished within 0\.6 s \(the overall deadline; \d+ B received\)/,
    );
    expect(e.fix).toMatch(/local file/);
    expectNoFile();
  });

  it('refuses an oversized Content-Length before reading any body', async () => {
    const t0 = Date.now();
    // The body never comes: refusing quickly shows nothing waited for it.
    const e = await failure(req(`${base}/huge-declared`, { maxBytes: MiB, idleTimeoutMs: 10_000 }));
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(e.reason).toBe('too-large');
    expect(e.message).toBe(
      `the thing ${base}/huge-declared is 500.0 MiB (Content-Length), over the 1.0 MiB limit`,
    );
    expectNoFile();
  });

  it('stops a body without Content-Length that grows past the cap', async () => {
    const e = await failure(
      req(`${base}/grows`, {
        maxBytes: 256 * KiB,
        limitName: 'thing-budget 256.0 KiB',
        limitFix: 'raise thing-budget',
      }),
    );
    expect(e.reason).toBe('too-large');
    expect(e.message).toBe(
      `the thing ${base}/grows is more than 256.0 KiB, over thing-budget 256.0 KiB`,
    );
    expect(e.fix).toBe('raise thing-budget');
    expectNoFile();
  });

  it('says when the connection closes before Content-Length bytes came', async () => {
    const e = await failure(req(`${base}/cut`));
    expect(e.reason).toBe('truncated');
    expect(e.message).toMatch(/connection closed after/);
    expectNoFile();
  });

  it('follows up to maxRedirects redirects and no more', async () => {
    const ok = await download(req(`${base}/hop/5`));
    expect(ok).toMatchObject({ sha256: sha, redirects: 5, finalUrl: `${base}/hop/0` });
    rmSync(ok.path);
    const e = await failure(req(`${base}/hop/6`));
    expect(e.reason).toBe('redirects');
    expect(e.message).toBe(
      `cannot download the thing ${base}/hop/6: more than 5 redirects (the last to ${base}/hop/0)`,
    );
    expectNoFile();
    const two = await failure(req(`${base}/hop/3`, { maxRedirects: 2 }));
    expect(two.message).toMatch(/more than 2 redirects/);
  });

  it('follows http to https', async () => {
    const r = await download(req(`${base}/to-https`));
    expect(r).toMatchObject({ sha256: sha, redirects: 1, finalUrl: `${tlsBase}/file` });
  });

  it('never follows https to http, even with a sha256', async () => {
    const before = requests.length;
    const e = await failure(req(`${tlsBase}/to-http`));
    expect(e.reason).toBe('insecure-redirect');
    expect(e.message).toContain(
      `it redirects to ${base}/file: https to plain http is never followed`,
    );
    // The http server was never asked.
    expect(requests.slice(before)).toEqual(['/to-http']);
    expectNoFile();
  });

  it('refuses plain http without a sha256 before connecting', async () => {
    const before = requests.length;
    const err = await download(req(`${base}/file`, { sha256: undefined })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).input).toBe('thing-sha256');
    expect(requests.length).toBe(before);
    expectNoFile();
  });

  it('names the HTTP status', async () => {
    const e = await failure(req(`${base}/nope`));
    expect(e.reason).toBe('status');
    expect(e.message).toBe(`cannot download the thing ${base}/nope: HTTP 404 Not Found`);
    expectNoFile();
  });

  it('says when it cannot connect', async () => {
    const closed = createServer();
    const addr = await listen(closed);
    await new Promise((r) => closed.close(r));
    const e = await failure(req(`http://${addr}/file`));
    expect(e.reason).toBe('connect');
    expect(e.message).toMatch(/ECONNREFUSED/);
  });

  it('rejects a certificate it does not trust', async () => {
    const e = await failure(req(`${tlsBase}/file`, { ca: undefined }));
    expect(e.reason).toBe('connect');
    expect(e.message).toMatch(/certificate/);
  });

  it('never shows a token from the URL', async () => {
    const url = `http://user:s3cret-token@${base.slice(7)}/nope?sig=abc123&x=1`;
    const e = await failure(req(url));
    expect(`${e.message} ${e.fix}`).not.toMatch(/s3cret|abc123/);
    expect(e.message).toContain(`http://***@${base.slice(7)}/nope?sig=***&x=***`);
    const wrong = await failure(req(url.replace('/nope', '/file'), { sha256: 'b'.repeat(64) }));
    expect(`${wrong.message} ${wrong.fix}`).not.toMatch(/s3cret|abc123/);
  });

  it('replaces an earlier file only with a complete one', async () => {
    const first = await download(req(`${base}/file`));
    const e = await failure(req(`${base}/cut`));
    expect(e.reason).toBe('truncated');
    expect(existsSync(first.path)).toBe(true);
    expect(readFileSync(first.path).equals(body)).toBe(true);
    expect(readdirSync(dir)).toEqual(['thing.bin']);
  });
});
