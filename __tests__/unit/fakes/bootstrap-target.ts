/**
 * A fake VPS for the bootstrap driver, at the SSH edge: an in-memory host that boots a
 * distribution, our kexec installer, the installed system or the infected one, and keeps what
 * each phase leaves behind (tools, zram and swapfile, the uploaded installer, the disk script in
 * the installer's RAM, the wiped disk, the closure in /mnt, the boot loader, nixos-infect's state).
 * It answers the commands the phases send, recognised by their shape (the scripts must be ours,
 * byte for byte), in exactly the key=value format scripts/phases/*.sh print, so the real parsers
 * run. It does not answer scripts/facts.sh: the driver takes parsed facts (the fixtures).
 *
 * A kexec or reboot only happens when the runner reconnects (as if it took that long): sessions
 * of the previous boot are dead from then on. The closure transfer (src/nix/transfer.ts) needs a
 * local Nix store; `RunnerStore` stands in for it (`localClosure`, `filesPresent`,
 * `sendClosure`) and moves paths into the fake's stores over the session it is given.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { readAsset } from '../../../src/assets';
import { SshConnectError, VpsNixosError } from '../../../src/errors';
import type { KexecTarball } from '../../../src/nix/kexec';
import type { TransferOptions, TransferResult } from '../../../src/nix/transfer';
import type { HostKey } from '../../../src/ssh/hostkeys';
import type { ExecOptions, ExecResult, RemoteSession } from '../../../src/ssh/session';
import type { Target } from '../../../src/target';
import { shellWords } from './session';

const MiB = 2 ** 20;
const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

const PREP_SH = readAsset('scripts/phases/prep.sh');
const KEXEC_STAGE_SH = readAsset('scripts/phases/kexec-stage.sh');
const DISKO_PATCH_SH = readAsset('scripts/phases/disko-patch.sh');
const INSTALL_SH = readAsset('scripts/phases/install.sh');
const INFECT_SH = readAsset('scripts/phases/infect.sh');
const WHO_SH = readAsset('scripts/who.sh');
const REBOOT_SH = readAsset('scripts/reboot.sh');

/** What runs: the distribution, our kexec installer, the system we installed, or the infected one. */
export type BootKind = 'distro' | 'installer' | 'installed' | 'infected';

/** The system nixos-infect's NixOS runs after its first boot. */
export const INFECTED_SYSTEM =
  '/nix/store/3x0c8m1v9q2l7k4j6h5g0f9d8s7a6p5o-nixos-system-nixos-25.11';
const CARRIED_MACHINE_ID = '/var/lib/vps-nixos/carried/machine-id';
const MEM_TOTAL_KB = 1004132;

/** MemTotal − MemAvailable of each system, so a memory sample tells which one answered. */
export const USED_BYTES: Record<BootKind, number> = {
  distro: 310 * MiB,
  installer: 540 * MiB,
  installed: 260 * MiB,
  infected: 280 * MiB,
};

/** One command the target ran, by its kind (`prep`, `kexec-stage load`, `install disko`, …). */
export interface CommandSeen {
  what: string;
  args: string[];
  /** 1 for the session the run started with, 2 for the next one opened, … */
  session: number;
  /** What ran when it came. */
  on: BootKind;
  /** It changes the host (installs, uploads, loads, wipes, copies, reboots); else it only reads. */
  changes: boolean;
}

export interface BootstrapTargetOptions {
  boot?: BootKind;
  bootId?: string;
  machineId?: string;
  /** Commands the distribution has (`prep.sh --tools` checks them). */
  tools?: string[];
  packageManager?: string | null;
  /** Whole disks: path → bytes. */
  disks?: Record<string, number>;
  /** Free bytes on the distribution's root file system (kexec-stage.sh check). */
  rootAvailBytes?: number;
  /** Reconnects after a kexec or reboot that still reach the old system, then that are refused. */
  oldSystemAnswers?: number;
  downConnects?: number;
  /** The kexec load fails with this (as kexec/run prints it). */
  kexecLoadFails?: string;
  /** The provider boots its own media: a reboot comes back in the installer. */
  bootsFromMedia?: boolean;
  /** nixos-infect: the log lines it prints (one per poll) and its exit status. */
  infectLog?: string[];
  infectExit?: number;
  /** authorized_keys files → their lines (read by the infect reboot's access checks). */
  authorizedKeys?: Record<string, string[]>;
}

