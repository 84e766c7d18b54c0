/**
 * What the target says before and after a deploy (scripts/deploy/state.sh, after.sh, closure.sh),
 * parsed.
 */
import { diffClosures, type ClosureDiff, type PathInfo } from '../nix/closure';
import { parseKv } from '../phases/prep';
import { statusFrom, type GuardResult, type GuardStatus } from './guard';

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
  /** What `state.sh arm` did; undefined when it did not try (not asked, or nothing to guard). */
  arm?: ArmAnswer;
}

export interface ArmAnswer {
  /** guard.sh was written to /run/vps-nixos/guard.sh. */
  installed: boolean;
  /** guard.sh arm's exit status and answer (`armed=UNIT` or `error=…`). */
  exit: number;
  unit: string;
  error?: string;
  /** Guards of other runs it found still armed and stopped. */
  superseded: string[];
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
    arm:
      kv.guard_install === undefined
        ? undefined
        : {
            installed: get('guard_install') === 'ok',
            exit: kv.guard_exit === undefined ? -1 : Number(kv.guard_exit),
            unit: get('guard_armed'),
            error: kv.guard_error,
            superseded: stdout
              .split('\n')
              .filter((l) => l.startsWith('guard_superseded='))
              .map((l) => l.slice('guard_superseded='.length)),
          },
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

/**
 * closure.sh's answer. `known`: the closure of the system the runner passed as KNOWN, for when
 * closure.sh says it is the new one (new_known=1) and so did not list it.
 */
export function parseClosure(stdout: string, known?: PathInfo[]): NewClosure {
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
    paths: kv.new_known === '1' && known ? known : paths,
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

/** One guard.sh verb run by after.sh: its exit status and answer. */
export interface GuardStep {
  exit: number;
  result: GuardResult;
  error?: string;
}

/** What after.sh read and did over the new session (each part only when it was asked and ran). */
export interface AfterFacts {
  /** /run/current-system when it started. */
  current: string;
  /** guard.sh status before anything else, with its exit status. */
  guard?: GuardStatus & { exit: number; error?: string };
  disarm?: GuardStep;
  confirm?: GuardStep;
  /** Units systemd lists as failed, read after the confirm. */
  failed?: string[];
  /** The health-check command's first try, as the session would have returned it. */
  check?: { code: number; seconds: number; stdout: string; stderr: string };
  /** closure.sh of `of` ('' when there was nothing to read): its exit status, stderr and output. */
  closure?: { of: string; exit?: number; stderr: string; output: string };
  /** What runs and what the system profile points at once all of that was done. */
  end: { current: string; profile: string };
}

const unbase64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString();

/** Keys with `prefix`, without it. */
function prefixed(kv: Record<string, string>, prefix: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  let any = false;
  for (const [k, v] of Object.entries(kv))
    if (k.startsWith(prefix)) {
      out[k.slice(prefix.length)] = v;
      any = true;
    }
  return any ? out : undefined;
}

function step(kv: Record<string, string> | undefined): GuardStep | undefined {
  if (!kv) return undefined;
  return {
    exit: kv.exit === undefined ? -1 : Number(kv.exit),
    result: (kv.result ?? '') as GuardResult,
    error: kv.error,
  };
}

/** after.sh's output: key=value lines, then closure.sh's output after a line `closure:`. */
export function parseAfter(stdout: string): AfterFacts {
  const lines = stdout.split('\n');
  const cut = lines.indexOf('closure:');
  const kv = parseKv((cut >= 0 ? lines.slice(0, cut) : lines).join('\n')).values;
  const guard = prefixed(kv, 'guard_');
  return {
    current: kv.current ?? '',
    guard: guard && {
      ...statusFrom(guard),
      exit: guard.exit === undefined ? -1 : Number(guard.exit),
      error: guard.error,
    },
    disarm: step(prefixed(kv, 'disarm_')),
    confirm: step(prefixed(kv, 'confirm_')),
    failed: kv.failed === undefined ? undefined : kv.failed.split(/\s+/).filter(Boolean),
    check:
      kv.check_exit === undefined
        ? undefined
        : {
            code: Number(kv.check_exit),
            seconds: Number(kv.check_seconds ?? 0),
            stdout: unbase64(kv.check_stdout),
            stderr: unbase64(kv.check_stderr),
          },
    closure:
      kv.closure_of === undefined
        ? undefined
        : {
            of: kv.closure_of,
            exit: kv.closure_exit === undefined ? undefined : Number(kv.closure_exit),
            stderr: unbase64(kv.closure_stderr),
            output: cut >= 0 ? lines.slice(cut + 1).join('\n') : '',
          },
    end: { current: kv.end_current ?? '', profile: kv.end_profile ?? '' },
  };
}
