/**
 * The kexec-tarball input: a local file, or a URL served here on loopback, checked by sha256 and
 * against installer-budget before anything would touch a target. (Our own installer needs nixpkgs
 * to build, which is not reachable here: the project's GitHub workflow builds it.)
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadError } from '../../src/net/download';
import { resolveKexecTarball, type KexecRequest } from '../../src/nix/kexec';
import type { Nix } from '../../src/nix/nix';
import {
  releasedInstaller,
  type InstallersManifest,
  type ReleasedInstaller,
} from '../../src/release/installers';
import { runCli } from '../helpers/cli';
import { OFFLINE_NIX_CONFIG, standinFlake } from '../helpers/nixflake';

jest.setTimeout(120_000);
const env = { NIX_CONFIG: OFFLINE_NIX_CONFIG };
const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-kexec-'));
const tarball = join(dir, 'installer.tar.gz');
writeFileSync(tarball, Buffer.alloc(64 * 1024, 7));
const sha = createHash('sha256').update(readFileSync(tarball)).digest('hex');
const flake = standinFlake({ tag: 'kexec' });
let server: Server;
let base: string;
let requests = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    requests++;
    if (req.url === '/installer.tar.gz') res.end(readFileSync(tarball));
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise((r) => server.close(r)));

const build = (extra: string[]) =>
  runCli(['build', '--flake', `${flake.ref}#standin`, '--cache', 'false', '--json', ...extra], {
    env,
  });

describe('kexec-tarball', () => {
  it('uses a local file and reports its sha256 and size', async () => {
    const r = await build(['--kexec-tarball', tarball]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).kexecTarball).toMatchObject({
      path: tarball,
      sha256: sha,
      bytes: 65536,
      source: 'file',
    });
  });

  it('downloads a URL and checks its sha256', async () => {
    const r = await build([
      '--kexec-tarball',
      `${base}/installer.tar.gz`,
      '--kexec-tarball-sha256',
      sha,
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).kexecTarball).toMatchObject({
      sha256: sha,
      bytes: 65536,
      source: 'url',
    });
  });

  it('refuses a download whose sha256 differs, naming both', async () => {
    const wrong = 'a'.repeat(64);
    const r = await build([
      '--kexec-tarball',
      `${base}/installer.tar.gz`,
      '--kexec-tarball-sha256',
      wrong,
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toContain(sha);
    expect(r.stdout + r.stderr).toContain(wrong);
  });

  it('requires a sha256 with a URL, before downloading anything', async () => {
    const before = requests;
    const r = await build(['--kexec-tarball', `${base}/installer.tar.gz`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/input 'kexec-tarball-sha256'/);
    expect(requests).toBe(before);
  });

  it('fails exactly above installer-budget', async () => {
    expect((await build(['--kexec-tarball', tarball, '--installer-budget', '65536'])).code).toBe(0);
    const over = await build(['--kexec-tarball', tarball, '--installer-budget', '65535']);
    expect(over.code).not.toBe(0);
    expect(over.stdout + over.stderr).toMatch(/over installer-budget/);
  });

  it('caps a download at installer-budget', async () => {
    const over = await build([
      '--kexec-tarball',
      `${base}/installer.tar.gz`,
      '--kexec-tarball-sha256',
      sha,
      '--installer-budget',
      '65535',
    ]);
    expect(over.code).not.toBe(0);
    expect(over.stdout + over.stderr).toMatch(/over installer-budget 64\.0 KiB/);
  });

  it('says when the file does not exist', async () => {
    const r = await build(['--kexec-tarball', join(dir, 'missing.tar.gz')]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/input 'kexec-tarball': .* is not a file/);
  });
});

describe('resolveKexecTarball with a URL (the shared downloader)', () => {
  // A URL never reaches nix.
  const nix = {} as Nix;
  const resolve = (tarball: string, extra: Partial<KexecRequest> = {}) => {
    const downloadDir = mkdtempSync(join(dir, 'dl-'));
    const r = resolveKexecTarball(nix, {
      tarball,
      sha256: sha,
      system: 'x86_64-linux',
      downloadDir,
      log: () => undefined,
      ...extra,
    });
    return { r, downloadDir };
  };

  it('streams it into the download dir with its sha256 and size', async () => {
    const { r, downloadDir } = resolve(`${base}/installer.tar.gz`, { budgetBytes: 65536 });
    expect(await r).toMatchObject({
      path: join(downloadDir, 'kexec-installer.tar.gz'),
      sha256: sha,
      bytes: 65536,
      source: 'url',
      from: `${base}/installer.tar.gz`,
    });
  });

  it('refuses it by Content-Length above installer-budget, before reading, leaving no file', async () => {
    const before = requests;
    const { r, downloadDir } = resolve(`${base}/installer.tar.gz`, { budgetBytes: 65535 });
    const err = await r.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).reason).toBe('too-large');
    expect((err as DownloadError).message).toBe(
      `kexec-tarball ${base}/installer.tar.gz is 64.0 KiB (Content-Length), over installer-budget 64.0 KiB`,
    );
    expect((err as DownloadError).fix).toMatch(/raise installer-budget/);
    expect(requests).toBe(before + 1);
    expect(readdirSync(downloadDir)).toEqual([]);
  });

  it('refuses a sha256 mismatch, leaving no file, and shows no token', async () => {
    const { r, downloadDir } = resolve(`http://u:SECRET@${base.slice(7)}/installer.tar.gz`, {
      sha256: 'c'.repeat(64),
    });
    const err = (await r.catch((e: unknown) => e)) as DownloadError;
    expect(err.reason).toBe('sha256');
    expect(err.message).toContain(sha);
    expect(err.message).not.toContain('SECRET');
    expect(readdirSync(downloadDir)).toEqual([]);
  });
});

describe('the installer released with this version', () => {
  // A tarball in the installer layout, served as a release asset from a mirror on loopback.
  const rel = mkdtempSync(join(tmpdir(), 'vps-nixos-released-'));
  mkdirSync(join(rel, 'kexec'));
  writeFileSync(join(rel, 'kexec/bzImage'), Buffer.alloc(1000, 1));
  writeFileSync(join(rel, 'kexec/initrd'), Buffer.alloc(2000, 2));
  writeFileSync(join(rel, 'kexec/run'), '#!/bin/sh\n', { mode: 0o755 });
  const assetPath = join(rel, 'asset.tar.gz');
  execFileSync('tar', ['-C', rel, '-czf', assetPath, 'kexec']);
  const asset = readFileSync(assetPath);
  const assetSha = createHash('sha256').update(asset).digest('hex');
  const manifest = (over: Partial<ReleasedInstaller> = {}): InstallersManifest => ({
    version: '9.9.9',
    baseUrl: 'https://github.com/example/vps-nixos/releases/download/v9.9.9',
    installers: {
      'x86_64-linux': {
        file: 'nixos-kexec-installer-x86_64-linux.tar.gz',
        sha256: assetSha,
        bytes: asset.length,
        sizes: {
          KERNEL_BYTES: '1000',
          INITRD_BYTES: '2000',
          INITRD_UNPACKED_BYTES: '5000',
          INITRAMFS_OPTIONS: 'yes',
        },
        ...over,
      },
    },
  });
  let mirror: Server;
  let mirrorUrl = '';
  let served: string[] = [];
  beforeAll(async () => {
    mirror = createServer((req, res) => {
      served.push(req.url ?? '');
      if (req.url === '/v9.9.9/nixos-kexec-installer-x86_64-linux.tar.gz') res.end(asset);
      else if (req.url === '/v9.9.9/bigger.tar.gz') res.end(Buffer.concat([asset, asset]));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => mirror.listen(0, '127.0.0.1', r));
    mirrorUrl = `http://127.0.0.1:${(mirror.address() as { port: number }).port}/v9.9.9`;
  });
  afterAll(() => new Promise((r) => mirror.close(r)));
  beforeEach(() => {
    served = [];
  });
  const logs: string[] = [];
  const resolveReleased = (m: InstallersManifest, extra: Partial<KexecRequest> = {}) => {
    const downloadDir = mkdtempSync(join(dir, 'rel-'));
    const released = releasedInstaller(m, 'x86_64-linux', '9.9.9', mirrorUrl);
    const r = resolveKexecTarball(failingNix, {
      system: 'x86_64-linux',
      downloadDir,
      released,
      log: (l) => logs.push(l),
      ...extra,
    });
    return { r, downloadDir };
  };
  // Building ours is never reached unless asked for: this Nix fails the test if it is.
  const nixCalls: string[][] = [];
  const failingNix = {
    run: async (args: string[]) => {
      nixCalls.push(args);
      return { code: 1, stdout: '', stderr: 'error: no nixpkgs here (offline)' };
    },
  } as unknown as Nix;

  it('downloads it from the mirror, checks the committed sha256, and takes its sizes from the release', async () => {
    const { r, downloadDir } = resolveReleased(manifest());
    const t = await r;
    expect(t).toMatchObject({
      path: join(downloadDir, 'nixos-kexec-installer-x86_64-linux.tar.gz'),
      sha256: assetSha,
      bytes: asset.length,
      source: 'released',
      sizes: {
        kernelBytes: 1000,
        initrdBytes: 2000,
        initrdUnpackedBytes: 5000,
        rootfsGrows: true,
      },
    });
    expect(t.from).toContain(`${mirrorUrl}/nixos-kexec-installer-x86_64-linux.tar.gz`);
    expect(served).toEqual(['/v9.9.9/nixos-kexec-installer-x86_64-linux.tar.gz']);
    expect(nixCalls).toEqual([]);
    expect(logs.join('\n')).toMatch(/the one released with this version/);
  });

  it('refuses a file that is not the released one (sha256), keeping nothing and building nothing', async () => {
    const { r, downloadDir } = resolveReleased(manifest({ sha256: 'd'.repeat(64) }));
    const err = (await r.catch((e: unknown) => e)) as DownloadError;
    expect(err).toBeInstanceOf(DownloadError);
    expect(err.reason).toBe('sha256');
    expect(err.message).toContain(`expected ${'d'.repeat(64)}`);
    expect(err.fix).toMatch(/not the released file.*kexec-tarball: build/);
    expect(readdirSync(downloadDir)).toEqual([]);
    expect(nixCalls).toEqual([]);
  });

  it('reads not a byte more than the release says', async () => {
    const { r, downloadDir } = resolveReleased(manifest({ file: 'bigger.tar.gz' }));
    const err = (await r.catch((e: unknown) => e)) as DownloadError;
    expect(err.reason).toBe('too-large');
    expect(err.message).toContain(`over its released size`);
    expect(readdirSync(downloadDir)).toEqual([]);
  });

  it('a kexec-tarball given wins over the released one; build builds ours', async () => {
    const { r } = resolveReleased(manifest(), { tarball, sha256: sha });
    expect(await r).toMatchObject({ source: 'file', path: tarball });
    expect(served).toEqual([]);
    const { r: b } = resolveReleased(manifest(), { tarball: 'build' });
    await expect(b).rejects.toThrow(/building our kexec installer failed: .*offline/);
    expect(nixCalls.at(-1)).toEqual(
      expect.arrayContaining([expect.stringMatching(/#packages\.x86_64-linux\.kexec-installer$/)]),
    );
    expect(served).toEqual([]);
  });
});
