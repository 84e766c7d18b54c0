/**
 * The system closure's own Nix. The kexec installer carries no Nix: the install registers the
 * closure with the closure's `nix-store --load-db` and sets the profile with its `nix-env`, in a
 * chroot of /mnt. So a closure without Nix (`nix.enable = false`) cannot be installed.
 */
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Refusal } from '../plan/plan';

/** What the runner's store says about `<toplevel>/sw/bin/nix-store`. */
export interface SystemNixFound {
  toplevel: string;
  /** `readlink -f <toplevel>/sw/bin/nix-store`; undefined when it does not exist. */
  resolved?: string;
  /** Which of the install's Nix commands `<store path of resolved>/bin/` has. */
  binaries: string[];
}

export type SystemNix = { nixStorePath: string } | { refusal: Refusal };

/** The Nix commands the install runs from the closure (chroot /mnt <nix>/bin/…). */
export const INSTALL_NIX_BINARIES = ['nix-store', 'nix-env'];

/** The store path holding `path` (`/nix/store/<hash>-<name>`), or undefined when outside the store. */
export function storePathOf(path: string, storeDir: string): string | undefined {
  const prefix = storeDir.endsWith('/') ? storeDir : `${storeDir}/`;
  if (!path.startsWith(prefix)) return undefined;
  const name = path.slice(prefix.length).split('/')[0];
  return name ? prefix + name : undefined;
}

const FIX =
  'keep nix.enable = true (the default) in the configuration: the installer has no Nix of its own and registers the closure with its nix-store, and later deploys need Nix on the host too; or use method infect';

/** The Nix store path the install will use, or why there is none. Pure. */
export function systemNix(found: SystemNixFound): SystemNix {
  const link = `${found.toplevel}/sw/bin/nix-store`;
  if (!found.resolved)
    return {
      refusal: {
        reason: `the system closure has no Nix (${link} does not exist: nix.enable = false?), so it cannot register itself on the disk`,
        remediation: FIX,
      },
    };
  const storePath = storePathOf(found.resolved, dirname(found.toplevel));
  if (!storePath || storePath === found.toplevel)
    return {
      refusal: {
        reason: `${link} resolves to ${found.resolved}, not into a Nix package in the store, so the install cannot run the closure's Nix`,
        remediation: FIX,
      },
    };
  const missing = INSTALL_NIX_BINARIES.filter((b) => !found.binaries.includes(b));
  if (missing.length)
    return {
      refusal: {
        reason: `${link} resolves into ${storePath}, which has no ${missing.map((b) => `bin/${b}`).join(' or ')}: the install registers the closure and sets the system profile with them`,
        remediation: FIX,
      },
    };
  return { nixStorePath: storePath };
}

/**
 * Reads `<toplevel>/sw/bin/nix-store` in the runner's store and decides; undefined when the
 * toplevel is not in this store (a prebuilt path checked elsewhere: nothing to say here).
 */
export function findSystemNix(toplevel: string): SystemNix | undefined {
  if (!existsSync(toplevel)) return undefined;
  let resolved: string | undefined;
  try {
    resolved = realpathSync(join(toplevel, 'sw', 'bin', 'nix-store'));
  } catch {
    resolved = undefined;
  }
  const storePath = resolved ? storePathOf(resolved, dirname(toplevel)) : undefined;
  const binaries = storePath
    ? INSTALL_NIX_BINARIES.filter((b) => existsSync(join(storePath, 'bin', b)))
    : [];
  return systemNix({ toplevel, resolved, binaries });
}
