/**
 * fetchInfectScript against a loopback HTTP server this test starts (127.0.0.1 only), serving the
 * nixos-infect STAND-IN (test/standins/nixos-infect): checked by sha256 before it is returned,
 * http:// only with a sha256, bounded in size. The stand-in also carries every patch anchor.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError, VpsNixosError } from '../../src/errors';
import { fetchInfectScript, patchInfectScript } from '../../src/infect/script';

const standin = join(__dirname, '..', '..', 'test', 'standins', 'nixos-infect');
const body = readFileSync(standin);
const sha = createHash('sha256').update(body).digest('hex');
const big = Buffer.concat([Buffer.from('#!/bin/sh\n'), Buffer.alloc(2 * 1024 * 1024, 0x23)]);
let server: Server;
let base: string;
let dir: string;
const requests: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.url === '/nixos-infect') res.end(body);
    else if (req.url === '/big') res.end(big);
    else if (req.url === '/big-chunked') {
      // no Content-Length: the limit must hold while streaming
      res.writeHead(200, { 'Transfer-Encoding': 'chunked' });
      for (let i = 0; i < 40; i++) res.write(Buffer.alloc(64 * 1024, 0x23));
      res.end();
    } else if (req.url === '/slow') {
      res.writeHead(200);
      res.write('#!/bin/sh\n'); // then nothing: the timeout must end it
    } else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  return new Promise((r) => server.close(r));
});
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vps-nixos-infect-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const logs: string[] = [];
const req = (url: string, sha256?: string) => ({
  url,
  sha256,
  downloadDir: join(dir, 'dl'),
  log: (l: string) => logs.push(l),
});

describe('fetchInfectScript', () => {
  it('downloads over http with the right sha256 and returns the text', async () => {
    const r = await fetchInfectScript(req(`${base}/nixos-infect`, sha.toUpperCase()));
    expect(r).toMatchObject({ sha256: sha, bytes: body.length, source: 'url', verified: true });
    expect(r.text).toBe(body.toString('utf8'));
    expect(readFileSync(r.path)).toEqual(body);
  });

  it('refuses a wrong sha256, naming both hashes and the URL, and writes nothing', async () => {
    const wrong = 'b'.repeat(64);
    const err = await fetchInfectScript(req(`${base}/nixos-infect`, wrong)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VpsNixosError);
    const e = err as VpsNixosError;
    expect(e.message).toContain(sha);
    expect(e.message).toContain(wrong);
    expect(e.message).toContain(`${base}/nixos-infect`);
    expect(e.fix).toMatch(/infect-sha256/);
    expect(existsSync(join(dir, 'dl', 'nixos-infect'))).toBe(false);
  });

  it('refuses http:// without a sha256 before downloading', async () => {
    const before = requests.length;
    const err = await fetchInfectScript(req(`${base}/nixos-infect`)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).input).toBe('infect-sha256');
    expect(requests.length).toBe(before);
  });

  it('refuses a malformed sha256', async () => {
    await expect(fetchInfectScript(req(`${base}/nixos-infect`, 'abc'))).rejects.toThrow(
      /infect-sha256/,
    );
  });

  it('refuses an oversize download (Content-Length)', async () => {
    await expect(fetchInfectScript(req(`${base}/big`, sha))).rejects.toThrow(
      /over the 1\.0 MiB limit/,
    );
  });

  it('refuses an oversize download while streaming (no Content-Length)', async () => {
    await expect(fetchInfectScript(req(`${base}/big-chunked`, sha))).rejects.toThrow(
      /more than 1\.0 MiB/,
    );
  });

  it('gives up on a server that stops sending (idle timeout), keeping no partial file', async () => {
    await expect(
      fetchInfectScript({ ...req(`${base}/slow`, sha), idleTimeoutMs: 500 }),
    ).rejects.toThrow(/sent nothing for 0\.5 s after 10 B \(idle timeout\)/);
    expect(readdirSync(join(dir, 'dl'))).toEqual([]);
  });

  it('gives up at the overall deadline (timeoutMs)', async () => {
    await expect(
      fetchInfectScript({ ...req(`${base}/slow`, sha), timeoutMs: 500 }),
    ).rejects.toThrow(/not finished within 0\.5 s \(the overall deadline/);
  });

  it('shows the URL without its token', async () => {
    const err = await fetchInfectScript(req(`${base}/nope?token=SECRET`, sha)).catch(
      (e: unknown) => e,
    );
    expect((err as Error).message).toMatch(/HTTP 404/);
    expect((err as Error).message).not.toContain('SECRET');
  });

  it('names the HTTP status of a missing file', async () => {
    await expect(fetchInfectScript(req(`${base}/nope`, sha))).rejects.toThrow(/HTTP 404/);
  });

  it('reads a local file and checks its sha256', async () => {
    const r = await fetchInfectScript(req(standin, sha));
    expect(r).toMatchObject({ sha256: sha, source: 'file', verified: true });
    await expect(fetchInfectScript(req(standin, 'c'.repeat(64)))).rejects.toThrow(sha);
  });

  it('refuses a path that is not a file', async () => {
    const err = await fetchInfectScript(req(join(dir, 'missing'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).input).toBe('infect-url');
  });
});

describe('the stand-in', () => {
  it('carries every anchor the patches need', () => {
    const r = patchInfectScript(body.toString('utf8'), { channel: 'nixos-25.11' });
    expect(r.patches.filter((p) => !p.applied)).toEqual([]);
    expect(r.text).toContain('mktemp /var/tmp/nixos-infect.XXXXX.swp');
    expect(r.text).toContain('rm -vf /var/tmp/nixos-infect.*.swp');
  });
});
