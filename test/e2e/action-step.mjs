// One step of the vps-nixos action as the GitHub runner runs it: dist/main with INPUT_* variables
// and the command files (GITHUB_OUTPUT, GITHUB_STATE, GITHUB_STEP_SUMMARY) under a RUNNER_TEMP of
// its own, then dist/post with the state main saved (STATE_* variables), as `post-if: always()`.
//   node test/e2e/action-step.mjs STEPDIR INPUTS.json
// INPUTS.json: {"target": "...", ...} (the action's inputs; the key is read from the file named by
// "ssh-private-key-file" so it is never on a command line). Writes into STEPDIR: log.txt (main's
// and post's output), summary.md, outputs.json, and result.json {code, postCode, seconds (main's,
// one decimal), mainSeconds and postSeconds (three decimals)}; prints
// result.json. Exits 0 whatever the step did: the caller reads the result.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const [dir, inputsFile] = process.argv.slice(2);
if (!dir || !inputsFile) {
  process.stderr.write('usage: action-step.mjs STEPDIR INPUTS.json\n');
  process.exit(2);
}

/** Reads a command file (`name<<delimiter` heredocs, or `name=value` lines). */
function readCommandFile(file) {
  const out = {};
  if (!fs.existsSync(file)) return out;
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const heredoc = /^([^<=]+)<<(.+)$/.exec(lines[i]);
    if (heredoc) {
      const value = [];
      while (++i < lines.length && lines[i] !== heredoc[2]) value.push(lines[i]);
      out[heredoc[1]] = value.join('\n');
      continue;
    }
    const plain = /^([^=]+)=(.*)$/.exec(lines[i]);
    if (plain) out[plain[1]] = plain[2];
  }
  return out;
}

fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
const inputs = JSON.parse(fs.readFileSync(inputsFile, 'utf8'));
if (inputs['ssh-private-key-file']) {
  inputs['ssh-private-key'] = fs.readFileSync(inputs['ssh-private-key-file'], 'utf8');
  delete inputs['ssh-private-key-file'];
}
if (inputs['known-hosts-file']) {
  inputs['known-hosts'] = fs.readFileSync(inputs['known-hosts-file'], 'utf8');
  delete inputs['known-hosts-file'];
}
const files = {
  GITHUB_OUTPUT: path.join(dir, 'output'),
  GITHUB_STATE: path.join(dir, 'state'),
  GITHUB_STEP_SUMMARY: path.join(dir, 'summary.md'),
};
for (const f of Object.values(files)) fs.writeFileSync(f, '');
const runnerTemp = path.join(dir, 'runner-temp');
fs.mkdirSync(runnerTemp, { recursive: true, mode: 0o700 });
// What the runner gives a JavaScript action: no INPUT_* of other steps, its own temp dir.
const base = {
  PATH: process.env.PATH ?? '',
  HOME: process.env.HOME ?? '/root',
  NIX_CONFIG: process.env.NIX_CONFIG ?? '',
  NIXOS_REBUILD_STANDIN_LOG: process.env.NIXOS_REBUILD_STANDIN_LOG ?? '',
  GITHUB_ACTIONS: 'true',
  CI: 'true',
  RUNNER_TEMP: runnerTemp,
  ...files,
};
for (const k of Object.keys(base)) if (base[k] === '') delete base[k];
const env = { ...base };
for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = String(v);

const log = fs.openSync(path.join(dir, 'log.txt'), 'w', 0o600);
const t0 = process.hrtime.bigint();
const main = spawnSync(process.execPath, [path.join(ROOT, 'dist/main/index.js')], {
  env,
  stdio: ['ignore', log, log],
});
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const t1 = process.hrtime.bigint();
const state = readCommandFile(files.GITHUB_STATE);
const postEnv = { ...base };
for (const [k, v] of Object.entries(state)) postEnv[`STATE_${k}`] = v;
const post = spawnSync(process.execPath, [path.join(ROOT, 'dist/post/index.js')], {
  env: postEnv,
  stdio: ['ignore', log, log],
});
const postSeconds = Number(process.hrtime.bigint() - t1) / 1e9;
fs.closeSync(log);
fs.writeFileSync(
  path.join(dir, 'outputs.json'),
  JSON.stringify(readCommandFile(files.GITHUB_OUTPUT), null, 2),
);
const result = {
  code: main.status ?? -1,
  signal: main.signal ?? undefined,
  postCode: post.status ?? -1,
  seconds: Math.round(seconds * 10) / 10,
  mainSeconds: Math.round(seconds * 1000) / 1000,
  postSeconds: Math.round(postSeconds * 1000) / 1000,
  // What the post step must leave: no key material under the runner's temp dir.
  leftInRunnerTemp: fs.readdirSync(runnerTemp),
};
fs.writeFileSync(path.join(dir, 'result.json'), JSON.stringify(result));
process.stdout.write(`${JSON.stringify(result)}\n`);
