/**
 * The build stage with a real Nix (Debian's nix-bin), offline. The configurations are stand-ins
 * (no nixpkgs here: see test/STANDINS.md); everything else — eval, build, path-info, the file
 * binary cache, nix-store --delete — is the real thing.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli';
import {
  flakeText,
  inputDir,
  nixSync,
  OFFLINE_NIX_CONFIG,
  standinFlake,
} from '../helpers/nixflake';

jest.setTimeout(180_000);
const env = { NIX_CONFIG: OFFLINE_NIX_CONFIG };

interface BuildDoc {
  toplevel: string;
  diskScript: string | null;
  closure: {
    pathCount: number;
    narBytes: number;
    top: { path: string; narBytes: number; closureBytes: number }[];
    topOwn: { path: string; narBytes: number }[];
    leaks: { path: string; option: string }[];
    trimming: {
      untrimmedNarBytes: number;
      savedBytes: number;
      removed: { path: string; narBytes: number }[];
    } | null;
  };
  cache: { key: string; hit: string; restoredPaths: number; saved: string; bytes?: number } | null;
}

async function build(flakeRef: string, extra: string[] = []) {
  const r = await runCli(['build', '--flake', `${flakeRef}#standin`, '--json', ...extra], {
    env,
    timeoutMs: 170_000,
  });
  return { ...r, doc: r.code === 0 ? (JSON.parse(r.stdout) as BuildDoc) : undefined };
}

const cacheDir = () => mkdtempSync(join(tmpdir(), 'vps-nixos-cache-'));

describe('vps-nixos build (real Nix, stand-in configuration)', () => {
  it('reports the closure exactly as Nix measures it', async () => {
    const f = standinFlake({ tag: `report-${Date.now()}` });
    const r = await build(f.ref, ['--cache', 'false']);
    if (r.code !== 0) throw new Error(r.stderr + r.stdout);
    const doc = r.doc!;
    const paths = nixSync(['path-info', '-r', doc.toplevel]).trim().split('\n');
    expect(doc.closure.pathCount).toBe(paths.length);
    expect(doc.closure.pathCount).toBe(5); // toplevel, app, libb, liba, firmware
    const closureSize = Number(
      nixSync(['path-info', '-S', doc.toplevel]).trim().split(/\s+/).pop(),
    );
    expect(doc.closure.narBytes).toBe(closureSize);
    // Independently: the NAR serialisation of each path, as nix-store --dump writes it.
    const dumped = paths.reduce(
      (sum, p) => sum + execFileSync('nix-store', ['--dump', p], { maxBuffer: 1 << 26 }).length,
      0,
    );
    expect(doc.closure.narBytes).toBe(dumped);
    expect(doc.closure.topOwn[0]!.path).toMatch(/-linux-firmware-20241110$/);
    expect(doc.closure.top[0]!.closureBytes).toBeGreaterThanOrEqual(
      doc.closure.top[1]!.closureBytes,
    );
    expect(doc.closure.leaks).toEqual([
      expect.objectContaining({
        path: expect.stringMatching(/linux-firmware/),
        option: 'hardware.enableRedistributableFirmware = false',
      }),
    ]);
    expect(doc.diskScript).toBeNull();
  });

  it('fails exactly above the closure budget, naming the biggest contributors', async () => {
    const f = standinFlake({ tag: 'budget' });
    const first = await build(f.ref, ['--cache', 'false']);
    const n = first.doc!.closure.narBytes;
    const atLimit = await build(f.ref, ['--cache', 'false', '--closure-budget', String(n)]);
    expect(atLimit.code).toBe(0);
    const over = await build(f.ref, ['--cache', 'false', '--closure-budget', String(n - 1)]);
    expect(over.code).not.toBe(0);
    expect(over.stdout + over.stderr).toMatch(/over closure-budget/);
    expect(over.stdout + over.stderr).toMatch(/linux-firmware-20241110 3\.0 MiB/);
    expect(over.stdout + over.stderr).toMatch(/hardware\.enableRedistributableFirmware/);
  });

  it('round-trips the closure through the file cache: export, delete, restore, nothing rebuilt', async () => {
    const f = standinFlake({ tag: `cache-${Date.now()}`, uniqueDeps: true });
    const dir = cacheDir();
    const cold = await build(f.ref, ['--cache-dir', dir]);
    expect(cold.code).toBe(0);
    expect(cold.doc!.cache).toMatchObject({ hit: 'miss', saved: 'saved' });
    expect(cold.doc!.cache!.bytes).toBeGreaterThan(0);
    const paths = nixSync(['path-info', '-r', cold.doc!.toplevel]).trim().split('\n');
    // Referrers first: Nix 2.8 refuses to delete a path whose referrer is still valid.
    execFileSync('nix-store', ['--delete', ...[...paths].reverse()], {
      env: { ...process.env, NIX_CONFIG: OFFLINE_NIX_CONFIG },
      stdio: 'ignore',
    });
    for (const p of paths) expect(() => nixSync(['path-info', p])).toThrow();

    const warm = await build(f.ref, ['--cache-dir', dir]);
    expect(warm.code).toBe(0);
    expect(warm.doc!.cache).toMatchObject({
      hit: 'exact',
      restoredPaths: paths.length,
      saved: 'not-needed',
      key: cold.doc!.cache!.key,
    });
    expect(warm.doc!.toplevel).toBe(cold.doc!.toplevel);
    expect(warm.stderr).not.toMatch(/building '/);
    for (const p of paths) expect(nixSync(['path-info', p]).trim()).toBe(p);
  });

  it('keys the cache on the configuration and flake.lock, not on unrelated files', async () => {
    const input = inputDir('one');
    const f = standinFlake({ tag: 'key', inputDir: input });
    const dir = cacheDir();
    const key = async () => (await build(f.ref, ['--cache-dir', dir])).doc!.cache!.key;
    const k1 = await key();
    writeFileSync(join(f.dir, 'README.md'), 'unrelated\n');
    expect(await key()).toBe(k1);
    writeFileSync(join(input, 'data'), 'two');
    nixSync(['flake', 'update'], f.dir);
    const k2 = await key();
    expect(k2).not.toBe(k1);
    writeFileSync(join(f.dir, 'flake.nix'), flakeText({ tag: 'key-changed', inputDir: input }));
    const k3 = await key();
    expect(k3).not.toBe(k2);
    // A changed configuration restores from the last closure (restore-keys prefix).
    const partial = await build(f.ref, ['--cache-dir', dir]);
    expect(partial.doc!.cache!.hit).toBe('exact');
    expect(k3.slice(0, k3.lastIndexOf('-'))).toBe(k1.slice(0, k1.lastIndexOf('-')));
  });

  it('starts a changed configuration from the previous closure (partial hit)', async () => {
    const dir = cacheDir();
    const f = standinFlake({ tag: `p1-${Date.now()}` });
    expect((await build(f.ref, ['--cache-dir', dir])).doc!.cache!.hit).toBe('miss');
    writeFileSync(join(f.dir, 'flake.nix'), flakeText({ tag: `p2-${Date.now()}` }));
    const next = await build(f.ref, ['--cache-dir', dir]);
    expect(next.doc!.cache).toMatchObject({ hit: 'partial', saved: 'saved' });
    expect(next.doc!.cache!.restoredPaths).toBeGreaterThan(0);
  });

  it('builds the disk script when the configuration has one, and refuses kexec without one', async () => {
    const withDisko = standinFlake({ tag: 'disko', disko: true });
    // The kexec method also needs an installer; ours needs nixpkgs, so hand it a file.
    const tar = join(cacheDir(), 'installer.tar.gz');
    writeFileSync(tar, 'stand-in');
    const ok = await build(withDisko.ref, [
      '--cache',
      'false',
      '--method',
      'kexec',
      '--kexec-tarball',
      tar,
    ]);
    expect(ok.code).toBe(0);
    expect(ok.doc!.diskScript).toMatch(/^\/nix\/store\/.*-disko$/);
    const without = standinFlake({ tag: 'nodisko' });
    const r = await build(without.ref, [
      '--cache',
      'false',
      '--method',
      'kexec',
      '--kexec-tarball',
      tar,
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/has no disko configuration/);
    expect(r.stdout + r.stderr).toMatch(/disko\.nixosModules\.disko|method infect/);
  });

  it('measures what the vpsNixos module saves against the same configuration without it', async () => {
    const f = standinFlake({ tag: 'trim', untrimmed: true, uniqueDeps: true });
    const r = await build(f.ref, ['--cache', 'false', '--measure-trimming']);
    expect(r.code).toBe(0);
    const t = r.doc!.closure.trimming!;
    // Exactly what Nix measures for the two closures.
    const untrimmed = nixSync([
      'build',
      '--no-link',
      '--print-build-logs',
      `${f.ref}#nixosConfigurations.standin.config.system.build.vpsNixosUntrimmed`,
      '--json',
    ]);
    const out = (JSON.parse(untrimmed) as { outputs: { out: string } }[])[0]!.outputs.out;
    const closureOf = (p: string) =>
      Number(nixSync(['path-info', '-S', p]).trim().split(/\s+/).pop());
    expect(t.untrimmedNarBytes).toBe(closureOf(out));
    expect(t.savedBytes).toBe(closureOf(out) - r.doc!.closure.narBytes);
    expect(t.removed.map((x) => x.path.replace(/^\/nix\/store\/[a-z0-9]{32}-/, ''))).toEqual([
      'nixos-manual-html-24.11',
      'dejavu-fonts-2.37',
    ]);
    expect(r.stderr).toMatch(/measure-trimming: the module saves 2\.\d MiB/);
    // Without the attribute: a warning that says what to import, and the build still succeeds.
    const plain = await build(standinFlake({ tag: 'notrim' }).ref, [
      '--cache',
      'false',
      '--measure-trimming',
    ]);
    expect(plain.code).toBe(0);
    expect(plain.doc!.closure.trimming).toBeNull();
    expect(plain.stderr).toMatch(
      /no system\.build\.vpsNixosUntrimmed: import our nixosModules\.default/,
    );
  });

  it('says clearly when the attribute or the flake does not exist, or Nix is missing', async () => {
    const f = standinFlake({ tag: 'errors' });
    const noAttr = await runCli(['build', '--flake', `${f.ref}#nope`], { env });
    expect(noAttr.code).not.toBe(0);
    expect(noAttr.stderr + noAttr.stdout).toMatch(/has no nixosConfigurations\.nope/);
    const noFlake = await runCli(['build', '--flake', '/nonexistent/flake#standin'], { env });
    expect(noFlake.code).not.toBe(0);
    expect(noFlake.stderr + noFlake.stdout).toMatch(/flake '\/nonexistent\/flake' not found/);
    const noNix = await runCli(['build', '--flake', `${f.ref}#standin`], {
      env: { ...env, PATH: '/nonexistent' },
    });
    expect(noNix.code).not.toBe(0);
    expect(noNix.stderr + noNix.stdout).toMatch(/Nix is not installed.*install-nix-action/s);
  });
});
