import { probe } from '../../src/probe/probe';
import { ProbeError } from '../../src/errors';
import type { RemoteSession } from '../../src/ssh/session';

/** A session whose one exec answers as given. */
const answering = (r: { code: number; signal?: string; stderr?: string }): RemoteSession =>
  ({
    target: { user: 'root', host: '203.0.113.7', port: 22, knownHostsName: '203.0.113.7' },
    hostKey: { type: 'ssh-ed25519', blob: Buffer.from('k') },
    exec: async () => ({ stdout: '', stderr: r.stderr ?? '', code: r.code, signal: r.signal }),
    close: () => undefined,
  }) as RemoteSession;

describe('a probe that does not finish', () => {
  it('says the connection closed, not that the shell is missing', async () => {
    const err = await probe(answering({ code: -1 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProbeError);
    expect((err as ProbeError).message).toMatch(
      /connection closed before the facts script finished/,
    );
    expect((err as ProbeError).fix).not.toMatch(/POSIX/);
  });
  it('a script that fails still names the shell and /proc', async () => {
    const err = (await probe(answering({ code: 2, stderr: 'sh: 1: syntax error' })).catch(
      (e: unknown) => e,
    )) as ProbeError;
    expect(err.message).toMatch(/exited 2 on the target: sh: 1: syntax error/);
    expect(err.fix).toMatch(/POSIX \/bin\/sh/);
  });
});
