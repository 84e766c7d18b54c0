/** Closure size reports from `nix path-info --json -rsS`. Pure. */

export interface PathInfo {
  path: string;
  narBytes: number;
  /** Closure size of this path (NAR bytes of it and everything it references). */
  closureBytes?: number;
  references: string[];
}

export interface Contributor {
  path: string;
  narBytes: number;
  closureBytes: number;
}

/** A known way a server closure grows for nothing (seed 001's table). */
export interface Leak {
  path: string;
  narBytes: number;
  what: string;
  option: string;
}

export interface ClosureDiff {
  added: string[];
  removed: string[];
  /** Same package name, other version: `name: old → new`. */
  changed: { name: string; from: string; to: string }[];
  /** NAR bytes of the paths the target lacks. */
  bytesToSend: number;
}

export interface ClosureReport {
  root: string;
  pathCount: number;
  /** Sum of NAR sizes over the whole closure: what the target's store must hold. */
  narBytes: number;
  top: Contributor[];
  topOwn: Contributor[];
  leaks: Leak[];
  diff?: ClosureDiff;
  /** What the vpsNixos module saves: the same configuration built without it. */
  trimming?: Trimming;
}

/** The closure with the vpsNixos module against the same configuration without it. */
export interface Trimming {
  untrimmedNarBytes: number;
  /** untrimmed − trimmed (negative if the module added more than it removed). */
  savedBytes: number;
  /** The biggest paths only the untrimmed closure has. */
  removed: { path: string; narBytes: number }[];
}

/** Compares the two closures. Pure. */
export function trimmingSavings(
  trimmed: PathInfo[],
  untrimmed: PathInfo[],
  untrimmedRoot?: string,
  top = 10,
): Trimming {
  // The other toplevel differs by construction: not something the module "left out".
  const have = new Set([...trimmed.map((i) => i.path), untrimmedRoot]);
  const sum = (xs: PathInfo[]) => xs.reduce((s, i) => s + i.narBytes, 0);
  const removed = untrimmed
    .filter((i) => !have.has(i.path))
    .sort((a, b) => b.narBytes - a.narBytes)
    .slice(0, top)
    .map((i) => ({ path: i.path, narBytes: i.narBytes }));
  return { untrimmedNarBytes: sum(untrimmed), savedBytes: sum(untrimmed) - sum(trimmed), removed };
}

interface RawPathInfo {
  path?: string;
  narSize?: number;
  closureSize?: number;
  references?: string[];
  valid?: boolean;
}

/** Reads path-info JSON: an array (Nix ≤ 2.18) or an object keyed by path (newer). */
export function parsePathInfo(json: string): PathInfo[] {
  const doc = JSON.parse(json) as RawPathInfo[] | Record<string, RawPathInfo | null>;
  const entries: [string, RawPathInfo | null][] = Array.isArray(doc)
    ? doc.map((d) => [d.path ?? '', d])
    : Object.entries(doc);
  return entries
    .filter((e): e is [string, RawPathInfo] => !!e[1] && e[1].valid !== false && !!e[0])
    .map(([path, d]) => ({
      path,
      narBytes: d.narSize ?? 0,
      closureBytes: d.closureSize,
      references: d.references ?? [],
    }));
}

/** `/nix/store/<hash>-<name>` → `<name>`. */
export function storeName(path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return base.replace(/^[0-9a-z]{32}-/, '');
}

/** Splits a store name into package name and version the way diff-closures does. */
export function splitVersion(name: string): { pname: string; version: string } {
  const m = /^(.*?)-(\d[^-]*(?:-.*)?)$/.exec(name);
  return m ? { pname: m[1] as string, version: m[2] as string } : { pname: name, version: '' };
}

