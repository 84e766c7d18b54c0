/** waitForNewBoot: what counts as the new system answering after a kexec or a reboot. */
import { waitForNewBoot, type WaitOptions } from '../../src/phases/wait';
import { SshConnectError, VpsNixosError } from '../../src/errors';
import { RemoteTimeout } from '../../src/ssh/session';
import type { ExecResult, RemoteSession } from '../../src/ssh/session';

const OLD = '11111111-1111-4111-8111-111111111111';
const NEW = '22222222-2222-4222-8222-222222222222';

/** One session per reconnect, each answering who.sh with the next of `answers`. */
function reconnects(answers: (ExecResult | Error)[]): { opts: WaitOptions; opened: () => number } {
  let opened = 0;
  const opts: WaitOptions = {
    reconnect: async () => {
      const answer = answers[Math.min(opened, answers.length - 1)]!;
      opened++;
      return {
        target: { user: 'root', host: '192.0.2.1', port: 22, knownHostsName: '192.0.2.1' },
        exec: async () => {
          if (answer instanceof Error) throw answer;
          return answer;
        },
        close: () => undefined,
      } as unknown as RemoteSession;
    },
    waitMs: 5000,
    pollMs: 1,
    what: 'after kexec, the host',
    keyMismatchFix: 'fix',
    oldSystemGraceMs: 60_000,
    onOldSystem: (s) => new VpsNixosError(`old system after ${s} s`, 'fix'),
    onTimeoutFix: 'fix',
  };
  return { opts, opened: () => opened };
}

const who = (lines: string[], code = 0): ExecResult => ({
  code,
  stdout: lines.join('\n') + '\n',
  stderr: '',
});
const installer = (w: { variantId: string; isNixos: boolean }) => {
  if (w.variantId === 'installer' && w.isNixos) return true;
  throw new VpsNixosError(`not the installer (VARIANT_ID=${w.variantId || 'none'})`, 'fix');
};

describe('waitForNewBoot', () => {
  it('a system dying under who.sh (no boot_id) is no answer: it waits for the installer', async () => {
    const { opts, opened } = reconnects([
      who([OLD, '', 'other', '']),
      // the old system shutting down: the session opens, the script is killed half way
      { code: -1, stdout: '', stderr: '' },
      who([], 143),
      who([NEW, 'installer', 'nixos', '']),
    ]);
    const r = await waitForNewBoot(opts, OLD, Date.now(), installer);
    expect(r.who.bootId).toBe(NEW);
    expect(opened()).toBe(4);
  });

  it('a session that opens on the dying system and loses its exec is no answer either', async () => {
    // CI, 2026-12-03: the reconnect reached the old system moments before the kexec, and ssh2
    // failed the exec with "No response from server"; that ended the install.
    const { opts, opened } = reconnects([
      new SshConnectError(
        'cannot run a command on root@192.0.2.1: No response from server',
        'the connection was lost; re-run to resume',
      ),
      new RemoteTimeout('who.sh timed out after 30 s', 'fix'),
      who([NEW, 'installer', 'nixos', '']),
    ]);
    const r = await waitForNewBoot(opts, OLD, Date.now(), installer);
    expect(r.who.bootId).toBe(NEW);
    expect(opened()).toBe(3);
  });

  it('only lost sessions until the deadline: the timeout names the last one', async () => {
    const { opts } = reconnects([
      new SshConnectError('cannot run a command on root@192.0.2.1: No response from server', 'x'),
    ]);
    opts.waitMs = 30;
    await expect(waitForNewBoot(opts, OLD, Date.now(), installer)).rejects.toThrow(
      /did not answer within 0 s \(last seen: a dropped session \(cannot run a command on root@192\.0\.2\.1: No response from server\)\)/,
    );
  });

  it('a new boot that is not the installer is still refused', async () => {
    const { opts } = reconnects([who([NEW, '', 'other', ''])]);
    await expect(waitForNewBoot(opts, OLD, Date.now(), installer)).rejects.toThrow(
      /not the installer \(VARIANT_ID=none\)/,
    );
  });
});
