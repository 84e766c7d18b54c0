/** Bootstrap phases: each says whether it is already done (with the evidence) and how to do it. */
import { VpsNixosError, describeError } from '../errors';
import type { PhaseName } from '../plan/plan';

export interface PhaseLogger {
  info(line: string): void;
  warn(line: string): void;
  /** A collapsed group in the Actions log; plain lines in a terminal. */
  group<T>(title: string, fn: () => Promise<T>): Promise<T>;
}

export interface Detection {
  done: boolean;
  /** What shows it: printed when the phase is skipped, so a re-run explains itself. */
  evidence: string;
}

export interface Phase<C> {
  name: PhaseName;
  timeoutMs: number;
  /** What to check when the timeout expires. */
  onTimeout: string;
  detect(ctx: C): Promise<Detection>;
  run(ctx: C): Promise<string | void>;
}

export interface PhaseRecord {
  name: PhaseName;
  status: 'done' | 'skipped' | 'failed';
  seconds: number;
  detail?: string;
  /** Highest MemTotal − MemAvailable seen on the target while the phase ran (sampled). */
  peakMemBytes?: number;
  /** Bytes the phase sent to the target. */
  bytesSent?: number;
}

/** Measurements taken around each phase (memory sampling, byte counts). */
export interface PhaseMeter {
  begin(name: PhaseName): void;
  end(name: PhaseName): Pick<PhaseRecord, 'peakMemBytes' | 'bytesSent'>;
}

/** A phase ran out of time; says what to look at. */
export class PhaseTimeout extends VpsNixosError {}

async function bounded<T>(p: Promise<T>, ms: number, err: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<T>((_, reject) => (timer = setTimeout(() => reject(err()), ms))),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

/**
 * Runs phases in order: header, detect (skip with evidence), run under its timeout, duration.
 * Stops at the first failure; the records say how far it got.
 */
export async function runPhases<C>(
  phases: Phase<C>[],
  ctx: C,
  log: PhaseLogger,
  meter?: PhaseMeter,
): Promise<{ records: PhaseRecord[]; error?: unknown }> {
  const records: PhaseRecord[] = [];
  for (const phase of phases) {
    const start = Date.now();
    meter?.begin(phase.name);
    const measured = () => meter?.end(phase.name) ?? {};
    const seconds = () => (Date.now() - start) / 1000;
    log.info(`── phase ${phase.name}`);
    try {
      const detection = await phase.detect(ctx);
      if (detection.done) {
        log.info(`${phase.name}: already done (${detection.evidence}); skipping`);
        records.push({
          name: phase.name,
          status: 'skipped',
          seconds: seconds(),
          detail: detection.evidence,
          ...measured(),
        });
        continue;
      }
      const detail = await log.group(`${phase.name}`, () =>
        bounded(
          phase.run(ctx),
          phase.timeoutMs,
          () =>
            new PhaseTimeout(
              `phase ${phase.name} did not finish within ${phase.timeoutMs / 1000}s`,
              phase.onTimeout,
            ),
        ),
      );
      records.push({
        name: phase.name,
        status: 'done',
        seconds: seconds(),
        detail: detail || undefined,
        ...measured(),
      });
      log.info(`${phase.name}: done in ${seconds().toFixed(1)} s`);
    } catch (error) {
      records.push({
        name: phase.name,
        status: 'failed',
        seconds: seconds(),
        detail: describeError(error),
        ...measured(),
      });
      return { records, error };
    }
  }
  return { records };
}

/** An ExecOptions.onOutput that logs whole lines (chunks split lines anywhere), minus key=value lines. */
export function lineStream(
  log: (line: string) => void,
  streams: ('stdout' | 'stderr')[] = ['stdout', 'stderr'],
): (chunk: string, stream: 'stdout' | 'stderr') => void {
  const partial: Record<string, string> = { stdout: '', stderr: '' };
  return (chunk, stream) => {
    if (!streams.includes(stream)) return;
    const lines = (partial[stream] + chunk).split('\n');
    partial[stream] = lines.pop() ?? '';
    for (const l of lines) if (l.trim() && !/^[a-z_.]+=/.test(l)) log(l);
  };
}
