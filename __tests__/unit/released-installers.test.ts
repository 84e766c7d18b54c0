/** The installers released with a version: the committed manifest and the choice from it. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  InstallersManifestSchema,
  RELEASED,
  releasedInstaller,
  type InstallersManifest,
} from '../../src/release/installers';
import { TOOL_VERSION } from '../../src/version';

const ROOT = join(__dirname, '../..');
const m: InstallersManifest = {
  version: '1.2.3',
  baseUrl: 'https://github.com/example/vps-nixos/releases/download/v1.2.3/',
  installers: {
    'x86_64-linux': {
      file: 'nixos-kexec-installer-x86_64-linux.tar.gz',
      sha256: 'a'.repeat(64),
      bytes: 100,
      sizes: {},
    },
  },
};

describe('releasedInstaller', () => {
  it('picks the system of this version, from the release or a mirror; the sha256 stays', () => {
    expect(releasedInstaller(m, 'x86_64-linux', '1.2.3')).toEqual({
      url: 'https://github.com/example/vps-nixos/releases/download/v1.2.3/nixos-kexec-installer-x86_64-linux.tar.gz',
      installer: m.installers['x86_64-linux'],
    });
    expect(
      releasedInstaller(m, 'x86_64-linux', '1.2.3', 'http://mirror.internal/vps-nixos/')?.url,
    ).toBe('http://mirror.internal/vps-nixos/nixos-kexec-installer-x86_64-linux.tar.gz');
  });
  it('none for another version, another system, or a manifest without a base URL', () => {
    expect(releasedInstaller(m, 'x86_64-linux', '1.2.4')).toBeUndefined();
    expect(releasedInstaller(m, 'aarch64-linux', '1.2.3')).toBeUndefined();
    expect(releasedInstaller({ ...m, baseUrl: '' }, 'x86_64-linux', '1.2.3')).toBeUndefined();
  });
  it('the schema refuses what would let a download go unchecked or elsewhere', () => {
    const bad = (over: object) =>
      InstallersManifestSchema.safeParse({
        ...m,
        installers: { 'x86_64-linux': { ...m.installers['x86_64-linux'], ...over } },
      }).success;
    expect(bad({})).toBe(true);
    expect(bad({ sha256: 'A'.repeat(64) })).toBe(false);
    expect(bad({ sha256: '' })).toBe(false);
    expect(bad({ file: '../etc/passwd' })).toBe(false);
    expect(bad({ bytes: 0 })).toBe(false);
    expect(InstallersManifestSchema.safeParse({ ...m, baseUrl: 'http://x/y' }).success).toBe(false);
  });
});

describe('the committed manifest', () => {
  it('parses, and is for the version package.json says', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(RELEASED.version).toBe(pkg.version);
    expect(TOOL_VERSION).toBe(pkg.version);
  });
});

describe('scripts/dev/installer-manifest.mjs', () => {
  it('writes a manifest the action reads: sha256, bytes, the released name, the sizes.env', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-manifest-'));
    // A stand-in for the Nix-built installer: any bytes do for the manifest.
    const tar = join(dir, 'nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz');
    writeFileSync(tar, Buffer.alloc(4096, 3));
    writeFileSync(join(dir, 'sizes.env'), 'INITRD_BYTES=2000\nINITRD_UNPACKED_BYTES="5000"\n');
    const out = join(dir, 'installers.json');
    const printed = execFileSync(
      'node',
      [
        join(ROOT, 'scripts/dev/installer-manifest.mjs'),
        '--version',
        '1.2.3',
        '--base-url',
        'https://github.com/example/vps-nixos/releases/download/v1.2.3',
        '--installer',
        `x86_64-linux=${tar}`,
        '--out',
        out,
        '--assets',
        join(dir, 'assets'),
      ],
      { encoding: 'utf8' },
    );
    const sha = createHash('sha256').update(readFileSync(tar)).digest('hex');
    expect(printed).toBe(`x86_64-linux nixos-kexec-installer-x86_64-linux.tar.gz 4096 ${sha}\n`);
    const written = InstallersManifestSchema.parse(JSON.parse(readFileSync(out, 'utf8')));
    expect(written.installers['x86_64-linux']).toEqual({
      file: 'nixos-kexec-installer-x86_64-linux.tar.gz',
      sha256: sha,
      bytes: 4096,
      sizes: { INITRD_BYTES: '2000', INITRD_UNPACKED_BYTES: '5000' },
    });
    expect(
      readFileSync(join(dir, 'assets/nixos-kexec-installer-x86_64-linux.tar.gz')).equals(
        readFileSync(tar),
      ),
    ).toBe(true);
    expect(releasedInstaller(written, 'x86_64-linux', '1.2.3')?.url).toBe(
      'https://github.com/example/vps-nixos/releases/download/v1.2.3/nixos-kexec-installer-x86_64-linux.tar.gz',
    );
  });
  it('refuses a missing version or a file that is not a tarball, exit 2', () => {
    const notTar = join(mkdtempSync(join(tmpdir(), 'vps-nixos-manifest-')), 'notes.txt');
    writeFileSync(notTar, 'not a tarball\n');
    const run = (args: string[]) => {
      try {
        execFileSync('node', [join(ROOT, 'scripts/dev/installer-manifest.mjs'), ...args], {
          stdio: 'pipe',
        });
        return { code: 0, err: '' };
      } catch (e) {
        const x = e as { status: number; stderr: Buffer };
        return { code: x.status, err: x.stderr.toString() };
      }
    };
    expect(run(['--base-url', 'https://x/y', '--installer', `x86_64-linux=${notTar}`])).toEqual({
      code: 2,
      err: expect.stringMatching(/--version X\.Y\.Z is required/),
    });
    expect(
      run([
        '--version',
        '1.0.0',
        '--base-url',
        'https://x/y',
        '--installer',
        `x86_64-linux=${notTar}`,
      ]),
    ).toEqual({ code: 2, err: expect.stringMatching(/not a tarball/) });
  });
});
