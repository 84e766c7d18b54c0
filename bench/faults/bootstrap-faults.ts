/**
 * Faults during the bootstrap (kexec path), on the test VPS. Chains from the `fresh` snapshot: each
 * fault interrupts one run, the next run is the recovery (it must resume, never start over what
 * was done), the last one finishes; then faults from the `installer` snapshot (the installer
 * answering, nothing on the disk yet), each followed by a re-run that must finish.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CliResult } from '../../__tests__/helpers/cli';
import { since, why, type FaultRow, type World } from './world';

interface BootDoc {
  phases: { name: string; status: string; seconds: number }[];
  host: { isNixos: boolean; currentSystem: string | null } | null;
  error?: { message: string };
}

const doc = (r: CliResult): BootDoc | undefined => {
  try {
    return JSON.parse(r.stdout) as BootDoc;
  } catch {
    return undefined;
  }
};

/** "prep done, kexec skipped, …" of a run. */
const phasesOf = (r: CliResult): string =>
  doc(r)
    ?.phases.map((p) => `${p.name} ${p.status}`)
    .join(', ') ?? `exit ${r.code}`;

function bootstrapArgs(w: World, tarball?: { path: string; sha256: string }): string[] {
  return [
    'bootstrap',
    '--kexec-tarball',
    tarball?.path ?? w.s.kexecTarball,
    ...(tarball ? ['--kexec-tarball-sha256', tarball.sha256] : []),
    '--toplevel',
    w.s.toplevel,
    '--disk-script',
    w.s.diskScript,
    '--confirm-wipe',
    '/dev/vda',
    '--json',
  ];
}

/** After a fault: what answers, and whether the spare disk is untouched. */
async function after(w: World, waitMs = 180_000) {
  const who = await w.who(waitMs);
  return {
    who,
    reachable: who !== undefined,
    spareUntouched: w.spareUntouched(),
    answers: who
      ? who.currentSystem
        ? `the installed system (${who.currentSystem === w.s.toplevel ? 'the toplevel' : who.currentSystem})`
        : who.variantId === 'installer'
          ? 'the installer'
          : 'the distribution'
      : 'nothing',
  };
}

/** The installed system verifies: every path's contents match its registration. */
async function storeVerifies(w: World): Promise<string> {
  try {
    await w.on(
      'ns=$(ls -d /nix/store/*-nix-standin*/bin/nix-store /nix/store/*-nix-*/bin/nix-store 2>/dev/null | head -n 1); "${ns:-nix-store}" --verify --check-contents 2>&1 | grep -v "^reading\\|^checking" | (! grep .)',
      600_000,
    );
    return 'store verifies (--check-contents)';
  } catch (err) {
    return `store does NOT verify: ${(err as Error).message.slice(0, 120)}`;
  }
}

/** One step of a chain: a run with a fault in it, then (optionally) something to do after it. */
interface Step {
  fault: string;
  phase: string;
  run: () => Promise<CliResult>;
  /** undefined when the fault happened as meant; else what went otherwise. */
  happened: (r: CliResult) => string | undefined;
  then?: () => Promise<void> | void;
}

/**
 * Runs a chain: each step's run carries a fault; the next step's run (or `finish`) is its
 * recovery, which must resume, and the last must leave the toplevel installed and verifying.
 */
