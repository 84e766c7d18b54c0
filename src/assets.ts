import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * Reads a file shipped beside the code (scripts/ run on the target). Found by
 * walking up from this module, so it works from src/ (tests), dist/<entry>/
 * (the action and the npm bin) alike, without bundler asset magic.
 */
export function readAsset(relative: string): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, relative);
    if (existsSync(candidate)) return readFileSync(candidate, 'utf8');
    dir = dirname(dir);
  }
  throw new Error(`vps-nixos is incomplete: ${relative} not found near ${__dirname}`);
}
