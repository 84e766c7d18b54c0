/**
 * A fake NixOS target for the deploy stage, at the SSH edge: an in-memory host (what runs, the
 * system profile and its generations, failed units, the rollback guard's state machine) behind
 * RemoteSession. It answers the commands deploy.ts sends in exactly the format
 * scripts/deploy/{state,after,guard,closure}.sh print, so the real parsers run on its answers, and
 * only when the script sent is the real one (state.sh, with guard.sh before it to arm;
 * after.sh with closure.sh before it). Each exec is one round trip: `commands` has one entry per
 * exec, naming what the scripts did in it, in order (`state, guard install, guard arm`).
 *
 * nixos-rebuild is a stand-in script on PATH (`installRebuildStandIn`) that writes what it was
 * asked to a report file; the target applies that report on its next connection or command, as
 * the real host would have by then. Our own switch copies with nix-copy-closure (a stand-in on
 * PATH, `installCopyStandIn`, that reports and exits as FAKE_COPY_* say) and runs
 * scripts/deploy/switch.sh over the session, which the target answers as `switchAnswer` says.
 */
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { readAsset } from '../../../src/assets';
import { SshConnectError } from '../../../src/errors';
import { GUARD_PATH, type GuardResult } from '../../../src/deploy/guard';
import type { HostKey } from '../../../src/ssh/hostkeys';
import type { ExecOptions, ExecResult, RemoteSession } from '../../../src/ssh/session';
import type { Target } from '../../../src/target';

const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 32);
const storePath = (name: string) => `/nix/store/${hash(name)}-${name}`;

/** A NixOS system closure as the target's store holds it. */
export interface FakeSystem {
  path: string;
  kernel: string;
  initrd: string;
  modules: string;
  /** Every path of the closure with its NAR size, the system itself first. */
  closure: { path: string; narBytes: number }[];
}

/** `nixos-system-vps-<label>` with a kernel and some packages (same name → same store path). */
export function nixosSystem(
  label: string,
  opts: { kernel?: string; packages?: Record<string, number> } = {},
): FakeSystem {
  const kernelName = opts.kernel ?? 'linux-6.6.50';
  const kernelPkg = storePath(kernelName);
  const initrdPkg = storePath(`initrd-${kernelName}`);
  const modulesPkg = storePath(`${kernelName}-modules`);
  const path = storePath(`nixos-system-vps-${label}`);
  return {
    path,
    kernel: `${kernelPkg}/bzImage`,
    initrd: `${initrdPkg}/initrd`,
    modules: modulesPkg,
    closure: [
      { path, narBytes: 20_000 },
      { path: kernelPkg, narBytes: 12_000_000 },
      { path: initrdPkg, narBytes: 9_000_000 },
      { path: modulesPkg, narBytes: 40_000_000 },
      ...Object.entries(opts.packages ?? {}).map(([name, narBytes]) => ({
        path: storePath(name),
        narBytes,
      })),
    ],
  };
}

/** Writes the nixos-rebuild stand-in into `binDir`; its behaviour comes from FAKE_REBUILD_*. */
export function installRebuildStandIn(binDir: string): void {
  const file = join(binDir, 'nixos-rebuild');
  writeFileSync(
    file,
    [
      '#!/bin/sh',
      '# nixos-rebuild stand-in (deploy-outcomes.test.ts): reports what it was asked, then does',
      '# what FAKE_REBUILD_SYSTEM (activated, or empty: failed before), _OUTPUT and _EXIT say.',
      '{',
      '  printf "args=%s\\n" "$*"',
      '  printf "sshopts=%s\\n" "$NIX_SSHOPTS"',
      '  printf "system=%s\\n" "${FAKE_REBUILD_SYSTEM:-}"',
      '} > "$FAKE_REBUILD_REPORT.tmp" && mv "$FAKE_REBUILD_REPORT.tmp" "$FAKE_REBUILD_REPORT"',
      'if [ -n "${FAKE_REBUILD_OUTPUT:-}" ]; then printf "%s\\n" "$FAKE_REBUILD_OUTPUT" >&2; fi',
      'exit "${FAKE_REBUILD_EXIT:-0}"',
      '',
    ].join('\n'),
  );
  chmodSync(file, 0o755);
}