/** nixos-infect's run as infect.sh keeps it in its state directory. */
export interface InfectState {
  dir: string;
  startedIn: string;
  started: number;
  finished?: number;
  exit?: number;
  scriptSha256: string;
  log: string;
  linesLeft: string[];
}

/** The host. Tests set its state, run the bootstrap, then read `commands` and its state. */
export class FakeBootTarget {
  readonly target: Target = {
    user: 'root',
    host: '192.0.2.10',
    port: 22,
    knownHostsName: '192.0.2.10',
  };
  readonly hostKey: HostKey = { type: 'ssh-ed25519', blob: Buffer.from('fake host key') };
  readonly sessions: BootSession[] = [];
  readonly commands: CommandSeen[] = [];
  /** Commands the fake did not recognise: must stay empty. */
  readonly unknown: string[] = [];
  /** Commands sent on a session after it was closed or its boot ended: `session: command`. */
  readonly onDeadSessions: string[] = [];
  /** What the closure stand-in was asked to send, and with which options. */
  readonly sends: { root: string; paths: string[]; opts: TransferOptions; session: number }[] = [];
  connects = 0;
  /** Bytes of installer tarball that arrived (kexec-stage.sh receive). */
  uploadedBytes = 0;

  kind: BootKind;
  bootId: string;
  readonly machineId: string;
  private bootSeq = 1;
  private pending?: { into: BootKind; oldAnswers: number; down: number };
  readonly opts: BootstrapTargetOptions;

  // the distribution (on the disk until the disk script wipes it)
  readonly tools: Set<string>;
  distroOnDisk = true;
  kexecTarball?: { sha256: string; bytes: number };
  /** Files written by `upload` (infect): path → text. */
  readonly files = new Map<string, string>();
  network?: string;
  infect?: InfectState;
  /** nixos-infect wrote /etc/NIXOS (it does before the reboot that makes it true). */
  etcNixos = false;
  /** The infect state moved under /old-root (NixOS's first boot, NIXOS_LUSTRATE). */
  lustrated = false;

  // this boot only
  zram?: string;
  swapfile?: string;
  /** Store paths in the installer's RAM store (root `/`), and whether disko-patch.sh applied. */
  installerStore = new Set<string>();
  diskoPatched = false;
  diskoMarker?: string;
  mntMounted = false;
  carriedMachineId?: string;

  // the disk, once formatted
  readonly mntStore = new Set<string>();
  mntProfile?: string;
  installedMarker?: string;
  hostKeysCopied = false;
  /** The system the boot loader starts. */
  bootsInto?: string;

  constructor(opts: BootstrapTargetOptions = {}) {
    this.opts = opts;
    this.kind = opts.boot ?? 'distro';
    this.bootId = opts.bootId ?? this.newBootId();
    this.machineId = opts.machineId ?? '8d2c51f7a94e4b0c9f3e6a1b27c4d590';
    this.tools = new Set(
      opts.tools ?? ['sh', 'bash', 'tar', 'setsid', 'curl', 'ip', 'awk', 'groupadd', 'useradd'],
    );
    if (this.kind === 'installer') {
      this.distroOnDisk = false;
      this.carriedMachineId = this.machineId;
    }
  }

  /** The session the run starts with. */
  session(): BootSession {
    const s = new BootSession(this, this.sessions.length + 1, this.bootSeq);
    this.sessions.push(s);
    return s;
  }

  /** What `reconnect` does: a kexec or reboot that was asked for happens now. */
  async connect(): Promise<RemoteSession> {
    this.connects++;
    const p = this.pending;
    if (p) {
      if (p.oldAnswers > 0) {
        p.oldAnswers--;
        return this.session();
      }
      if (p.down > 0) {
        p.down--;
        throw new SshConnectError(
          `cannot connect to ${this.target.host}:22: connect ECONNREFUSED`,
          'check the host',
        );
      }
      this.pending = undefined;
      this.bootInto(p.into);
    }
    return this.session();
  }

