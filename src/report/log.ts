/**
 * The loggers the pipeline writes to. Lines often carry what the target printed (nixos-rebuild's
 * output, phase logs, error texts): on the Actions runner a line starting with `::` would be a
 * workflow command (set an output, add a mask, stop commands), and in a terminal an escape
 * sequence could rewrite the screen. Every line goes through here first.
 */
import { plainText, safeText } from './render';
import type { Logger } from '../pipeline/run';

/** What the action's logger needs from @actions/core. */
export interface ActionsCore {
  info(message: string): void;
  warning(message: string): void;
  group<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

/** The action's log: no line can be a workflow command, no escape sequence reaches the log. */
export function actionLogger(core: ActionsCore): Logger {
  return {
    info: (l) => core.info(safeText(l)),
    // core.warning escapes line breaks into the one command it writes
    warn: (l) => core.warning(plainText(l)),
    group: (title, fn) => core.group(safeText(title).replace(/\n/g, ' '), fn),
  };
}

/**
 * The CLI's log on stderr: the target's escape sequences are removed, and no line can be a
 * workflow command either (the CLI may run inside a workflow step).
 */
export function terminalLogger(write: (s: string) => void): Logger {
  return {
    info: (l) => write(`${safeText(l)}\n`),
    warn: (l) => write(`warning: ${safeText(l)}\n`),
  };
}
