/**
 * The one way a script of ours runs on the target: its text from scripts/ (shellcheck-checked)
 * as `sh -c`'s argument, `$0` its name, then its arguments, each one shell word; stdin stays free
 * for data (a tarball, a closure list, a file to write). No shell is written inline elsewhere.
 */
import { readAsset } from '../assets';
import { shellQuote } from '../shell';
import type { ExecOptions, ExecResult, RemoteSession } from './session';

/** Every script that runs on the target, by its path under scripts/. */
export type TargetScript =
  | 'facts.sh'
  | 'who.sh'
  | 'reboot.sh'
  | 'phases/prep.sh'
  | 'phases/kexec-stage.sh'
  | 'phases/disko-patch.sh'
  | 'phases/install.sh'
  | 'phases/store.sh'
  | 'phases/infect.sh'
  | 'deploy/state.sh'
  | 'deploy/after.sh'
  | 'deploy/guard.sh'
  | 'deploy/closure.sh'
  | 'deploy/switch.sh';

export interface ScriptOptions {
  args?: readonly string[];
  /** Data on the script's stdin. */
  stdin?: ExecOptions['stdin'];
  /**
   * Scripts this one writes out or runs, each as a shell function that prints its text
   * (`guard_sh` → deploy/guard.sh), defined before the script's own text.
   */
  embed?: Readonly<Record<string, TargetScript>>;
  /** `sudo -n ` when the login user is not root, else ''. */
  sudo?: string;
  timeoutMs?: number;
  onOutput?: ExecOptions['onOutput'];
}

const texts = new Map<TargetScript, string>();

/** A script's text, read once. */
export function scriptText(script: TargetScript): string {
  let text = texts.get(script);
  if (text === undefined) {
    text = readAsset(`scripts/${script}`);
    texts.set(script, text);
  }
  return text;
}

/** `text` preceded by a shell function `fn` that prints `embedded` (a here-document). Pure. */
export function embedScript(fn: string, embedded: string, text: string): string {
  const end = `VPS_NIXOS_${fn.toUpperCase()}_END`;
  if (embedded.split('\n').includes(end))
    throw new Error(`embedScript: ${fn} holds its own end line`);
  const body = embedded.endsWith('\n') ? embedded : `${embedded}\n`;
  return `${fn}() {\n  cat <<'${end}'\n${body}${end}\n}\n${text}`;
}

/** The command line that runs `script` (pure: tests and the fake target read it back). */
export function scriptCommand(script: TargetScript, opts: ScriptOptions = {}): string {
  let text = scriptText(script);
  for (const [fn, other] of Object.entries(opts.embed ?? {}))
    text = embedScript(fn, scriptText(other), text);
  const name = script.split('/').pop() as string;
  const words = [text, name, ...(opts.args ?? [])].map(shellQuote).join(' ');
  return `${opts.sudo ?? ''}sh -c ${words}`;
}

export function runScript(
  session: RemoteSession,
  script: TargetScript,
  opts: ScriptOptions = {},
): Promise<ExecResult> {
  return session.exec(scriptCommand(script, opts), {
    stdin: opts.stdin,
    timeoutMs: opts.timeoutMs,
    onOutput: opts.onOutput,
  });
}
