/**
 * The kexec phase's staging (issue 17): the tarball is hashed once, on the target, while it
 * streams in; load does not read it again; a re-run with the tarball in place hashes it once; an
 * interrupted or short upload, or one whose write failed, is never taken as complete. First the
 * stage script run here by sh (a PATH shim counts the sha256sum calls), then stageInstaller over
 * the pinned session to a real sshd on loopback, with a stand-in tarball whose kexec/run only
 * leaves a mark (nothing is loaded, nothing reboots).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { startSshd, type Sshd } from '../helpers/sshd';
import { connect, type RemoteSession } from '../../src/ssh/session';
import { pinFor } from '../../src/ssh/hostkeys';
import { parseTarget, type Target } from '../../src/target';
import { parseKv } from '../../src/phases/prep';
import { stageInstaller, type KexecContext } from '../../src/phases/kexec';
import type { KexecTarball } from '../../src/nix/kexec';
import { shellQuote } from '../../src/shell';
import { scriptCommand } from '../../src/ssh/script';

jest.setTimeout(60_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The partial uploads in `dir` (each receiver writes its own, installer.tar.part.PID). */
const parts = (dir: string) =>
  existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith('installer.tar.part')) : [];

const script = readFileSync(join(__dirname, '../../scripts/phases/kexec-stage.sh'), 'utf8');
let work: string;
beforeAll(() => {
  // On disk, not a tmpfs: check refuses a tmpfs, as it would on the target.
  work = mkdtempSync('/var/tmp/vps-nixos-kexec-stage-');
});
afterAll(() => rmSync(work, { recursive: true, force: true }));
const sameBytes = (file: string, data: Buffer) => readFileSync(file).equals(data);

/** A stand-in installer tarball: kexec/run leaves a mark, kexec/initrd is incompressible ballast. */
function standinTarball(name: string, initrdBytes: number): KexecTarball {
  const src = join(work, `${name}-src`);
  mkdirSync(join(src, 'kexec'), { recursive: true });
  writeFileSync(join(src, 'kexec', 'run'), '#!/bin/sh\necho "run in $(pwd)"\ndate >> ../ran\n');
  chmodSync(join(src, 'kexec', 'run'), 0o755);
  writeFileSync(join(src, 'kexec', 'initrd'), randomBytes(initrdBytes));
  const path = join(work, `${name}.tar`);
  execFileSync('tar', ['-C', src, '-cf', path, 'kexec']);
  const data = readFileSync(path);
  return {
    path,
    sha256: createHash('sha256').update(data).digest('hex'),
    bytes: data.length,
    source: 'file',
    from: path,
  };
}

