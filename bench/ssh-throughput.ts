/**
 * Upload throughput per SSH cipher (issue 17): N MiB of random bytes from a file through
 * `session.exec('cat > /dev/null', { stdin })` (the kexec upload's path) to a real OpenSSH sshd
 * on loopback, once per cipher, with ssh2 (our session) and, for reference, the OpenSSH client.
 * Two targets: sshd as it is (this CPU, AES-NI), and sshd with OpenSSL's AES-NI, PCLMUL, SSSE3,
 * SSE4 and AVX masked off (OPENSSL_ia32cap), the CPU features a generic qemu64 guest lacks. The
 * mask changes which code OpenSSL runs, not the speed of emulation: a TCG guest is several times
 * slower again. Run it with bench/ssh-throughput.sh, which compiles this file with tsc.
 * Usage: node ssh-throughput.js [MIB] [RUNS]   (default 128 MiB, 3 runs: the median is printed)
 */
import { spawn } from 'node:child_process';
import { createReadStream, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { CipherAlgorithm } from 'ssh2';
import { startSshd, type Sshd } from '../__tests__/helpers/sshd';
import { cipherPreference, connect } from '../src/ssh/session';
import { pinFor } from '../src/ssh/hostkeys';
import { parseTarget, type Target } from '../src/target';

/** qemu64 lacks these: AES-NI, PCLMULQDQ, SSSE3, SSE4.1/4.2, XSAVE/OSXSAVE, AVX; and all of CPUID 7. */
const NO_AESNI_MASK = '~0x1a18020200000000:0';

const CIPHERS: CipherAlgorithm[] = [
  'chacha20-poly1305@openssh.com',
  'aes128-gcm@openssh.com',
  'aes256-gcm@openssh.com',
  'aes128-ctr',
  'aes256-ctr',
];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)] as number) : NaN;
};

interface Run {
  seconds: number;
  /** CPU time of this Node process (user + system) during the upload: ssh2's share of the work. */
  cpuSeconds?: number;
}

async function ssh2Upload(sshd: Sshd, cipher: CipherAlgorithm, file: string): Promise<Run> {
  const target = parseTarget(`root@127.0.0.1:${sshd.port}`) as Target;
  const session = await connect({
    target,
    privateKey: readFileSync(sshd.clientKeyFile, 'utf8'),
    pin: pinFor(target.knownHostsName, readFileSync(sshd.knownHostsFile, 'utf8'), []),
    connectTimeoutMs: 10_000,
    retries: 0,
    ciphers: [cipher],
  });
  try {
    if (session.cipher !== cipher) throw new Error(`negotiated ${session.cipher}, not ${cipher}`);
    const start = process.hrtime.bigint();
    const cpu = process.cpuUsage();
    const r = await session.exec('cat > /dev/null', { stdin: createReadStream(file) });
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const used = process.cpuUsage(cpu);
    if (r.code !== 0) throw new Error(`cat failed: ${r.stderr}`);
    return { seconds, cpuSeconds: (used.user + used.system) / 1e6 };
  } finally {
    session.close();
  }
}

/** The OpenSSH client, same file and command; the time includes its handshake (a few ms here). */
function opensshUpload(sshd: Sshd, cipher: CipherAlgorithm, file: string): Promise<Run> {
  const args = [
    '-F',
    '/dev/null',
    '-i',
    sshd.clientKeyFile,
    '-o',
    `UserKnownHostsFile=${sshd.knownHostsFile}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    '-c',
    cipher,
    '-p',
    String(sshd.port),
    'root@127.0.0.1',
    'cat > /dev/null',
  ];
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn('ssh', args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    createReadStream(file).pipe(child.stdin);
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve({ seconds: Number(process.hrtime.bigint() - start) / 1e9 });
      else reject(new Error(`ssh -c ${cipher} exited ${code}: ${err.trim()}`));
    });
  });
}

async function main(): Promise<void> {
  const mib = Math.max(1, Number(process.argv[2] ?? 128));
  const runs = Math.max(1, Number(process.argv[3] ?? 3));
  const plain = await startSshd();
  const saved = process.env.OPENSSL_ia32cap;
  process.env.OPENSSL_ia32cap = NO_AESNI_MASK; // inherited by that sshd (and its re-exec) only
  let masked: Sshd;
  try {
    masked = await startSshd();
  } finally {
    if (saved === undefined) delete process.env.OPENSSL_ia32cap;
    else process.env.OPENSSL_ia32cap = saved;
  }
  const file = join(plain.dir, 'payload');
  writeFileSync(file, randomBytes(mib * 2 ** 20));
  const rows = [
    '| cipher | ssh2 → sshd (AES-NI) | ssh2 → sshd (no AES-NI) | OpenSSH → sshd (AES-NI) | OpenSSH → sshd (no AES-NI) |',
    '| --- | --- | --- | --- | --- |',
  ];
  const rate = (runs: Run[]) => {
    const mibs = `${(mib / median(runs.map((r) => r.seconds))).toFixed(1)} MiB/s`;
    const cpu = runs.map((r) => r.cpuSeconds).filter((c) => c !== undefined);
    return cpu.length ? `${mibs}, ${((median(cpu) * 1000) / mib).toFixed(1)} ms CPU/MiB` : mibs;
  };
  try {
    for (const cipher of CIPHERS) {
      const cells: string[] = [];
      for (const [client, sshd] of [
        [ssh2Upload, plain],
        [ssh2Upload, masked],
        [opensshUpload, plain],
        [opensshUpload, masked],
      ] as const) {
        const results: Run[] = [];
        for (let i = 0; i < runs; i++) results.push(await client(sshd, cipher, file));
        cells.push(rate(results));
      }
      rows.push(`| ${cipher} | ${cells.join(' | ')} |`);
      console.error(rows[rows.length - 1]);
    }
  } finally {
    rmSync(file, { force: true });
    await plain.stop();
    await masked.stop();
  }
  console.log(
    `ssh upload bench: ${mib} MiB per upload, median of ${runs}, node ${process.version}, ` +
      `loopback; "no AES-NI" = sshd with OPENSSL_ia32cap=${NO_AESNI_MASK}; ssh2 cells add this ` +
      `Node process's CPU time per MiB (the runner's share); ` +
      `our preference: ${(cipherPreference() ?? ['ssh2 defaults']).join(', ')}\n`,
  );
  console.log(rows.join('\n'));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