const LEAKS: { pattern: RegExp; what: string; option: string }[] = [
  {
    pattern: /^linux-firmware/,
    what: 'all redistributable firmware (787 MB in seed 001); a VM needs none',
    option: 'hardware.enableRedistributableFirmware = false',
  },
  {
    pattern: /^(clang|llvm|lldb|clang-tools|compiler-rt)(-|$)/,
    what: 'an LLVM/clang toolchain (7 GB with dev tools in seed 001)',
    option: 'environment.systemPackages (dev toolchains)',
  },
  {
    pattern: /^(rustc|cargo|clippy|rust-docs|rust-analyzer|rust-src)(-|$)/,
    what: 'a Rust toolchain (3.5 GB in seed 001)',
    option: 'environment.systemPackages (dev toolchains)',
  },
  {
    pattern:
      /^(qtbase|qtwayland|qtdeclarative|hyprland|wlroots|gtk\+?3|gtk4|mesa|xwayland|libX11|grimblast|wayland)(-|$)/,
    what: 'desktop/Wayland/Qt parts (4.5 GB in seed 001)',
    option: 'environment.systemPackages or a desktop module imported on a server',
  },
  {
    pattern: /^zbar(-|$)/,
    what: 'zbar, a barcode scanner (620 MB in seed 001)',
    option: 'environment.systemPackages',
  },
  {
    pattern: /microvm/,
    what: 'the microvm host module (503 MB in seed 001)',
    option: 'imports (microvm.nixosModules.host)',
  },
  {
    pattern: /^(nixos-manual|.*-man-pages|.*-doc)(-|$)/,
    what: 'documentation',
    option: 'documentation.enable = false',
  },
];

function contributors(
  infos: PathInfo[],
  by: 'narBytes' | 'closureBytes',
  n: number,
): Contributor[] {
  return [...infos]
    .map((i) => ({
      path: i.path,
      narBytes: i.narBytes,
      closureBytes: i.closureBytes ?? i.narBytes,
    }))
    .sort((a, b) => b[by] - a[by] || a.path.localeCompare(b.path))
    .slice(0, n);
}

/** Compares a new closure with the one on the target (its store path list). */
export function diffClosures(next: PathInfo[], previous: string[]): ClosureDiff {
  const prevSet = new Set(previous);
  const nextSet = new Set(next.map((i) => i.path));
  const added = next.filter((i) => !prevSet.has(i.path));
  const removed = previous.filter((p) => !nextSet.has(p));
  const byName = (paths: string[]) => {
    const m = new Map<string, string[]>();
    for (const p of paths) {
      const { pname, version } = splitVersion(storeName(p));
      m.set(pname, [...(m.get(pname) ?? []), version]);
    }
    return m;
  };
  const addedNames = byName(added.map((i) => i.path));
  const removedNames = byName(removed);
  const changed: ClosureDiff['changed'] = [];
  for (const [pname, versions] of addedNames) {
    const old = removedNames.get(pname);
    if (!old) continue;
    const from = [...new Set(old)].sort().join(', ');
    const to = [...new Set(versions)].sort().join(', ');
    if (from !== to) changed.push({ name: pname, from, to });
  }
  changed.sort((a, b) => a.name.localeCompare(b.name));
  return {
    added: added.map((i) => i.path).sort(),
    removed: removed.sort(),
    changed,
    bytesToSend: added.reduce((s, i) => s + i.narBytes, 0),
  };
}

/** Totals, the biggest contributors and known leaks of one closure. */
export function closureReport(
  root: string,
  infos: PathInfo[],
  opts: { top?: number; previous?: string[] } = {},
): ClosureReport {
  const n = opts.top ?? 15;
  const leaks: Leak[] = [];
  for (const i of infos) {
    const name = storeName(i.path);
    const hit = LEAKS.find((l) => l.pattern.test(name));
    if (hit) leaks.push({ path: i.path, narBytes: i.narBytes, what: hit.what, option: hit.option });
  }
  leaks.sort((a, b) => b.narBytes - a.narBytes);
  return {
    root,
    pathCount: infos.length,
    narBytes: infos.reduce((s, i) => s + i.narBytes, 0),
    top: contributors(
      infos.filter((i) => i.path !== root),
      'closureBytes',
      n,
    ),
    topOwn: contributors(infos, 'narBytes', n),
    leaks,
    diff: opts.previous ? diffClosures(infos, opts.previous) : undefined,
  };
}
