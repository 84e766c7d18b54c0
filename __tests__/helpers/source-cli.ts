/**
 * Runs the CLI from its TypeScript source (src/cli.ts), as a child process like the built one:
 * each module is transpiled on load with the project's own TypeScript, so a test sees the code
 * as it is now, without rebuilding dist/. Same results as runCli: exit code, stdout, stderr.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CliResult } from './cli';

const SOURCE = join(__dirname, '../../src/cli.ts');

/** Loads .ts files through ts.transpileModule (no typecheck: tsc --noEmit does that). */
const HOOK = `
const ts = require(${JSON.stringify(require.resolve('typescript'))});
const fs = require('node:fs');
require.extensions['.ts'] = (m, file) => {
  const out = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
    fileName: file,
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
      resolveJsonModule: true,
    },
  });
  m._compile(out.outputText, file);
};
require(process.argv[1]);
`;

/**
 * Runs `vps-nixos ARGS` from source with exactly `env` (nothing of this process's environment
 * is added, so SSH_AUTH_SOCK, HOME and the key variable are what the test says).
 */
export function runSourceCli(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 60_000,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', HOOK, SOURCE, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vps-nixos ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/**
 * Writes `DIR/vps-nixos-source.js`, which runs the CLI from source as `node FILE ARGS…` (for a
 * program on PATH that stands in for the released CLI); returns its path.
 */
export function sourceCliScript(dir: string): string {
  const file = join(dir, 'vps-nixos-source.js');
  writeFileSync(
    file,
    HOOK.replace('require(process.argv[1]);', `require(${JSON.stringify(SOURCE)});`),
  );
  return file;
}
