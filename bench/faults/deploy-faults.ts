/**
 * Faults during the deploy, on the test VPS made "installed NixOS" as the deploy suite makes it
 * (/etc/NIXOS, the stand-in toplevels): each from the `deployed`
 * snapshot, where the host runs `ok`. Each fault deploys `ok2` (or a broken variant); then the
 * host must answer behind its pin and run `ok` or `ok2`, never a broken one, and a re-run of the
 * good deploy must finish with `ok2`.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { CliResult } from '../../__tests__/helpers/cli';
import { ROOT, since, why, type FaultRow, type World } from './world';

interface DeployDoc {
  rolledBack?: boolean;
  rollback?: { by: string; reason: string };
  error?: { message: string };
}
const doc = (r: CliResult): DeployDoc => {
  try {
    return JSON.parse(r.stdout) as DeployDoc;
  } catch {
    return {};
  }
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Pushes its rows into `rows` as each fault ends. */
export async function deployFaults(w: World, rows: FaultRow[]): Promise<void> {
  const v = w.s.variants as Record<'ok' | 'ok2' | 'exit4' | 'unhealthy' | 'cut-sshd', string>;
  // The host as the deploy suite prepares it, its static network in the configuration.
  w.snapshot('loadvm', 'fresh');
  await w.on('touch /etc/NIXOS; rm -rf /nix/var/nix/profiles/system* /run/current-system');
  const route = (await w.on('ip -o -4 route show default')).split(/\s+/);
  const dev = route[route.indexOf('dev') + 1] as string;
  const addr = (await w.on(`ip -o -4 addr show dev ${dev}`)).split(/\s+/)[3] as string;
  const deployKey = execFileSync('ssh-keygen', ['-y', '-f', w.vps.sshPrivateKeyFile], {
    encoding: 'utf8',
  }).trim();
  const flake = execFileSync(
    join(ROOT, 'test/standins/make-flake.sh'),
    [
      join(w.work, 'flake'),
      '--static',
      dev,
      addr,
      route[route.indexOf('via') + 1] as string,
      '--authorized-key',
      deployKey,
    ],
    { encoding: 'utf8' },
  ).trim();
  const deploy = (
    variant: string,
    extra: string[] = [],
    opts: { killOn?: RegExp; onStderr?: (all: string) => void } = {},
  ) =>
    w.cli(['deploy', '--flake', `${flake}#${variant}`, '--cache', 'false', '--json', ...extra], {
      ...opts,
      timeoutMs: 6 * 60_000,
    });
  const first = await deploy('ok');
  if (first.code !== 0) throw new Error(`the first deploy failed: ${why(first)}\n${first.stderr}`);
  w.snapshot('savevm', 'deployed');

  const running = async () => (await w.who(180_000))?.currentSystem ?? '';
  const name = (p: string) =>
    Object.entries(v).find(([, path]) => path === p)?.[0] ?? (p ? p.slice(44) : 'nothing');
  /** One fault: `inject` runs the faulty deploy; then what runs, and the re-run of ok2. */
  const fault = async (
    f: string,
    phase: string,
    inject: () => Promise<{ r: CliResult; note?: string; waitMs?: number }>,
    expect: (r: CliResult, runs: string) => string | undefined,
  ) => {
    w.snapshot('loadvm', 'deployed');
    const t0 = Date.now();
    const { r, note, waitMs } = await inject();
    // what runs, read again until it is what the fault should end in (a rollback by the target
    // takes its confirm window), at most `waitMs` longer
    const until = Date.now() + (waitMs ?? 0);
    let runs = await running();
    while (expect(r, name(runs)) !== undefined && Date.now() < until) {
      await sleep(3000);
      runs = await running();
    }
    const reachable = runs !== '';
    const bad = expect(r, name(runs));
    const d = doc(r);
    const happened = `${r.code === -9 ? 'runner killed' : `exit ${r.code}`}${d.rolledBack ? `, rolled back by ${d.rollback?.by}` : ''}: ${note ?? why(r)}; then ${name(runs)} runs`;
    const t1 = Date.now();
    const again = await deploy('ok2');
    const after = await running();
    const recovered =
      again.code === 0 && after === v.ok2
        ? `re-run of ok2: exit 0, ok2 runs (${since(t1).toFixed(0)} s)`
        : `re-run of ok2 did NOT finish: ${why(again)}; ${name(after)} runs`;
    rows.push({
      fault: f,
      phase,
      happened: bad ? `${happened} — NOT AS EXPECTED: ${bad}` : happened,
      recovered,
      seconds: since(t0),
      reachable,
      spareUntouched: w.spareUntouched(),
      ok: !bad && reachable && again.code === 0 && after === v.ok2,
      outputs: [r.stdout, r.stderr, again.stdout, again.stderr],
    });
  };
  const oldOrNew = (_r: CliResult, runs: string) =>
    runs === 'ok' || runs === 'ok2' ? undefined : `${runs} runs`;
  const rolledBackTo = (by: string) => (r: CliResult, runs: string) => {
    const d = doc(r);
    if (r.code === 0) return 'the run succeeded';
    if (!d.rolledBack || d.rollback?.by !== by) return `not rolled back by the ${by}`;
    return runs === 'ok' ? undefined : `${runs} runs, not ok`;
  };

  await fault(
    'a configuration that kills sshd',
    'deploy',
    async () => ({ r: await deploy('cut-sshd', ['--confirm-timeout', '20']) }),
    rolledBackTo('target'),
  );
  await fault(
    'a failing health check',
    'deploy',
    async () => ({
      r: await deploy('unhealthy', [
        '--health-check',
        'grep -qx ok /run/current-system/health',
        '--health-timeout',
        '3',
      ]),
    }),
    rolledBackTo('runner'),
  );
  await fault(
    'switch-to-configuration exits 4 (a unit failed)',
    'deploy',
    async () => ({ r: await deploy('exit4') }),
    rolledBackTo('runner'),
  );
  await fault(
    'runner killed after arming the rollback guard, before the switch',
    'deploy',
    async () => ({
      r: await deploy('ok2', ['--confirm-timeout', '20'], {
        killOn: /rollback armed on the target/,
      }),
      note: 'the guard stays armed with nothing switched',
      waitMs: 30_000,
    }),
    (r, runs) => (r.code !== -9 ? 'not killed' : runs === 'ok' ? undefined : `${runs} runs`),
  );
  await fault(
    'runner killed mid-switch (the switch goes on alone, no one confirms)',
    'deploy',
    async () => ({
      r: await deploy('ok2', ['--confirm-timeout', '20'], {
        killOn: /activating the configuration/,
      }),
      note: 'switch-to-configuration goes on in its transient unit; the guard is never confirmed',
      waitMs: 60_000,
    }),
    (r, runs) =>
      r.code !== -9 ? 'not killed' : runs === 'ok' ? undefined : `${runs} runs: not rolled back`,
  );
  await fault(
    'nix-copy-closure killed mid-copy',
    'deploy',
    async () => {
      // killed as soon as it exists: its ssh connection alone takes longer than one poll (by its
      // command line: a link to nix, its process name is cut to 15 characters)
      let killed = false;
      const poll = setInterval(() => {
        if (killed) return;
        try {
          execFileSync('pkill', ['-KILL', '-f', '^nix-copy-closure --to ']);
          killed = true;
        } catch {
          // not started yet, or ended
        }
      }, 50);
      const r = await deploy('ok2', ['--confirm-timeout', '20']).finally(() => clearInterval(poll));
      return {
        r,
        note: killed
          ? 'SIGKILL to nix-copy-closure while it copied'
          : 'nix-copy-closure NOT killed',
        waitMs: 5_000,
      };
    },
    (r, runs) =>
      r.code === 0
        ? 'the run succeeded: the copy was not cut'
        : runs === 'ok'
          ? undefined
          : `${runs} runs, not ok`,
  );
  await fault(
    'link cut 15 s during the copy and switch',
    'deploy',
    async () => {
      let cut: Promise<void> | undefined;
      const r = await deploy('ok2', ['--confirm-timeout', '60'], {
        onStderr: (all) => {
          if (!cut && /rollback armed on the target/.test(all)) cut = w.cutLink(15_000);
        },
      });
      await cut;
      return { r };
    },
    oldOrNew,
  );
  await fault(
    'sshd killed on the target during the copy and switch',
    'deploy',
    async () => {
      let killedSshd = false;
      const r = await deploy('ok2', ['--confirm-timeout', '30'], {
        onStderr: (all) => {
          if (killedSshd || !/rollback armed on the target/.test(all)) return;
          killedSshd = true;
          void w
            .on(
              'setsid -f sh -c "sleep 1; systemctl kill -s KILL ssh.service" </dev/null >/dev/null 2>&1',
            )
            .catch(() => undefined);
        },
      });
      return { r, note: 'systemctl kill -s KILL ssh.service', waitMs: 35_000 };
    },
    oldOrNew,
  );
  // The host key changed between runs: refused before anything changes; with the key back, ok.
  {
    w.snapshot('loadvm', 'deployed');
    const t0 = Date.now();
    await w.on(
      'cp /etc/ssh/ssh_host_ed25519_key /root/hk.bak && rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key && (systemctl restart ssh.service &)',
    );
    await sleep(3000);
    const r = await deploy('ok2');
    const refused = r.code !== 0 && /host key|presented/i.test(`${why(r)} ${r.stderr}`);
    // put the pinned key back over the provider's console (here: the VM's snapshot state)
    w.snapshot('loadvm', 'deployed');
    const again = await deploy('ok2');
    const after = await running();
    rows.push({
      fault: 'the host key changed between runs',
      phase: 'probe',
      happened: refused ? `refused before anything ran: ${why(r)}` : `NOT refused: ${why(r)}`,
      recovered:
        again.code === 0 && after === v.ok2
          ? 'with the pinned key back, the re-run deploys ok2'
          : `re-run failed: ${why(again)}`,
      seconds: since(t0),
      reachable: after !== '',
      spareUntouched: w.spareUntouched(),
      ok: refused && again.code === 0 && after === v.ok2,
      outputs: [r.stdout, r.stderr, again.stdout, again.stderr],
    });
  }
}
