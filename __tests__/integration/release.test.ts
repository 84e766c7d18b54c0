/**
 * What a release hands a stranger: the npm package installs offline with no dependency, and its
 * `vps-nixos` prints the version and probes a host with the scripts it ships;
 * scripts/dev/release-assets.sh lays out the npm tarball, the installers (stand-ins here for the
 * Nix-built ones) and a SHA256SUMS that verifies, with CHANGELOG.md's section as the notes; and
 * after scripts/dev/set-owner.sh no file of the tag or of the npm package names the placeholder
 * owner.
 */
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startSshd } from '../helpers/sshd';

jest.setTimeout(180_000);

const ROOT = join(__dirname, '../..');
const VERSION = (
  JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
).version;
/** The owner a fresh copy names (set-owner.sh's placeholder), as a whole reference. */
const PLACEHOLDER = /(?<![\w.-])org\/vps-nixos(?![\w-])/;
const OWNER = 'example-owner';

/** npm without the npm_config_* an `npm test` parent exports (they would steer the child). */
function npmEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_(config|package|lifecycle)_/i.test(k)),
  );
}

function run(cmd: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', env: npmEnv(), maxBuffer: 64 * 2 ** 20 });
}

function ok(r: SpawnSyncReturns<string>): string {
  if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

interface Packed {
  filename: string;
  files: { path: string }[];
}

/** `npm pack --json` of the tree at `dir`, into `dest` (or a dry run). */
function pack(dir: string, dest?: string): Packed {
  const args = [
    'pack',
    '--json',
    '--ignore-scripts',
    ...(dest ? ['--pack-destination', dest] : ['--dry-run']),
  ];
  return (JSON.parse(ok(run('npm', args, dir))) as Packed[])[0]!;
}

/** The repository's files as a tag would hold them (tracked and new, not ignored). */
function repoFiles(): string[] {
  return execFileSync('git', ['ls-files', '-z', '-co', '--exclude-standard'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
    .split('\0')
    .filter((f) => f && existsSync(join(ROOT, f)) && !lstatSync(join(ROOT, f)).isDirectory());
}

/** A copy of the repository without .git and node_modules. */
function copyRepo(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-release-copy-'));
  for (const f of repoFiles()) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    cpSync(join(ROOT, f), join(dir, f), { verbatimSymlinks: true });
  }
  return dir;
}

/** Every file below `dir`, relative. */
function walk(dir: string, rel = ''): string[] {
  return readdirSync(join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const p = rel ? `${rel}/${e.name}` : e.name;
    return e.isDirectory() ? walk(dir, p) : e.isFile() ? [p] : [];
  });
}

/** A stand-in for the Nix-built kexec installer: the nixos-images layout, a few bytes each. */
function standInInstaller(dir: string, name: string): string {
  const src = mkdtempSync(join(tmpdir(), 'vps-nixos-standin-'));
  mkdirSync(join(src, 'kexec'));
  writeFileSync(join(src, 'kexec/run'), '#!/bin/sh\necho stand-in\n', { mode: 0o755 });
  writeFileSync(join(src, 'kexec/bzImage'), 'not a kernel\n');
  writeFileSync(join(src, 'kexec/initrd'), 'not an initrd\n');
  const file = join(dir, name);
  execFileSync('tar', ['-C', src, '-czf', file, 'kexec']);
  rmSync(src, { recursive: true, force: true });
  return file;
}

const sha256 = (file: string) =>
  execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0]!;

