/**
 * The build stage with a real Nix (Debian's nix-bin), offline. The configurations are stand-ins
 * (no nixpkgs here: see test/STANDINS.md); everything else — eval, build, path-info, the file
 * binary cache, nix-store --delete — is the real thing.
 */
import { execFile, execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli';
import { parseConfig, type RawInputs } from '../../src/inputs';
import { runPipeline } from '../../src/pipeline/run';
import { buildSystem, evalToplevel } from '../../src/nix/build';
import type { StageName } from '../../src/pipeline/record';
import type { Facts } from '../../src/probe/facts';
import type { Nix } from '../../src/nix/nix';
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
  cache: { key: string; hit: string; restoredPaths: number; restoredKey?: string } | null;
  cacheSave: {
    key: string;
    saved: string;
    detail: string;
    closurePaths: number;
    servedPaths: number;
    savedPaths: number;
    bytes?: number;
    replaced?: { key: string; deleted: boolean };
  } | null;
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
    expect(cold.doc!.cache).toMatchObject({ hit: 'miss', restoredPaths: 0 });
    // no binary cache serves any of it (substituters is empty): all of it is saved
    expect(cold.doc!.cacheSave).toMatchObject({ saved: 'saved', servedPaths: 0 });
    expect(cold.doc!.cacheSave!.savedPaths).toBe(cold.doc!.cacheSave!.closurePaths);
    expect(cold.doc!.cacheSave!.bytes).toBeGreaterThan(0);
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
      key: cold.doc!.cache!.key,
    });
    expect(warm.doc!.cacheSave).toMatchObject({ saved: 'exists' });
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
    // The same configuration again: in the store, nothing restored, the entry is there.
    const again = await build(f.ref, ['--cache-dir', dir]);
    expect(again.doc!.cache!.hit).toBe('in-store');
    expect(again.doc!.cacheSave!.saved).toBe('exists');
    expect(k3.slice(0, k3.lastIndexOf('-'))).toBe(k1.slice(0, k1.lastIndexOf('-')));
  });

  it('a changed configuration starts from its line’s previous entry and replaces it (one entry per line)', async () => {
    const dir = cacheDir();
    const f = standinFlake({ tag: `p1-${Date.now()}` });
    const first = await build(f.ref, ['--cache-dir', dir]);
    expect(first.doc!.cache!.hit).toBe('miss');
    writeFileSync(join(f.dir, 'flake.nix'), flakeText({ tag: `p2-${Date.now()}` }));
    const next = await build(f.ref, ['--cache-dir', dir]);
    // the previous closure's paths are all in this store: none is imported again
    expect(next.doc!.cache).toMatchObject({
      hit: 'partial',
      restoredKey: first.doc!.cache!.key,
      restoredPaths: 0,
    });
    expect(next.doc!.cacheSave).toMatchObject({
      saved: 'saved',
      replaced: { key: first.doc!.cache!.key, deleted: true },
    });
    expect(
      readdirSync(join(dir, 'entries')).filter((e) => e.startsWith('vps-nixos-closure')),
    ).toEqual([next.doc!.cache!.key]);
  });

  it('push-to hands the paths to the binary cache’s own CLI (a recording stand-in cachix)', async () => {
    const f = standinFlake({ tag: `push-${Date.now()}` });
    const bin = mkdtempSync(join(tmpdir(), 'vps-nixos-bin-'));
    const record = join(bin, 'calls');
    writeFileSync(
      join(bin, 'cachix'),
      `#!/bin/sh\n# STAND-IN for cachix (test/STANDINS.md): records its arguments\nprintf '%s\\n' "$@" > ${record}\n`,
      { mode: 0o755 },
    );
    const r = await runCli(
      ['build', '--flake', `${f.ref}#standin`, '--json', '--push-to', 'cachix:mine'],
      {
        env: { ...env, PATH: `${bin}:${process.env.PATH}` },
        timeoutMs: 170_000,
      },
    );
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as BuildDoc;
    const all = nixSync(['path-info', '-r', doc.toplevel]).trim().split('\n');
    const args = readFileSync(record, 'utf8').trim().split('\n');
    expect(args.slice(0, 2)).toEqual(['push', 'mine']);
    expect(args.slice(2).sort()).toEqual(all.sort()); // no substituter: all of it
    expect(doc.cacheSave).toMatchObject({ saved: 'saved', savedPaths: all.length });
    // a push that fails is a warning
    writeFileSync(join(bin, 'cachix'), '#!/bin/sh\necho "unauthorized" >&2; exit 1\n', {
      mode: 0o755,
    });
    const failed = await runCli(
      ['build', '--flake', `${f.ref}#standin`, '--json', '--push-to', 'cachix:mine'],
      { env: { ...env, PATH: `${bin}:${process.env.PATH}` }, timeoutMs: 170_000 },
    );
    expect(failed.code).toBe(0);
    expect(failed.stderr).toMatch(/cache: not saved \(cachix push exited 1: unauthorized\)/);
  });

  it('saves only what the binary caches do not serve (a signed file:// cache stands for cache.nixos.org)', async () => {
    const f = standinFlake({ tag: `up-${Date.now()}`, uniqueDeps: true });
    // Build without a cache, put the firmware and everything it needs into a signed upstream cache.
    const built = await build(f.ref, ['--cache', 'false']);
    const all = nixSync(['path-info', '-r', built.doc!.toplevel]).trim().split('\n');
    const firmware = all.find((p) => p.includes('linux-firmware'))!;
    const upstreamPaths = nixSync(['path-info', '-r', firmware]).trim().split('\n');
    const keys = mkdtempSync(join(tmpdir(), 'vps-nixos-keys-'));
    writeFileSync(
      join(keys, 'sk'),
      nixSync(['key', 'generate-secret', '--key-name', 'upstream-1']),
    );
    const pk = execFileSync(
      'nix',
      ['--extra-experimental-features', 'nix-command', 'key', 'convert-secret-to-public'],
      {
        input: readFileSync(join(keys, 'sk')),
        encoding: 'utf8',
      },
    ).trim();
    const upstream = mkdtempSync(join(tmpdir(), 'vps-nixos-upstream-'));
    nixSync(['copy', '--to', `file://${upstream}?secret-key=${join(keys, 'sk')}`, firmware]);
    // an unsigned path in the same cache does not count as served
    const unsigned = all.find((p) => !upstreamPaths.includes(p) && p !== built.doc!.toplevel)!;
    nixSync(['copy', '--to', `file://${upstream}`, '--no-recursive', unsigned]);
    const withUpstream = {
      ...env,
      NIX_CONFIG: `${OFFLINE_NIX_CONFIG}\nextra-substituters = file://${upstream}\ntrusted-public-keys = ${pk}`,
    };
    const dir = cacheDir();
    const run = (d = dir) =>
      runCli(['build', '--flake', `${f.ref}#standin`, '--json', '--cache-dir', d], {
        env: withUpstream,
        timeoutMs: 170_000,
      });
    const r = await run();
    const doc = JSON.parse(r.stdout) as BuildDoc;
    expect(doc.cacheSave).toMatchObject({
      saved: 'saved',
      closurePaths: all.length,
      servedPaths: upstreamPaths.length,
      savedPaths: all.length - upstreamPaths.length,
    });
    // A fresh store: the entry and the upstream cache bring every path back; nothing is built.
    execFileSync('nix-store', ['--delete', ...[...all].reverse()], {
      env: { ...process.env, NIX_CONFIG: OFFLINE_NIX_CONFIG },
      stdio: 'ignore',
    });
    const fresh = await run();
    expect(fresh.code).toBe(0);
    expect(fresh.stderr).not.toMatch(/building '/);
    expect((JSON.parse(fresh.stdout) as BuildDoc).cache).toMatchObject({
      hit: 'exact',
      // the entry's paths; the firmware came from the upstream cache
      restoredPaths: all.length - upstreamPaths.length,
    });
    for (const p of all) expect(nixSync(['path-info', p]).trim()).toBe(p);
    // A cache that refuses the save (its entries dir is a file): a warning; the run succeeds.
    const refusing = cacheDir();
    writeFileSync(join(refusing, 'entries'), 'not a directory');
    writeFileSync(
      join(f.dir, 'flake.nix'),
      flakeText({ tag: `up2-${Date.now()}`, uniqueDeps: true }),
    );
    const refused = await run(refusing);
    expect(refused.code).toBe(0);
    expect((JSON.parse(refused.stdout) as BuildDoc).cacheSave!.saved).toBe('failed');
    expect(refused.stderr).toMatch(/warning: cache: not saved .*the deploy is not affected/);
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
    // disko before destroyFormatMountNoDeps (its legacy name, until disko 2.0): still found.
    const legacy = standinFlake({ tag: 'disko-legacy', disko: 'legacy' });
    const old = await build(legacy.ref, [
      '--cache',
      'false',
      '--method',
      'kexec',
      '--kexec-tarball',
      tar,
    ]);
    expect(old.code).toBe(0);
    expect(old.doc!.diskScript).toMatch(/^\/nix\/store\/.*-disko$/);
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
    expect(r.stdout + r.stderr).toMatch(
      /has no disko configuration \(config\.system\.build\.destroyFormatMountNoDeps and diskoScriptNoDeps are missing\)/,
    );
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

/**
 * Issue 17: what the initrd-only installer cannot do, refused before anything changes. A stand-in
 * configuration with a disko-shaped layout (internal `_…` options that loop or throw, as disko's
 * do) and a toplevel whose sw/bin/nix-store leads into a Nix package, as on NixOS.
 */
function installFlake(opts: { root: 'ext4' | 'zfs'; nix: boolean; device?: string; tag: string }) {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-flake-'));
  const root =
    opts.root === 'ext4'
      ? '{ type = "filesystem"; format = "ext4"; mountpoint = "/"; mountOptions = [ "noatime" ]; }'
      : '{ type = "zfs"; pool = "zroot"; }';
  const zpool =
    opts.root === 'zfs'
      ? 'zpool.zroot = { type = "zpool"; options.ashift = "12"; datasets.root = { type = "zfs_fs"; mountpoint = "/"; options.mountpoint = "legacy"; }; };'
      : '';
  writeFileSync(
    join(dir, 'flake.nix'),
    `{
  outputs = { self }: let
    sh = name: cmd: builtins.derivation {
      inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" cmd ];
      tag = "${opts.tag}";
    };
    nix = sh "nix-2.24.10" "/bin/mkdir -p $out/bin; echo '#!/bin/sh' > $out/bin/nix; /bin/chmod +x $out/bin/nix; /bin/ln -s nix $out/bin/nix-store; /bin/ln -s nix $out/bin/nix-env";
    sw = sh "system-path" "/bin/mkdir -p $out/bin; /bin/ln -s \${nix}/bin/nix-store \${nix}/bin/nix-env $out/bin/";
    toplevel = sh "nixos-system-standin-24.11" "/bin/mkdir -p $out; ${opts.nix ? '/bin/ln -s ${sw} $out/sw;' : '/bin/mkdir -p $out/sw/bin;'} echo standin > $out/nixos-version";
    # Walking this would instantiate it: the layout eval must not.
    trap = builtins.derivation { name = "trap"; system = "x86_64-linux"; builder = throw "walked into a derivation"; };
    main = {
      type = "disk"; name = "main"; device = "${opts.device ?? '/dev/vda'}"; imageSize = "2G"; destroy = true;
      _parent = main; _create = throw "forced disko's _create"; package = trap;
      content = {
        type = "gpt"; device = "${opts.device ?? '/dev/vda'}"; _parent = main;
        partitions = {
          boot = { type = "EF02"; size = "1M"; priority = 1; content = null; };
          ESP = { type = "EF00"; size = "512M"; content = { type = "filesystem"; format = "vfat"; mountpoint = "/boot"; _meta = throw "internal"; }; };
          root = { type = "8300"; size = "100%"; content = ${root}; };
        };
      };
    };
  in {
    nixosConfigurations.standin.config = {
      system.build = { inherit toplevel; diskoScriptNoDeps = sh "disko" "echo '#!/bin/sh' > $out"; };
      disko.devices = { disk.main = main; ${zpool} _meta = throw "internal"; };
    };
  };
}
`,
  );
  return dir;
}

const MiB = 2 ** 20;
const debianFacts = (memMiB: number): Facts => ({
  ...(JSON.parse(
    readFileSync(join(__dirname, '../fixtures/facts/debian-12-kvm.expected.json'), 'utf8'),
  ) as Facts),
  memTotalBytes: memMiB * MiB,
});

/** A real tar.gz in the nixos-images layout, with its build's sizes.env beside it. */
function kexecTarball(kernelBytes: number, initrdBytes: number, unpackedBytes?: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-kexec-'));
  mkdirSync(join(dir, 'src', 'kexec'), { recursive: true });
  writeFileSync(join(dir, 'src', 'kexec', 'bzImage'), Buffer.alloc(kernelBytes, 1));
  writeFileSync(join(dir, 'src', 'kexec', 'initrd'), Buffer.alloc(initrdBytes, 2));
  writeFileSync(join(dir, 'src', 'kexec', 'run'), '#!/bin/sh\n');
  execFileSync('tar', ['-C', join(dir, 'src'), '-czf', join(dir, 'installer.tar.gz'), 'kexec']);
  if (unpackedBytes !== undefined)
    writeFileSync(
      join(dir, 'sizes.env'),
      `INITRD_BYTES=${initrdBytes}\nKERNEL_BYTES=${kernelBytes}\nINITRD_UNPACKED_BYTES=${unpackedBytes}\n`,
    );
  return join(dir, 'installer.tar.gz');
}

/** A small installer that fits every host these tests plan for (2 + 8 MiB, 24 MiB unpacked). */
const smallInstaller = kexecTarball(2 * MiB, 8 * MiB, 24 * MiB);

/** The runner's Nix with the offline settings (a child process does not see a test's process.env). */
const offlineNix: Nix = {
  run: (args) =>
    new Promise((resolve) => {
      execFile(
        'nix',
        ['--extra-experimental-features', 'nix-command flakes', ...args],
        { env: { ...process.env, NIX_CONFIG: OFFLINE_NIX_CONFIG }, maxBuffer: 1 << 26 },
        (err, stdout, stderr) =>
          resolve({ code: err ? ((err.code as number) ?? 1) : 0, stdout, stderr }),
      );
    }),
};

/** The CLI bootstrap's decision, stopped before anything connects (facts are given). */
async function pipeline(
  raw: RawInputs,
  facts: Facts,
  only: StageName[] = ['probe', 'plan', 'build'],
) {
  const lines: string[] = [];
  let connected = 0;
  const record = await runPipeline(
    parseConfig(
      { cache: 'false', 'kexec-tarball': smallInstaller, ...raw },
      { noConnection: true },
    ),
    { entry: 'bootstrap', facts, only },
    {
      log: { info: (l) => lines.push(l), warn: (l) => lines.push(`warning: ${l}`) },
      nix: offlineNix,
      tempDir: mkdtempSync(join(tmpdir(), 'vps-nixos-run-')),
      toolVersion: 'test',
      connect: async () => {
        connected++;
        throw new Error('no connection in this test');
      },
    },
  );
  return { record, log: lines.join('\n'), connected };
}

/** What an install refusal looks like in the record: the build stage failed with it. */
const refusal = (r: { record: { error?: { message: string; fix?: string } } }) => ({
  reason: r.record.error?.message.replace(/^refused: /, ''),
  remediation: r.record.error?.fix,
});

describe('install refusals from the build (issue 17, real Nix, stand-in configuration)', () => {
  it('finds the closure’s Nix and the layout’s tools, and plans the install', async () => {
    const dir = installFlake({ root: 'ext4', nix: true, tag: `ok-${Date.now()}` });
    const r = await pipeline(
      { flake: `${dir}#standin`, method: 'kexec', 'confirm-wipe': '/dev/vda' },
      debianFacts(960),
    );
    expect(r.record.error).toBeUndefined();
    const b = r.record.build!;
    expect(b.nixStorePath).toMatch(/^\/nix\/store\/[a-z0-9]{32}-nix-2\.24\.10$/);
    expect(readFileSync(join(b.toplevel, 'sw/bin/nix-store'), 'utf8')).toBe(
      readFileSync(join(b.nixStorePath!, 'bin/nix'), 'utf8'),
    );
    expect(b.layout).toEqual({
      used: ['8300', 'EF00', 'EF02', 'disk', 'filesystem:ext4', 'filesystem:vfat', 'gpt'],
      disks: [{ name: 'main', device: '/dev/vda' }],
    });
    expect(r.log).toMatch(/installer tools: .*mkfs\.ext4 mkfs\.vfat .*sgdisk/);
    expect(r.record.plan!.method).toBe('kexec');
  });

  it('refuses a ZFS layout and a closure without Nix when the plan installs, and only then', async () => {
    const dir = installFlake({ root: 'zfs', nix: false, tag: `bad-${Date.now()}` });
    const r = await pipeline({ flake: `${dir}#standin`, method: 'kexec' }, debianFacts(960));
    expect(r.record.build!.nixStorePath).toBeUndefined();
    expect(r.record.build!.layout!.used).toEqual(expect.arrayContaining(['zpool', 'zfs_fs']));
    expect(r.record.plan!.method).toBe('kexec');
    const p = refusal(r);
    expect(p.reason).toMatch(/the system closure has no Nix .*nix\.enable = false/);
    expect(p.reason).toMatch(
      /disko layout of nixosConfigurations\.standin uses ZFS, which the kexec installer cannot format/,
    );
    expect(p.remediation).toMatch(/nix\.enable = true.*method infect/);
    expect(r.record.stages.map((x) => `${x.name}:${x.status}`)).toEqual([
      'probe:skipped',
      'plan:done',
      'build:failed',
    ]);
    // The same configuration on a host that already runs NixOS: deploy only, nothing to refuse.
    const nixos = await pipeline(
      { flake: `${dir}#standin`, method: 'kexec' },
      { ...debianFacts(960), isNixos: true, osId: 'nixos' },
    );
    expect(nixos.record.plan!.method).toBe('deploy-only');
  });

  it('refuses confirm-wipe naming a disk the layout does not format, before any connection', async () => {
    const dir = installFlake({ root: 'ext4', nix: true, tag: `wipe-${Date.now()}` });
    const r = await pipeline(
      { flake: `${dir}#standin`, method: 'kexec', 'confirm-wipe': '/dev/sdb' },
      debianFacts(960),
      ['probe', 'plan', 'build', 'bootstrap'],
    );
    expect(r.record.error?.message).toBe(
      "input 'confirm-wipe': names /dev/sdb, but the configuration's disko layout formats /dev/vda (disko.devices.disk.main)",
    );
    expect(r.record.error?.fix).toMatch(/set confirm-wipe to \/dev\/vda/);
    expect(r.record.stages.map((s) => `${s.name}:${s.status}`)).toEqual([
      'probe:skipped',
      'plan:done',
      'build:failed',
    ]);
    expect(r.connected).toBe(0);
  });

  it('reads the installer’s sizes from the tarball and refuses one over the RAM limits', async () => {
    const dir = installFlake({ root: 'ext4', nix: true, tag: `fit-${Date.now()}` });
    const tar = kexecTarball(2 * MiB, 30 * MiB, 90 * MiB);
    const run = (memMiB: number) =>
      pipeline(
        { flake: `${dir}#standin`, method: 'kexec', 'kexec-tarball': tar, 'allow-low-ram': 'true' },
        debianFacts(memMiB),
      );
    const ok = await run(200);
    expect(ok.record.installer!.sizes).toEqual({
      kernelBytes: 2 * MiB,
      initrdBytes: 30 * MiB,
      initrdUnpackedBytes: 90 * MiB,
    });
    expect(ok.record.plan!.method).toBe('kexec');
    // 30 + 90 + 64 = 184 MiB needed at boot
    const boot = await run(180);
    expect(refusal(boot).reason).toMatch(
      /does not fit in RAM at boot: its initrd 30\.0 MiB compressed \+ 90\.0 MiB unpacked \+ 64\.0 MiB for the kernel = 184\.0 MiB, over MemTotal 180\.0 MiB/,
    );
    // 2 + 30 = 32 MiB over half of 60 MiB
    const load = await run(60);
    expect(refusal(load).reason).toMatch(
      /too big to load: kernel 2\.0 MiB \+ initrd 30\.0 MiB = 32\.0 MiB, over half of MemTotal 60\.0 MiB/,
    );
    expect(refusal(load).remediation).toMatch(/more RAM.*method infect/);
    // A third-party tarball (no sizes.env): only the load limit, with a warning.
    const bare = kexecTarball(2 * MiB, 30 * MiB);
    const third = await pipeline(
      { flake: `${dir}#standin`, method: 'kexec', 'kexec-tarball': bare, 'allow-low-ram': 'true' },
      debianFacts(180),
    );
    expect(third.record.plan!.method).toBe('kexec');
    expect(third.log).toMatch(/warning: the kexec installer's unpacked initrd size is unknown/);
    // Not a tarball at all: the build still reports it; an install is refused.
    const junk = join(mkdtempSync(join(tmpdir(), 'vps-nixos-kexec-')), 'installer.tar.gz');
    writeFileSync(junk, 'stand-in');
    const notTar = await pipeline(
      { flake: `${dir}#standin`, method: 'kexec', 'kexec-tarball': junk },
      debianFacts(960),
    );
    expect(notTar.record.installer!.sizesProblem).toMatch(/^tar cannot list it/);
    expect(refusal(notTar).reason).toMatch(
      /kexec installer \(.*installer\.tar\.gz\) cannot be checked against this host's RAM: tar cannot list it/,
    );
  });
});

describe('the build reuses the evaluation (real Nix, stand-in configuration)', () => {
  it('builds the evaluated derivation, not the flake attribute again; nothing when in the store', async () => {
    const dir = installFlake({ root: 'ext4', nix: true, tag: `drv-${Date.now()}` });
    const calls: string[][] = [];
    const nix: Nix = {
      run: (args, opts) => {
        calls.push(args);
        return offlineNix.run(args, opts);
      },
    };
    const flake = { ref: dir, name: 'standin' };
    const evaluated = await evalToplevel(nix, flake);
    const req = { flake, evaluated, toolVersion: 'test', log: () => {}, warn: () => {} };
    const b = await buildSystem(nix, req);
    expect(b.toplevel).toBe(evaluated.outPath);
    expect(existsSync(b.toplevel)).toBe(true);
    // Debian's Nix 2.8: the bare .drv path builds its outputs (2.15 and later: DRV^out)
    expect(calls.filter((a) => a[0] === 'build').map((a) => a.at(-1))).toEqual([evaluated.drvPath]);
    expect(calls.filter((a) => a[0] === 'eval')).toHaveLength(1);
    calls.length = 0;
    const again = await buildSystem(nix, req);
    expect(again.toplevel).toBe(evaluated.outPath);
    expect(calls.filter((a) => a[0] === 'build' || a[0] === 'eval')).toEqual([]);
  });
});
