/** The action's entries (dist/main, dist/post) run as the runner runs them: INPUT_* env, command files. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface StepRun {
  output: string;
  state: Record<string, string>;
  outputs: Record<string, string>;
  summary: string;
  code: number;
  runnerTemp: string;
}

/** Reads GITHUB_OUTPUT / GITHUB_STATE files (`name<<delim` heredoc format). */
export function readCommandFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(path)) return out;
  const lines = readFileSync(path, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<=]+)<<(.+)$/.exec(lines[i]!);
    if (!m) continue;
    const value: string[] = [];
    while (++i < lines.length && lines[i] !== m[2]) value.push(lines[i]!);
    out[m[1]!] = value.join('\n');
  }
  return out;
}

export function runStep(
  entry: 'main' | 'post',
  inputs: Record<string, string>,
  extraEnv: Record<string, string> = {},
  runnerTemp?: string,
  timeoutMs = 50_000,
): StepRun {
  const work = mkdtempSync(join(tmpdir(), 'vps-nixos-step-'));
  const temp = runnerTemp ?? mkdtempSync(join(tmpdir(), 'vps-nixos-runner-temp-'));
  const files = {
    GITHUB_OUTPUT: join(work, 'output'),
    GITHUB_STATE: join(work, 'state'),
    GITHUB_STEP_SUMMARY: join(work, 'summary'),
  };
  for (const f of Object.values(files)) writeFileSync(f, '');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    RUNNER_TEMP: temp,
    ...files,
    ...extraEnv,
  };
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
  const r = spawnSync(process.execPath, [join(__dirname, `../../dist/${entry}/index.js`)], {
    env,
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return {
    output: `${r.stdout}${r.stderr}`,
    state: readCommandFile(files.GITHUB_STATE),
    outputs: readCommandFile(files.GITHUB_OUTPUT),
    summary: readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8'),
    code: r.status ?? -1,
    runnerTemp: temp,
  };
}