  /** Command kinds in order, without the memory samples and the probes of what answers. */
  get log(): string[] {
    return this.commands.filter((c) => !['meminfo', 'who'].includes(c.what)).map((c) => c.what);
  }

  /** The commands that changed the host, with the session each came over. */
  get changes(): string[] {
    return this.commands.filter((c) => c.changes).map((c) => `${c.session}: ${c.what}`);
  }

  get isNixos(): boolean {
    return this.kind !== 'distro' || this.etcNixos;
  }

  get currentSystem(): string {
    if (this.kind === 'installed') return this.bootsInto ?? '';
    if (this.kind === 'infected') return INFECTED_SYSTEM;
    return '';
  }

  private newBootId(): string {
    const n = String(this.bootSeq).padStart(12, '0');
    return `b00710d0-0000-4000-8000-${n}`;
  }

  private reboot(into: BootKind): void {
    this.pending = {
      into,
      oldAnswers: this.opts.oldSystemAnswers ?? 0,
      down: this.opts.downConnects ?? 0,
    };
  }

  private bootInto(kind: BootKind): void {
    this.bootSeq++;
    this.bootId = this.newBootId();
    this.zram = undefined;
    this.swapfile = undefined;
    this.installerStore = new Set();
    this.diskoPatched = false;
    this.diskoMarker = undefined;
    this.mntMounted = false;
    if (kind === 'installer' && this.kind === 'distro') this.carriedMachineId = this.machineId;
    if (kind === 'infected') this.lustrated = true;
    this.kind = kind;
  }

  /** Where a reboot leads from here. */
  private next(): BootKind {
    if (this.opts.bootsFromMedia) return 'installer';
    if (this.kind === 'distro' && this.infect?.exit === 0) return 'infected';
    if (this.bootsInto) return 'installed';
    if (this.distroOnDisk) return 'distro';
    return 'installer';
  }

  /** What one command line does on the host. */
  async run(session: BootSession, command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    if (session.closed || session.boot !== this.bootSeq) {
      this.onDeadSessions.push(`${session.index}: ${command.slice(0, 60)}`);
      throw new SshConnectError(
        `cannot run a command on ${this.target.host}: ${session.closed ? 'Not connected' : 'connection reset'}`,
        'the connection was lost; re-run to resume',
      );
    }
    const stdin = opts.stdin;
    const text = typeof stdin === 'string' ? stdin : Buffer.isBuffer(stdin) ? stdin.toString() : '';
    const seen = (what: string, args: string[], changes: boolean) =>
      this.commands.push({ what, args, session: session.index, on: this.kind, changes });

    if (command === 'cat /proc/meminfo') {
      seen('meminfo', [], false);
      const avail = MEM_TOTAL_KB - USED_BYTES[this.kind] / 1024;
      return ok(`MemTotal:        ${MEM_TOTAL_KB} kB\nMemAvailable:     ${avail} kB\n`);
    }
    const words = shellWords(command);
    // our scripts run as `sh -c TEXT NAME ARGS…` (src/ssh/script.ts), recognised by their text
    if (words[0] === 'sh' && words[1] === '-c' && words.length >= 4) {
      const [script, , ...args] = words.slice(2) as [string, string, ...string[]];
      if (script === WHO_SH) {
        seen('who', [], false);
        const variant = this.kind === 'installer' ? 'installer' : '';
        const nixos = this.isNixos ? 'nixos' : 'other';
        return ok(`${this.bootId}\n${variant}\n${nixos}\n${this.currentSystem}\n`);
      }
      if (script === REBOOT_SH) {
        seen('reboot', [], true);
        this.reboot(this.next());
        return ok('');
      }
      if (script === PREP_SH) return this.prep(args, seen);
      if (script === INSTALL_SH) return this.install(args, seen);
      if (script === INFECT_SH) return this.infectSh(args, text, seen);
      if (script === KEXEC_STAGE_SH) return this.kexecStage(args, stdin, seen);
      if (script === DISKO_PATCH_SH) return this.diskoPatch(args, text, seen);
    }
    // nixos-infect's poll runs the copy uploaded for the run
    if (words[0] === 'sh' && /\/infect\.sh$/.test(words[1] ?? '')) {
      if (this.files.get(words[1]!) !== INFECT_SH)
        return { code: 127, stdout: '', stderr: `sh: ${words[1]}: No such file` };
      return this.infectSh(words.slice(2), text, seen);
    }

    this.unknown.push(command.slice(0, 200));
    return { code: 127, stdout: '', stderr: `fake target: unknown command: ${command}` };
  }

