/** `vps-nixos facts-to-nix`: the probe's facts as a NixOS module to commit. */
import { writeFileSync } from 'node:fs';
import { InputError } from '../errors';
import { DISK_NAME_RE, factsToNix } from '../hostconfig';
import type { OptionSpec } from './args';
import { loadFacts } from './facts-file';

export const FACTS_TO_NIX_OPTIONS: OptionSpec[] = [
  { name: 'facts', description: 'Facts JSON saved from `vps-nixos probe --json` (required)' },
  { name: 'out', description: 'Write the module to this file instead of stdout' },
  {
    name: 'disko',
    description: 'Name the disk for disko (else boot.loader.grub.device)',
    default: 'true',
    boolean: true,
  },
  {
    name: 'disk-name',
    description:
      "The disk's name in your disko layout (disko.devices.disk.<name>): the module sets its device",
    default: 'main',
  },
  { name: 'host', description: 'Name of the host for the header comment (e.g. the target)' },
];

/** Returns what goes to stdout. Throws InputError / HostConfigError (nothing written then). */
export function factsToNixCommand(options: Record<string, string>): string {
  if (!options.facts)
    throw new InputError(
      'facts',
      'is required',
      'save the facts with: vps-nixos probe … --json > facts.json',
    );
  const diskName = options['disk-name'] ?? 'main';
  if (!DISK_NAME_RE.test(diskName))
    throw new InputError(
      'disk-name',
      `'${diskName}' is not a disko disk name`,
      'write the name after disko.devices.disk. in your layout, e.g. main (letters, digits, _ and -)',
    );
  const facts = loadFacts(options.facts);
  const disko = (options.disko ?? 'true').toLowerCase();
  if (disko !== 'true' && disko !== 'false')
    throw new InputError('disko', `'${options.disko}' is not a boolean`, 'write true or false');
  const text = factsToNix(facts, {
    host: options.host,
    date: new Date(),
    disko: disko === 'true',
    diskName,
  });
  if (options.out) {
    writeFileSync(options.out, text);
    return `wrote ${options.out}\n`;
  }
  return text;
}
