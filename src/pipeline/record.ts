import type { Facts } from '../probe/facts';
import type { Plan } from '../plan/plan';
import type { BuildResult } from '../nix/build';
import type { PreflightResult } from '../preflight/run';
import type { BootstrapResult } from '../phases/bootstrap';

export type StageName = 'build' | 'probe' | 'plan' | 'check' | 'bootstrap';

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
  build?: BuildResult;
  preflight?: PreflightResult;
  /** known_hosts line of the key the host presented (public: not a secret). */
  hostKey?: string;
  hostKeyFingerprint?: string;
  hostKeyTrustedOnFirstUse?: boolean;
  stages: StageRecord[];
  /** What the bootstrap phases did, and what answers at the end. */
  bootstrap?: Omit<BootstrapResult, 'session' | 'error'>;
  error?: { message: string; fix?: string };
}