  private prep(argv: string[], seen: Seen): ExecResult {
    const check = argv[0] === '--check';
    const [, tools = '', zramBytes = '0', swapBytes = '0', swapPath = ''] = check
      ? argv.slice(1)
      : argv;
    seen(check ? 'prep --check' : 'prep', [tools, zramBytes, swapBytes, swapPath], !check);
    const has = (t: string) => this.kind !== 'distro' || this.tools.has(t);
    const missing = tools.split(' ').filter((spec) => spec && !spec.split('|').some(has));
    if (check)
      return ok(
        kv([
          ['missing_tools', missing.join(' ')],
          ['zram', this.zram ?? 'none'],
          ['swapfile', this.swapfile ?? 'none'],
        ]),
      );
    const out: [string, string][] = [];
    if (missing.length) {
      const pm = this.opts.packageManager === undefined ? 'apt-get' : this.opts.packageManager;
      if (!pm) return fail(`no package manager found to install: ${missing.join(' ')}`);
      for (const spec of missing) this.tools.add(spec.split('|')[0]!);
      out.push(['installed', missing.join(' ')]);
    }
    if (!this.zram && Number(zramBytes) > 0) this.zram = '/dev/zram0';
    out.push(['zram', this.zram ?? 'none']);
    if (!this.swapfile && Number(swapBytes) > 0) {
      if (this.kind === 'installer') out.push(['warning', `no swapfile: ${swapPath} is on tmpfs`]);
      else this.swapfile = swapPath;
    }
    out.push(['swapfile', this.swapfile ?? 'none']);
    out.push(['mem.MemAvailable', String(MEM_TOTAL_KB * 1024 - USED_BYTES[this.kind])]);
    return ok(kv(out));
  }

  private async kexecStage(
    argv: string[],
    stdin: ExecOptions['stdin'],
    seen: Seen,
  ): Promise<ExecResult> {
    const [action = '', dir = '', want = '', rootfs = ''] = argv;
    seen(
      `kexec-stage ${action}`,
      action === 'load' ? [dir, want, rootfs] : [dir, want],
      action !== 'check',
    );
    if (this.kind !== 'distro')
      return fail(`kexec-stage runs on the distribution, not ${this.kind}`);
    switch (action) {
      case 'check':
        return ok(
          kv([
            ['fstype', 'ext4'],
            ['avail_bytes', String(this.opts.rootAvailBytes ?? 20 * 1024 * MiB)],
            ['uploaded', this.kexecTarball?.sha256 === want ? 'yes' : 'no'],
          ]),
        );
      case 'receive': {
        if (!stdin || typeof stdin === 'string' || Buffer.isBuffer(stdin))
          return fail('receive wants the tarball on stdin');
        const hash = createHash('sha256');
        let bytes = 0;
        for await (const chunk of stdin as Readable) {
          hash.update(chunk as Buffer);
          bytes += (chunk as Buffer).length;
        }
        const got = hash.digest('hex');
        if (got !== want) return fail(`the upload has sha256 ${got}, expected ${want}`);
        this.kexecTarball = { sha256: got, bytes };
        this.uploadedBytes += bytes;
        return ok(kv([['received_bytes', String(bytes)]]));
      }
      case 'load': {
        if (this.kexecTarball?.sha256 !== want) return fail(`no verified tarball in ${dir}`);
        const bootId = kv([['boot_id', this.bootId]]);
        if (this.opts.kexecLoadFails)
          return { code: 1, stdout: bootId + `error=${this.opts.kexecLoadFails}\n`, stderr: '' };
        this.reboot('installer');
        return ok(bootId + 'loaded=yes\n');
      }
      default:
        return fail(`unknown action ${action}`);
    }
  }

