/** The action's main step: inputs → pipeline → summary and outputs. */
import * as core from '@actions/core';
import { tmpdir } from 'node:os';
import { stopChildren } from './children';
import { INPUTS, parseConfig, type InputName, type RawInputs } from './inputs';
import { Output, State } from './constants';
import { maskLines, removeKeyMaterial, writeKeyMaterial } from './secrets';
import { newRecord, runPipeline } from './pipeline/run';
import type { RunRecord } from './pipeline/record';
import { diffMarkdown, plainText, renderMarkdown } from './report/render';
import { actionLogger } from './report/log';
import { VpsNixosError, describeError } from './errors';
import { finalStatus } from './pipeline/status';
import { TOOL_VERSION } from './version';
import { ActionsCacheStore } from './cache/actions';
import { join } from 'node:path';
import { factsToNix } from './hostconfig';
import type { Facts } from './probe/facts';

function readInputs(): RawInputs {
  const raw: RawInputs = {};
  for (const name of Object.keys(INPUTS) as InputName[]) raw[name] = core.getInput(name);
  return raw;
}

/** The generated host module, or a warning when the host's facts cannot be written safely. */
function hostConfigFor(facts: Facts, target?: string): string | undefined {
  try {
    return factsToNix(facts, { host: target, date: new Date() });
  } catch (err) {
    core.warning(`no host-config output: ${describeError(err)}`);
    return undefined;
  }
}

/** The job summary: the headline names the commit; a cancelled run says how far it got. */
async function writeSummary(record: RunRecord, cancelled: boolean): Promise<void> {
  try {
    const text = renderMarkdown(record, {
      commit: process.env.GITHUB_SHA,
      ref: process.env.GITHUB_REF_NAME,
      cancelled,
    });
    await core.summary.addRaw(text).write();
  } catch (err) {
    core.warning(`could not write the job summary: ${describeError(err)}`);
  }
}

async function main(): Promise<void> {
  const raw = readInputs();
  // Mask first: nothing after this line may print the key unmasked.
  if (raw['ssh-private-key']) maskLines(raw['ssh-private-key'], core.setSecret);
  if (raw['github-token']) core.setSecret(raw['github-token']);
  const cfg = parseConfig(raw);
  const record = newRecord(cfg);
  // Cancelled (the runner sends SIGINT, then SIGTERM): say how far it got, remove the key now.
  // Installed before the key is written, so no signal finds a key on disk and no handler.
  const key: { dir?: string } = {};
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      stopChildren('SIGTERM');
      if (key.dir) removeKeyMaterial(key.dir, core.warning);
      void writeSummary(record, true).finally(() => process.exit(code));
    });
  }
  // Key files and downloads share one private dir, removed by the post step.
  const km = writeKeyMaterial(
    process.env.RUNNER_TEMP || tmpdir(),
    cfg.sshPrivateKey ?? '',
    cfg.knownHosts,
  );
  key.dir = km.dir;
  core.saveState(State.keyDir, km.dir);
  await runPipeline(
    cfg,
    { entry: 'action' },
    {
      log: actionLogger(core),
      tempDir: km.dir,
      toolVersion: TOOL_VERSION,
      cache: {
        store: new ActionsCacheStore(cfg.githubToken),
        dir: join(process.env.RUNNER_TEMP || tmpdir(), 'vps-nixos-closure-cache'),
      },
    },
    record,
  );
  if (record.plan) core.setOutput(Output.method, record.plan.method);
  if (record.hostKey) core.setOutput(Output.hostKey, record.hostKey);
  // Complete outputs whatever ran: no bootstrap is `[]`, what the host runs is the probe's until a stage knows better.
  if (record.plan) core.setOutput(Output.phases, JSON.stringify(record.bootstrap?.phases ?? []));
  const runs = record.bootstrap?.host.currentSystem ?? record.facts?.currentSystem;
  if (runs) core.setOutput(Output.currentSystem, runs);
  if (record.deploy) {
    const d = record.deploy;
    core.setOutput(Output.systemPath, d.systemPath);
    core.setOutput(Output.previousSystemPath, d.previousSystemPath);
    core.setOutput(Output.changed, String(d.changed));
    core.setOutput(Output.rolledBack, String(d.rolledBack));
    core.setOutput(Output.rebootNeeded, String(d.rebootNeeded.length > 0));
    core.setOutput(Output.currentSystem, d.hostRuns);
    if (d.diff) core.setOutput(Output.diff, diffMarkdown(d.diff, d.bytesSent));
  } else if (record.build) {
    // action build: what a deploy would change
    if (record.build.closure.diff)
      core.setOutput(Output.diff, diffMarkdown(record.build.closure.diff));
    core.setOutput(Output.systemPath, record.build.toplevel);
  } else if (record.decision?.unchanged && record.evaluated) {
    // action build of what the host already runs: nothing built, nothing would change
    core.setOutput(Output.systemPath, record.evaluated);
    core.setOutput(Output.changed, 'false');
  }
  const hostConfig = record.facts ? hostConfigFor(record.facts, record.target) : undefined;
  if (hostConfig) core.setOutput(Output.hostConfig, hostConfig);
  await writeSummary(record, false);
  const status = finalStatus(record, cfg);
  if (!status.ok) core.setFailed(plainText(status.message));
}

main().catch(async (err: unknown) => {
  core.setFailed(plainText(describeError(err)));
  // Bad input fails before any stage: the summary still says what and how to fix it.
  const record: RunRecord = { stages: [] };
  record.error =
    err instanceof VpsNixosError
      ? { message: err.message, fix: err.fix }
      : { message: describeError(err) };
  await writeSummary(record, false);
});
