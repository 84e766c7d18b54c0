/**
 * scripts/facts.sh on this machine: few processes (each costs 80-150 ms on a slow VPS), the
 * same facts in every shell it meets, and the shell-only code printing what the tools it
 * replaced (tr, awk, a second systemd-detect-virt) printed.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFacts } from '../../src/probe/facts';

const ROOT = join(__dirname, '../..');
const SCRIPT = join(ROOT, 'scripts/facts.sh');

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

/** Runs facts.sh with `shell` (argv) as the probe does (`sh -c TEXT facts.sh`, src/ssh/script.ts). */
function facts(shell: string[], env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(
    shell[0]!,
    [...shell.slice(1), '-c', readFileSync(SCRIPT, 'utf8'), 'facts.sh'],
    {
      encoding: 'utf8',
      env,
    },
  );
  expect(r.status).toBe(0);
  return r.stdout;
}

/** What changes between two runs by nature: free memory and disk use. */
const steady = (out: string) =>
  out
    .split('\n')
    .filter((l) => !/^meminfo=(MemAvailable|SwapFree):/.test(l))
    .map((l) => (l.startsWith('fs=') ? l.split(/\s+/).slice(0, 4).join(' ') : l))
    .join('\n');

jest.setTimeout(60_000);

describe('processes', () => {
  // strace must be able to trace here (a sandbox may forbid ptrace): else the count is skipped
  const canTrace =
    has('strace') && spawnSync('strace', ['-f', '-o', '/dev/null', 'true']).status === 0;
  const run = canTrace ? it : it.skip;
  // detect-virt, tr (root), readlink x2 and systemctl (NixOS), uname (before Linux 6.1), df,
  // lsblk, ip x3: eleven at most, where the tool-per-value version ran about fifty.
  run('runs at most eleven programs besides the shell', () => {
    const dir = mkdtempSync(join(tmpdir(), 'facts-speed-'));
    try {
      const trace = join(dir, 'trace');
      const r = spawnSync('strace', ['-f', '-e', 'trace=execve', '-o', trace, 'sh', SCRIPT]);
      expect(r.status).toBe(0);
      const execs = readFileSync(trace, 'utf8')
        .split('\n')
        .filter((l) => /execve\(/.test(l) && !/ = -1 /.test(l));
      expect(execs.length - 1).toBeLessThanOrEqual(11);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('shells', () => {
  const shells: string[][] = [['dash'], ['bash', '--posix'], ['busybox', 'sh']].filter((s) =>
    has(s[0]!),
  );
  const first = shells[0];
  it.each(shells.map((s) => [s.join(' '), s]))('%s: the facts parse', (_, shell) => {
    const f = parseFacts(facts(shell as string[]));
    expect(f.memTotalBytes).toBeGreaterThan(0);
    expect(f.root?.sizeBytes).toBeGreaterThan(0);
    expect(f.bootId).toBe(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
  });
  // busybox ash runs its own applets first (tool.tar=tar, busybox ip's text), so it is only
  // parsed above; dash and bash must print the same lines.
  const compare = has('dash') && has('bash') ? it : it.skip;
  compare('dash and bash --posix print the same lines', () => {
    expect(steady(facts(['bash', '--posix']))).toBe(steady(facts(first ?? ['sh'])));
  });
});

describe('shell code in place of tools', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const calls = () => readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n');
  const tool = (name: string, body: string) => {
    writeFileSync(join(dir, name), `#!/bin/sh\necho "${name} $*" >>"${dir}/calls"\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  };
  // JSON spread over lines, with runs of spaces inside and outside strings, and edge spaces.
  const lsblkJson =
    ' {\n   "blockdevices": [\n      {"name":"vda",  "model":"QEMU HARDDISK   "}\n   ]\n}  \n';
  const ipJson = '[{"ifname":"eth0",\n"ifalias":"a  \n b"}]\n';

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'facts-tools-'));
    writeFileSync(join(dir, 'calls'), '');
    writeFileSync(join(dir, 'lsblk.out'), lsblkJson);
    writeFileSync(join(dir, 'ip.out'), ipJson);
    tool('lsblk', `cat "${dir}/lsblk.out"`);
    tool('ip', `case "$*" in "-j addr show") cat "${dir}/ip.out" ;; *) echo "[]" ;; esac`);
    env = { ...process.env, PATH: `${dir}:${process.env.PATH}` };
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const value = (out: string, key: string) =>
    out
      .split('\n')
      .find((l) => l.startsWith(`${key}=`))
      ?.slice(key.length + 1);
  const trFlat = (text: string) =>
    spawnSync('sh', ['-c', "tr -d '\\n' | tr -s ' '"], { input: text, encoding: 'utf8' }).stdout;

  it("puts JSON on one line as tr -d '\\n' | tr -s ' ' did", () => {
    const out = facts(['sh'], env);
    expect(value(out, 'lsblk.json')).toBe(trFlat(lsblkJson));
    expect(value(out, 'ip.addr.json')).toBe(trFlat(ipJson));
    expect(value(out, 'ip.route4.json')).toBe('[]');
  });

  it.each([
    ['kvm', 'none', 1],
    ['none', 'none', 1],
    ['lxc', 'lxc', 1],
    ['something-new', 'answered', 2],
  ])('systemd-detect-virt saying %s: virt.container=%s, %d run(s)', (detected, container, runs) => {
    tool(
      'systemd-detect-virt',
      `case "$1" in --container) echo answered ;; *) echo ${detected} ;; esac`,
    );
    const out = facts(['sh'], env);
    expect(value(out, 'virt.detect')).toBe(detected);
    expect(value(out, 'virt.container')).toBe(container);
    expect(calls().filter((c) => c.startsWith('systemd-detect-virt'))).toHaveLength(runs);
  });

  it('gives each path its own line of one df run, and each path alone when that run fails', () => {
    const single = facts(['sh'], env)
      .split('\n')
      .filter((l) => l.startsWith('fs='));
    expect(single.length).toBeGreaterThan(0);
    // A df that refuses several paths: each then has a df of its own.
    const df = spawnSync('sh', ['-c', 'command -v df'], { encoding: 'utf8' }).stdout.trim();
    tool('df', `[ $# -gt 2 ] && exit 1\nexec ${df} "$@"`);
    const alone = facts(['sh'], env)
      .split('\n')
      .filter((l) => l.startsWith('fs='));
    const fields = (l: string) => l.split(/\s+/).filter((_, i) => i !== 4 && i !== 5 && i !== 6);
    expect(alone.map(fields)).toEqual(single.map(fields));
    expect(calls().filter((c) => c.startsWith('df'))).toHaveLength(1 + single.length);
  });
});
