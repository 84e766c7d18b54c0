/**
 * What every fault of the campaign works with: the test VPS (from `vps exec`: VPS_JSON), its
 * snapshots, the built CLI, and the checks made after each fault from outside: is the host
 * reachable behind its pinned key, which system answers, did the spare disk (one no layout names)
 * change, does the installed store verify.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { whoAnswers, type WhoAnswers } from '../../src/phases/wait';
import { runCli, type CliResult } from '../../__tests__/helpers/cli';
import { OFFLINE_NIX_CONFIG } from '../../__tests__/helpers/nixflake';
import { secretKeyLines } from '../../__tests__/helpers/faults/bad-inputs';
import {
  currentVps,
  openVps,
  standins,
  vpsConfig,
  type Standins,
  type Vps,
} from '../../__tests__/helpers/vps';

export const ROOT = join(__dirname, '../..');
const VPS = join(ROOT, 'test/vps/vps');

/** One row of the campaign's table. */
export interface FaultRow {
  fault: string;
  phase: string;
  happened: string;
  recovered: string;
  seconds: number;
  /** The host ended reachable behind its pinned key (or came back as the old system). */
  reachable: boolean;
  /** The spare disk, which nothing names, is byte for byte as it was. */
  spareUntouched: boolean;
  /** The re-run recovered, or the run refused safely: what the campaign asks of every fault. */
  ok: boolean;
  /** Every output of the fault's runs, for the secrets scan. */
  outputs: string[];
}

export class World {
  readonly vps: Vps = currentVps();
  readonly cfg = vpsConfig(this.vps);
  readonly s: Standins = standins();
  readonly work = mkdtempSync(join(tmpdir(), 'vps-nixos-faults-'));
  readonly keyLines = secretKeyLines(readFileSync(this.vps.sshPrivateKeyFile, 'utf8'));

  /** `vps savevm|loadvm NAME`. */
  snapshot(verb: 'savevm' | 'loadvm', name: string): void {
    execFileSync(VPS, [verb, name, '--run-dir', this.vps.runDir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
  }

  /** One command on the VPS over a new pinned session; its stdout (throws on a failure). */
  async on(cmd: string, timeoutMs = 60_000): Promise<string> {
    const session = await openVps(this.cfg, 3);
    try {
      const r = await session.exec(cmd, { timeoutMs });
      if (r.code !== 0) throw new Error(`${cmd}: exit ${r.code}: ${r.stderr.trim()}`);
      return r.stdout;
    } finally {
      session.close();
    }
  }

  /** What answers behind the pinned key, waiting up to `waitMs`; undefined when nothing does. */
  async who(waitMs = 120_000): Promise<WhoAnswers | undefined> {
    const until = Date.now() + waitMs;
    for (;;) {
      try {
        const session = await openVps(this.cfg, 0);
        try {
          return await whoAnswers(session);
        } finally {
          session.close();
        }
      } catch {
        if (Date.now() > until) return undefined;
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  }

  /** Whether the spare disk is unchanged (qemu-img compare of the overlay with its base). */
  spareUntouched(): boolean {
    try {
      execFileSync(
        'qemu-img',
        [
          'compare',
          '-U',
          '-f',
          'raw',
          '-F',
          'qcow2',
          join(this.vps.runDir, 'spare.raw'),
          join(this.vps.runDir, 'spare.qcow2'),
        ],
        { stdio: 'ignore' },
      );
      return true;
    } catch {
      return false;
    }
  }

  /** Cuts the VPS's link (its tap in this netns) for `ms`, from now. */
  cutLink(ms: number): Promise<void> {
    execFileSync('ip', ['link', 'set', 'tap0', 'down']);
    return new Promise((resolve) =>
      setTimeout(() => {
        execFileSync('ip', ['link', 'set', 'tap0', 'up']);
        resolve();
      }, ms),
    );
  }

  /** An HMP command to the VM's monitor (system_reset, …). */
  monitor(command: string): void {
    execFileSync('socat', ['-', `UNIX-CONNECT:${join(this.vps.runDir, 'monitor.sock')}`], {
      input: `${command}\n`,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
  }

  /** The built CLI with the VPS's key and pin, as a user runs it. */
  cli(
    args: string[],
    opts: { killOn?: RegExp; onStderr?: (all: string) => void; timeoutMs?: number } = {},
  ): Promise<CliResult> {
    return runCli(
      [
        ...args,
        '--target',
        this.vps.target,
        '--ssh-private-key-file',
        this.vps.sshPrivateKeyFile,
        '--known-hosts-file',
        this.vps.knownHostsFile,
      ],
      {
        timeoutMs: opts.timeoutMs ?? 12 * 60_000,
        killOn: opts.killOn,
        onStderr: opts.onStderr,
        env: {
          PATH: `${join(ROOT, 'test/standins/bin')}:${process.env.PATH}`,
          NIX_CONFIG: OFFLINE_NIX_CONFIG,
        },
      },
    );
  }
}

/** Seconds since `t0`. */
export const since = (t0: number) => (Date.now() - t0) / 1000;

/** The error line of a CLI run's JSON or stderr, shortened for a table cell. */
export function why(r: CliResult): string {
  try {
    const d = JSON.parse(r.stdout) as { error?: { message: string } };
    if (d.error) return d.error.message.slice(0, 160);
  } catch {
    // no JSON
  }
  const line = r.stderr
    .split('\n')
    .reverse()
    .find((l) => /^error:|failed/.test(l));
  return (line ?? `exit ${r.code}`).slice(0, 160);
}
