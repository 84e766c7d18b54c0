#!/usr/bin/env node
/** The `vps-nixos` command: same pipeline as the action, text or JSON on stdout, progress on stderr. */
import { terminalLogger } from './report/log';
import { safeText } from './report/render';
import { InputError, describeError } from './errors';
import { parseArgs, quotable } from './cli/args';
import { COMMANDS, findCommand, runCommand, usage } from './cli/commands';
import { TOOL_VERSION } from './version';

async function cli(argv: string[]): Promise<number> {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === 'version')) {
    process.stdout.write(`vps-nixos ${TOOL_VERSION}\n`);
    return 0;
  }
  let parsed;
  try {
    parsed = parseArgs(argv, (c) => findCommand(c)?.options);
  } catch (err) {
    process.stderr.write(`vps-nixos: ${safeText(describeError(err))}\n`);
    return 2;
  }
  if (!parsed.command) {
    process.stdout.write(usage() + '\n');
    return parsed.help ? 0 : 2;
  }
  const cmd = findCommand(parsed.command);
  if (!cmd) {
    process.stderr.write(
      `vps-nixos: unknown command '${quotable(parsed.command)}' (commands: ${COMMANDS.map((c) => c.name).join(', ')})\n`,
    );
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(usage(cmd) + '\n');
    return 0;
  }
  const log = terminalLogger((s) => process.stderr.write(s));
  try {
    if (cmd.custom) {
      process.stdout.write(await cmd.custom(parsed.options, log));
      return 0;
    }
    const result = cmd.run
      ? await cmd.run(parsed.options, log)
      : await runCommand(cmd, parsed.options, log);
    process.stdout.write(result.output);
    // Text output already shows the error; JSON keeps stdout to one document.
    if (
      (result.exitCode !== 0 && (!result.record.error || parsed.options.json === 'true')) ||
      (result.exitCode === 0 && (result.record.bootstrap || result.record.deploy))
    ) {
      process.stderr.write(`vps-nixos: ${safeText(result.message).replace(/\n/g, '\n  ')}\n`);
    }
    return result.exitCode;
  } catch (err) {
    process.stderr.write(`vps-nixos: ${safeText(describeError(err))}\n`);
    return err instanceof InputError ? 2 : 1;
  }
}

cli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`vps-nixos: ${safeText(describeError(err))}\n`);
    process.exitCode = 1;
  },
);