  private diskoPatch(argv: string[], closure: string, seen: Seen): ExecResult {
    const [action = '', script = ''] = argv;
    seen(`disko-patch ${action}`, [script], action === 'apply');
    if (!this.installerStore.has(script) || !closure.split('\n').includes(script))
      return fail(`${script} is not in the installer's store`);
    if (action === 'apply') this.diskoPatched = true;
    return ok(
      kv([
        ['files', '1'],
        ['patched', this.diskoPatched ? '1' : '0'],
        ['pending', this.diskoPatched ? '0' : '1'],
      ]),
    );
  }

  private install(argv: string[], seen: Seen): ExecResult {
    const [action = '', ...args] = argv;
    seen(`install ${action}`, args, action === 'disko' || action === 'finish');
    if (this.kind !== 'installer')
      return fail(`install.sh runs in the installer, not ${this.kind}`);
    const disks = this.opts.disks ?? { '/dev/vda': 26843545600 };
    const keysOk = this.hostKeysCopied;
    switch (action) {
      case 'identity': {
        const [disk = ''] = args;
        const out: [string, string][] = [];
        if (this.carriedMachineId)
          out.push(['machine_id', this.carriedMachineId], ['machine_id_from', CARRIED_MACHINE_ID]);
        if (disks[disk] !== undefined)
          out.push(
            ['disk_type', 'disk'],
            ['disk_bytes', String(disks[disk])],
            ['disk_mounted', this.mntMounted ? '1' : '0'],
          );
        else out.push(['disk_type', 'missing']);
        out.push(['root_fstype', 'tmpfs']);
        return ok(kv(out));
      }
      case 'disko': {
        const [disk = '', script = ''] = args;
        if (!this.installerStore.has(script))
          return fail(`${script} is not in the installer's store`);
        // the disk script wipes the distribution, the uploaded installer and an earlier install
        this.distroOnDisk = false;
        this.kexecTarball = undefined;
        this.files.clear();
        this.mntStore.clear();
        this.mntProfile = undefined;
        this.installedMarker = undefined;
        this.hostKeysCopied = false;
        this.bootsInto = undefined;
        this.mntMounted = true;
        this.diskoMarker = `${disk} ${script}`;
        return ok(
          kv([
            ['mnt', `${disk}2,ext4`],
            ['mnt_avail_bytes', String(20 * 1024 * MiB)],
          ]),
        );
      }
      case 'state': {
        const [toplevel = ''] = args;
        const installed =
          this.installedMarker === toplevel && this.mntProfile === toplevel && keysOk;
        return ok(
          kv([
            ['disko', this.diskoMarker ?? 'none'],
            ['mnt', this.mntMounted ? 'mounted' : 'none'],
            ['profile', this.mntProfile ?? 'none'],
            ['host_keys', keysOk ? 'copied' : 'missing'],
            ['installed', installed ? 'yes' : 'no'],
          ]),
        );
      }
      case 'finish': {
        const [toplevel = '', nix = ''] = args;
        if (!this.mntMounted) return fail('/mnt is not mounted: run the disk script first');
        if (!this.mntStore.has(toplevel)) return fail(`${toplevel} is not in /mnt's store`);
        if (!this.mntStore.has(nix)) return fail(`${nix}/bin/nix-env is not in /mnt's store`);
        this.mntProfile = toplevel;
        this.bootsInto = toplevel;
        this.hostKeysCopied = true;
        this.installedMarker = toplevel;
        return ok(
          kv([
            ['profile', toplevel],
            ['host_keys', 'copied'],
          ]),
        );
      }
      default:
        return fail(`usage: install.sh identity|disko|state|finish …`);
    }
  }

