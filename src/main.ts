/** The action's main step: inputs → pipeline → summary and outputs. */
import * as core from '@actions/core';
import { tmpdir } from 'node:os';
import { INPUTS, parseConfig, type InputName, type RawInputs } from './inputs';
import { Output, State } from './constants';
import { maskLines, writeKeyMaterial } from './secrets';
import { runPipeline } from './pipeline/run';
import { diffMarkdown, renderMarkdown } from './report/render';
import { describeError } from './errors';
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

async function main(): Promise<void> {
  const raw = readInputs();
  // Mask first: nothing after this line may print the key unmasked.
  if (raw['ssh-private-key']) maskLines(raw['ssh-private-key'], core.setSecret);
  const cfg = parseConfig(raw);
  // Key files and downloads share one private dir, removed by the post step.
  const km = writeKeyMaterial(
    process.env.RUNNER_TEMP || tmpdir(),
    cfg.sshPrivateKey ?? '',
    cfg.knownHosts,
  );
  core.saveState(State.keyDir, km.dir);
  const record = await runPipeline(
    cfg,
    {
      // The build and the preflight come before anything changes the target; plan-only skips the build.
      stages: cfg.planOnly
        ? ['probe', 'plan', ...(cfg.flake ? (['check'] as const) : [])]
        : cfg.deployAction === 'build'
          ? ['build', 'probe', 'plan', 'check']
          : ['build', 'probe', 'plan', 'check', 'bootstrap', 'deploy'],
      kexec: !cfg.planOnly && (cfg.method === 'auto' || cfg.method === 'kexec'),
    },
    {
      log: { info: core.info, warn: core.warning, group: core.group },
      tempDir: km.dir,
      toolVersion: TOOL_VERSION,
      cache: {
        store: new ActionsCacheStore(),
        dir: join(process.env.RUNNER_TEMP || tmpdir(), 'vps-nixos-closure-cache'),
      },
    },
  );
  if (record.plan) core.setOutput(Output.method, record.plan.method);
  if (record.hostKey) core.setOutput(Output.hostKey, record.hostKey);
  if (record.bootstrap) {
    core.setOutput(Output.phases, JSON.stringify(record.bootstrap.phases));
    core.setOutput(Output.currentSystem, record.bootstrap.host.currentSystem ?? '');
  }
  if (record.deploy) {
    const d = record.deploy;
    core.setOutput(Output.systemPath, d.systemPath);
    core.setOutput(Output.previousSystemPath, d.previousSystemPath);
    core.setOutput(Output.changed, String(d.changed));
    core.setOutput(Output.rolledBack, String(d.rolledBack));
    core.setOutput(Output.rebootNeeded, String(d.rebootNeeded.length > 0));
    core.setOutput(Output.currentSystem, d.hostRuns);
    if (d.diff) core.setOutput(Output.diff, diffMarkdown(d.diff, d.bytesSent));
  } else if (record.build?.closure.diff) {
    // action build: what a deploy would change
    core.setOutput(Output.diff, diffMarkdown(record.build.closure.diff));
    core.setOutput(Output.systemPath, record.build.toplevel);
  }
  const hostConfig = record.facts ? hostConfigFor(record.facts, record.target) : undefined;
  if (hostConfig) core.setOutput(Output.hostConfig, hostConfig);
  try {
    await core.summary.addRaw(renderMarkdown(record)).write();
  } catch (err) {
    core.warning(`could not write the job summary: ${describeError(err)}`);
  }
  const status = finalStatus(record, cfg);
  if (!status.ok) core.setFailed(status.message);
}

main().catch((err: unknown) => core.setFailed(describeError(err)));