async function chain(
  w: World,
  steps: Step[],
  finish: () => Promise<CliResult>,
): Promise<FaultRow[]> {
  const rows: FaultRow[] = [];
  let pending: FaultRow | undefined;
  const close = (r: CliResult, seconds: number) => {
    if (!pending) return;
    const resumed = (r.stderr.match(/\n([a-z-]+): already done \(/g) ?? []).map((m) =>
      m.split(':')[0]!.trim(),
    );
    pending.recovered = `re-run ${resumed.length ? `resumed (${resumed.join(', ')} already done)` : 'ran'}: ${phasesOf(r)}`;
    pending.seconds = seconds;
    pending.outputs.push(r.stdout, r.stderr);
    rows.push(pending);
    pending = undefined;
  };
  for (const step of steps) {
    const t0 = Date.now();
    const r = await step.run();
    close(r, since(t0));
    const bad = step.happened(r);
    // Not as meant: the run's last lines go to the part's log, which the report keeps.
    if (bad)
      process.stderr.write(
        `faults: ${step.fault}: not as meant (${bad}); the run's last lines:\n${r.stderr
          .split('\n')
          .filter((l) => !l.startsWith('::add-mask::'))
          .slice(-40)
          .map((l) => `  | ${l}`)
          .join('\n')}\n`,
      );
    const a = await after(w);
    pending = {
      fault: step.fault,
      phase: step.phase,
      happened: `${r.code === -9 ? 'runner killed' : `exit ${r.code}`}: ${why(r)}; then ${a.answers} answers${bad ? ` — NOT AS MEANT: ${bad}` : ''}`,
      recovered: '',
      seconds: 0,
      reachable: a.reachable,
      spareUntouched: a.spareUntouched,
      ok: bad === undefined && a.reachable && a.spareUntouched,
      outputs: [r.stdout, r.stderr],
    };
    await step.then?.();
  }
  const t0 = Date.now();
  const r = await finish();
  const installed = r.code === 0 && doc(r)?.host?.currentSystem === w.s.toplevel;
  const last = pending;
  close(r, since(t0));
  if (last) {
    if (!installed) {
      last.ok = false;
      last.recovered += ` — did NOT finish: ${why(r)}`;
    } else {
      const verified = await storeVerifies(w);
      last.recovered += `; installed, ${verified}`;
      if (!verified.startsWith('store verifies')) last.ok = false;
    }
  }
  return rows;
}

/** A tarball whose `run` loads nothing: the kexec does not take. */
function inertTarball(dir: string): { path: string; sha256: string } {
  mkdirSync(join(dir, 'kexec'), { recursive: true });
  writeFileSync(join(dir, 'kexec/run'), '#!/bin/sh\necho "loads nothing"\n', { mode: 0o755 });
  // a kernel and an initrd to be sized (the plan checks them against the RAM); run ignores them
  writeFileSync(join(dir, 'kexec/bzImage'), Buffer.alloc(64 * 1024));
  writeFileSync(join(dir, 'kexec/initrd'), Buffer.alloc(64 * 1024));
  execFileSync('tar', ['-C', dir, '-cf', join(dir, 'inert.tar'), 'kexec']);
  const data = readFileSync(join(dir, 'inert.tar'));
  return { path: join(dir, 'inert.tar'), sha256: createHash('sha256').update(data).digest('hex') };
}

const killed = (r: CliResult) => (r.code === -9 ? undefined : `not killed: ${why(r)}`);

/** The largest file of the toplevel's closure (on the runner): the corruption's target. */
function largestFile(toplevel: string): { path: string; size: number; byte: number } {
  const out = execFileSync(
    'sh',
    [
      '-c',
      `find $(nix-store -qR ${toplevel}) -type f -printf '%s %p\\n' 2>/dev/null | sort -n | tail -n 1`,
    ],
    { encoding: 'utf8' },
  ).trim();
  const [size = '0', ...rest] = out.split(' ');
  const path = rest.join(' ');
  // the one byte that will flip, not the whole file (the root tar is hundreds of MiB)
  const byte = Buffer.alloc(1);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, byte, 0, 1, Math.floor(Number(size) / 2));
  } finally {
    closeSync(fd);
  }
  return { path, size: Number(size), byte: byte[0] ?? 0 };
}

/**
 * The bootstrap faults in sections that can run on separate VPSes: `chains` (1 and 2: from the
 * distribution; it saves the `installer` snapshot), `installer-a` and `installer-b` (3 and 4: from
 * the installer, each fault followed by its recovery). A section from the installer on a VPS
 * that has no `installer` snapshot yet makes one first (a bootstrap stopped once the kexec is
 * done).
 */
export const BOOTSTRAP_SECTIONS = ['chains', 'installer-a', 'installer-b'] as const;
export type BootstrapSection = (typeof BOOTSTRAP_SECTIONS)[number];

