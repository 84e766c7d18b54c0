/**
 * The in-place path (method infect) on the local test VPS, through the built CLI as users run it:
 * on the 1 GB QEMU VM and on the nspawn container (test/vps: `vps up --kind container`), whichever
 * VPS_JSON names. The nixos-infect script is the STAND-IN (test/standins/nixos-infect; see
 * test/STANDINS.md §8), served from a loopback HTTP server this test starts; the download, sha256
 * check, patching, upload, detached run, log streaming, dropped link, reboot and checks are real.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { whoAnswers } from '../../src/phases/wait';
import { currentVps, freshVm, standins, vpsConfig, withVps } from '../helpers/vps';
import { runCli, type CliResult } from '../helpers/cli';
import { runStep } from '../helpers/action';
import { OFFLINE_NIX_CONFIG } from '../helpers/nixflake';

jest.setTimeout(15 * 60_000);
const vps = currentVps();
const cfg = vpsConfig(vps);
const isVm = vps.kind === 'vm';
/** The runner's end of the test network's link (the test runs in the VPS's netns). */
const LINK = isVm ? 'tap0' : 'vh0';

/** What answers now, over a session of its own. */
const who = () => withVps(cfg, whoAnswers);
const onVps = (cmd: string) =>
  withVps(cfg, async (s) => (await s.exec(cmd, { timeoutMs: 60_000 })).stdout);

// The stand-in as served: it "builds" for 40 s (time to cut the link) and writes a small swapfile;
// the quick one builds for 5 s, for the runs that cut nothing.
const standin = readFileSync(join(__dirname, '../../test/standins/nixos-infect'), 'utf8');
const nl = standin.indexOf('\n');
const servedFor = (seconds: number) =>
  Buffer.from(
    `${standin.slice(0, nl + 1)}NIXOS_INFECT_STANDIN_SECONDS=${seconds}\nNIXOS_INFECT_STANDIN_SWAP_MIB=64\n${standin.slice(nl + 1)}`,
  );
const served = servedFor(40);
const sha = createHash('sha256').update(served).digest('hex');
const quick = servedFor(5);
const quickSha = createHash('sha256').update(quick).digest('hex');
let server: Server;
let url = '';
let requests = 0;

interface Doc {
  phases: { name: string; status: string; seconds: number; detail?: string }[];
  host: { isNixos: boolean; bootId: string } | null;
  plan?: { method: string; reasons: string[]; phases: string[] };
  infect?: {
    source: { sha256: string; from: string; verified: boolean };
    sha256: string;
    channel: string;
    patches: { id: string; applied: boolean }[];
  };
  error?: { message: string; fix?: string };
}
const infect = (
  extra: string[],
  opts: Parameters<typeof runCli>[1] = {},
  script = 'nixos-infect',
) =>
  runCli(
    [
      'bootstrap',
      '--method',
      'infect',
      '--target',
      vps.target,
      '--ssh-private-key-file',
      vps.sshPrivateKeyFile,
      '--known-hosts-file',
      vps.knownHostsFile,
      '--infect-url',
      `${url}/${script}`,
      '--nixos-channel',
      'nixos-unstable',
      '--json',
      ...extra,
    ],
    { timeoutMs: 12 * 60_000, ...opts },
  );
