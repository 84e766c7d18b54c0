/** The action's main step: inputs → pipeline → summary and outputs. */
import * as core from '@actions/core';
import { tmpdir } from 'node:os';
import { INPUTS, parseConfig, type InputName, type RawInputs } from './inputs';
import { Output, State } from './constants';
import { maskLines, writeKeyMaterial } from './secrets';
import { runPipeline } from './pipeline/run';
import { renderMarkdown } from './report/render';
import { describeError } from './errors';
import { finalStatus } from './pipeline/status';
import { TOOL_VERSION } from './version';
import { ActionsCacheStore } from './cache/actions';
import { join } from 'node:path';

function readInputs(): RawInputs {
  const raw: RawInputs = {};
  for (const name of Object.keys(INPUTS) as InputName[]) raw[name] = core.getInput(name);
  return raw;
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
      stages: cfg.planOnly ? ['probe', 'plan'] : ['build', 'probe', 'plan'],
      kexec: !cfg.planOnly && (cfg.method === 'auto' || cfg.method === 'kexec'),
    },
    {
      log: { info: core.info, warn: core.warning },
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
  try {
    await core.summary.addRaw(renderMarkdown(record)).write();
  } catch (err) {
    core.warning(`could not write the job summary: ${describeError(err)}`);
  }
  const status = finalStatus(record, cfg);
  if (!status.ok) core.setFailed(status.message);
}

main().catch((err: unknown) => core.setFailed(describeError(err)));
