/** The install decision: a pure function of the probed facts and the config (DESIGN.md's table). */
import { CONTAINER_TYPES, type Facts } from '../probe/facts';
import type { Config } from '../inputs';
import { formatBytes } from '../size';

export type Method = 'kexec' | 'infect' | 'deploy-only' | 'refuse';

export type PhaseName =
  'prep' | 'kexec' | 'installer-prep' | 'install' | 'reboot' | 'infect' | 'deploy';

export interface Refusal {
  reason: string;
  remediation: string;
}

export interface Plan {
  method: Method;
  /** Why this method: each fact that decided it, in order. */
  reasons: string[];
  warnings: string[];
  phases: PhaseName[];
  refusal?: Refusal;
  /** zram swap to set up before memory-hungry phases, and a swapfile on real disk. */
  zramBytes?: number;
  swapfileBytes?: number;
  /** Set by checkInstall once the installer is known: 'ramfs' when its initrd is over the tmpfs cap. */
  installerRootfs?: InstallerRootfs;
}

/** How the installer's kernel holds its root: the default tmpfs, or ramfs past the tmpfs cap. */
export type InstallerRootfs = 'tmpfs' | 'ramfs';

/** The facts the method depends on; disks, tools and network are checked by the stages that need them. */
export type PlanFacts = Pick<
  Facts,
  'memTotalBytes' | 'virtualization' | 'isNixos' | 'osVariantId'
> &
  Partial<Pick<Facts, 'isContainer' | 'osId' | 'osVersionId' | 'bootId' | 'infect'>>;

export type PlanConfig = Pick<
  Config,
  'method' | 'minRamKexecBytes' | 'minRamInfectBytes' | 'allowLowRam' | 'reinstall' | 'flake'
> &
  Partial<Pick<Config, 'zramBytes' | 'swapBytes' | 'toplevel'>>;

const CONTAINERS = new Set(CONTAINER_TYPES);

const KEXEC_PHASES: PhaseName[] = [
  'prep',
  'kexec',
  'installer-prep',
  'install',
  'reboot',
  'deploy',
];
const INFECT_PHASES: PhaseName[] = ['prep', 'infect', 'reboot', 'deploy'];

/** nixos-infect is running, or finished and the host has not rebooted since: only the reboot is left. */
export function infectPending(
  f: Pick<PlanFacts, 'infect' | 'bootId'>,
): 'running' | 'staged' | undefined {
  const inf = f.infect;
  if (!inf) return undefined;
  if (inf.running) return 'running';
  if (inf.exit === 0 && f.bootId !== undefined && inf.bootId === f.bootId) return 'staged';
  return undefined;
}
const MiB = 1024 * 1024;

function isContainer(f: PlanFacts): boolean {
  return f.isContainer ?? CONTAINERS.has(f.virtualization);
}

function refuse(reasons: string[], reason: string, remediation: string): Plan {
  return {
    method: 'refuse',
    reasons: [...reasons, reason],
    warnings: [],
    phases: [],
    refusal: { reason, remediation },
  };
}

/** zram: RAM-sized (compressed ~3:1, so it holds about twice RAM's worth of pages in well under RAM). */
export function defaultZramBytes(memTotalBytes: number): number {
  return Math.min(Math.ceil(memTotalBytes / MiB) * MiB, 4096 * MiB);
}

/** A swapfile on disk backs zram for the install's peaks: 2 GiB, as much as a 1 GB host can usefully use. */
export const DEFAULT_SWAPFILE_BYTES = 2048 * MiB;

function withSizes(plan: Plan, f: PlanFacts, cfg: PlanConfig): Plan {
  if (plan.method === 'kexec' || plan.method === 'infect') {
    plan.zramBytes = cfg.zramBytes ?? defaultZramBytes(f.memTotalBytes);
    plan.swapfileBytes = cfg.swapBytes ?? DEFAULT_SWAPFILE_BYTES;
  }
  if (plan.method === 'infect' && isContainer(f)) {
    // It could not be used: a container can neither load zram nor swapon (a swapfile would only fill the disk).
    plan.zramBytes = 0;
    plan.swapfileBytes = 0;
    plan.reasons.push('a container cannot swapon: no zram and no swapfile');
  }
  if (!cfg.flake && !cfg.toplevel && plan.phases.includes('deploy')) {
    plan.phases = plan.phases.filter((p) => p !== 'deploy');
    plan.reasons.push('no flake (or toplevel) given: the deploy phase is left out');
  }
  return plan;
}

