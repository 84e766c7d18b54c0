import type { Facts } from '../probe/facts';
import type { InstallerRootfs, Plan } from '../plan/plan';
import type { BuildResult } from '../nix/build';
import type { PreflightResult } from '../preflight/run';
import type { BootstrapResult } from '../phases/bootstrap';
import type { DeployResult } from '../deploy/deploy';
import type { KexecTarball } from '../nix/kexec';
import type { Decision } from './decide';
import type { SaveOutcome } from '../cache/closure-cache';

export type StageName = 'build' | 'probe' | 'plan' | 'check' | 'bootstrap' | 'deploy' | 'cache';

export interface StageRecord {
  name: StageName;
  status: 'done' | 'skipped' | 'failed';
  seconds: number;
  detail?: string;
}

/** Everything one run did and learned; reports are rendered from this alone. */
export interface RunRecord {
  target?: string;
  facts?: Facts;
  plan?: Plan;
  /** What runs, decided once after the plan (the entry, the inputs, the plan, the host's system). */
  decision?: Decision;
  /** The configuration's toplevel from one evaluation (when an unchanged deploy was possible). */
  evaluated?: string;
  build?: BuildResult;
  /** What the cache stage saved (or pushed) after the deploy. */
  cacheSave?: SaveOutcome;
  /** The kexec installer the build stage resolved (only when the plan has a kexec phase). */
  installer?: KexecTarball;
  /** How that installer boots on this host's RAM (the install checks of the build stage). */
  installerRootfs?: InstallerRootfs;
  preflight?: PreflightResult;
  /** known_hosts line of the key the host presented (public: not a secret). */
  hostKey?: string;
  hostKeyFingerprint?: string;
  hostKeyTrustedOnFirstUse?: boolean;
  stages: StageRecord[];
  /** What the bootstrap phases did, and what answers at the end. */
  bootstrap?: Omit<BootstrapResult, 'session' | 'error'>;
  /** What the deploy did: what ran before, what runs now, what changed, whether it rolled back. */
  deploy?: DeployResult;
  error?: { message: string; fix?: string };
}
