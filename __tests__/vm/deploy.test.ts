/**
 * The deploy stage against the real 1 GB QEMU test VPS, through the built CLI and the action.
 * Stand-ins (test/STANDINS.md): nixos-rebuild (test/standins/bin, first on PATH; only the
 * build-host deploy runs it) and the system toplevels (variants ok, ok2, new-kernel, exit4,
 * unhealthy, cut-sshd). Real: ssh with the pinned key, nix-copy-closure to the guest's store, our
 * switch.sh (the profile, systemd-run, switch-to-configuration), the rollback guard on the target,
 * the confirmation over a new SSH session, the health checks, sshd going away and coming back.
 * The guest starts from its fresh snapshot with /etc/NIXOS added: installed NixOS, no profile yet.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { currentVps, freshVm, openVps, standins, vpsConfig } from '../helpers/vps';
import { runCli, type CliResult } from '../helpers/cli';
import { runStep } from '../helpers/action';
import { OFFLINE_NIX_CONFIG } from '../helpers/nixflake';

jest.setTimeout(15 * 60_000);
const vps = currentVps();
const cfg = vpsConfig(vps);
const s = standins();
const v = s.variants as Record<
  'ok' | 'ok2' | 'new-kernel' | 'exit4' | 'unhealthy' | 'cut-sshd',
  string
>;
const ROOT = join(__dirname, '../..');
const work = mkdtempSync(join(tmpdir(), 'vps-nixos-deploy-'));
const rebuildLog = join(work, 'nixos-rebuild.log');
// The configuration carries the deploy key and the host's static network, as a user's does (the
// preflight checks both): written once the VPS is up (beforeAll).
const deployKey = execFileSync('ssh-keygen', ['-y', '-f', vps.sshPrivateKeyFile], {
  encoding: 'utf8',
}).trim();
let network: string[] = [];
const makeFlake = (dir: string, ...extra: string[]) =>
  execFileSync(
    join(ROOT, 'test/standins/make-flake.sh'),
    [join(work, dir), '--static', ...network, ...extra],
    { encoding: 'utf8' },
  ).trim();
let flake = '';
const env = {
  PATH: `${join(ROOT, 'test/standins/bin')}:${process.env.PATH}`,
  NIX_CONFIG: OFFLINE_NIX_CONFIG,
  NIXOS_REBUILD_STANDIN_LOG: rebuildLog,
};

const open = () => openVps(cfg, 10);
/** How many times the nixos-rebuild stand-in has run (its log has a line per run). */
const rebuildCalls = (): number => {
  try {
    return readFileSync(rebuildLog, 'utf8').trim().split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
};
/** What runs, read over a NEW pinned SSH connection. */
async function runningSystem(): Promise<string> {
  const session = await open();
  try {
    return (await session.exec('readlink -f /run/current-system')).stdout.trim();
  } finally {
    session.close();
  }
}
async function onVps(cmd: string): Promise<string> {
  const session = await open();
  try {
    const r = await session.exec(cmd, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`);
    return r.stdout;
  } finally {
    session.close();
  }
}

interface DeployDoc {
  changed: boolean;
  unchanged: boolean;
  forced: boolean;
  rebuild: { from: string; args: string[] } | null;
  bytesSent: number;
  pathsSent: number;
  systemPath: string | null;
  previousSystemPath: string | null;
  rolledBack: boolean;
  rollback: { by: 'runner' | 'target'; reason: string } | null;
  nothingToRollBackTo: boolean;
  rebootNeeded: string[];
  failedUnits: string[];
  checks: { name: string; ok: boolean; detail: string }[];
  diff: { changed: { name: string; from: string; to: string }[]; added: string[] } | null;
  hostRuns: string | null;
  cacheSave?: { saved: string; detail: string };
  error?: { message: string; fix?: string };
}
const BASE = [
  'deploy',
  '--target',
  vps.target,
  '--ssh-private-key-file',
  vps.sshPrivateKeyFile,
  '--known-hosts-file',
  vps.knownHostsFile,
  '--cache',
  'false',
  '--json',
];
async function deploy(
  args: string[],
  timeoutMs = 6 * 60_000,
  withEnv: NodeJS.ProcessEnv = env,
): Promise<{ r: CliResult; doc: DeployDoc; seconds: number }> {
  const start = Date.now();
  // --cache false unless the test sets it
  const base = args.includes('--cache')
    ? BASE.filter((a, i) => a !== '--cache' && BASE[i - 1] !== '--cache')
    : BASE;
  const r = await runCli([...base, ...args], { env: withEnv, timeoutMs });
  const seconds = (Date.now() - start) / 1000;
  let doc: DeployDoc;
  try {
    doc = JSON.parse(r.stdout) as DeployDoc;
  } catch {
    throw new Error(`no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  console.log(
    `deploy ${args.join(' ')}: exit ${r.code} in ${seconds.toFixed(1)} s, changed ${doc.changed}, ${doc.pathsSent} paths / ${doc.bytesSent} bytes sent, rolled back ${doc.rolledBack}${doc.rollback ? ` by ${doc.rollback.by}` : ''}`,
  );
  return { r, doc, seconds };
}
/** NAR bytes of these store paths, by the runner's own Nix. */
function narBytes(paths: string[]): number {
  const out = execFileSync('nix-store', ['-q', '--size', ...paths], { encoding: 'utf8' });
  return out
    .trim()
    .split('\n')
    .reduce((a, l) => a + Number(l), 0);
}
function closure(path: string): string[] {
  return execFileSync('nix-store', ['-qR', path], { encoding: 'utf8' }).trim().split('\n');
}

beforeAll(async () => {
  freshVm(vps);
  // Installed NixOS as far as the product can tell, with no system profile yet.
  await onVps('touch /etc/NIXOS; rm -rf /nix/var/nix/profiles/system* /run/current-system');
  // "default via GW dev IFACE …" and "N: IFACE inet ADDR/PREFIX …"
  const route = (await onVps('ip -o -4 route show default')).split(/\s+/);
  const dev = route[route.indexOf('dev') + 1]!;
  const addr = (await onVps(`ip -o -4 addr show dev ${dev}`)).split(/\s+/)[3]!;
  network = [dev, addr, route[route.indexOf('via') + 1]!];
  flake = makeFlake('flake', '--authorized-key', deployKey);
});

describe('deploy to the test VPS', () => {
  it('the first deploy copies the whole closure, switches, and says there was nothing to roll back to', async () => {
    const { r, doc } = await deploy(['--flake', `${flake}#ok`]);
    expect(r.code).toBe(0);
    expect(doc.systemPath).toBe(v.ok);
    expect(doc.previousSystemPath).toBe('');
    expect(doc.nothingToRollBackTo).toBe(true);
    expect(doc.changed).toBe(true);
    // The fresh guest has none of it: what was sent is the whole closure, as the runner's Nix sizes it.
    expect(doc.bytesSent).toBe(narBytes(closure(v.ok)));
    expect(r.stderr).toMatch(/first deploy: nothing to roll back to/);
    expect(await runningSystem()).toBe(v.ok);
    expect((await onVps('readlink -f /nix/var/nix/profiles/system')).trim()).toBe(v.ok);
    // Our own switch: the system built here, copied, switched to; nixos-rebuild never ran.
    expect(doc.rebuild?.args).toEqual(['switch', v.ok]);
    expect(doc.rebuild?.from).toMatch(/nix-copy-closure, then switch-to-configuration/);
    expect(rebuildCalls()).toBe(0);
  });

  it('a configuration without the deploy key stops at the preflight: nothing runs on the host', async () => {
    const keyless = makeFlake('keyless');
    const calls = rebuildCalls();
    const { r, doc } = await deploy(['--flake', `${keyless}#ok2`]);
    expect(r.code).not.toBe(0);
    expect(doc.error?.message).toMatch(
      /preflight found 1 error\(s\) in the configuration: deploy-key-missing; nothing was changed/,
    );
    expect(rebuildCalls()).toBe(calls);
    expect(await runningSystem()).toBe(v.ok);
  });

  it('an unchanged system: one probe, no nixos-rebuild, nothing copied; it says no change', async () => {
    const calls = rebuildCalls();
    const { r, doc } = await deploy(['--flake', `${flake}#ok`]);
    expect(r.code).toBe(0);
    expect(doc.changed).toBe(false);
    expect(doc.unchanged).toBe(true);
    expect(doc.bytesSent).toBe(0);
    expect(doc.pathsSent).toBe(0);
    expect(doc.previousSystemPath).toBe(v.ok);
    expect(doc.systemPath).toBe(v.ok);
    expect(r.stderr).toMatch(/no change: the host runs/);
    expect(r.stderr).toMatch(/build: skipped \(the host already runs/);
    expect(rebuildCalls()).toBe(calls);
  });

  it('force-switch switches to what the host already runs, and says it was forced', async () => {
    const calls = rebuildCalls();
    const { r, doc } = await deploy(['--flake', `${flake}#ok`, '--force-switch', 'true']);
    expect(r.code).toBe(0);
    expect(doc.forced).toBe(true);
    expect(doc.unchanged).toBe(false);
    expect(doc.rebuild?.args).toEqual(['switch', v.ok]);
    expect(rebuildCalls()).toBe(calls);
    expect(await runningSystem()).toBe(v.ok);
  });

  it('a one-package change (prebuilt --toplevel) reports the version diff and the bytes of the new paths', async () => {
    const { r, doc } = await deploy(['--toplevel', v.ok2]);
    expect(r.code).toBe(0);
    expect(doc.changed).toBe(true);
    expect(doc.previousSystemPath).toBe(v.ok);
    expect(doc.systemPath).toBe(v.ok2);
    const fresh = closure(v.ok2).filter((p) => !closure(v.ok).includes(p));
    expect(doc.pathsSent).toBe(fresh.length);
    expect(doc.bytesSent).toBe(narBytes(fresh));
    expect(doc.diff?.changed).toEqual(
      expect.arrayContaining([{ name: 'hello-standin', from: '1.0', to: '2.0' }]),
    );
    expect(doc.rebootNeeded).toEqual([]);
    expect(await runningSystem()).toBe(v.ok2);
  });

  it("build-host: nixos-rebuild, from the configuration's own nixpkgs when none is on PATH (never a registry's)", async () => {
    const calls = rebuildCalls();
    const buildHost = `${cfg.target!.user}@${cfg.target!.host}`;
    const { r, doc } = await deploy(
      ['--flake', `${flake}#ok2`, '--force-switch', 'true', '--build-host', buildHost],
      6 * 60_000,
      { ...env, PATH: process.env.PATH },
    );
    expect(r.code).toBe(0);
    // it got the flake, the target, the build host and our pinned ssh options
    const lines = readFileSync(rebuildLog, 'utf8').trim().split('\n');
    const call = JSON.parse(lines[lines.length - 1]!) as { argv: string[]; NIX_SSHOPTS: string };
    expect(call.argv).toEqual([
      'switch',
      '--flake',
      `${flake}#ok2`,
      '--target-host',
      buildHost,
      '--build-host',
      buildHost,
    ]);
    expect(call.NIX_SSHOPTS).toMatch(/StrictHostKeyChecking=yes/);
    expect(call.NIX_SSHOPTS).toMatch(/UserKnownHostsFile=\S+known_hosts/);
    expect(r.stderr).toMatch(
      /nixos-rebuild: none on PATH; building it from the configuration's nixpkgs/,
    );
    expect(doc.rebuild?.from).toMatch(
      /^\/nix\/store\/[a-z0-9]{32}-nixos-rebuild-standin\/bin\/nixos-rebuild \(the configuration's nixpkgs, for x86_64-linux\)$/,
    );
    expect(rebuildCalls()).toBe(calls + 1);
    expect(await runningSystem()).toBe(v.ok2);
  });

  it('exit 4 from switch-to-configuration: the failed unit is named and the previous generation is back', async () => {
    const { r, doc } = await deploy(['--flake', `${flake}#exit4`]);
    expect(r.code).not.toBe(0);
    expect(doc.rolledBack).toBe(true);
    expect(doc.rollback?.by).toBe('runner');
    expect(doc.failedUnits).toContain('vps-standin-broken.service');
    expect(doc.error?.message).toMatch(/failed units.*vps-standin-broken\.service/);
    expect(doc.systemPath).toBe(v.exit4);
    expect(await runningSystem()).toBe(v.ok2);
    expect((await onVps('readlink -f /nix/var/nix/profiles/system')).trim()).toBe(v.ok2);
  });

  it('a failing health-check command rolls back', async () => {
    const { r, doc } = await deploy([
      '--flake',
      `${flake}#unhealthy`,
      '--health-check',
      'grep -qx ok /run/current-system/health',
      '--health-timeout',
      '4',
    ]);
    expect(r.code).not.toBe(0);
    expect(doc.rolledBack).toBe(true);
    expect(doc.checks.find((c) => c.name.startsWith('health-check'))?.ok).toBe(false);
    expect(doc.error?.message).toMatch(/health check failed/);
    expect(await runningSystem()).toBe(v.ok2);
  });

  it('a failing health-url (checked from the runner) rolls back', async () => {
    const server: Server = createServer((_req, res) => {
      res.writeHead(503);
      res.end('down');
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    const port = (server.address() as { port: number }).port;
    try {
      const { r, doc } = await deploy([
        '--flake',
        `${flake}#ok`,
        '--health-url',
        `http://127.0.0.1:${port}/health`,
        '--health-timeout',
        '4',
      ]);
      expect(r.code).not.toBe(0);
      expect(doc.rolledBack).toBe(true);
      expect(doc.checks.find((c) => c.name.startsWith('health-url'))?.detail).toMatch(/HTTP 503/);
    } finally {
      server.close();
    }
    expect(await runningSystem()).toBe(v.ok2);
  });

  // A system that cuts sshd, rolled back by the target itself within confirm-timeout: the end to
  // end's rollback step (test/e2e/run.sh), through the action entry.

  it('rollback false keeps a failing system and says so', async () => {
    const { r, doc } = await deploy([
      '--flake',
      `${flake}#unhealthy`,
      '--health-check',
      'grep -qx ok /run/current-system/health',
      '--health-timeout',
      '3',
      '--rollback',
      'false',
    ]);
    expect(r.code).not.toBe(0);
    expect(doc.rolledBack).toBe(false);
    expect(doc.error?.fix).toMatch(/rollback is false/);
    expect(await runningSystem()).toBe(v.unhealthy);
    // back to a good state for what follows
    const back = await deploy(['--toplevel', v.ok2]);
    expect(back.r.code).toBe(0);
    expect(await runningSystem()).toBe(v.ok2);
  });

  it('action boot of a new kernel sets the boot default, activates nothing and says a reboot is needed', async () => {
    const { r, doc } = await deploy(['--flake', `${flake}#new-kernel`, '--action', 'boot']);
    expect(r.code).toBe(0);
    expect(doc.changed).toBe(true);
    expect(doc.systemPath).toBe(v['new-kernel']);
    expect(doc.rebootNeeded).toContain('kernel');
    expect(await runningSystem()).toBe(v.ok2);
    expect((await onVps('readlink -f /nix/var/nix/profiles/system')).trim()).toBe(v['new-kernel']);
  });

  it('a closure cache that refuses the save leaves the deploy green, with a warning', async () => {
    const refusing = mkdtempSync(join(tmpdir(), 'vps-nixos-refusing-'));
    writeFileSync(join(refusing, 'entries'), 'a file where the entries directory should be');
    const { r, doc } = await deploy([
      '--flake',
      `${flake}#ok2`,
      '--cache',
      'true',
      '--cache-dir',
      refusing,
    ]);
    expect(r.code).toBe(0);
    expect(doc.cacheSave?.saved).toBe('failed');
    expect(r.stderr).toMatch(/warning: cache: not saved .*the deploy is not affected/);
    expect(await runningSystem()).toBe(v.ok2);
  });

  it('the action deploys too: outputs and a summary that says what changed', async () => {
    const step = runStep(
      'main',
      {
        target: vps.target,
        'ssh-private-key': readFileSync(vps.sshPrivateKeyFile, 'utf8'),
        'known-hosts': readFileSync(vps.knownHostsFile, 'utf8'),
        toplevel: v.ok,
        cache: 'false',
      },
      env,
      undefined,
      6 * 60_000,
    );
    if (step.code !== 0) console.log(step.output);
    expect(step.code).toBe(0);
    expect(step.outputs['system-path']).toBe(v.ok);
    expect(step.outputs['previous-system-path']).toBe(v.ok2);
    expect(step.outputs.changed).toBe('true');
    expect(step.outputs['rolled-back']).toBe('false');
    expect(step.outputs.diff).toMatch(/hello-standin \| 2\.0 \| 1\.0/);
    expect(step.summary).toContain('### Deploy');
    expect(step.summary).toMatch(/switched to .*nixos-system-vps-standin/);
    expect(await runningSystem()).toBe(v.ok);
  });
});