describe('the npm package', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vps-nixos-pack-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  let packed: Packed;
  beforeAll(() => {
    packed = pack(ROOT, tmp);
  });
  const paths = () => packed.files.map((f) => f.path);

  it('holds the bundles, the action and the license, and no test or Windows file', () => {
    expect(paths()).toEqual(
      expect.arrayContaining([
        'dist/cli/index.js',
        'dist/main/index.js',
        'dist/post/index.js',
        'action.yml',
        'LICENSE',
        'package.json',
        'README.md',
      ]),
    );
    expect(paths().filter((p) => /\.exe$/i.test(p))).toEqual([]);
    expect(paths().filter((p) => /^(__tests__|test)\//.test(p))).toEqual([]);
    expect(paths().filter((p) => p.startsWith('scripts/dev/'))).toEqual([]);
  });

  it('holds every file the bundles read beside them: the target scripts and the flake', () => {
    // src/assets.ts (scripts/…) and ourFlakeDir (nix/flake.nix) walk up from dist/<entry>/.
    const runtime = repoFiles().filter(
      (f) => (f.startsWith('scripts/') && !f.startsWith('scripts/dev/')) || f === 'nix/flake.nix',
    );
    expect(runtime.length).toBeGreaterThan(5);
    expect(paths()).toEqual(expect.arrayContaining(runtime));
  });

  it('installs offline, needs no dependency, and its vps-nixos prints the version', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      private?: boolean;
      dependencies?: Record<string, string>;
    };
    // ncc bundles every runtime dependency into dist/: the package needs none of its own.
    expect(pkg.private).toBeUndefined();
    expect(Object.keys(pkg.dependencies ?? {})).toEqual([]);
    const prefix = join(tmp, 'prefix');
    const tarball = join(tmp, packed.filename);
    ok(
      run(
        'npm',
        // Offline, with a cache of its own: nothing to fetch, nothing found in the user's.
        [
          'install',
          '-g',
          '--prefix',
          prefix,
          '--cache',
          join(tmp, 'npm-cache'),
          '--offline',
          '--no-audit',
          '--no-fund',
          tarball,
        ],
        tmp,
      ),
    );
    const installed = join(prefix, 'lib/node_modules/vps-nixos');
    expect(existsSync(join(installed, 'node_modules'))).toBe(false);
    expect(existsSync(join(installed, 'scripts/facts.sh'))).toBe(true);
    expect(existsSync(join(installed, 'nix/flake.nix'))).toBe(true);
    const r = run(join(prefix, 'bin/vps-nixos'), ['--version'], tmp);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`vps-nixos ${VERSION}\n`);
  });

  it('the installed vps-nixos finds its target scripts: it probes a host', async () => {
    const sshd = await startSshd();
    try {
      const r = spawnSync(
        join(tmp, 'prefix/bin/vps-nixos'),
        [
          'probe',
          '--target',
          `root@127.0.0.1:${sshd.port}`,
          '--ssh-private-key-file',
          sshd.clientKeyFile,
          '--known-hosts-file',
          sshd.knownHostsFile,
          '--json',
        ],
        { cwd: tmp, encoding: 'utf8', timeout: 60_000 },
      );
      expect(r.stderr).not.toMatch(/incomplete/);
      expect(r.status).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual(expect.objectContaining({ facts: expect.anything() }));
    } finally {
      await sshd.stop();
    }
  });
});

