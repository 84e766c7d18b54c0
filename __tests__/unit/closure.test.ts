import {
  closureReport,
  diffClosures,
  parsePathInfo,
  splitVersion,
  storeName,
  trimmingSavings,
  type PathInfo,
} from '../../src/nix/closure';

const p = (
  name: string,
  narBytes: number,
  closureBytes = narBytes,
  references: string[] = [],
): PathInfo => ({
  path: `/nix/store/${'a'.repeat(32)}-${name}`.replace(
    'a'.repeat(32),
    name.length.toString(36).padEnd(32, 'x').slice(0, 32),
  ),
  narBytes,
  closureBytes,
  references,
});

describe('path-info JSON', () => {
  it('reads the array form of Nix 2.8 and the object form of newer Nix', () => {
    const arr = JSON.stringify([
      { path: '/nix/store/abc-x', narSize: 10, closureSize: 30, references: ['/nix/store/def-y'] },
    ]);
    const obj = JSON.stringify({
      '/nix/store/abc-x': { narSize: 10, closureSize: 30, references: [] },
      '/nix/store/gone': null,
    });
    expect(parsePathInfo(arr)).toEqual([
      {
        path: '/nix/store/abc-x',
        narBytes: 10,
        closureBytes: 30,
        references: ['/nix/store/def-y'],
      },
    ]);
    expect(parsePathInfo(obj)).toEqual([
      { path: '/nix/store/abc-x', narBytes: 10, closureBytes: 30, references: [] },
    ]);
  });
  it('splits names and versions like diff-closures', () => {
    expect(storeName('/nix/store/0123456789abcdfghijklmnpqrsvwxyz-openssh-9.8p1')).toBe(
      'openssh-9.8p1',
    );
    expect(splitVersion('openssh-9.8p1')).toEqual({ pname: 'openssh', version: '9.8p1' });
    expect(splitVersion('linux-firmware-20241110-zstd')).toEqual({
      pname: 'linux-firmware',
      version: '20241110-zstd',
    });
    expect(splitVersion('etc')).toEqual({ pname: 'etc', version: '' });
  });
});

describe('closureReport', () => {
  const fw = p('linux-firmware-20241110', 800);
  const rust = p('rustc-1.80.0', 300);
  const small = p('bash-5.2', 10);
  const root = p('nixos-system-vps-24.11', 1, 1111);
  const r = closureReport(root.path, [root, fw, rust, small], { top: 2 });
  it('sums NAR sizes and counts paths', () => {
    expect(r.narBytes).toBe(1111);
    expect(r.pathCount).toBe(4);
  });
  it('lists the biggest contributors, own and with dependencies', () => {
    expect(r.topOwn.map((t) => storeName(t.path))).toEqual([
      'linux-firmware-20241110',
      'rustc-1.80.0',
    ]);
    expect(r.top.every((t) => t.path !== root.path)).toBe(true);
  });
  it('flags known server-closure leaks with the option behind them', () => {
    expect(r.leaks.map((l) => [storeName(l.path), l.option])).toEqual([
      ['linux-firmware-20241110', 'hardware.enableRedistributableFirmware = false'],
      ['rustc-1.80.0', 'environment.systemPackages (dev toolchains)'],
    ]);
  });
});

describe('diffClosures', () => {
  it('lists added, removed, version changes and the bytes to send', () => {
    const oldSsh = '/nix/store/11111111111111111111111111111111-openssh-9.7p1';
    const same = p('bash-5.2', 10);
    const newSsh: PathInfo = {
      ...p('x', 50),
      path: '/nix/store/22222222222222222222222222222222-openssh-9.8p1',
    };
    const added: PathInfo = {
      ...p('x', 7),
      path: '/nix/store/33333333333333333333333333333333-htop-3.3.0',
    };
    const d = diffClosures(
      [same, newSsh, added],
      [same.path, oldSsh, '/nix/store/44444444444444444444444444444444-nano-8.0'],
    );
    expect(d.added).toEqual([newSsh.path, added.path]);
    expect(d.removed).toEqual([oldSsh, '/nix/store/44444444444444444444444444444444-nano-8.0']);
    expect(d.changed).toEqual([{ name: 'openssh', from: '9.7p1', to: '9.8p1' }]);
    expect(d.bytesToSend).toBe(57);
  });
  it('an unchanged closure sends nothing', () => {
    const a = p('bash-5.2', 10);
    expect(diffClosures([a], [a.path])).toEqual({
      added: [],
      removed: [],
      changed: [],
      bytesToSend: 0,
    });
  });
});

describe('trimmingSavings', () => {
  const p = (name: string, narBytes: number) => ({
    path: `/nix/store/${'a'.repeat(32)}-${name}`,
    narBytes,
    references: [],
  });
  it('reports the untrimmed total, the bytes saved and the biggest paths left out', () => {
    const shared = [p('glibc-2.40', 30), p('openssh-9.9', 5)];
    const trimmed = [...shared, p('nixos-system-a', 1)];
    const untrimmed = [
      ...shared,
      p('nixos-system-b', 1),
      p('linux-firmware-2024', 800),
      p('man-db-2.12', 3),
      p('nixos-manual-html', 20),
    ];
    const t = trimmingSavings(trimmed, untrimmed, untrimmed[2]!.path);
    expect(t.untrimmedNarBytes).toBe(859);
    expect(t.savedBytes).toBe(859 - 36);
    expect(t.removed.map((r) => r.narBytes)).toEqual([800, 20, 3]);
  });
});
