/**
 * The deploy's own switch (issue 18): the runner built the system, so it copies that closure
 * (nix-copy-closure, with the pinned ssh options) and switches to it over the session that armed
 * the rollback guard (scripts/deploy/switch.sh). nixos-rebuild would evaluate the flake a second
 * time and needs a pinned nixos-rebuild on the runner; this needs neither.
 */
import { describeError } from '../errors';
import { runScript } from '../ssh/script';
import type { RemoteSession } from '../ssh/session';
import type { DeployAction } from './rebuild';
import { lineCollector, runStreaming, type StreamedRun } from './stream';
import type { DeploySsh } from './sshopts';

/** How the system gets onto the host and is activated: decided once (pipeline/decide.ts). */
export type DeployWith = 'switch' | 'nixos-rebuild';

/** One step of the switch as it ran: what it was, for the messages that name it. */
export interface StepRun extends StreamedRun {
  step: string;
}

/** nix-copy-closure's arguments: the closure of `toplevel` to `user@host` (the port is in NIX_SSHOPTS). */
export function copyArgs(targetHost: string, toplevel: string): string[] {
  return ['--to', targetHost, toplevel];
}

/** Copies `toplevel`'s closure to the target; streams its lines; never throws for an exit status. */
export async function copySystem(
  ssh: Pick<DeploySsh, 'sshOpts' | 'targetHost'>,
  toplevel: string,
  env: NodeJS.ProcessEnv,
  onLine: (line: string) => void,
  timeoutMs: number,
): Promise<StepRun> {
  const run = await runStreaming(
    { argv0: 'nix-copy-closure', prefix: [] },
    copyArgs(ssh.targetHost, toplevel),
    { ...env, NIX_SSHOPTS: ssh.sshOpts },
    onLine,
    timeoutMs,
  );
  return { ...run, step: 'nix-copy-closure' };
}

/**
 * switch.sh ACTION TOPLEVEL over `session`, streaming its output by whole lines. A session that
 * drops (the new system cut SSH, or the link went) answers as ssh does then: exit 255.
 */
export async function switchOnTarget(
  session: RemoteSession,
  sudo: string,
  action: Exclude<DeployAction, 'build'>,
  toplevel: string,
  onLine: (line: string) => void,
  timeoutMs: number,
): Promise<StepRun> {
  const start = Date.now();
  const lines = lineCollector(onLine);
  let code: number;
  let streamed = false;
  try {
    const r = await runScript(session, 'deploy/switch.sh', {
      sudo,
      args: [action, toplevel],
      timeoutMs,
      onOutput: (chunk, stream) => {
        streamed = true;
        lines.chunk(stream, chunk);
      },
    });
    code = r.code;
    // a session that does not stream hands the output over at the end
    if (!streamed) for (const l of `${r.stdout}${r.stderr}`.split('\n')) if (l) lines.line(l);
    if (code === -1) {
      code = 255;
      lines.line('the SSH session dropped during the switch (no exit status)');
    }
  } catch (err) {
    code = 255;
    lines.line(`the SSH session dropped during the switch: ${describeError(err).split('\n')[0]}`);
  }
  return {
    code,
    output: lines.end(),
    seconds: (Date.now() - start) / 1000,
    step: 'switch-to-configuration',
  };
}
