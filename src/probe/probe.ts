import { ProbeError } from '../errors';
import { runScript } from '../ssh/script';
import type { RemoteSession } from '../ssh/session';
import { parseFacts, type Facts } from './facts';

const PROBE_TIMEOUT_MS = 60_000;

/** Runs scripts/facts.sh on the target (read-only) and parses what it prints. */
export async function probe(session: RemoteSession): Promise<Facts> {
  const r = await runScript(session, 'facts.sh', { timeoutMs: PROBE_TIMEOUT_MS });
  // A channel that closes without an exit status: the connection went, the script did not fail.
  if (r.code === -1 && !r.signal) {
    throw new ProbeError(
      'the connection closed before the facts script finished (no exit status)',
      'check the host is up and its network is steady, then run again: the probe only reads',
    );
  }
  if (r.code !== 0) {
    throw new ProbeError(
      `the facts script exited ${r.code} on the target: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`,
      'check that the target user has a POSIX /bin/sh and can read /proc',
    );
  }
  return parseFacts(r.stdout);
}