/** Writes the nix-copy-closure stand-in into `binDir`: one line per run to FAKE_COPY_REPORT. */
export function installCopyStandIn(binDir: string): void {
  const file = join(binDir, 'nix-copy-closure');
  writeFileSync(
    file,
    [
      '#!/bin/sh',
      '# nix-copy-closure stand-in (deploy-outcomes.test.ts): reports its arguments and',
      '# NIX_SSHOPTS, then prints FAKE_COPY_OUTPUT and exits FAKE_COPY_EXIT.',
      'printf "%s|%s\n" "$*" "$NIX_SSHOPTS" >> "$FAKE_COPY_REPORT"',
      'if [ -n "${FAKE_COPY_OUTPUT:-}" ]; then printf "%s\n" "$FAKE_COPY_OUTPUT" >&2; fi',
      'exit "${FAKE_COPY_EXIT:-0}"',
      '',
    ].join('\n'),
  );
  chmodSync(file, 0o755);
}

/** What switch.sh does on the fake target: activate (or not), print, exit. */
export interface SwitchAnswer {
  /** Whether it sets the profile / activates as its action says (default true). */
  applies?: boolean;
  exit?: number;
  output?: string;
}

/** One run of nixos-rebuild as the stand-in saw it. */
export interface RebuildSeen {
  args: string[];
  sshOpts: string;
  system: string;
}

/** One exec on the target (one round trip): what it did, in order, over which session. */
export interface CommandSeen {
  /** `state, guard install, guard arm`, `guard status, guard confirm, units, closure`, … */
  what: string;
  args: string[];
  sudo: boolean;
  /** 1 for the first session, 2 for the next one opened, …; 0 for nixos-rebuild (its own ssh). */
  session: number;
}

/** One guard.sh verb the target ran, alone or inside state.sh / after.sh. */
export interface GuardCall {
  verb: string;
  /** The words after the verb (the id first). */
  args: string[];
  session: number;
}

interface GuardModel {
  id: string;
  prev: string;
  link: string;
  timeoutSeconds: number;
  mode: string;
  /** Where guard.sh's one token file is: armed, confirmed, firing, superseded, or removed. */
  token: 'armed' | 'confirmed' | 'firing' | 'superseded' | 'removed';
  result?: GuardResult;
  by: '' | 'runner' | 'target';
  reason: string;
  switchedTo: string;
  deadline?: number;
  rollbackStatus?: number;
  firedBy?: 'runner' | 'target';
  rollbackDoneAt?: number;
}

export interface FakeTargetOptions {
  target?: Target;
  systems: FakeSystem[];
  /** What /run/current-system is; undefined: there is none. */
  current?: FakeSystem;
  /** The system booted last (closure.sh compares kernels with it); defaults to `current`. */
  booted?: FakeSystem;
  isNixos?: boolean;
  hasSystemdRun?: boolean;
  /** Units that are failed while a system runs, by system path. */
  failedUnits?: Record<string, string[]>;
  /** File the nixos-rebuild stand-in reports to. */
  rebuildReport: string;
}

const STATE_SH = readAsset('scripts/deploy/state.sh');
const AFTER_SH = readAsset('scripts/deploy/after.sh');
const GUARD_SH = readAsset('scripts/deploy/guard.sh');
const CLOSURE_SH = readAsset('scripts/deploy/closure.sh');
const SWITCH_SH = readAsset('scripts/deploy/switch.sh');
/** A script preceded by a shell function printing another one (state.ts embedScript), written out. */
const withFunction = (fn: string, text: string, script: string) =>
  `${fn}() {\n  cat <<'VPS_NIXOS_${fn.toUpperCase()}_END'\n${text}VPS_NIXOS_${fn.toUpperCase()}_END\n}\n${script}`;
const STATE_ARM_SH = withFunction('guard_sh', GUARD_SH, STATE_SH);
const AFTER_SH_SENT = withFunction('closure_sh', CLOSURE_SH, AFTER_SH);
const base64 = (s: string) => Buffer.from(s).toString('base64');

/** Splits a command line the way sh does for what deploy.ts sends (single quotes, `'\''`). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated quote in: ${line}`);
      word = (word ?? '') + line.slice(i + 1, end);
      i = end;
    } else if (c === '\\' && i + 1 < line.length) {
      word = (word ?? '') + line[++i];
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else {
      word = (word ?? '') + c;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** The host. Tests set its knobs, deploy, then read `commands`, `rebuilds` and its state. */
