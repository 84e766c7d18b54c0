/** `vps-nixos <command> [--name value | --name=value | --flag] …`, names as the action's inputs. Pure. */
import { InputError } from '../errors';
import { looksLikeKeyMaterial } from '../inputs';

export interface OptionSpec {
  name: string;
  description: string;
  default?: string;
  /** May be given without a value (means true); `true`/`false` may follow. */
  boolean?: boolean;
}

export interface ParsedArgs {
  command?: string;
  options: Record<string, string>;
  help: boolean;
}

const BOOL = /^(true|false|True|False|TRUE|FALSE)$/;

/** An argument as an error may quote it: never a private key pasted in the wrong place. */
export function quotable(arg: string): string {
  return looksLikeKeyMaterial(arg) ? '(a private key, not shown)' : arg;
}

/** Splits argv into a command and its options, rejecting options the command does not know. */
export function parseArgs(
  argv: string[],
  known: (command: string) => OptionSpec[] | undefined,
): ParsedArgs {
  const out: ParsedArgs = { options: {}, help: false };
  let i = 0;
  if (argv[0] && !argv[0].startsWith('-')) out.command = argv[i++];
  const specs = out.command ? known(out.command) : [];
  /** The boolean option just before, given without a value (`--rollback maybe`). */
  let bareBoolean: string | undefined;
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') {
      out.help = true;
      continue;
    }
    if (!arg.startsWith('--') && bareBoolean) {
      throw new InputError(
        bareBoolean,
        `'${quotable(arg)}' is not true or false`,
        `write --${bareBoolean} true, --${bareBoolean} false, or --${bareBoolean} alone for true`,
      );
    }
    bareBoolean = undefined;
    if (!arg.startsWith('--')) {
      throw new InputError(
        quotable(arg),
        'is not an option',
        `options are written --name value; see vps-nixos ${out.command ?? ''} --help`,
      );
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const spec = specs?.find((s) => s.name === name);
    if (!spec) {
      throw new InputError(
        quotable(name),
        `is not an option of ${out.command ? `'vps-nixos ${out.command}'` : 'vps-nixos'}`,
        `see vps-nixos ${out.command ?? ''} --help`.replace(/\s+--/, ' --'),
      );
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (spec.boolean) {
      if (BOOL.test(argv[i + 1] ?? '')) value = argv[++i];
      else {
        value = 'true';
        bareBoolean = name;
      }
    } else {
      value = argv[++i];
      if (value === undefined)
        throw new InputError(name, 'needs a value', `write --${name} VALUE or --${name}=VALUE`);
    }
    if (name in out.options) throw new InputError(name, 'is given twice', 'give each option once');
    out.options[name] = value as string;
  }
  return out;
}