  private infectStatus(): [string, string][] {
    const inf = this.infect;
    const out: [string, string][] = [];
    if (!inf) out.push(['state', 'none']);
    else if (inf.exit === undefined && this.kind === 'distro' && inf.startedIn === this.bootId)
      out.push(['state', 'running']);
    else out.push(['state', inf.exit === 0 ? 'finished' : 'failed']);
    if (inf?.exit !== undefined) out.push(['exit', String(inf.exit)]);
    if (inf) out.push(['boot_id', inf.startedIn]);
    out.push(['current_boot_id', this.bootId], ['log_bytes', String(inf?.log.length ?? 0)]);
    if (inf) out.push(['script_sha256', inf.scriptSha256], ['started', String(inf.started)]);
    if (inf?.finished !== undefined) out.push(['finished', String(inf.finished)]);
    if (inf && inf.exit === undefined) out.push(['pid', '4242']);
    return out;
  }

  private infectSh(argv: string[], stdin: string, seen: Seen): ExecResult {
    const [mode = '', dir = '', ...rest] = argv;
    switch (mode) {
      case 'put':
        seen(`upload ${dir}/${rest[0]}`, [], true);
        this.files.set(`${dir}/${rest[0]}`, stdin);
        return ok('');
      case 'saved-network':
        seen('infect read-network', [], false);
        return this.network ? ok(this.network) : { code: 1, stdout: '', stderr: 'No such file' };
      case 'access': {
        seen('access checks', [], false);
        const keys = this.opts.authorizedKeys ?? {};
        const lines = rest.flatMap((f) => (keys[f] ?? []).map((k) => `${f} ${k}`));
        return ok([...lines, '---', ...ADDRESSES].join('\n') + '\n');
      }
    }
    seen(`infect ${mode}`, rest, mode === 'start' || mode === 'network');
    switch (mode) {
      case 'status':
        return ok(kv([['dir', this.lustrated ? `/old-root${dir}` : dir], ...this.infectStatus()]));
      case 'network':
        this.network = NETWORK;
        return ok(NETWORK);
      case 'start': {
        const [want = '', noSwap = ''] = rest;
        const script = this.files.get(`${dir}/nixos-infect`);
        if (script === undefined) return fail(`${dir}/nixos-infect is missing`);
        // its detached runner runs the uploaded copy of infect.sh
        if (this.files.get(`${dir}/infect.sh`) !== INFECT_SH)
          return fail(`${dir}/infect.sh is missing`);
        if (this.infect && this.infect.exit === undefined)
          return fail('nixos-infect is already running (pid 4242)');
        const got = sha256(script);
        if (got !== want) return fail(`${dir}/nixos-infect has sha256 ${got}, expected ${want}`);
        const out: [string, string][] = [];
        if (noSwap !== '1' && this.swapfile)
          out.push(['no_swap', `the swapfile ${this.swapfile} is on already`]);
        this.infect = {
          dir,
          startedIn: this.bootId,
          started: Math.floor(Date.now() / 1000),
          scriptSha256: got,
          log: '',
          linesLeft: [...(this.opts.infectLog ?? ['nixos-infect (stand-in): installing Nix'])],
        };
        return ok(kv([...out, ...this.infectStatus()]));
      }
      case 'poll': {
        const inf = this.infect;
        const off = Number(rest[0] ?? 0);
        if (inf && inf.exit === undefined) {
          const line = inf.linesLeft.shift();
          if (line !== undefined) inf.log += `${line}\n`;
          if (inf.linesLeft.length === 0) {
            inf.exit = this.opts.infectExit ?? 0;
            inf.finished = Math.floor(Date.now() / 1000);
            if (inf.exit === 0) this.etcNixos = true;
          }
        }
        const log = inf?.log ?? '';
        return {
          code: 0,
          stdout: log.slice(off),
          stderr: kv([['size', String(log.length)], ...this.infectStatus()]),
        };
      }
      default:
        return fail(`unknown mode ${mode}`);
    }
  }

