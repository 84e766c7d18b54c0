/**
 * `vps-nixos init`: probe the host (pinned, or trust-on-first-use with the fingerprint printed to
 * compare with the provider's console), plan, and write a starter repository for it: flake,
 * configuration with the host description (target, host key), host module, disk layout and the
 * workflows that deploy it.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../errors';
import { HOST_NAME_RE, initFiles, PROJECT_REPO } from '../init/files';
import { plainText } from '../report/render';
import type { Logger } from '../pipeline/run';
import { agentKeys, publicKeyOf } from '../ssh/keys';
import type { OptionSpec } from './args';
import { KEY_ENV } from '../constants';
import type { Command, CommandResult } from './commands';

export const INIT_OPTIONS: OptionSpec[] = [
  { name: 'name', description: "The host's name: its flake output, hosts/ directory and hostname" },
  {
    name: 'out',
    description: 'The directory to write the repository into (nothing is overwritten)',
  },
];

/** Checks name and out and what would be written, before any connection. */
export function initTargets(options: Record<string, string>): { name: string; out: string } {
  const name = options.name;
  if (!name) throw new InputError('name', 'is required', 'name the host, e.g. --name my-vps');
  if (!HOST_NAME_RE.test(name))
    throw new InputError(
      'name',
      `'${name}' is not a host name`,
      'use lower-case letters, digits and -, starting with a letter (at most 63), e.g. my-vps',
    );
  if (!options.out)
    throw new InputError('out', 'is required', 'give the directory to write into, e.g. --out .');
  const out = resolve(options.out);
  const paths = [
    'flake.nix',
    `hosts/${name}/configuration.nix`,
    `hosts/${name}/host.nix`,
    `hosts/${name}/disk.nix`,
    '.github/workflows/deploy.yml',
    '.github/workflows/update.yml',
  ];
  const existing = paths.filter((p) => existsSync(join(out, p)));
  if (existing.length > 0)
    throw new InputError(
      'out',
      `${out} already has ${existing.join(', ')}: init does not overwrite`,
      'move them away, or init into an empty directory and merge by hand',
    );
  return { name, out };
}

/**
 * Runs the plan command's pipeline (probe, plan: read-only), then writes the files. The plan's
 * refusal or an in-place method still writes them, saying why.
 */
export async function initCommand(
  plan: Command,
  options: Record<string, string>,
  log: Logger,
  run: (cmd: Command, options: Record<string, string>, log: Logger) => Promise<CommandResult>,
): Promise<CommandResult> {
  const { name, out } = initTargets(options);
  const rest = Object.fromEntries(
    Object.entries(options).filter(([k]) => k !== 'name' && k !== 'out'),
  );
  const result = await run(plan, { ...rest, json: 'false' }, log);
  const r = result.record;
  if (!r.facts || !r.plan || !r.hostKey) return result;
  const keyFile = options['ssh-private-key-file'];
  const privateKey = keyFile ? readFileSync(keyFile, 'utf8') : process.env[KEY_ENV] || undefined;
  const fromKey = privateKey ? publicKeyOf(privateKey) : undefined;
  // No key given: the run logged in with the ssh-agent's keys, one of which the host accepted.
  const agent = process.env.SSH_AUTH_SOCK;
  const deployPublicKeys = fromKey
    ? [fromKey]
    : !privateKey && agent
      ? await agentKeys(agent).catch(() => [])
      : [];
  const files = initFiles({
    name,
    target: r.target ?? options.target ?? '',
    facts: r.facts,
    plan: r.plan,
    knownHosts: r.hostKey,
    trustedOnFirstUse: r.hostKeyTrustedOnFirstUse,
    deployPublicKeys,
    date: new Date().toISOString().slice(0, 10),
  });
  for (const f of files) {
    const path = join(out, f.path);
    mkdirSync(dirname(path), { recursive: true });
    // 'wx': a file that appeared since the check is not overwritten either.
    writeFileSync(path, f.text, { flag: 'wx' });
  }
  const why =
    r.plan.method === 'refuse'
      ? `The plan refuses this host as it is: ${r.plan.refusal?.reason ?? ''}. ${r.plan.refusal?.remediation ?? ''}`
      : r.plan.method === 'infect'
        ? 'The plan converts this host in place (infect): the disk layout in disk.nix is not used.'
        : r.plan.method === 'kexec'
          ? `The first deploy installs NixOS and wipes ${r.facts.rootDisk ?? 'the disk'}: deploy.yml carries confirm-wipe for it.`
          : `The plan: ${r.plan.method}.`;
  const lines = [
    `wrote ${files.length} files into ${out}:`,
    ...files.map((f) => `  ${f.path}`),
    '',
    r.hostKeyTrustedOnFirstUse
      ? `The host key was trusted on first use: ${r.hostKeyFingerprint}. Compare it with the provider's console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) before you push.`
      : `The host key matched the pin: ${r.hostKeyFingerprint}.`,
    plainText(why),
    '',
    'Next:',
    `  1. Read hosts/${name}/configuration.nix and disk.nix; add your services.`,
    `     The host is described there (vpsNixos.deploy: target and host key): vps-nixos deploy --flake .#${name}`,
    '     needs no other option, and vps-nixos hosts --flake . lists it.',
    '  2. Commit, create the GitHub repository, and add the secret VPS_SSH_KEY (Settings → Secrets and',
    '     variables → Actions): the private key that logs in as root (the whole file).',
    `  3. Run the deploy workflow with plan-only to see the plan, then push to main to deploy (${PROJECT_REPO}'s deploy.yml).`,
    '',
  ];
  // The files are written: a refusing plan is said above, not a failure of init.
  return { ...result, exitCode: 0, output: lines.join('\n'), message: result.message };
}