export class FakeTarget {
  readonly target: Target;
  readonly hostKey: HostKey = { type: 'ssh-ed25519', blob: Buffer.from('fake host key') };
  readonly systems = new Map<string, FakeSystem>();
  current: string;
  booted: string;
  /** Profile generations: number → system path. */
  readonly generations = new Map<number, string>();
  /** The generation /nix/var/nix/profiles/system points at (0: no profile). */
  generation = 0;
  isNixos: boolean;
  hasSystemdRun: boolean;
  failedUnits: Record<string, string[]>;
  /** Systems under which sshd cannot be reached (the configuration cut SSH or the network). */
  readonly cutsSsh = new Set<string>();
  /** `health-check` as the target's shell runs it, given what runs. */
  healthCheck: (current: string, command: string) => ExecResult = () => ({
    code: 0,
    stdout: '',
    stderr: '',
  });
  /** What switch.sh does here. */
  switchAnswer: SwitchAnswer = {};
  /** switch.sh's arguments, each time it ran. */
  readonly switches: string[][] = [];
  /** Seconds after.sh reports the health-check command took (its `timeout` stops it at the limit). */
  healthCheckSeconds = 0;
  /** How long switch-to-configuration of the previous system takes in a rollback. */
  rollbackMs = 0;
  /** The previous system's switch-to-configuration fails (exit this) and does not activate it. */
  rollbackFailsWith?: number;
  /** Runs before a guard.sh verb is answered (e.g. the watcher's deadline passes just then). */
  beforeGuard?: (verb: string, target: FakeTarget) => void;
  /**
   * The SSH connection drops during this exec (`state`, `after`, `guard rollback`, `health-check`,
   * …): `before` the target runs it, or `after` it did, the answer lost either way. As with ssh2,
   * the exec answers without an exit status (-1) and the session is closed.
   */
  drops?: (exec: string, session: number) => 'before' | 'after' | undefined;

  readonly commands: CommandSeen[] = [];
  readonly guardCalls: GuardCall[] = [];
  /** health-check commands the target ran, alone or inside after.sh. */
  readonly healthChecks: string[] = [];
  /** closure.sh's arguments, each time it ran. */
  readonly closures: string[][] = [];
  /** The KNOWN closure.sh was given each time it was (the runner has that closure). */
  readonly closuresKnown: string[] = [];
  readonly rebuilds: RebuildSeen[] = [];
  /** Commands the fake did not recognise, and commands on closed sessions: both must stay empty. */
  readonly unknown: string[] = [];
  readonly sessions: FakeSession[] = [];
  readonly guards = new Map<string, GuardModel>();
  /** The file the nixos-rebuild stand-in reports to (FAKE_REBUILD_REPORT). */
  readonly rebuildReport: string;
  private guardUploaded = false;
  private switchedAt?: number;

  constructor(opts: FakeTargetOptions) {
    this.target = opts.target ?? {
      user: 'root',
      host: '203.0.113.7',
      port: 22,
      knownHostsName: '203.0.113.7',
    };
    for (const s of opts.systems) this.systems.set(s.path, s);
    this.current = opts.current?.path ?? '';
    this.booted = (opts.booted ?? opts.current)?.path ?? '';
    if (opts.current) {
      this.generation = 7;
      this.generations.set(7, opts.current.path);
    }
    this.isNixos = opts.isNixos ?? true;
    this.hasSystemdRun = opts.hasSystemdRun ?? true;
    this.failedUnits = opts.failedUnits ?? {};
    this.rebuildReport = opts.rebuildReport;
  }

  get profile(): string {
    return this.generations.get(this.generation) ?? '';
  }

  get profileLink(): string {
    return this.generation ? `system-${this.generation}-link` : '';
  }

  /** The session the run starts with. */
  session(): FakeSession {
    const s = new FakeSession(this, this.sessions.length + 1);
    this.sessions.push(s);
    return s;
  }

  /** What `reconnect` does: a new session, or the error a host that does not answer gives. */
  async connect(): Promise<RemoteSession> {
    this.settle();
    if (this.cutsSsh.has(this.current))
      throw new SshConnectError(
        `could not connect to ${this.target.host}:${this.target.port}: connect ECONNREFUSED`,
        'check the host',
      );
    return this.session();
  }

  /** The guard's watcher deadline passes now (the runner's confirm has not come). */
  expireWatcher(): void {
    for (const g of this.guards.values()) if (g.switchedTo) g.deadline = Date.now();
    this.settle();
  }

