/** What the target says before and after a deploy (scripts/deploy/state.sh, closure.sh), parsed. */
import { diffClosures, type ClosureDiff, type PathInfo } from '../nix/closure';
import { parseKv } from '../phases/prep';

export interface TargetState {
  isNixos: boolean;
  /** /run/current-system resolved, '' when there is none (not NixOS yet, or a stand-in). */
  current: string;
  /** What /nix/var/nix/profiles/system points at (`system-12-link`), '' without a profile. */
  profileLink: string;
  profile: string;
  hasSystemdRun: boolean;
  /** Units systemd lists as failed. */
  failed: string[];
  /** Names (`<hash>-<name>`) in /nix/store: what a deploy adds is measured against this. */
  store: Set<string>;
}

export function parseState(stdout: string): TargetState {
  const lines = stdout.split('\n');
  const cut = lines.indexOf('store:');
  const kv = parseKv((cut >= 0 ? lines.slice(0, cut) : lines).join('\n')).values;
  const get = (k: string) => kv[k]?.trim() ?? '';
  return {
    isNixos: get('nixos') === '1',
    current: get('current'),
    profileLink: get('profile_link'),
    profile: get('profile'),
    hasSystemdRun: get('systemd_run') !== '',
    failed: get('failed').split(/\s+/).filter(Boolean),
    store: new Set(
      cut >= 0
        ? lines
            .slice(cut + 1)
            .map((l) => l.trim())
            .filter(Boolean)
        : [],
    ),
  };
}

export interface NewClosure {
  paths: PathInfo[];
  previous: string[];
  /** kernel, initrd, kernel-modules of the new system and of the booted one. */
  boot: Record<'kernel' | 'initrd' | 'kernel-modules', { next: string; booted: string }>;
}

export function parseClosure(stdout: string): NewClosure {
  const paths: PathInfo[] = [];
  const previous: string[] = [];
  const kvLines: string[] = [];
  for (const l of stdout.split('\n')) {
    const m = /^new (\/nix\/store\/\S+) (\d+)$/.exec(l.trim());
    if (m) {
      paths.push({ path: m[1] as string, narBytes: Number(m[2]), references: [] });
      continue;
    }
    const p = /^prev (\/nix\/store\/\S+)$/.exec(l.trim());
    if (p) previous.push(p[1] as string);
    else kvLines.push(l);
  }
  const kv = parseKv(kvLines.join('\n')).values;
  const pair = (f: string) => ({
    next: kv[`new_${f}`] ?? '',
    booted: kv[`booted_${f}`] ?? '',
  });
  return {
    paths,
    previous,
    boot: {
      kernel: pair('kernel'),
      initrd: pair('initrd'),
      'kernel-modules': pair('kernel-modules'),
    },
  };
}

/** Kernel, initrd or modules that differ from the booted system's: the change waits for a reboot. */
export function rebootReasons(c: NewClosure): string[] {
  return (Object.keys(c.boot) as (keyof NewClosure['boot'])[]).filter((k) => {
    const { next, booted } = c.boot[k];
    return next !== '' && booted !== '' && next !== booted;
  });
}

/** NAR bytes of the new closure's paths the target did not have before: what the copy sent. */
export function bytesAdded(c: NewClosure, before: Set<string>): { bytes: number; paths: number } {
  let bytes = 0;
  let paths = 0;
  for (const p of c.paths) {
    if (!before.has(p.path.slice('/nix/store/'.length))) {
      bytes += p.narBytes;
      paths++;
    }
  }
  return { bytes, paths };
}

/** Packages added, removed and changed between what ran and what runs now. */
export function deployDiff(c: NewClosure): ClosureDiff {
  return diffClosures(c.paths, c.previous);
}
