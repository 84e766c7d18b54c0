/**
 * prepare-release.yml sets the version in src/version.ts with a sed line and writes the manifest
 * with installer-manifest.mjs: both are run here as the workflow runs them, on copies.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';

const ROOT = join(__dirname, '../..');
const wf = YAML.parse(readFileSync(join(ROOT, '.github/workflows/prepare-release.yml'), 'utf8'));
const steps: { name?: string; run?: string }[] = wf.jobs.prepare.steps;
const script = steps.find((s) => s.name === 'Version, manifest, dist/')!.run!;

describe('prepare-release.yml', () => {
  it("its sed line sets src/version.ts's TOOL_VERSION", () => {
    const line = script
      .split('\n')
      .find((l) => l.trim().startsWith('sed -i -E'))!
      .trim();
    const dir = mkdtempSync(join(tmpdir(), 'prep-'));
    mkdirSync(join(dir, 'src'));
    copyFileSync(join(ROOT, 'src/version.ts'), join(dir, 'src/version.ts'));
    execFileSync('bash', ['-c', line], {
      cwd: dir,
      env: { ...process.env, VERSION: '7.8.9-rc.1' },
    });
    const out = readFileSync(join(dir, 'src/version.ts'), 'utf8');
    expect(out).toContain("export const TOOL_VERSION = '7.8.9-rc.1';");
    expect(out.split('\n').length).toBe(
      readFileSync(join(ROOT, 'src/version.ts'), 'utf8').split('\n').length,
    );
  });

  it('the manifest it writes names the release URL, the sha256 and sizes.env of each installer', () => {
    const dir = mkdtempSync(join(tmpdir(), 'prep-'));
    const sys = join(dir, 'by-system/x86_64-linux');
    mkdirSync(sys, { recursive: true });
    const tarball = join(sys, 'vps-nixos-kexec-installer-x86_64-linux.tar.gz');
    writeFileSync(tarball, 'not really a tarball, but bytes with a sha256');
    writeFileSync(join(sys, 'sizes.env'), 'INITRD_BYTES=123\n');
    const out = join(dir, 'installers.json');
    execFileSync(process.execPath, [
      join(ROOT, 'scripts/dev/installer-manifest.mjs'),
      '--version',
      '7.8.9',
      '--base-url',
      'https://github.com/o/vps-nixos/releases/download/v7.8.9',
      '--installer',
      `x86_64-linux=${tarball}`,
      '--out',
      out,
      '--assets',
      join(dir, 'assets'),
    ]);
    const m = JSON.parse(readFileSync(out, 'utf8'));
    const sha = execFileSync('sha256sum', [tarball], { encoding: 'utf8' }).split(' ')[0];
    expect(m.version).toBe('7.8.9');
    expect(m.baseUrl).toBe('https://github.com/o/vps-nixos/releases/download/v7.8.9');
    expect(m.installers['x86_64-linux']).toMatchObject({
      file: 'nixos-kexec-installer-x86_64-linux.tar.gz',
      sha256: sha,
      sizes: { INITRD_BYTES: '123' },
    });
    expect(
      readFileSync(join(dir, 'assets/nixos-kexec-installer-x86_64-linux.tar.gz'), 'utf8'),
    ).toMatch(/^not really/);
  });

  it('release.yml takes the installers from the draft, and builds none', () => {
    const rel = YAML.parse(readFileSync(join(ROOT, '.github/workflows/release.yml'), 'utf8'));
    expect(Object.keys(rel.jobs)).not.toContain('installer');
    const runs = JSON.stringify(rel.jobs.release.steps);
    expect(runs).toContain('gh release download');
    expect(runs).not.toContain('nix build');
  });
});
