/** The CLI's temp dir holds the deploy key: a signal (which skips `finally`) removes it too. */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childrenAlive, spawnChild, stopChildren } from '../../src/children';
import { privateRunDir, sweepKilledRuns } from '../../src/secrets';
import { EXIT_ON_SIGNAL, removeOnSignal, type SignalProcess } from '../../src/cli/commands';

/** A process stand-in: signals are events, exit is recorded. */
class FakeProcess extends EventEmitter implements SignalProcess {
  exits: number[] = [];
  exit(code: number): void {
    this.exits.push(code);
  }
}

/** A temp dir as a deploy leaves it: the key and known_hosts in deploy-ssh/. */
function keyDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-sig-'));
  mkdirSync(join(dir, 'deploy-ssh'), { mode: 0o700 });
  writeFileSync(join(dir, 'deploy-ssh', 'id'), 'key', { mode: 0o600 });
  writeFileSync(join(dir, 'deploy-ssh', 'known_hosts'), 'host', { mode: 0o600 });
  return dir;
}

describe('removeOnSignal', () => {
  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const)('%s removes the key files and exits %i', (signal, code) => {
    const dir = keyDir();
    const proc = new FakeProcess();
    removeOnSignal(dir, proc);
    expect(existsSync(dir)).toBe(true);
    proc.emit(signal, signal);
    expect(existsSync(dir)).toBe(false);
    expect(proc.exits).toEqual([code]);
    // handlers are off: a second signal gets the default (here: nothing)
    for (const s of Object.keys(EXIT_ON_SIGNAL)) expect(proc.listenerCount(s)).toBe(0);
  });
  it('does nothing once the run ended normally (finally removed the dir)', () => {
    const dir = keyDir();
    const proc = new FakeProcess();
    const off = removeOnSignal(dir, proc);
    expect(proc.listenerCount('SIGINT')).toBe(1);
    off();
    for (const s of Object.keys(EXIT_ON_SIGNAL)) expect(proc.listenerCount(s)).toBe(0);
    proc.emit('SIGINT', 'SIGINT');
    expect(existsSync(dir)).toBe(true);
    expect(proc.exits).toEqual([]);
  });
  it('exits even when the dir is already gone', () => {
    const proc = new FakeProcess();
    removeOnSignal(join(tmpdir(), 'vps-nixos-sig-never-made'), proc);
    proc.emit('SIGTERM', 'SIGTERM');
    expect(proc.exits).toEqual([143]);
  });
  it('takes the real process (its types fit)', () => {
    const before = process.listenerCount('SIGTERM');
    const off = removeOnSignal(keyDir());
    expect(process.listenerCount('SIGTERM')).toBe(before + 1);
    off();
    expect(process.listenerCount('SIGTERM')).toBe(before);
  });
});

describe('a signal ends the child processes too', () => {
  it('stops a tracked child still running (a nixos-rebuild mid-switch), then exits', async () => {
    const child = spawnChild('sleep', ['30'], { stdio: 'ignore' });
    const ended = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, s) => r(s)));
    await new Promise((r) => child.once('spawn', r));
    expect(childrenAlive()).toBe(1);
    const proc = new FakeProcess();
    removeOnSignal(keyDir(), proc);
    proc.emit('SIGTERM', 'SIGTERM');
    expect(await ended).toBe('SIGTERM');
    expect(childrenAlive()).toBe(0);
    expect(proc.exits).toEqual([143]);
  });
  it('forgets a child that ended by itself', async () => {
    const child = spawnChild('true', [], { stdio: 'ignore' });
    await new Promise((r) => child.once('exit', r));
    expect(childrenAlive()).toBe(0);
    expect(stopChildren()).toBe(0);
  });
});

describe('a run killed outright (SIGKILL) leaves its key dir: the next run removes it', () => {
  it('removes our dirs whose pid is gone, and nothing else', () => {
    const parent = mkdtempSync(join(tmpdir(), 'vps-nixos-sweep-parent-'));
    const killed = privateRunDir(parent);
    writeFileSync(join(killed, 'id'), 'key', { mode: 0o600 });
    const running = privateRunDir(parent);
    const foreign = join(parent, 'vps-nixos-not-ours');
    mkdirSync(foreign);
    const pidOf = (d: string) => Number(readFileSync(join(d, '.owner'), 'utf8'));
    expect(pidOf(killed)).toBe(process.pid);
    writeFileSync(join(killed, '.owner'), '999999999\n');
    const removed = sweepKilledRuns(parent, (pid) => pid === process.pid);
    expect(removed).toEqual([killed]);
    expect(existsSync(killed)).toBe(false);
    expect(existsSync(running)).toBe(true);
    expect(existsSync(foreign)).toBe(true);
    // the real liveness check: this process runs, a pid past pid_max does not
    expect(sweepKilledRuns(parent)).toEqual([]);
  });
});