const doc = (r: CliResult) => JSON.parse(r.stdout) as Doc;
const statuses = (d: Doc) => Object.fromEntries(d.phases.map((p) => [p.name, p.status]));
const report = (title: string, d: Doc) =>
  process.stderr.write(
    `${title} (${vps.kind}):\n${d.phases.map((p) => `  ${p.name} ${p.status} ${p.seconds.toFixed(1)} s: ${p.detail ?? ''}`).join('\n')}\n`,
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Takes the runner's link down for `seconds` once nixos-infect runs; resolves when it is back. */
function cutLinkOnceRunning(seconds: number, when: RegExp) {
  let cut: Promise<void> | undefined;
  const onStderr = (all: string) => {
    if (cut || !when.test(all)) return;
    cut = (async () => {
      await sleep(4000);
      // IPv6 addresses go with the link: put them back afterwards.
      const v6 = execFileSync('ip', ['-6', '-o', 'addr', 'show', 'dev', LINK, 'scope', 'global'])
        .toString()
        .split('\n')
        .map((l) => l.trim().split(/\s+/)[3])
        .filter((a): a is string => !!a);
      execFileSync('ip', ['link', 'set', LINK, 'down']);
      process.stderr.write(`link ${LINK} down for ${seconds} s\n`);
      await sleep(seconds * 1000);
      execFileSync('ip', ['link', 'set', LINK, 'up']);
      for (const a of v6) execFileSync('ip', ['addr', 'replace', a, 'dev', LINK, 'nodad']);
    })();
  };
  return { onStderr, done: () => cut ?? Promise.reject(new Error('the link was never cut')) };
}

beforeAll(async () => {
  if (isVm) freshVm(vps);
  server = createServer((req, res) => {
    requests++;
    if (req.url === '/nixos-infect') res.end(served);
    else if (req.url === '/nixos-infect-quick') res.end(quick);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

it('a wrong checksum refuses before anything reaches the host, naming both hashes', async () => {
  const wrong = 'e'.repeat(64);
  const r = await infect(['--infect-sha256', wrong]);
  expect(r.code).toBe(1);
  const d = doc(r);
  expect(d.error?.message).toContain(`has sha256 ${sha}, expected ${wrong}`);
  expect(d.error?.message).toContain('nothing was uploaded');
  expect(d.phases).toEqual([]);
  expect(requests).toBe(1);
  // not even prep ran: no state dir, no tools installed
  expect(await onVps('ls /var/lib/vps-nixos 2>&1; command -v wget || echo no-wget')).toMatch(
    /No such file or directory\nno-wget/,
  );
});

it('converts in place through a 20 s link cut, with /tmp a 64 MB tmpfs', async () => {
  const before = await who();
  expect(await onVps("df -P /tmp | awk 'NR == 2 { print $2 }'")).toMatch(/^6[0-9]{4}\n/);
  // A distribution without nixos-infect's bzcat and curl (removing them takes nix-bin with them):
  // prep installs bzip2 from the test network's apt repository, which has no curl, so wget
  // (nixos-infect takes either).
  await onVps('DEBIAN_FRONTEND=noninteractive apt-get remove -y -q curl bzip2 >/dev/null 2>&1');
  expect(await onVps('command -v bzcat curl wget; echo end')).toBe('end\n');
  if (!isVm) {
    // The container's run is cut off first: the re-run must follow it, not start it again.
    const first = await infect(['--infect-sha256', sha], {
      killOn: /nixos-infect started detached/,
    });
    expect(first.code).toBe(-9);
  }
  const link = cutLinkOnceRunning(
    20,
    isVm ? /nixos-infect started detached/ : /nixos-infect is already running .*following it/,
  );
  // On the VM no prep swapfile: nixos-infect makes its own, which must land on /var/tmp.
  const r = await infect(['--infect-sha256', sha, ...(isVm ? ['--swap-size', '0'] : [])], {
    onStderr: link.onStderr,
  });
  await link.done();
  const d = doc(r);
  report('infect', d);
  expect(d.error).toBeUndefined();
  expect(r.code).toBe(0);
  expect(statuses(d)).toEqual(
    isVm ? { prep: 'done', infect: 'done', reboot: 'done' } : { infect: 'done', reboot: 'done' }, // prep ran in the cut-off run
  );
  expect(d.phases.find((p) => p.name === 'infect')?.detail).toMatch(
    /the connection dropped 1× \(\d+ s\) and nixos-infect ran on/,
  );
  expect(d.phases.find((p) => p.name === 'reboot')?.detail).toMatch(
    /same address and pinned host key\); deploy key in \/root\/\.ssh\/authorized_keys; addresses kept: 10\.77\./,
  );
  if (isVm)
    expect(d.phases.find((p) => p.name === 'prep')?.detail).toMatch(
      /^installed bzcat curl\|wget, zram \/dev\/zram0, swapfile none/,
    );
  expect(await onVps('command -v bzcat wget')).toBe('/usr/bin/bzcat\n/usr/bin/wget\n');
  expect(d.host?.isNixos).toBe(true);
  expect(d.host?.bootId).not.toBe(before.bootId);
  expect(d.infect).toMatchObject({
    source: { sha256: sha, from: `${url}/nixos-infect`, verified: true },
    channel: 'nixos-unstable',
  });
  expect(d.infect?.patches.every((p) => p.applied)).toBe(true);
  // the log was streamed while it ran, the cut was noticed and survived
  expect(r.stderr).toMatch(/nixos-infect \(stand-in\): building NixOS/);
  expect(r.stderr).toMatch(/connection lost .*reconnecting/);
  expect(r.stderr).toMatch(/reconnected \d+ s after the last answer; nixos-infect kept running/);

  const env = await onVps('cat /etc/nixos/infect-standin.env');
  expect(env).toContain('doNetConf=y\n');
  expect(env).toContain('NIX_CHANNEL=nixos-unstable\n');
  expect(env).toContain('NO_REBOOT=y\n');
  expect(env).toContain('TMPDIR=/var/tmp\n');
  if (isVm) {
    // its swapfile on the disk, not the 64 MB /tmp (nixos-infect #245)
    expect(env).toMatch(/^swapfile=\/var\/tmp\/nixos-infect\.\w+\.swp$/m);
    expect(env).toContain('swapfile_fstype=ext4\n');
    expect(r.stderr).toMatch(/zram is off while nixos-infect runs/);
  } else {
    // a container cannot swapon: NO_SWAP
    expect(env).toContain('NO_SWAP=y\n');
    expect(env).toContain('swapfile=\n');
  }
  // zram never became the converted system's swap device; the network went into networking.nix
  const conf = await onVps(
    'cat /etc/nixos/hardware-configuration.nix /etc/nixos/networking.nix; ls /etc/NIXOS; cat /var/lib/vps-nixos/infect/runs | wc -l',
  );
  expect(conf).not.toMatch(/zram/);
  expect(conf).toContain(`# addr: `);
  expect(conf).toContain(vps.address);
  expect(conf).toMatch(/\/etc\/NIXOS\n1\n$/);
});

it('a second run after completion does nothing and says so', async () => {
  const bootId = (await who()).bootId;
  const r = await infect(['--infect-sha256', sha]);
  const d = doc(r);
  expect(r.code).toBe(0);
  expect(d.phases).toEqual([]);
  expect(d.plan?.method).toBe('deploy-only');
  expect(d.plan?.reasons.join('\n')).toMatch(/nixos-infect converted it.*\n.*nothing to convert/);
  expect(r.stderr).toMatch(/nothing to bootstrap: the host runs NixOS/);
  expect((await who()).bootId).toBe(bootId);
  expect(await onVps('wc -l < /var/lib/vps-nixos/infect/runs')).toBe('1\n');
});

// One VM cycle for both: a CLI run cut off while nixos-infect runs, then the action finishes it
// (only the reboot is left) and its deploy stage switches to the configuration.
(isVm ? it : it.skip)(
  'a run cut off while nixos-infect runs is resumed by the action, not started again, then deployed',
  async () => {
    freshVm(vps);
    const first = await infect(
      ['--infect-sha256', quickSha],
      { killOn: /nixos-infect started detached/ },
      'nixos-infect-quick',
    );
    expect(first.code).toBe(-9);
    // nixos-infect runs on without us; let it finish: only the reboot is left then
    for (let i = 0; i < 60; i++) {
      if (
        /state=finished/.test(
          await onVps('sh /var/lib/vps-nixos/infect/infect.sh status /var/lib/vps-nixos/infect'),
        )
      )
        break;
      await sleep(3000);
    }
    const toplevel = standins().variants.ok!;
    // A file: runStep blocks this process, so the loopback server could not answer the action.
    const file = join(mkdtempSync(join(tmpdir(), 'infect-action-')), 'nixos-infect');
    writeFileSync(file, quick);
    const r = runStep(
      'main',
      {
        target: vps.target,
        'ssh-private-key': readFileSync(vps.sshPrivateKeyFile, 'utf8'),
        'known-hosts': readFileSync(vps.knownHostsFile, 'utf8'),
        method: 'infect',
        toplevel,
        'infect-url': file,
        'infect-sha256': quickSha,
      },
      {
        PATH: `${join(__dirname, '../../test/standins/bin')}:${process.env.PATH}`,
        NIX_CONFIG: OFFLINE_NIX_CONFIG,
      },
      undefined,
      10 * 60_000,
    );
    if (r.code !== 0) console.log(r.output);
    expect(r.code).toBe(0);
    expect(r.outputs).toMatchObject({
      method: 'infect',
      'system-path': toplevel,
      'current-system': toplevel,
      changed: 'true',
      'rolled-back': 'false',
    });
    const phases = JSON.parse(r.outputs.phases!) as { name: string; status: string }[];
    expect(phases.map((p) => `${p.name} ${p.status}`)).toEqual(['reboot done']);
    expect(r.summary).toContain('finished on the host but it has not rebooted');
    expect(r.output).toMatch(/::group::/);
    expect(r.summary).toContain(`| Result | switched to ${toplevel} |`);
    // it ran once: the action followed the cut-off run instead of starting another
    expect(
      await onVps('wc -l < /var/lib/vps-nixos/infect/runs; cat /var/lib/vps-nixos/infect/exit'),
    ).toBe('1\n0\n');
    expect(
      runStep('post', {}, { 'STATE_vps-nixos-key-dir': r.state['vps-nixos-key-dir']! }).code,
    ).toBe(0);
  },
);
