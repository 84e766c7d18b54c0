/**
 * The Actions runner's reading of a step's output (actions/runner: ActionCommandManager and
 * ActionCommand), for tests that must show no line of ours acts as a workflow command:
 *
 * - A line ends at `\n`, `\r\n` or a lone `\r`: the runner reads stdout and stderr alike with
 *   .NET's StreamReader.ReadLine, which ends a line at any of the three.
 * - `::name props::data` is a command when the line, after its leading white space (.NET's
 *   TrimStart: any Unicode white space, NBSP and U+3000 included), starts with `::` and holds a
 *   second `::`; the name runs from the third character to a space or that second `::`.
 * - Failing that, the old `##[name props]data` is a command anywhere in a line: the first `##[`.
 * - Only registered names count, in any case (`::ERROR::` is `error`).
 * - `::stop-commands::token` turns all of this off until a line `::token::`: whoever prints it
 *   decides what the runner reads after it.
 *
 * The runner finds `::` and `##[` culture-sensitively (a zero-width character between the two
 * colons is ignored) but takes the name at a fixed offset after them, so `:\u200b:error::x` reads
 * as the name `:error`, which is no command. Modelled here with ordinal matching: same result.
 */

/** The runner's command extensions (ActionCommandManager.cs) and stop-commands. */
export const REGISTERED = [
  'stop-commands',
  'set-env',
  'set-output',
  'save-state',
  'add-mask',
  'add-path',
  'add-matcher',
  'remove-matcher',
  'debug',
  'warning',
  'error',
  'notice',
  'group',
  'endgroup',
  'echo',
];

export interface WorkflowCommand {
  /** Lower case, as the runner matches it. */
  name: string;
  /** The text between the name and the `::` (or `]`): `name=x,file=y`. */
  props: string;
  /** The data, unescaped as the runner unescapes it (`%25`, `%0D`, `%0A`, …). */
  data: string;
  /** The old `##[name]` form. */
  legacy: boolean;
  /** The whole line it was read from. */
  line: string;
}

/** The runner's lines: `\r\n`, `\n` and a lone `\r` each end one. */
export const runnerLines = (output: string): string[] => output.split(/\r\n|\r|\n/);

// .NET's char.IsWhiteSpace and JavaScript's \s differ in U+0085 and U+FEFF: both count here.
const LEADING_SPACE = /^[\s\u0085\ufeff]*/;

const unescape = (s: string) =>
  s
    .replace(/%0D/gi, '\r')
    .replace(/%0A/gi, '\n')
    .replace(/%3A/gi, ':')
    .replace(/%2C/gi, ',')
    .replace(/%3B/gi, ';')
    .replace(/%5D/gi, ']')
    .replace(/%25/g, '%');

function command(info: string, data: string, legacy: boolean, line: string) {
  const space = info.indexOf(' ');
  const name = (space < 0 ? info : info.slice(0, space)).toLowerCase();
  if (!REGISTERED.includes(name)) return undefined;
  return {
    name,
    props: space < 0 ? '' : info.slice(space + 1),
    data: unescape(data),
    legacy,
    line,
  };
}

/** The command the runner reads in one line, if any. */
export function parseLine(line: string): WorkflowCommand | undefined {
  const msg = line.replace(LEADING_SPACE, '');
  const end = msg.startsWith('::') ? msg.indexOf('::', 2) : -1;
  const v2 = end >= 0 ? command(msg.slice(2, end), msg.slice(end + 2), false, line) : undefined;
  if (v2) return v2;
  const at = line.indexOf('##[');
  const rb = at < 0 ? -1 : line.indexOf(']', at);
  return rb >= 0 ? command(line.slice(at + 3, rb), line.slice(rb + 1), true, line) : undefined;
}

/** Every command the runner would read in `output` (stdout or stderr). */
export function parseWorkflowCommands(output: string): WorkflowCommand[] {
  return runnerLines(output)
    .map(parseLine)
    .filter((c): c is WorkflowCommand => c !== undefined);
}