  /** What each exec did, in order (`state`, `nixos-rebuild switch`, `units, closure`, …). */
  get log(): string[] {
    return this.commands.map((c) => c.what);
  }

  /** guard.sh verbs in order (`guard install`: state.sh wrote it), wherever they ran. */
  get guardLog(): string[] {
    return this.guardCalls.map((c) => `guard ${c.verb}`);
  }

  /** Applies a finished nixos-rebuild, runs the guard's watcher and rollbacks up to now. */
  settle(): void {
    this.applyRebuild();
    const now = Date.now();
    for (const g of this.guards.values()) {
      // guard.sh watch: only while the token is `armed`; the deadline starts at the switch
      if (g.token === 'armed' && !g.switchedTo && this.current !== g.prev) {
        g.switchedTo = this.current;
        g.deadline = (this.switchedAt ?? now) + g.timeoutSeconds * 1000;
      }
      if (g.token === 'armed' && g.deadline !== undefined && now >= g.deadline) {
        g.token = 'firing';
        this.startRollback(
          g,
          'target',
          `the runner did not confirm within ${g.timeoutSeconds} s after the switch (SSH or the network may be cut)`,
        );
      }
      if (g.result === 'rolling-back' && g.rollbackDoneAt !== undefined && now >= g.rollbackDoneAt)
        this.finishRollback(g);
    }
  }