describe('kexec-stage.sh, run here', () => {
  let tarball: KexecTarball;
  let data: Buffer;
  let shim: string;
  let calls: string;
  let failingTee: string;
  beforeAll(() => {
    tarball = standinTarball('local', 2 * 2 ** 20);
    data = readFileSync(tarball.path);
    shim = join(work, 'shim');
    calls = join(work, 'sha256sum.calls');
    mkdirSync(shim);
    writeFileSync(
      join(shim, 'sha256sum'),
      `#!/bin/sh\necho "sha256sum $*" >> ${shellQuote(calls)}\nexec /usr/bin/sha256sum "$@"\n`,
    );
    chmodSync(join(shim, 'sha256sum'), 0o755);
    failingTee = join(work, 'failing-tee');
    mkdirSync(failingTee);
    // GNU tee keeps copying to stdout when a file write fails (a full disk), exits 1 at the end.
    writeFileSync(join(failingTee, 'tee'), '#!/bin/sh\ncat\nexit 1\n');
    chmodSync(join(failingTee, 'tee'), 0o755);
  });

  let n = 0;
  const fresh = () => join(work, `target-${++n}`);
  const hashes = () =>
    existsSync(calls) ? readFileSync(calls, 'utf8').split('\n').filter(Boolean).length : 0;
  const stage = (
    action: string,
    dir: string,
    opts: { input?: Buffer; path?: string; sha?: string } = {},
  ) => {
    rmSync(calls, { force: true });
    const r = spawnSync(
      'sh',
      ['-c', script, 'kexec-stage', action, dir, opts.sha ?? tarball.sha256],
      {
        input: opts.input ?? Buffer.alloc(0),
        env: { ...process.env, PATH: `${opts.path ?? shim}:${process.env.PATH}` },
      },
    );
    return { code: r.status, values: parseKv(r.stdout.toString()).values, hashes: hashes() };
  };

  it('hashes the tarball once, while it streams in; load does not read it again', () => {
    const dir = fresh();
    expect(stage('check', dir)).toMatchObject({ code: 0, hashes: 0, values: { uploaded: 'no' } });
    expect(stage('receive', dir, { input: data })).toEqual({
      code: 0,
      hashes: 1,
      values: { received_bytes: String(data.length) },
    });
    expect(sameBytes(join(dir, 'installer.tar'), data)).toBe(true);
    expect(parts(dir)).toEqual([]);
    expect(stage('load', dir)).toMatchObject({ code: 0, hashes: 0, values: { loaded: 'yes' } });
    expect(readFileSync(join(dir, 'run.log'), 'utf8')).toBe(`run in ${dir}/kexec\n`);
  });

  it("a receiver left by a cut connection cannot take the re-run's upload away", async () => {
    // The campaign's "link cut mid-upload": the first receiver still reads (sshd has not noticed
    // the cut) while the re-run uploads; when the first one's stream ends mid-way through the
    // re-run's, it fails and removes its own part only.
    const dir = fresh();
    const receiver = () => {
      const child = spawn('sh', ['-c', script, 'kexec-stage', 'receive', dir, tarball.sha256], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const done = new Promise<{ code: number | null; out: string }>((ok) =>
        child.on('exit', (code) => ok({ code, out })),
      );
      return { child, done };
    };
    const half = data.length >> 1;
    const first = receiver();
    first.child.stdin.write(data.subarray(0, half));
    for (let i = 0; i < 200 && parts(dir).length === 0; i++) await sleep(25);
    const rerun = receiver();
    rerun.child.stdin.write(data.subarray(0, half));
    for (let i = 0; i < 200 && parts(dir).length < 1; i++) await sleep(25);
    await sleep(200);
    first.child.stdin.end(); // the cut connection's stream ends now, mid-way through the re-run's
    expect((await first.done).code).toBe(1);
    rerun.child.stdin.end(data.subarray(half));
    const r = await rerun.done;
    expect(parseKv(r.out).values.error).toBeUndefined();
    expect(r.code).toBe(0);
    expect(sameBytes(join(dir, 'installer.tar'), data)).toBe(true);
    expect(parts(dir)).toEqual([]);
    expect(stage('check', dir).values.uploaded).toBe('yes');
  });

  it('a re-run with the tarball in place hashes it once (check), and load trusts that', () => {
    const dir = fresh();
    expect(stage('receive', dir, { input: data }).code).toBe(0);
    rmSync(join(dir, 'installer.tar.sha256')); // as an older version or an interrupted run left it
    expect(stage('check', dir)).toMatchObject({ code: 0, hashes: 1, values: { uploaded: 'yes' } });
    expect(stage('load', dir)).toMatchObject({ code: 0, hashes: 0, values: { loaded: 'yes' } });
  });

  it('never takes a short upload as complete', () => {
    const dir = fresh();
    const r = stage('receive', dir, { input: data.subarray(0, data.length >> 1) });
    expect(r.code).toBe(1);
    expect(r.values.error).toMatch(/^the upload has sha256 [0-9a-f]{64}, expected [0-9a-f]{64}/);
    expect(existsSync(join(dir, 'installer.tar'))).toBe(false);
    expect(parts(dir)).toEqual([]);
    expect(stage('check', dir).values.uploaded).toBe('no');
    expect(stage('load', dir)).toMatchObject({
      code: 1,
      values: { error: `no verified tarball in ${dir}` },
    });
  });

  it('a failed write is not hidden by a good digest of the stream', () => {
    const dir = fresh();
    const r = stage('receive', dir, { input: data, path: failingTee });
    expect(r.code).toBe(1);
    expect(r.values.error).toMatch(/^cannot write .*installer\.tar\.part\.\d+ \(tee exited 1\)/);
    expect(existsSync(join(dir, 'installer.tar'))).toBe(false);
    expect(stage('load', dir).code).toBe(1);
  });

  it('does not trust a tarball that no longer matches, whatever the note beside it says', () => {
    const dir = fresh();
    expect(stage('receive', dir, { input: data }).code).toBe(0);
    writeFileSync(join(dir, 'installer.tar'), 'changed');
    expect(stage('check', dir)).toMatchObject({ code: 0, hashes: 1, values: { uploaded: 'no' } });
    // Another installer's receive replaces it; the old note no longer vouches for anything.
    const other = 'b'.repeat(64);
    expect(stage('receive', dir, { input: data, sha: other }).code).toBe(1);
    expect(existsSync(join(dir, 'installer.tar'))).toBe(false);
    expect(stage('load', dir).code).toBe(1);
  });
});

describe('stageInstaller over the pinned session', () => {
  let sshd: Sshd;
  const open: RemoteSession[] = [];
  let tarball: KexecTarball;
  let target: Target;

  const connectHere = async () => {
    const s = await connect({
      target,
      privateKey: readFileSync(sshd.clientKeyFile, 'utf8'),
      pin: pinFor(target.knownHostsName, readFileSync(sshd.knownHostsFile, 'utf8'), []),
      connectTimeoutMs: 10_000,
      retries: 2,
      retryDelayMs: 200,
    });
    open.push(s);
    return s;
  };
  const context = async (dir: string, lines: string[]): Promise<KexecContext> => ({
    session: await connectHere(),
    reconnect: connectHere,
    tarball,
    dir,
    log: (l) => lines.push(l),
  });

  beforeAll(async () => {
    tarball = standinTarball('ssh', 8 * 2 ** 20);
    sshd = await startSshd();
    target = parseTarget(`root@127.0.0.1:${sshd.port}`) as Target;
  });
  afterAll(async () => {
    for (const s of open) s.close();
    await sshd?.stop();
  });

  it('uploads over chacha20-poly1305, loads, and does not upload again on a re-run', async () => {
    const dir = join(work, 'ssh-target');
    const lines: string[] = [];
    const first = await stageInstaller(await context(dir, lines));
    expect(first).toMatchObject({ sent: tarball.bytes, cipher: 'chacha20-poly1305@openssh.com' });
    expect(first.oldBootId).toBe(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    expect(sameBytes(join(dir, 'installer.tar'), readFileSync(tarball.path))).toBe(true);
    expect(readFileSync(join(dir, 'installer.tar.sha256'), 'utf8')).toBe(`${tarball.sha256}\n`);
    expect(readFileSync(join(dir, 'ran'), 'utf8').split('\n').filter(Boolean)).toHaveLength(1);

    const again = await stageInstaller(await context(dir, lines));
    expect(again.sent).toBe(0);
    expect(lines.join('\n')).toMatch(/already on the target .*not uploading again/);
    expect(readFileSync(join(dir, 'ran'), 'utf8').split('\n').filter(Boolean)).toHaveLength(2);
  });

  it('an upload cut off by a lost connection is not taken as complete; the re-run sends it all', async () => {
    const dir = join(work, 'ssh-cut');
    const whole = readFileSync(tarball.path);
    const session = await connectHere();
    let pushed = false;
    const half = new Readable({
      read() {
        if (pushed) return; // half the tarball, then nothing until the connection drops
        pushed = true;
        this.push(whole.subarray(0, whole.length >> 1));
      },
    });
    const receiving = session
      .exec(scriptCommand('phases/kexec-stage.sh', { args: ['receive', dir, tarball.sha256] }), {
        stdin: half,
        timeoutMs: 20_000,
      })
      .catch((e: Error) => e);
    const size = () => {
      const p = parts(dir)[0];
      return p ? statSync(join(dir, p)).size : -1;
    };
    for (let i = 0; i < 200 && size() < whole.length >> 1; i++) await sleep(50);
    expect(size()).toBe(whole.length >> 1);
    session.close();
    const r = await receiving;
    expect(r instanceof Error ? r.message : r.code).not.toBe(0);
    // sshd closes the command's stdin: tee ends, the digest of half does not match, .part goes.
    for (let i = 0; i < 100 && parts(dir).length; i++) await sleep(50);
    expect(parts(dir)).toEqual([]);
    expect(existsSync(join(dir, 'installer.tar'))).toBe(false);

    const lines: string[] = [];
    const rerun = await stageInstaller(await context(dir, lines));
    expect(rerun.sent).toBe(tarball.bytes);
    expect(sameBytes(join(dir, 'installer.tar'), whole)).toBe(true);
  });

  it('a receive that fails before reading stdin reports its error line', async () => {
    const s = await connectHere();
    const r = await s.exec(
      scriptCommand('phases/kexec-stage.sh', {
        args: ['receive', '/proc/vps-nixos-nope', tarball.sha256],
      }),
      { stdin: Readable.from([randomBytes(4 * 2 ** 20)]), timeoutMs: 30_000 },
    );
    expect(r.code).toBe(1);
    expect(parseKv(r.stdout).values.error).toBe('cannot create /proc/vps-nixos-nope');
  });
});
