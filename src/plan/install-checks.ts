/**
 * What the initrd-only installer cannot do, decided after plan() from what the build found:
 * a closure without Nix, a disk layout it cannot format, an installer over the RAM limits.
 * Each refuses the plan (nothing has changed on the host yet: the probe only reads), and only
 * when the plan installs: a deploy-only or infect plan never cares. Pure.
 */
import type { DiskoLayout } from '../nix/layout';
import { layoutRefusal } from '../nix/layout';
import type { SystemNix } from '../nix/system-nix';
import { installerFit, type InstallerInfo } from './installer-fit';
import type { Plan, Refusal } from './plan';

export interface InstallFindings {
  /** `nixosConfigurations.NAME`, for messages. */
  config: string;
  /** The closure's Nix; undefined when no toplevel is in this runner's store (nothing to check). */
  systemNix?: SystemNix;
  /** The disko layout; undefined when unknown (prebuilt disk-script, no flake): the generic installer. */
  layout?: DiskoLayout;
  /** The kexec installer with its sizes; undefined when it was not resolved in this run (plan only). */
  installer?: InstallerInfo;
  memTotalBytes: number;
}

/** The plan, refused when the install cannot work, or with the checks' warnings added. */
export function checkInstall(p: Plan, f: InstallFindings): Plan {
  if (p.refusal) return p;
  const refusals: Refusal[] = [];
  const warnings: string[] = [];
  let installerRootfs: Plan['installerRootfs'];
  if (p.phases.includes('install')) {
    if (f.systemNix && 'refusal' in f.systemNix) refusals.push(f.systemNix.refusal);
    const layout = f.layout && layoutRefusal(f.layout, f.config);
    if (layout) refusals.push(layout);
  }
  if (p.phases.includes('kexec') && f.installer) {
    const fit = installerFit(f.installer, f.memTotalBytes);
    if (fit.refusal) refusals.push(fit.refusal);
    warnings.push(...fit.warnings);
    installerRootfs = fit.rootfs;
  }
  if (refusals.length === 0) {
    const checked = warnings.length ? { ...p, warnings: [...p.warnings, ...warnings] } : p;
    return installerRootfs ? { ...checked, installerRootfs } : checked;
  }
  const refusal: Refusal = {
    reason: refusals.map((r) => r.reason).join('; and '),
    remediation: refusals.map((r) => r.remediation).join('; '),
  };
  return {
    method: 'refuse',
    reasons: [...p.reasons, ...refusals.map((r) => r.reason)],
    warnings: [...p.warnings, ...warnings],
    phases: [],
    refusal,
  };
}
