/**
 * The kexec installers released with this version of vps-nixos: their files, sha256 and sizes,
 * committed in the release (src/release/installers.json, bundled into dist/ by the build), never
 * fetched beside the asset. The release workflow writes the file (scripts/dev/installer-manifest.mjs)
 * after building the installers; a checkout between releases has none, and builds its own.
 */
import { z } from 'zod';
import manifestJson from './installers.json';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 in hex');

export const ReleasedInstallerSchema = z.object({
  /** The asset's file name in the release. */
  file: z.string().regex(/^[\w.-]+$/, 'a file name'),
  sha256,
  bytes: z.number().int().positive(),
  /** The build's sizes.env (KERNEL_BYTES, INITRD_BYTES, INITRD_UNPACKED_BYTES, …). */
  sizes: z.record(z.string(), z.string()).default({}),
});
export type ReleasedInstaller = z.infer<typeof ReleasedInstallerSchema>;

export const InstallersManifestSchema = z.object({
  /** The vps-nixos version these were built for (package.json's, at the tag). */
  version: z.string().min(1),
  /** Where the release's assets are: https://github.com/OWNER/vps-nixos/releases/download/vX.Y.Z */
  baseUrl: z.union([z.literal(''), z.url({ protocol: /^https$/ })]),
  /** By Nix system (x86_64-linux, aarch64-linux). */
  installers: z.record(z.string(), ReleasedInstallerSchema),
});
export type InstallersManifest = z.infer<typeof InstallersManifestSchema>;

/** This build's manifest. A broken one is a broken release: it throws at load. */
export const RELEASED: InstallersManifest = InstallersManifestSchema.parse(manifestJson);

/**
 * The mirror variable: a copy of the release assets elsewhere (a runner without github.com). Only
 * the base URL changes; the sha256 stays the committed one.
 */
export const MIRROR_ENV = 'VPS_NIXOS_INSTALLER_MIRROR';

export interface ReleasedChoice {
  url: string;
  installer: ReleasedInstaller;
}

/**
 * The released installer for this system, if this version has one. Pure: the manifest, the
 * version that runs and the mirror are given. A manifest for another version is not used (a
 * checkout whose package moved on without a release).
 */
export function releasedInstaller(
  manifest: InstallersManifest,
  system: string,
  version: string,
  mirror?: string,
): ReleasedChoice | undefined {
  if (manifest.version !== version) return undefined;
  const installer = manifest.installers[system];
  const base = (mirror?.trim() || manifest.baseUrl).replace(/\/+$/, '');
  if (!installer || !base) return undefined;
  return { url: `${base}/${installer.file}`, installer };
}
