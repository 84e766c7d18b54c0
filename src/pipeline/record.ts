import type { Facts } from '../probe/facts';
import type { Plan } from '../plan/plan';
import type { BuildResult } from '../nix/build';
import type { PreflightResult } from '../preflight/run';

export type StageName = 'build' | 'probe' | 'plan' | 'check';

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
  error?: { message: string; fix?: string };
}