describe('scripts/dev/release-assets.sh', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vps-nixos-assets-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const script = join(ROOT, 'scripts/dev/release-assets.sh');

  it('lays out the npm tarball, the installers under their released names and SHA256SUMS', () => {
    const aarch64 = standInInstaller(tmp, 'stand-in-installer-aarch64-linux.tar.gz');
    const x86 = standInInstaller(tmp, 'result.tar.gz');
    const out = join(tmp, 'out');
    const listed = ok(
      run(
        'bash',
        [
          script,
          '--out',
          out,
          '--tag',
          `v${VERSION}`,
          '--installer',
          aarch64,
          '--installer',
          `x86_64-linux=${x86}`,
        ],
        tmp,
      ),
    );
    const names = [
      'SHA256SUMS',
      'nixos-kexec-installer-aarch64-linux.tar.gz',
      'nixos-kexec-installer-x86_64-linux.tar.gz',
      `vps-nixos-${VERSION}.tgz`,
    ];
    expect(readdirSync(out).sort()).toEqual(names);
    expect(listed.trim().split('\n')).toEqual(names.map((n) => join(out, n)));
    expect(sha256(join(out, 'nixos-kexec-installer-aarch64-linux.tar.gz'))).toBe(sha256(aarch64));

    const sums = readFileSync(join(out, 'SHA256SUMS'), 'utf8');
    expect(
      sums
        .trim()
        .split('\n')
        .map((l) => l.split(/\s+\*?/)[1]),
    ).toEqual(names.slice(1));
    const check = run('sha256sum', ['-c', 'SHA256SUMS'], out);
    expect(check.stdout.trim().split('\n')).toEqual(names.slice(1).map((n) => `${n}: OK`));
    expect(check.status).toBe(0);
  });

  it('refuses a tag that is not the version, a tarball that is no installer, a used directory', () => {
    const installer = standInInstaller(tmp, 'i-x86_64-linux.tar.gz');
    const tag = run('bash', [script, '--out', join(tmp, 'o1'), '--tag', 'v0.0.0-not-this'], tmp);
    expect(tag.status).toBe(1);
    expect(tag.stderr).toMatch(`package.json's version is ${VERSION}`);

    const junk = join(tmp, 'junk');
    mkdirSync(join(junk, 'kexec'), { recursive: true });
    writeFileSync(join(junk, 'kexec/run'), 'x');
    execFileSync('tar', ['-C', junk, '-czf', join(tmp, 'junk-x86_64-linux.tar.gz'), 'kexec']);
    const notKexec = run(
      'bash',
      [script, '--out', join(tmp, 'o2'), '--installer', join(tmp, 'junk-x86_64-linux.tar.gz')],
      tmp,
    );
    expect(notKexec.status).toBe(1);
    expect(notKexec.stderr).toMatch('holds no kexec/bzImage: not a kexec installer tarball');

    cpSync(installer, join(tmp, 'installer.tar.gz'));
    const unnamed = run(
      'bash',
      [script, '--out', join(tmp, 'o3'), '--installer', join(tmp, 'installer.tar.gz')],
      tmp,
    );
    expect(unnamed.status).toBe(1);
    expect(unnamed.stderr).toMatch('its name says no system');

    mkdirSync(join(tmp, 'used'));
    writeFileSync(join(tmp, 'used/old.tgz'), 'x');
    const used = run('bash', [script, '--out', join(tmp, 'used'), '--installer', installer], tmp);
    expect(used.status).toBe(1);
    expect(used.stderr).toMatch('is not empty');
  });
});