  /** store.sh's view of ROOT: the installer's RAM store (`/`) or the new disk's (`/mnt`). */
  private storeAt(root: string): Set<string> {
    if (this.kind !== 'installer') throw new Error(`the store steps run in the installer`);
    if (root === '/') return this.installerStore;
    if (root === '/mnt' && this.mntMounted) return this.mntStore;
    throw new VpsNixosError(`the target's store step failed: cannot enter ${root}`, 're-run');
  }

  /** The paths not in ROOT's store yet (store.sh invalid / check). */
  storeMissing(session: BootSession, root: string, paths: string[]): string[] {
    this.assertLive(session, 'store invalid');
    this.commands.push({
      what: `store check ${root}`,
      args: paths,
      session: session.index,
      on: this.kind,
      changes: false,
    });
    const have = this.storeAt(root);
    return paths.filter((p) => !have.has(p));
  }

  /** The closure stream arriving under ROOT (store.sh clear + receive + register). */
  storeReceive(session: BootSession, root: string, paths: string[], opts: TransferOptions): void {
    this.assertLive(session, 'store receive');
    this.commands.push({
      what: `store receive ${root}`,
      args: paths,
      session: session.index,
      on: this.kind,
      changes: true,
    });
    this.sends.push({ root, paths, opts, session: session.index });
    for (const p of paths) this.storeAt(root).add(p);
  }

  private assertLive(session: BootSession, what: string): void {
    if (session.closed || session.boot !== this.bootSeq) {
      this.onDeadSessions.push(`${session.index}: ${what}`);
      throw new SshConnectError('the session closed', 're-run to resume');
    }
  }
}

type Seen = (what: string, args: string[], changes: boolean) => void;

/** The global addresses `ip -o addr show scope global | awk '{ print $4 }'` prints. */
const ADDRESSES = ['192.0.2.10/24', '2001:db8:1::10/64'];
const NETWORK = [
  '# addresses (ip -o addr show scope global)',
  'ens3 inet 192.0.2.10/24',
  'ens3 inet6 2001:db8:1::10/64',
  '# IPv4 routes',
  'default via 192.0.2.1 dev ens3 onlink',
  '# IPv6 routes',
  'default via 2001:db8:1::1 dev ens3 metric 1024 onlink pref medium',
  '# DNS (/etc/resolv.conf)',
  'nameserver 203.0.113.53',
  '',
].join('\n');

const ok = (stdout: string): ExecResult => ({ code: 0, stdout, stderr: '' });
const fail = (error: string): ExecResult => ({ code: 1, stdout: `error=${error}\n`, stderr: '' });
const kv = (pairs: [string, string][]) => pairs.map(([k, v]) => `${k}=${v}\n`).join('');

/** One SSH session to the fake target, bound to the boot it was opened in. */
export class BootSession implements RemoteSession {
  closed = false;
  readonly target: Target;
  readonly hostKey: HostKey;
  readonly cipher = 'chacha20-poly1305@openssh.com';

  constructor(
    readonly host: FakeBootTarget,
    readonly index: number,
    readonly boot: number,
  ) {
    this.target = host.target;
    this.hostKey = host.hostKey;
  }

  async exec(command: string, opts?: ExecOptions): Promise<ExecResult> {
    await Promise.resolve();
    return this.host.run(this, command, opts);
  }

  close(): void {
    this.closed = true;
  }
}

function fakeSession(session: RemoteSession): BootSession {
  if (!(session instanceof BootSession)) throw new Error('not a session to the fake target');
  return session;
}

/**
 * This runner's Nix store, for what src/nix/transfer.ts would ask `nix-store`: the system
 * toplevel (its own Nix inside, found by findSystemNix through sw/bin/nix-store), the disk script
 * (a file whose text names the disk, read by the wipe guard) and their dependencies. The real
 * files live in a temp directory that stands for /nix/store.
 */
export class RunnerStore {
  readonly dir: string;
  readonly toplevel: string;
  readonly nix: string;
  readonly diskScript: string;
  /** Bytes of each path (its NAR), and on the wire (zstd). */
  readonly sizes = new Map<string, number>();
  private readonly closures = new Map<string, string[]>();