/** Chooses how to bring this host to NixOS, and why. Never throws: a refusal is a plan too. */
export function plan(f: PlanFacts, cfg: PlanConfig): Plan {
  const mem = f.memTotalBytes;
  const memText = `MemTotal ${formatBytes(mem)}`;
  const container = isContainer(f);
  const os = f.osId ? `${f.osId}${f.osVersionId ? ' ' + f.osVersionId : ''}` : 'the host';
  const reasons: string[] = [];
  const warnings: string[] = [];

  // The kexec installer is NixOS too: mid-install, not installed.
  if (f.isNixos && f.osVariantId === 'installer') {
    reasons.push(
      'the host runs the NixOS kexec installer (VARIANT_ID=installer): a previous run stopped after kexec',
    );
    if (cfg.method === 'infect' || cfg.method === 'deploy-only') {
      return refuse(
        reasons,
        `method ${cfg.method} cannot continue from the kexec installer`,
        'use method auto or kexec to resume the install, or reboot the host back into its distribution',
      );
    }
    reasons.push('resuming at installer prep');
    return withSizes({ method: 'kexec', reasons, warnings, phases: KEXEC_PHASES.slice(2) }, f, cfg);
  }

  // Before the NixOS test: nixos-infect writes /etc/NIXOS before the reboot that makes it true.
  const pending = infectPending(f);
  if (pending) {
    reasons.push(
      pending === 'running'
        ? 'nixos-infect is running on the host (a previous run was cut off): following it'
        : 'nixos-infect finished on the host but it has not rebooted since: the reboot is left',
    );
    if (cfg.method === 'kexec' || cfg.method === 'deploy-only') {
      return refuse(
        reasons,
        `method ${cfg.method} cannot continue an in-place conversion`,
        'use method auto or infect to finish it',
      );
    }
    const phases = pending === 'running' ? INFECT_PHASES.slice(1) : INFECT_PHASES.slice(2);
    return withSizes({ method: 'infect', reasons, warnings, phases }, f, cfg);
  }

  if (f.isNixos) {
    reasons.push(
      f.infect?.exit === 0
        ? 'the host already runs NixOS: nixos-infect converted it and it rebooted since'
        : 'the host already runs NixOS (/etc/NIXOS)',
    );
    if (cfg.method === 'infect') {
      if (cfg.reinstall)
        return refuse(
          reasons,
          'method infect converts a distribution in place; it cannot re-install NixOS',
          'use method kexec with reinstall: true to wipe and re-install, or leave reinstall off',
        );
      reasons.push('method infect: nothing to convert, deploying only');
      return withSizes({ method: 'deploy-only', reasons, warnings, phases: ['deploy'] }, f, cfg);
    }
    if (!cfg.reinstall || cfg.method === 'deploy-only') {
      // A re-run of a kexec workflow (push-to-deploy) lands here: deploy, never wipe unasked.
      if (cfg.method === 'kexec')
        reasons.push(
          'method kexec: nothing to install and nothing is wiped (set reinstall: true to wipe and re-install)',
        );
      reasons.push(
        cfg.reinstall
          ? 'method deploy-only: not re-installing'
          : 'reinstall is false: deploying only',
      );
      return withSizes({ method: 'deploy-only', reasons, warnings, phases: ['deploy'] }, f, cfg);
    }
    reasons.push('reinstall is true: installing again');
    warnings.push('reinstall wipes the disk of a host that already runs NixOS');
  } else if (cfg.method === 'deploy-only') {
    return refuse(
      reasons,
      `method deploy-only needs NixOS on the host; it runs ${os}`,
      'use method auto (or kexec / infect) to install NixOS first',
    );
  }

  if (container) {
    reasons.push(
      `virtualization ${f.virtualization} is a container: it shares the provider's kernel, so kexec is impossible`,
    );
    if (cfg.method === 'kexec') {
      return refuse(
        reasons,
        `method kexec cannot work in a ${f.virtualization} container`,
        'use method infect (in place) or auto, or move to a KVM VPS',
      );
    }
    if (f.isNixos) {
      return refuse(
        reasons,
        'a NixOS container cannot be re-installed in place',
        'use method deploy-only, or reinstall from the provider panel',
      );
    }
    if (mem < cfg.minRamInfectBytes) {
      if (!cfg.allowLowRam) {
        return refuse(
          reasons,
          `${memText} is below min-ram-infect ${formatBytes(cfg.minRamInfectBytes)}`,
          'use a plan with more RAM (768 MB or more), or set allow-low-ram: true to try infect with zram and a swapfile anyway',
        );
      }
      warnings.push(
        `${memText} is below min-ram-infect ${formatBytes(cfg.minRamInfectBytes)}: planning infect anyway because allow-low-ram is true`,
      );
    } else {
      reasons.push(`${memText} ≥ min-ram-infect ${formatBytes(cfg.minRamInfectBytes)}`);
    }
    warnings.push(
      `infect inside a ${f.virtualization} container is best effort: the provider's kernel and init stay in charge`,
    );
    return withSizes({ method: 'infect', reasons, warnings, phases: INFECT_PHASES }, f, cfg);
  }

  reasons.push(`virtualization ${f.virtualization}: a full VM, kexec is possible`);
  if (cfg.method === 'infect') {
    reasons.push('method infect was asked for: converting in place, keeping the partitions');
    if (mem < cfg.minRamInfectBytes) {
      if (!cfg.allowLowRam) {
        return refuse(
          reasons,
          `${memText} is below min-ram-infect ${formatBytes(cfg.minRamInfectBytes)}`,
          'use a plan with more RAM, or set allow-low-ram: true to try anyway',
        );
      }
      warnings.push(
        `${memText} is below min-ram-infect: planning infect anyway because allow-low-ram is true`,
      );
    }
    return withSizes({ method: 'infect', reasons, warnings, phases: INFECT_PHASES }, f, cfg);
  }
  if (mem >= cfg.minRamKexecBytes) {
    reasons.push(
      `${memText} ≥ min-ram-kexec ${formatBytes(cfg.minRamKexecBytes)}: slim kexec installer + disko`,
    );
    return withSizes({ method: 'kexec', reasons, warnings, phases: KEXEC_PHASES }, f, cfg);
  }
  if (cfg.method === 'auto' && mem >= cfg.minRamInfectBytes) {
    reasons.push(
      `${memText} is below min-ram-kexec ${formatBytes(cfg.minRamKexecBytes)} but ≥ min-ram-infect ${formatBytes(cfg.minRamInfectBytes)}: converting in place`,
    );
    return withSizes({ method: 'infect', reasons, warnings, phases: INFECT_PHASES }, f, cfg);
  }
  if (cfg.allowLowRam) {
    warnings.push(
      `${memText} is below min-ram-kexec ${formatBytes(cfg.minRamKexecBytes)}: planning kexec anyway because allow-low-ram is true (zram and a swapfile carry it)`,
    );
    return withSizes({ method: 'kexec', reasons, warnings, phases: KEXEC_PHASES }, f, cfg);
  }
  const floor = cfg.method === 'kexec' ? 'min-ram-kexec' : 'min-ram-kexec and min-ram-infect';
  return refuse(
    reasons,
    `${memText} is below ${floor} (${formatBytes(Math.min(cfg.minRamKexecBytes, cfg.method === 'kexec' ? Infinity : cfg.minRamInfectBytes))})`,
    'use a VPS with at least 384 MB of RAM (measured: the kexec install works at MemTotal 331 MiB, its installer on ramfs), or set allow-low-ram: true to try with zram and a swapfile anyway',
  );
}
