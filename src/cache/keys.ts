/** Cache keys: what determines the build output, and nothing else. Pure. */

export interface CacheKeyParts {
  system: string;
  /** nixosConfigurations.<name> */
  name: string;
  /** The toplevel's evaluated .drv path: any change to the configuration's sources changes it. */
  drvPath: string;
  /** Version of our kexec/host modules and of the action. */
  toolVersion: string;
}

const PREFIX = 'vps-nixos-closure';

function clean(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** The restore-key prefix: same system and configuration name, any build. */
export function cacheKeyPrefix(p: Omit<CacheKeyParts, 'drvPath'>): string {
  return `${PREFIX}-${clean(p.toolVersion)}-${clean(p.system)}-${clean(p.name)}-`;
}

/** The exact key (no commas, ≤ 512 characters, as the Actions cache requires). */
export function cacheKey(p: CacheKeyParts): string {
  const hash = /\/nix\/store\/([0-9a-z]{32})-/.exec(p.drvPath)?.[1];
  if (!hash) throw new Error(`not a store derivation path: ${p.drvPath}`);
  return (cacheKeyPrefix(p) + hash).slice(0, 512);
}