  private applyRebuild(): void {
    if (!existsSync(this.rebuildReport)) return;
    const at = statSync(this.rebuildReport).mtimeMs;
    const kv = Object.fromEntries(
      readFileSync(this.rebuildReport, 'utf8')
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    rmSync(this.rebuildReport);
    const seen: RebuildSeen = {
      args: (kv.args ?? '').split(' '),
      sshOpts: kv.sshopts ?? '',
      system: kv.system ?? '',
    };
    this.rebuilds.push(seen);
    this.commands.push({
      what: `nixos-rebuild ${seen.args[0]}`,
      args: seen.args,
      sudo: seen.args.includes('--use-remote-sudo'),
      session: 0,
    });
    if (!seen.system) return;
    if (!this.systems.has(seen.system)) throw new Error(`unknown system ${seen.system}`);
    const action = seen.args[0];
    if (action === 'switch' || action === 'boot') {
      const next = Math.max(0, ...this.generations.keys()) + 1;
      this.generations.set(next, seen.system);
      this.generation = next;
    }
    if (action === 'switch' || action === 'test') {
      this.current = seen.system;
      this.switchedAt = at;
    }
  }

  /** switch.sh ACTION TOPLEVEL: the profile and what runs, as the action says. */
  private switchTo(argv: string[], did: string[]): ExecResult {
    const [action = '', system = ''] = argv;
    if (argv.length !== 2 || !['switch', 'boot', 'test', 'dry-activate'].includes(action))
      return this.notUnderstood(`switch.sh ${argv.join(' ')}`);
    did.push(`switch ${action}`);
    this.switches.push(argv);
    if (!this.systems.has(system))
      return { code: 3, stdout: '', stderr: `switch.sh: ${system} is not a NixOS system here` };
    const a = this.switchAnswer;
    if (a.applies ?? true) {
      if (action === 'switch' || action === 'boot') {
        const next = Math.max(0, ...this.generations.keys()) + 1;
        this.generations.set(next, system);
        this.generation = next;
      }
      if (action === 'switch' || action === 'test') {
        this.current = system;
        this.switchedAt = Date.now();
      }
    }
    return { code: a.exit ?? 0, stdout: '', stderr: a.output ? `${a.output}\n` : '' };
  }

  private failedNow(): string[] {
    return this.failedUnits[this.current] ?? [];
  }

  private startRollback(g: GuardModel, by: 'runner' | 'target', reason: string): void {
    g.firedBy = by;
    // guard.sh: the runner writes `by` before starting; the watcher only after do_rollback ends
    if (by === 'runner') g.by = 'runner';
    g.reason = reason;
    g.result = 'rolling-back';
    g.rollbackDoneAt = Date.now() + this.rollbackMs;
    if (this.rollbackMs <= 0) this.finishRollback(g);
  }

  private finishRollback(g: GuardModel): void {
    if (g.mode === 'switch' && g.link !== '-') {
      const gen = Number(/^system-(\d+)-link$/.exec(g.link)?.[1]);
      if (this.generations.has(gen)) this.generation = gen;
    }
    if (this.rollbackFailsWith !== undefined) {
      g.rollbackStatus = this.rollbackFailsWith;
    } else {
      g.rollbackStatus = 0;
      this.current = g.prev;
    }
    g.result = this.current === g.prev ? 'rolled-back' : 'rollback-failed';
    g.rollbackDoneAt = undefined;
    if (g.firedBy === 'target') g.by = 'target';
  }

  /** What one command line does on the host: one exec, one round trip. */
  run(session: number, command: string, opts: ExecOptions = {}): ExecResult {
    this.settle();
    const sudo = command.startsWith('sudo -n ');
    const line = sudo ? command.slice('sudo -n '.length) : command;
    const stdin = typeof opts.stdin === 'string' ? opts.stdin : opts.stdin?.toString();
    const words = line === '' ? [] : shellWords(line);
    // scripts run as `sh -c TEXT NAME ARGS…` (src/ssh/script.ts); a health check as `sh -c CMD`
    const script =
      words[0] === 'sh' && words[1] === '-c' && words.length >= 4 ? words[2] : undefined;
    const argv = words.slice(4);
    const kind =
      script === STATE_SH || script === STATE_ARM_SH
        ? 'state'
        : script === AFTER_SH_SENT
          ? 'after'
          : words[0] === 'sh' && words[1] === '-c' && words.length === 3
            ? 'health-check'
            : script === SWITCH_SH
              ? 'switch'
              : words[0] === '/bin/sh' && words[1] === GUARD_PATH
                ? `guard ${words[2]}`
                : 'unknown';
    const drop = this.drops?.(kind, session);
    const did: string[] = [];
    const record = () =>
      this.commands.push({
        what: did.join(', ') + (drop ? ` (dropped ${drop})` : ''),
        args: words,
        sudo,
        session,
      });
    const dropped = (): ExecResult => {
      (this.sessions[session - 1] as FakeSession).closed = true;
      return { code: -1, stdout: '', stderr: '' };
    };
    if (drop === 'before') {
      did.push(kind);
      record();
      return dropped();
    }
    let answer: ExecResult;
    if ((kind === 'state' || kind === 'after') && stdin)
      answer = this.notUnderstood(`${kind} with data on stdin: ${stdin.slice(0, 40)}`);
    else if (kind === 'state') answer = this.state(session, script === STATE_ARM_SH, argv, did);
    else if (kind === 'after') answer = this.after(session, argv, did);
    else if (kind === 'switch') answer = this.switchTo(argv, did);
    else if (kind === 'health-check' && words.length === 3) {
      did.push('health-check');
      this.healthChecks.push(words[2] as string);
      answer = this.healthCheck(this.current, words[2] as string);
    } else if (kind.startsWith('guard ')) {
      answer = this.guard(session, words.slice(2), did);
    } else {
      answer = this.notUnderstood(command);
    }
    record();
    return drop === 'after' ? dropped() : answer;
  }

  private notUnderstood(command: string): ExecResult {
    this.unknown.push(command);
    return { code: 127, stdout: '', stderr: `fake target: unknown command: ${command}` };
  }

  private kv(pairs: [string, string | number | undefined][]): string {
    return pairs.map(([k, v]) => `${k}=${v ?? ''}\n`).join('');
  }

  /** state.sh [arm ID TIMEOUT MODE], with guard.sh sent before it to arm. */
  private state(session: number, withGuard: boolean, argv: string[], did: string[]) {
    const arm = withGuard && argv[0] === 'arm' && argv.length === 4;
    if (withGuard ? !arm : argv.length !== 0)
      return this.notUnderstood(`state.sh ${argv.join(' ')}`);
    did.push('state');
    const failed = this.failedNow()
      .map((u) => `${u} `)
      .join('');
    let out = this.kv([
      ['nixos', this.isNixos ? 1 : 0],
      ['current', this.current],
      ['profile_link', this.profileLink],
      ['profile', this.profile],
      ['systemd_run', this.hasSystemdRun ? '/run/current-system/sw/bin/systemd-run' : ''],
      ['failed', failed],
    ]);
    if (arm && this.isNixos && this.current && this.hasSystemdRun) {
      const [id = '', timeout = '', mode = ''] = argv.slice(1);
      this.guardUploaded = true;
      did.push('guard install');
      this.guardCalls.push({ verb: 'install', args: [], session });
      const r = this.guard(
        session,
        ['arm', id, this.current, this.profileLink || '-', timeout, mode],
        did,
      );
      out += this.kv([['guard_install', 'ok']]);
      out += r.stdout.replace(/^(?=.)/gm, 'guard_');
      out += this.kv([['guard_exit', r.code]]);
    }
    const store = new Set<string>();
    for (const p of this.systems.get(this.current)?.closure ?? [])
      store.add(p.path.slice('/nix/store/'.length));
    return { code: 0, stdout: `${out}store:\n${[...store].sort().join('\n')}\n`, stderr: '' };
  }

  /** after.sh with closure.sh sent before it: each step as its header says. */
  private after(session: number, args: string[], did: string[]) {
    const o: {
      guard?: string;
      disarm?: boolean;
      confirm?: boolean;
      units?: boolean;
      check?: string;
      closure?: [string, string, string];
    } = {};
    const argv = [...args];
    while (argv.length) {
      const w = argv.shift();
      if (w === '--guard') o.guard = argv.shift();
      else if (w === '--disarm') o.disarm = true;
      else if (w === '--confirm') o.confirm = true;
      else if (w === '--units') o.units = true;
      else if (w === '--check' && argv.length >= 2) o.check = argv.splice(0, 2)[1];
      else if (w === '--closure' && argv.length >= 3)
        o.closure = argv.splice(0, 3) as [string, string, string];
      else return this.notUnderstood(`after.sh ${args.join(' ')}`);
    }
    const current = this.current;
    let out = this.kv([['current', current]]);
    let state = '';
    let now = current;
    let status: Record<string, string> = {};
    const verb = (v: string, prefix: string): boolean => {
      const r = this.guard(session, [v, o.guard as string], did);
      out += r.stdout.replace(/^(?=.)/gm, `${prefix}_`);
      out += this.kv([[`${prefix}_exit`, r.code]]);
      const kv = Object.fromEntries(
        r.stdout
          .split('\n')
          .filter((l) => l.includes('='))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
      if (v === 'status') status = kv;
      state = kv.result ?? '';
      return r.code === 0;
    };
    const end = (closure = '') =>
      out +
      this.kv([
        ['end_current', this.current],
        ['end_profile', this.profile],
      ]) +
      'closure:\n' +
      closure;
    if (o.guard) {
      if (!verb('status', 'guard')) return { code: 0, stdout: out, stderr: '' };
      now = status.current ?? '';
      if (state === 'armed') {
        if (now === status.prev) {
          if (o.disarm && !verb('disarm', 'disarm')) return { code: 0, stdout: out, stderr: '' };
        } else if (o.confirm && !verb('confirm', 'confirm'))
          return { code: 0, stdout: out, stderr: '' };
      }
    }
    if (o.units) {
      did.push('units');
      out += this.kv([
        [
          'failed',
          this.failedNow()
            .map((u) => `${u} `)
            .join(''),
        ],
      ]);
    }
    if (o.check !== undefined && ['', 'confirmed', 'disarmed'].includes(state)) {
      did.push('health-check');
      this.healthChecks.push(o.check);
      const r = this.healthCheck(this.current, o.check);
      out += this.kv([
        ['check_exit', r.code],
        ['check_seconds', this.healthCheckSeconds],
        ['check_stdout', base64(r.stdout)],
        ['check_stderr', base64(r.stderr)],
      ]);
    }
    let closure = '';
    if (o.closure) {
      const [what, prev, known] = o.closure;
      let of = what;
      if (what === 'new') {
        of = now;
        if (o.guard && !['armed', 'confirmed', 'disarmed'].includes(status.result ?? ''))
          of = status.switched_to || now;
      } else if (what === 'profile') of = this.profile;
      out += this.kv([['closure_of', of]]);
      if (of) {
        did.push('closure');
        const r = this.closure(of, prev, known);
        closure = r.stdout;
        out += this.kv([
          ['closure_exit', r.code],
          ['closure_stderr', base64(r.stderr)],
        ]);
      }
    }
    return { code: 0, stdout: end(closure), stderr: '' };
  }

  /** closure.sh NEW PREV KNOWN ('' for none): NEW's paths unless it is KNOWN. */
  private closure(next: string, prev: string, known: string): ExecResult {
    this.closures.push(prev ? [next, prev] : [next]);
    if (known) this.closuresKnown.push(known);
    const n = this.systems.get(next);
    if (!n) return { code: 1, stdout: `error=nix-store -qR ${next} failed\n`, stderr: '' };
    const b = this.systems.get(this.booted);
    const p = prev ? this.systems.get(prev) : undefined;
    const out: string[] = [];
    for (const [f, k] of [
      ['kernel', 'kernel'],
      ['initrd', 'initrd'],
      ['kernel-modules', 'modules'],
    ] as const) {
      out.push(`new_${f}=${n[k]}`, `booted_${f}=${b?.[k] ?? ''}`);
    }
    if (known === next) out.push('new_known=1');
    else for (const c of n.closure) out.push(`new ${c.path} ${c.narBytes}`);
    for (const c of p?.closure ?? []) out.push(`prev ${c.path}`);
    return { code: 0, stdout: out.join('\n') + '\n', stderr: '' };
  }

  /** guard.sh VERB ID …, as installed at GUARD_PATH. */
  private guard(session: number, argv: string[], did: string[]): ExecResult {
    const [verb = '', id = '', ...rest] = argv;
    did.push(`guard ${verb}`);
    this.guardCalls.push({ verb, args: [id, ...rest], session });
    if (!this.guardUploaded)
      return { code: 127, stdout: '', stderr: `/bin/sh: ${GUARD_PATH}: No such file` };
    this.beforeGuard?.(verb, this);
    this.settle();
    const out = (pairs: [string, string | number | undefined][], code = 0): ExecResult => ({
      code,
      stdout: this.kv(pairs),
      stderr: '',
    });
    const g = this.guards.get(id);
    const resultNow = () => g?.result ?? (g?.token === 'firing' ? 'rolling-back' : 'armed');
    switch (verb) {
      case 'arm': {
        const [prev = '', link = '', timeout = '', mode = ''] = rest;
        if (!this.systems.has(prev))
          return out([['error', `${prev} has no bin/switch-to-configuration`]], 1);
        if (!this.hasSystemdRun) return out([['error', 'systemd-run is missing']], 1);
        // a watcher still armed from another run is stopped
        const superseded: [string, string][] = [];
        for (const other of this.guards.values())
          if (other.id !== id && other.token === 'armed') {
            other.token = 'superseded';
            other.result = 'disarmed';
            superseded.push(['superseded', other.id]);
          }
        this.guards.set(id, {
          id,
          prev,
          link,
          timeoutSeconds: Number(timeout),
          mode,
          token: 'armed',
          by: '',
          reason: '',
          switchedTo: '',
        });
        return out([...superseded, ['armed', `vps-nixos-guard-${id}`]]);
      }
      case 'confirm':
        if (g?.token === 'armed') {
          g.token = 'confirmed';
          g.result = 'confirmed';
          return out([['result', 'confirmed']]);
        }
        return out([['result', g?.result ?? 'rolling-back']]);
      case 'rollback':
        if (g && (g.token === 'armed' || g.token === 'confirmed')) {
          g.token = 'firing';
          this.startRollback(g, 'runner', rest[0] ?? '');
          return out([['result', 'rolling-back']]);
        }
        return out([['result', g?.result ?? 'rolling-back']]);
      case 'disarm':
        if (g) {
          if (g.token === 'armed') g.token = 'removed';
          g.result = 'disarmed';
        }
        return out([['result', 'disarmed']]);
      case 'status':
        return out([
          ['current', this.current],
          ['prev', g?.prev],
          ['result', resultNow()],
          ['by', g?.by],
          ['reason', g?.reason],
          ['switched_to', g?.switchedTo],
          ['rollback_status', g?.rollbackStatus],
        ]);
      default:
        return { code: 2, stdout: '', stderr: `guard: unknown command ${verb}` };
    }
  }
}

/** One SSH session to the fake target. */
export class FakeSession implements RemoteSession {
  closed = false;
  readonly target: Target;
  readonly hostKey: HostKey;

  constructor(
    private readonly host: FakeTarget,
    readonly index: number,
  ) {
    this.target = host.target;
    this.hostKey = host.hostKey;
  }

  async exec(command: string, opts?: ExecOptions): Promise<ExecResult> {
    if (this.closed) {
      this.host.unknown.push(`on closed session ${this.index}: ${command}`);
      throw new Error('not connected');
    }
    return this.host.run(this.index, command, opts);
  }

  close(): void {
    this.closed = true;
  }
}
