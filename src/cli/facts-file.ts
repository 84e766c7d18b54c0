/** Reading the CLI's file options: key, known_hosts and saved facts. */
import { readFileSync } from 'node:fs';
import { InputError } from '../errors';
import { parseFacts, type Facts } from '../probe/facts';

export function readFileOption(name: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new InputError(
      name,
      `cannot read '${path}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      'give the path of an existing, readable file',
    );
  }
}

export function loadFacts(path: string): Facts {
  const text = readFileOption('facts', path);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // facts.sh output saved as text is accepted too.
    try {
      return parseFacts(text);
    } catch {
      throw new InputError(
        'facts',
        `'${path}' is neither JSON nor facts.sh output`,
        'save it with: vps-nixos probe … --json > facts.json',
      );
    }
  }
  const facts = (doc as { facts?: unknown })?.facts ?? doc;
  const f = facts as Partial<Facts>;
  if (
    typeof f?.memTotalBytes !== 'number' ||
    typeof f.virtualization !== 'string' ||
    typeof f.isNixos !== 'boolean'
  ) {
    throw new InputError(
      'facts',
      `'${path}' has no facts (memTotalBytes, virtualization, isNixos)`,
      'save it with: vps-nixos probe … --json > facts.json',
    );
  }
  return facts as Facts;
}
