/**
 * Checks on the files that are not TypeScript: every Nix file parses, every shell file passes
 * shellcheck, and the kexec run script's own offline tests pass (network carried in a netns of
 * theirs, the installer's restore scripts on a fixture).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { INFECT_DEFAULT_CHANNEL } from '../../src/infect/script';

const ROOT = join(__dirname, '../..');
const files = (pattern: string[]) =>
  execFileSync('git', ['ls-files', '-co', '--exclude-standard', ...pattern], {
    cwd: ROOT,
    encoding: 'utf8',
  })
    .split('\n')
    .filter(Boolean);

jest.setTimeout(120_000);

describe('Nix files', () => {
  const nixFiles = files(['*.nix']);
  it('there are some', () => expect(nixFiles.length).toBeGreaterThan(0));
  it.each(nixFiles)('%s parses with nix-instantiate --parse', (f) => {
    const r = spawnSync('nix-instantiate', ['--parse', f], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, NIX_CONFIG: 'build-users-group =' },
    });
    expect(r.stderr).not.toMatch(/error/);
    expect(r.status).toBe(0);
  });
});

describe('shell files', () => {
  const shellFiles = files([
    '*.sh',
    'test/vps/vps',
    'test/vps/**/*.sh',
    'test/standins/bin/*',
    'test/standins/nixos-infect',
    'test/vps/standins/switch-to-configuration',
    'test/vps/standins/activate',
    'test/vps/standins/kexec-run',
    'test/vps/standins/disk-script',
    'test/vps/installer/nixos-install',
    'test/vps/installer/stage1-init',
  ]).filter((f, i, a) => a.indexOf(f) === i);
  it.each(shellFiles)('%s passes shellcheck', (f) => {
    const r = spawnSync('shellcheck', [f], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stdout).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('the kexec run script (nix/kexec-installer/run.sh)', () => {
  it('carries host keys, authorized_keys and the static network into the appended cpio', () => {
    const r = spawnSync('sh', ['nix/tests/carry-network.sh'], { cwd: ROOT, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toMatch(/ok \(load\)/);
    // VPS_NIXOS_ROOTFS=ramfs (the plan's, past the tmpfs cap) adds rootfstype=ramfs
    expect(`${r.stdout}${r.stderr}`).toMatch(
      /ok \(ramfs\): .*--command-line=\S+ rootfstype=ramfs /,
    );
    expect(r.status).toBe(0);
  });
  it("the installer's restore scripts put keys and network in place, twice", () => {
    const r = spawnSync('sh', ['nix/tests/restore-offline.sh'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, NIX_CONFIG: 'build-users-group =' },
    });
    expect(`${r.stdout}${r.stderr}`).toMatch(/ok \(stage 2, twice\)/);
    expect(r.status).toBe(0);
  });
});

describe('the NixOS release', () => {
  it('nixos-channel defaults to the release nix/flake.nix pins, in action.yml and the code', () => {
    const flake = readFileSync(join(ROOT, 'nix/flake.nix'), 'utf8');
    const pinned = /nixpkgs\.url = "github:NixOS\/nixpkgs\/(nixos-\d\d\.\d\d)"/.exec(flake)?.[1];
    expect(pinned).toMatch(/^nixos-\d\d\.\d\d$/);
    expect(INFECT_DEFAULT_CHANNEL).toBe(pinned);
    const action = readFileSync(join(ROOT, 'action.yml'), 'utf8');
    expect(/nixos-channel:[\s\S]*?default: '([^']*)'/.exec(action)?.[1]).toBe(pinned);
  });
});

describe('dist/', () => {
  const bundles = ['main', 'post', 'cli'];
  it.each(bundles)('dist/%s has the notices of what it bundles, and nothing for Windows', (b) => {
    const dir = join(ROOT, 'dist', b);
    const notices = readFileSync(join(dir, 'licenses.txt'), 'utf8');
    const want: Record<string, string[]> = {
      main: ['@actions/core', '@actions/cache', 'ssh2', 'zod'],
      post: ['@actions/core'],
      cli: ['ssh2', 'zod'],
    };
    for (const pkg of want[b]!)
      expect(notices).toMatch(new RegExp(`^${pkg} \\d+\\.\\d+\\.\\d+\\n`, 'm'));
    expect(readdirSync(dir).filter((f) => f.endsWith('.exe'))).toEqual([]);
  });
});
