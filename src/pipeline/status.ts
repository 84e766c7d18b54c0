import type { Config } from '../inputs';
import type { RunRecord } from './record';
import { hostRuns } from '../report/render';
import type { DeployResult } from '../deploy/deploy';

/** Whether the run succeeded, and the one line that says why not. */
export function finalStatus(
  record: RunRecord,
  cfg: Pick<Config, 'planOnly' | 'allowPreflightErrors'> & Partial<Pick<Config, 'deployAction'>>,
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
  if (record.deploy) return { ok: true, message: deployedMessage(record.deploy) };
  if (record.bootstrap) {
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
  const skippedBootstrap = record.stages.find(
    (s) => s.name === 'bootstrap' && s.status === 'skipped',
  );
  if (skippedBootstrap?.detail?.startsWith('nothing to bootstrap') && !record.plan.refusal)
    return { ok: true, message: skippedBootstrap.detail };
  // In plan-only mode a refusal is a result; in a real run it stops the job.
  if (cfg.planOnly) return { ok: true, message: `plan: ${record.plan.method}` };
  if (record.plan.refusal) {
    return {
      ok: false,
      message: `refused: ${record.plan.refusal.reason}\nwhat would work: ${record.plan.refusal.remediation}`,
    };
  }
  if (cfg.deployAction === 'build' && record.build) {
    const d = record.build.closure.diff;
    return {
      ok: true,
      message: d
        ? `built ${record.build.toplevel}: ${d.changed.length} changed, ${d.added.length} paths added, ${d.removed.length} removed against what the host runs; nothing deployed`
        : `built ${record.build.toplevel}; nothing deployed`,
    };
  }
  return { ok: true, message: `planned ${record.plan.method}: nothing left to do` };
}

/** One line for a deploy that went through. */
export function deployedMessage(d: DeployResult): string {
  const reboot = d.rebootNeeded.length
    ? `; reboot needed (${d.rebootNeeded.join(', ')} changed)`
    : '';
  if (d.action === 'dry-activate')
    return `dry-activate of ${d.systemPath || 'the new system'}: nothing was changed`;
  if (!d.changed) return `no change: the host runs ${d.hostRuns}${reboot}`;
  const verb = d.action === 'boot' ? 'set as the boot default' : 'switched to';
  return `deployed: ${verb} ${d.systemPath}${d.previousSystemPath ? ` (was ${d.previousSystemPath})` : ' (first deploy: nothing to roll back to)'}; ${d.pathsSent} paths, ${d.bytesSent} bytes sent${reboot}`;
}