/** Pushes its rows into `rows` as each part ends, so a part that stops keeps the earlier ones. */
export async function bootstrapFaults(
  w: World,
  rows: FaultRow[],
  sections: readonly BootstrapSection[] = BOOTSTRAP_SECTIONS,
): Promise<void> {
  const boot = (opts: { killOn?: RegExp; onStderr?: (all: string) => void } = {}) =>
    w.cli(bootstrapArgs(w), opts);
  let cut: Promise<void> | undefined;
  const cutRun = async (re: RegExp, ms: number) => {
    cut = undefined;
    const r = await boot({
      onStderr: (all) => {
        if (!cut && re.test(all)) cut = w.cutLink(ms);
      },
    });
    await cut;
    return r;
  };
  const went = (what: string) => () =>
    cut === undefined ? `the cut never came (${what})` : undefined;

  let haveInstaller = false;
  if (sections.includes('chains')) {
    // 1. The runner killed at each phase boundary and mid-stream; the link cut during the reboot
    // wait. The installer, answering before anything is on the disk, is kept for part 3.
    w.snapshot('loadvm', 'fresh');
    rows.push(
      ...(await chain(
        w,
        [
          {
            fault: 'runner killed after prep',
            phase: 'prep',
            run: () => boot({ killOn: /prep: done in/ }),
            happened: killed,
          },
          {
            fault: 'runner killed mid-upload of the installer',
            phase: 'kexec',
            run: () => boot({ killOn: /uploading [\d.]+ MiB to/ }),
            happened: killed,
          },
          {
            fault: 'runner killed after the kexec',
            phase: 'kexec',
            run: () => boot({ killOn: /kexec: done in/ }),
            happened: killed,
            then: () => {
              w.snapshot('savevm', 'installer');
              haveInstaller = true;
            },
          },
          {
            fault: 'runner killed mid-transfer of the closure',
            phase: 'install',
            run: () => boot({ killOn: /sending \d+ of \d+ paths/ }),
            happened: killed,
          },
          {
            fault: 'runner killed after the install, before the reboot',
            phase: 'install',
            run: () => boot({ killOn: /install: done in/ }),
            happened: killed,
          },
          {
            fault: 'link cut 30 s during the reboot wait',
            phase: 'reboot',
            run: () => cutRun(/── phase reboot/, 30_000),
            happened: went('reboot'),
          },
        ],
        () => boot(),
      )),
    );

    // 2. From the distribution again: its disk full, a kexec that does not take, the link cut
    // mid-upload (that run goes on to the end).
    w.snapshot('loadvm', 'fresh');
    const inert = inertTarball(join(w.work, 'inert'));
    rows.push(
      ...(await chain(
        w,
        [
          {
            fault: "the distribution's disk full before the kexec",
            phase: 'kexec',
            run: async () => {
              await w.on(
                'fallocate -l "$(df --output=avail -B1 / | tail -n 1)" /fill 2>/dev/null || true; sync',
              );
              const r = await boot();
              await w.on('rm -f /fill');
              return r;
            },
            happened: (r) =>
              r.code !== 0 && /free/.test(why(r)) ? undefined : `not refused for space: ${why(r)}`,
          },
          {
            fault: 'a kexec that does not take (the old system keeps answering)',
            phase: 'kexec',
            run: () => w.cli(bootstrapArgs(w, inert)),
            happened: (r) =>
              r.code !== 0 && /did not take/.test(why(r)) ? undefined : `not diagnosed: ${why(r)}`,
          },
          {
            fault: 'link cut 20 s mid-upload of the installer',
            phase: 'kexec',
            run: () => cutRun(/uploading [\d.]+ MiB to/, 20_000),
            happened: went('upload'),
          },
        ],
        () => boot(),
      )),
    );
  }
  if (!sections.includes('installer-a') && !sections.includes('installer-b')) return;
  if (!haveInstaller) {
    // this VPS has not been through chain 1: the installer answering, nothing on the disk yet
    w.snapshot('loadvm', 'fresh');
    const r = await boot({ killOn: /kexec: done in/ });
    if (r.code !== -9) throw new Error(`could not reach the installer: ${why(r)}`);
    if ((await w.who())?.variantId !== 'installer')
      throw new Error('the installer does not answer');
    w.snapshot('savevm', 'installer');
  }

  // 3. In the installer, on the target's side: a corrupted byte in what arrived, sshd killed,
  // memory exhausted, the link cut mid-transfer.
  const big = largestFile(w.s.toplevel);
  let killedSshd = false;
  /** What the memory hog's session said: its exit status and the kernel's OOM lines about it. */
  let hogSaid = '';
  const flip = (big.byte ^ 0xff).toString(8).padStart(3, '0');
  const fromInstaller: Step[] = [
    {
      fault: 'a corrupted byte in a received store path (before registration)',
      phase: 'install',
      run: async () => {
        // a faulty disk or stream: the byte in the middle of the largest file flips once the
        // file has arrived whole, before the runner asks for the hashes
        const f = `/mnt${big.path}`;
        await w.on(
          `setsid -f sh -c 'while [ "$(stat -c %s ${f} 2>/dev/null)" != ${big.size} ]; do sleep 0.05; done; printf "\\${flip}" | dd of=${f} bs=1 seek=${Math.floor(big.size / 2)} count=1 conv=notrunc 2>/dev/null; echo flipped > /run/flipped' </dev/null >/dev/null 2>&1`,
        );
        return boot();
      },
      happened: (r) =>
        r.code !== 0 && /differ from this runner/.test(why(r))
          ? undefined
          : `not caught: ${why(r)}`,
    },
    {
      fault: 'sshd killed on the target mid-transfer',
      phase: 'install',
      run: () =>
        boot({
          onStderr: (all) => {
            if (/sending \d+ of \d+ paths/.test(all) && !killedSshd) {
              killedSshd = true;
              void w
                .on('setsid -f sh -c "sleep 1; pkill -KILL -x sshd" </dev/null >/dev/null 2>&1')
                .catch(() => undefined);
            }
          },
        }),
      happened: () => (killedSshd ? undefined : 'sshd was never killed (no transfer)'),
    },
    {
      fault: 'memory exhausted on the target during the install',
      phase: 'install',
      // Once the closure streams, a process eats all memory until the kernel's OOM killer stops
      // it; the row checks it was the hog that was killed (exit 137, the kernel's line) and the
      // install went on. Random bytes, not zeros: zram stores a page of zeros for nothing, so a
      // hog of zeros first fills the whole zram device (run 7: not stopped within 120 s under
      // load); incompressible pages fill the RAM itself.
      run: async () => {
        let hog: Promise<string> | undefined;
        const r = await boot({
          onStderr: (all) => {
            if (!hog && /sending \d+ of \d+ paths/.test(all))
              hog = w
                .on(
                  'sh -c \'tr -d "\\n" </dev/urandom | tail; echo "hog exit $?"; dmesg | grep -c "Killed process .*(tail)"\' || true',
                  300_000,
                )
                .catch((err: Error) => `hog session: ${err.message}`);
          },
        });
        hogSaid = hog ? (await hog).replace(/\s+/g, ' ').trim() : 'no transfer';
        return r;
      },
      happened: () =>
        /^hog exit 137 [1-9]/.test(hogSaid)
          ? undefined
          : `the memory hog was not stopped by the OOM killer: ${hogSaid}`,
    },
    {
      fault: 'link cut 20 s mid-transfer of the closure',
      phase: 'install',
      run: () => cutRun(/sending \d+ of \d+ paths/, 20_000),
      happened: went('transfer'),
    },
  ];
  // each from the installer snapshot: a recovery that finishes would leave the next one nothing;
  // installer-a takes the first two, installer-b the rest and part 4
  const mine = fromInstaller.filter((_, i) =>
    sections.includes(i < 2 ? 'installer-a' : 'installer-b'),
  );
  for (const step of mine) {
    w.snapshot('loadvm', 'installer');
    rows.push(...(await chain(w, [step], () => boot())));
  }
  if (!sections.includes('installer-b')) return;

  // 4. The target reset mid-install: the old system is gone from the disk and the new one is
  // not there yet. Nothing boots remotely from that; the row says so.
  w.snapshot('loadvm', 'installer');
  {
    const t0 = Date.now();
    let reset = false;
    // the runner waits for the host to come back; 4 minutes show what it does meanwhile
    const r = await w
      .cli(bootstrapArgs(w), {
        timeoutMs: 240_000,
        onStderr: (all) => {
          if (!reset && /sending \d+ of \d+ paths/.test(all)) {
            reset = true;
            setTimeout(() => w.monitor('system_reset'), 2000);
          }
        },
      })
      .catch((err: Error): CliResult => ({
        code: -2,
        stdout: '',
        stderr: `still running after 240 s, stopped: ${err.message.split('\n').slice(-3).join(' | ')}`,
      }));
    const a = await after(w, 60_000);
    const again = a.reachable ? await boot() : undefined;
    rows.push({
      fault: 'the target reset mid-install (after the wipe)',
      phase: 'install',
      happened: `exit ${r.code}: ${why(r)}; then ${a.answers} answers`,
      recovered: again
        ? `re-run: ${phasesOf(again)}`
        : 'not reachable: the disk was wiped and holds half a system; boot the provider rescue image and re-run (the wipe is confirmed, so this is the one window with no way back by SSH)',
      seconds: since(t0),
      reachable: a.reachable,
      spareUntouched: a.spareUntouched,
      ok: a.reachable && again?.code === 0,
      outputs: [r.stdout, r.stderr, again?.stdout ?? '', again?.stderr ?? ''],
    });
  }
}
