/**
 * Reads host descriptions from a flake: one `nix eval --json REF#nixosConfigurations --apply …`
 * that touches only `config.vpsNixos.deploy` of the configurations asked for (the module system
 * evaluates that option, never a system build). A configuration without our module reads as null.
 */
import { z } from 'zod';
import { InputError, VpsNixosError } from '../errors';
import { nixErrorText, type Nix } from '../nix/nix';
import { CONFIG_NAME_RE, type DescriptionState } from './description';

/**
 * The `--apply` function: every configuration (`all`) or the names given → `{ NAME = { state;
 * description; }; }`. tryEval turns a configuration that throws into `failed` (its neighbours
 * are still read); `_module` is dropped in case the option is a submodule.
 */
export function descriptionsApply(names: readonly string[] | 'all'): string {
  const bad = names === 'all' ? undefined : names.find((n) => !CONFIG_NAME_RE.test(n));
  if (bad !== undefined) throw new Error(`internal: configuration name ${JSON.stringify(bad)}`);
  // JSON of checked names has no backslash or $: it is a valid Nix string as it is.
  const list =
    names === 'all'
      ? 'builtins.attrNames cs'
      : `builtins.fromJSON ${JSON.stringify(JSON.stringify(names))}`;
  return `cs: let
  read = c: let d = c.config.vpsNixos.deploy or null;
    in if builtins.isAttrs d then removeAttrs d [ "_module" ] else d;
  one = n: if !(builtins.hasAttr n cs) then { state = "missing"; }
    else let r = builtins.tryEval (let v = read cs.\${n}; in builtins.deepSeq v v);
    in if r.success then { state = "read"; description = r.value; } else { state = "failed"; };
in builtins.listToAttrs (map (n: { name = n; value = one n; }) (${list}))`;
}

const RESULT = z.record(
  z.string(),
  z.discriminatedUnion('state', [
    z.object({ state: z.literal('missing') }),
    z.object({ state: z.literal('failed') }),
    z.object({ state: z.literal('read'), description: z.unknown() }),
  ]),
);

/** The flake's descriptions of these configurations (or of all of them), with one `nix eval`. */
export async function readDescriptions(
  nix: Nix,
  ref: string,
  names: readonly string[] | 'all',
): Promise<Map<string, DescriptionState>> {
  const r = await nix.run([
    'eval',
    '--json',
    `${ref}#nixosConfigurations`,
    '--apply',
    descriptionsApply(names),
  ]);
  if (r.code !== 0) {
    if (/does not provide attribute|attribute 'nixosConfigurations' missing/.test(r.stderr))
      throw new InputError(
        'flake',
        `${ref} has no nixosConfigurations (${nixErrorText(r.stderr)})`,
        'give the flake whose outputs have nixosConfigurations.NAME, e.g. . or ./infra',
      );
    throw new VpsNixosError(
      `nix eval of the host descriptions in ${ref} failed: ${nixErrorText(r.stderr)}`,
      `see the whole error: nix eval --json '${ref}#nixosConfigurations' --apply 'cs: builtins.mapAttrs (n: c: c.config.vpsNixos.deploy or null) cs' --show-trace`,
    );
  }
  let parsed: z.infer<typeof RESULT>;
  try {
    parsed = RESULT.parse(JSON.parse(r.stdout));
  } catch (err) {
    throw new VpsNixosError(
      `nix eval of the host descriptions in ${ref} printed what we cannot read (${(err as Error).message.slice(0, 200)})`,
      'report this with the output of the nix eval command',
    );
  }
  return new Map(Object.entries(parsed) as [string, DescriptionState][]);
}