describe('a release of a copy of the repository', () => {
  let copy: string;
  const tmp = mkdtempSync(join(tmpdir(), 'vps-nixos-release-'));
  const setOwner = (...args: string[]) =>
    run('bash', [join(copy, 'scripts/dev/set-owner.sh'), ...args], copy);
  /** The copy's files before set-owner.sh, its --check then, and the files it changed. */
  let before: Map<string, string>;
  let checkBefore: number | null;
  let changed: string[];
  beforeAll(() => {
    copy = copyRepo();
    before = new Map(walk(copy).map((f) => [f, readFileSync(join(copy, f), 'utf8')]));
    checkBefore = setOwner('--check', OWNER).status;
    changed = ok(setOwner(OWNER)).trim().split('\n');
  });
  afterAll(() => {
    rmSync(copy, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  it('set-owner.sh names the owner everywhere the placeholder was, and nothing else changes', () => {
    expect(checkBefore).toBe(1);
    expect(changed).toEqual(
      expect.arrayContaining([
        'README.md',
        'package.json',
        'src/init/files.ts',
        'dist/cli/index.js',
        '.github/workflows/deploy.yml',
        '.github/workflows/update.yml',
        'examples/workflows/deploy.yml',
      ]),
    );
    // Only references changed, line for line.
    for (const f of changed) {
      const old = before.get(f)!.split('\n');
      const now = readFileSync(join(copy, f), 'utf8').split('\n');
      expect(now.length).toBe(old.length);
      for (let i = 0; i < now.length; i++) {
        if (now[i] !== old[i]) expect(`${f}:${i + 1}: ${now[i]}`).toMatch(`${OWNER}/vps-nixos`);
      }
    }
    // The CLI's constant and its bundle say the same, so dist/ is still what src/ builds.
    const constant = `PROJECT_REPO = '${OWNER}/vps-nixos'`;
    expect(readFileSync(join(copy, 'src/init/files.ts'), 'utf8')).toContain(constant);
    expect(readFileSync(join(copy, 'dist/cli/index.js'), 'utf8')).toContain(constant);
    expect(readFileSync(join(copy, 'package.json'), 'utf8')).toContain(
      `github.com/${OWNER}/vps-nixos.git`,
    );
    expect(readFileSync(join(copy, 'README.md'), 'utf8')).toContain(`uses: ${OWNER}/vps-nixos@v1`);

    expect(setOwner('--check', OWNER).status).toBe(0);
    expect(ok(setOwner(OWNER)).trim()).toBe('');
  });

  it('leaves no placeholder in a file of the tag or of the npm package', () => {
    const tagged = walk(copy).filter((f) => !f.startsWith('__tests__/'));
    expect(tagged).toEqual(
      expect.arrayContaining(['README.md', 'action.yml', 'dist/cli/index.js']),
    );
    const left = tagged.filter((f) => PLACEHOLDER.test(readFileSync(join(copy, f), 'utf8')));
    expect(left).toEqual([]);
    const packed = pack(copy).files.map((f) => f.path);
    expect(packed.filter((f) => PLACEHOLDER.test(readFileSync(join(copy, f), 'utf8')))).toEqual([]);
  });

  it('a fork moves every reference to its own owner', () => {
    ok(setOwner('another-owner'));
    expect(setOwner('--check', 'another-owner').status).toBe(0);
    const check = setOwner('--check', OWNER);
    expect(check.status).toBe(1);
    expect(check.stdout).toMatch(/README\.md:\d+: names another-owner, not example-owner/);
    expect(setOwner('not_an owner').status).toBe(2);
  });

  it('release-assets.sh writes the notes from CHANGELOG.md and checks the installer manifest', () => {
    const script = join(copy, 'scripts/dev/release-assets.sh');
    const changelog = join(copy, 'CHANGELOG.md');
    const text = readFileSync(changelog, 'utf8');
    const noNotes = run(
      'bash',
      [script, '--out', join(tmp, 'a'), '--notes', join(tmp, 'n0.md')],
      copy,
    );
    expect(noNotes.status).toBe(1);
    expect(noNotes.stderr).toMatch(`CHANGELOG.md has no section for ${VERSION}`);

    writeFileSync(
      changelog,
      text.replace(
        '## Unreleased\n',
        `## Unreleased\n\n## ${VERSION} (2026-12-03)\n\n- A stranger can use it.\n- Twice.\n\n## 0.0.1\n\n- Older.\n`,
      ),
    );
    const installer = standInInstaller(tmp, 'x-x86_64-linux.tar.gz');
    const base = `https://github.com/${OWNER}/vps-nixos/releases/download/v${VERSION}`;
    const manifest = (sha: string) =>
      writeFileSync(
        join(copy, 'src/release/installers.json'),
        JSON.stringify({
          version: VERSION,
          baseUrl: base,
          installers: {
            'x86_64-linux': {
              file: 'nixos-kexec-installer-x86_64-linux.tar.gz',
              sha256: sha,
              bytes: 1,
              sizes: {},
            },
          },
        }),
      );
    mkdirSync(join(copy, 'src/release'), { recursive: true });
    const args = (out: string) => [
      script,
      '--out',
      join(tmp, out),
      '--tag',
      `v${VERSION}`,
      '--base-url',
      base,
      '--installer',
      installer,
    ];

    manifest(sha256(installer));
    ok(run('bash', [...args('b'), '--notes', join(tmp, 'notes.md')], copy));
    expect(readFileSync(join(tmp, 'notes.md'), 'utf8')).toBe(
      '- A stranger can use it.\n- Twice.\n',
    );

    manifest('0'.repeat(64));
    const wrong = run('bash', args('c'), copy);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(`the manifest says ${'0'.repeat(64)}`);
  });
});
