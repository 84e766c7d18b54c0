import type { Config } from '../inputs';
import type { RunRecord } from './record';
import { hostRuns } from '../report/render';

/** Whether the run succeeded, and the one line that says why not. */
export function finalStatus(
  record: RunRecord,
  cfg: Pick<Config, 'planOnly' | 'allowPreflightErrors'>,
): { ok: boolean; message: string } {
  if (record.error) {
    return {
      ok: false,
      message: `${record.error.message}${record.error.fix ? `\nfix: ${record.error.fix}` : ''}`,
    };
  }
  if (record.preflight && !cfg.allowPreflightErrors) {
    const errors = record.preflight.findings.filter((f) => f.severity === 'error');
    if (errors.length) {
      return {
        ok: false,
        message: `preflight found ${errors.length} error(s) in the configuration: ${errors.map((e) => e.id).join(', ')}; nothing was changed on the target\nfix them (see the summary), or set allow-preflight-errors: true`,
      };
    }
  }
  if (record.bootstrap && !record.plan?.phases.includes('deploy')) {
    const ran = record.bootstrap.phases.filter((p) => p.status === 'done').length;
    const runs = `the host runs ${hostRuns(record.bootstrap.host)}`;
    return {
      ok: true,
      message:
        record.bootstrap.phases.length === 0
          ? `nothing to bootstrap: ${runs}`
          : `bootstrapped (${ran} phases ran): ${runs}`,
    };
  }
  if (!record.plan)
    return { ok: true, message: record.build ? 'built' : record.preflight ? 'checked' : 'probed' };
  // In plan-only mode a refusal is a result; in a real run it stops the job.
  if (cfg.planOnly) return { ok: true, message: `plan: ${record.plan.method}` };
  if (record.plan.refusal) {
    return {
      ok: false,
      message: `refused: ${record.plan.refusal.reason}\nwhat would work: ${record.plan.refusal.remediation}`,
    };
  }
  return {
    ok: false,
    message: `planned ${record.plan.method}${record.bootstrap ? ' and bootstrapped the host' : ''}, but the deploy stage is not released yet: set plan-only: true, or leave flake out and give toplevel/disk-script to bootstrap only`,
  };
}