  constructor(opts: { diskScriptText?: string } = {}) {
    this.dir = realpathSync(mkdtempSync(join(tmpdir(), 'bootstrap-driver-store-')));
    const path = (name: string, bytes: number) => {
      const p = join(this.dir, `${sha256(name).slice(0, 32)}-${name}`);
      this.sizes.set(p, bytes);
      return p;
    };
    const glibc = path('glibc-2.40', 30 * MiB);
    const utilLinux = path('util-linux-2.41', 5 * MiB);
    const kernel = path('linux-6.12.30', 40 * MiB);
    this.nix = path('nix-2.28.3', 20 * MiB);
    this.toplevel = path('nixos-system-vps-25.11', MiB);
    this.diskScript = path('disko', 10 * 1024);
    mkdirSync(join(this.nix, 'bin'), { recursive: true });
    for (const b of ['nix-store', 'nix-env']) writeFileSync(join(this.nix, 'bin', b), '');
    mkdirSync(join(this.toplevel, 'sw', 'bin'), { recursive: true });
    symlinkSync(join(this.nix, 'bin', 'nix-store'), join(this.toplevel, 'sw', 'bin', 'nix-store'));
    writeFileSync(
      this.diskScript,
      opts.diskScriptText ??
        '#!/bin/sh\nset -e\ndevice=/dev/vda\nsgdisk --zap-all /dev/vda\nmkfs.ext4 -L nixos /dev/vda2\n',
    );
    this.closures.set(this.nix, [glibc, this.nix]);
    this.closures.set(this.toplevel, [glibc, this.nix, kernel, this.toplevel]);
    this.closures.set(this.diskScript, [glibc, utilLinux, this.diskScript]);
  }

  /** localClosure: dependencies first, each path once. */
  localClosure = async (roots: string[]): Promise<string[]> => {
    const out: string[] = [];
    for (const r of roots) {
      const c = this.closures.get(r);
      if (!c) throw new Error(`nix-store: path '${r}' is not valid`);
      for (const p of c) if (!out.includes(p)) out.push(p);
    }
    return out;
  };

  /** filesPresent: all of `paths` under `root` on the target. */
  filesPresent = async (
    session: RemoteSession,
    paths: string[],
    root: string,
  ): Promise<boolean> => {
    const s = fakeSession(session);
    return s.host.storeMissing(s, root, paths).length === 0;
  };

  /** sendClosure: what is missing under the store root goes over `session`. */
  sendClosure = async (
    session: RemoteSession,
    roots: string[],
    opts: TransferOptions,
  ): Promise<TransferResult> => {
    const s = fakeSession(session);
    const closure = await this.localClosure(roots);
    if (opts.nix && !closure.includes(opts.nix))
      throw new VpsNixosError(`${opts.nix} is not in the closure of ${roots.join(' ')}`, '');
    const missing = s.host.storeMissing(s, opts.storeRoot, closure);
    const tarBytes = missing.reduce((n, p) => n + (this.sizes.get(p) ?? 0), 0);
    if (missing.length) s.host.storeReceive(s, opts.storeRoot, missing, opts);
    return {
      closure,
      present: closure.length - missing.length,
      substituted: 0,
      substituteSeconds: 0,
      sent: missing.length,
      bytesSent: this.wireBytes(missing),
      tarBytes,
      verifySeconds: 0,
    };
  };

  /** What sending `paths` costs on the wire (zstd: 40 % of the tar). */
  wireBytes(paths: string[]): number {
    return paths.reduce((n, p) => n + Math.ceil((this.sizes.get(p) ?? 0) * 0.4), 0);
  }

  closureOf(root: string): string[] {
    return [...(this.closures.get(root) ?? [])];
  }
}

/** A kexec installer tarball on the runner: a small file, its sha256 and size. */
export function kexecTarballFile(dir: string, bytes = 256 * 1024): KexecTarball {
  const path = join(dir, 'nixos-kexec-installer-x86_64-linux.tar');
  const data = Buffer.alloc(bytes, 'kexec installer stand-in\n');
  writeFileSync(path, data);
  return {
    path,
    sha256: sha256(data),
    bytes,
    source: 'file',
    from: path,
  };
}
