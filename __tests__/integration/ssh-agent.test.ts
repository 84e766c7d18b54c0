/**
 * The CLI as people expect it (issue 23), against a real OpenSSH sshd on loopback and a real
 * ssh-agent, through the CLI run from source: no key file but SSH_AUTH_SOCK logs in with the
 * agent's keys; neither is refused before any connection; with no pin, ~/.ssh/known_hosts (plain,
 * hashed by ssh-keygen -H, @revoked) is the pin, and a host without a line is shown and refused.
 * Then the OpenSSH side of a deploy: the options nixos-rebuild and nix copy get, run by real ssh
 * and nix-copy-closure, with the agent and with a key file.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { OFFLINE_NIX_CONFIG } from '../helpers/nixflake';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSshd, type Sshd } from '../helpers/sshd';
import { runSourceCli } from '../helpers/source-cli';
import { blobOf, keyPair, opensshFingerprint } from '../helpers/keys';
import { writeDeploySsh } from '../../src/deploy/sshopts';
import { parseTarget, type Target } from '../../src/target';
import { cliSsh } from '../../src/cli/commands';
import { parseConfig } from '../../src/inputs';

jest.setTimeout(120_000);

let sshd: Sshd;
let dir: string;
/** An agent holding the client key sshd authorizes. */
let agent: Agent;
/** An agent holding nothing. */
let emptyAgent: Agent;

interface Agent {
  socket: string;
  child: ChildProcess;
}

/** `ssh-agent -D` as our child (stopped by its PID), listening on a socket in our private dir. */
async function startAgent(socket: string): Promise<Agent> {
  const child = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
  const deadline = Date.now() + 5000;
  while (!existsSync(socket)) {
    if (Date.now() > deadline) throw new Error(`ssh-agent did not create ${socket}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { socket, child };
}

async function stopAgent(a: Agent | undefined): Promise<void> {
  if (!a || a.child.exitCode !== null) return;
  const exited = new Promise((r) => a.child.once('exit', r));
  a.child.kill('SIGTERM');
  await exited;
}

/** Waits until sshd has logged the end of the helper's port probe, so counts start clean. */
async function settled(s: Sshd): Promise<Sshd> {
  const deadline = Date.now() + 5000;
  while (!s.log().includes('Connection closed by') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  return s;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vps-nixos-agent-'));
  sshd = await startSshd().then(settled);
  agent = await startAgent(join(dir, 'agent.sock'));
  execFileSync('ssh-add', ['-q', sshd.clientKeyFile], {
    env: { PATH: process.env.PATH, SSH_AUTH_SOCK: agent.socket },
    stdio: 'ignore',
  });
  emptyAgent = await startAgent(join(dir, 'empty.sock'));
});
afterAll(async () => {
  await Promise.all([stopAgent(agent), stopAgent(emptyAgent)]);
  await sshd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const name = () => `[127.0.0.1]:${sshd.port}`;
const keyPart = (pub: string) => pub.split(' ').slice(0, 2).join(' ');
const count = (what: string) => sshd.log().split(what).length - 1;
const hostFp = () => opensshFingerprint(sshd.hostKeyPub);
const clientFp = () => opensshFingerprint(sshd.clientKeyPub);

/** A fresh HOME; `knownHosts` becomes its ~/.ssh/known_hosts (none: no ~/.ssh at all). */
function home(knownHosts?: string): string {
  const h = mkdtempSync(join(dir, 'home-'));
  if (knownHosts !== undefined) {
    mkdirSync(join(h, '.ssh'), { mode: 0o700 });
    writeFileSync(join(h, '.ssh', 'known_hosts'), knownHosts, { mode: 0o600 });
  }
  return h;
}

/** Exactly this environment: no key variable, SSH_AUTH_SOCK only when given. */
function env(h: string, socket?: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: h,
    ...(socket !== undefined && { SSH_AUTH_SOCK: socket }),
  };
}

/** Runs the CLI; returns its result and what sshd saw meanwhile: connections, logins, by which key. */
async function counted(args: string[], e: NodeJS.ProcessEnv) {
  const connections = count('Connection from');
  const logins = count('Accepted publickey');
  const r = await runSourceCli(args, e);
  // sshd's children may write their last lines just after the client is gone.
  await new Promise((res) => setTimeout(res, 300));
  const accepted = sshd
    .log()
    .split('\n')
    .filter((l) => l.includes('Accepted publickey'));
  return {
    ...r,
    out: r.stdout + r.stderr,
    connections: count('Connection from') - connections,
    logins: count('Accepted publickey') - logins,
    lastLogin: accepted.at(-1) ?? '',
  };
}

const probe = (...extra: string[]) => [
  'probe',
  '--target',
  `root@127.0.0.1:${sshd.port}`,
  ...extra,
];
const localMemTotal = () =>
  Number(/^MemTotal:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;

describe('keys from the ssh-agent', () => {
  it('no key file, SSH_AUTH_SOCK set: the probe logs in with the agent key', async () => {
    const r = await counted(
      probe('--known-hosts-file', sshd.knownHostsFile, '--json'),
      env(home(), agent.socket),
    );
    expect(r.stderr).toContain(`ssh login: the ssh-agent at ${agent.socket} (SSH_AUTH_SOCK)`);
    expect(r.stderr).toContain(clientFp());
    expect(r.stderr).toContain(`host key pin: from --known-hosts-file ${sshd.knownHostsFile}`);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).facts.memTotalBytes).toBe(localMemTotal());
    expect(r.logins).toBe(1);
    expect(r.lastLogin).toContain(clientFp());
  });

  it('neither a key nor an agent: refused naming the input and the fix, no connection', async () => {
    const r = await counted(probe('--known-hosts-file', sshd.knownHostsFile), env(home()));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("input 'ssh-private-key': is required to connect");
    expect(r.stderr).toContain('--ssh-private-key-file FILE');
    expect(r.stderr).toContain(
      'or run an ssh-agent with the key loaded (SSH_AUTH_SOCK is not set)',
    );
    expect(r.connections).toBe(0);
  });

  it('an agent that holds no key: refused before connecting, saying ssh-add', async () => {
    const r = await counted(
      probe('--known-hosts-file', sshd.knownHostsFile),
      env(home(), emptyAgent.socket),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `input 'SSH_AUTH_SOCK': the ssh-agent at ${emptyAgent.socket} holds no keys`,
    );
    expect(r.stderr).toMatch(/fix: load the deploy key: ssh-add KEY/);
    expect(r.connections).toBe(0);
  });

  it('SSH_AUTH_SOCK naming no agent: refused before connecting', async () => {
    const gone = join(dir, 'no-such-agent.sock');
    const r = await counted(probe('--known-hosts-file', sshd.knownHostsFile), env(home(), gone));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`input 'SSH_AUTH_SOCK': no ssh-agent answers at ${gone}`);
    expect(r.connections).toBe(0);
  });

  it('an agent whose keys the host does not authorize: login refused, saying which agent', async () => {
    const other = await startAgent(join(dir, 'other.sock'));
    try {
      const keyFile = join(dir, 'stranger');
      writeFileSync(keyFile, keyPair().privateKey, { mode: 0o600 });
      execFileSync('ssh-add', ['-q', keyFile], {
        env: { PATH: process.env.PATH, SSH_AUTH_SOCK: other.socket },
        stdio: 'ignore',
      });
      const r = await counted(
        probe('--known-hosts-file', sshd.knownHostsFile),
        env(home(), other.socket),
      );
      expect(r.code).toBe(1);
      expect(r.out).toMatch(
        /login refused: .* accepted none of the ssh-agent's keys for user root/,
      );
      expect(r.out).toMatch(/ssh-add KEY/);
      expect(r.logins).toBe(0);
    } finally {
      await stopAgent(other);
    }
  });

  it('the reconnects (after kexec, reboot, switch) log in with the agent too', async () => {
    // What runCommand hands the pipeline, and a call shaped as the pipeline's reconnector makes
    // it: the first session's key as the pin, the (absent) key from the Config.
    const e = env(home(), agent.socket);
    const cfg = parseConfig(
      { target: `root@127.0.0.1:${sshd.port}`, 'plan-only': 'true' },
      { sshAgent: { socket: agent.socket }, userKnownHosts: true },
    );
    const lines: string[] = [];
    const log = { info: (l: string) => lines.push(l), warn: (l: string) => lines.push(l) };
    const { connect } = await cliSsh(cfg, {}, e, log);
    const logins = count('Accepted publickey');
    for (let i = 0; i < 2; i++) {
      const session = await connect!({
        target: cfg.target!,
        privateKey: cfg.sshPrivateKey!,
        pin: {
          keys: [{ type: 'ssh-ed25519', blob: blobOf(sshd.hostKeyPub) }],
          fingerprints: [],
          revoked: [],
        },
        connectTimeoutMs: 10_000,
        retries: 0,
      });
      expect((await session.exec('echo again')).stdout).toBe('again\n');
      session.close();
    }
    await new Promise((res) => setTimeout(res, 300));
    expect(count('Accepted publickey')).toBe(logins + 2);
    expect(lines[0]).toContain('ssh login: the ssh-agent at');
  });

  it('a key file wins over the agent', async () => {
    const r = await counted(
      probe(
        '--ssh-private-key-file',
        sshd.clientKeyFile,
        '--known-hosts-file',
        sshd.knownHostsFile,
      ),
      env(home(), emptyAgent.socket),
    );
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      `ssh login: the key from ${sshd.clientKeyFile} (ssh-ed25519 ${clientFp()})`,
    );
  });
});

describe("the deploy-key check with the ssh-agent's keys (check, no connection)", () => {
  const FIXTURES = join(__dirname, '../fixtures/preflight');
  /** The clean fixture authorizes its own deploy key: not the one the agent holds. */
  const check = (socket?: string) => {
    const flake = mkdtempSync(join(dir, 'clean-'));
    cpSync(join(FIXTURES, 'clean'), flake, { recursive: true });
    const args = [
      'check',
      '--flake',
      `${flake}#vps`,
      '--facts',
      join(FIXTURES, 'facts-debian-12-1gb-static.json'),
      '--json',
    ];
    return runSourceCli(args, { ...env(home(), socket), NIX_CONFIG: OFFLINE_NIX_CONFIG }, 120_000);
  };
  const ids = (stdout: string) =>
    (JSON.parse(stdout) as { findings: { id: string; severity: string; message: string }[] })
      .findings;

  it('an agent key the configuration does not authorize: deploy-key-missing names it', async () => {
    const r = await check(agent.socket);
    expect(r.code).toBe(1);
    const f = ids(r.stdout).find((x) => x.id === 'deploy-key-missing');
    expect(f).toMatchObject({ severity: 'error' });
    expect(f!.message).toContain(keyPart(sshd.clientKeyPub).slice(0, 40));
  });

  it('no agent: the check says it was skipped', async () => {
    const r = await check(undefined);
    expect(r.code).toBe(0);
    const found = ids(r.stdout).map((x) => x.id);
    expect(found).toContain('skipped-no-deploy-key');
    expect(found).not.toContain('deploy-key-missing');
  });
});

describe('~/.ssh/known_hosts when no pin is given, still strict', () => {
  const key = () => ['--ssh-private-key-file', sshd.clientKeyFile];

  it('a plain [host]:port line pins the host', async () => {
    const h = home(
      `# mine\nexample.org ${keyPart(keyPair().publicKey)}\n${name()} ${keyPart(sshd.hostKeyPub)}\n`,
    );
    const r = await counted(probe(...key(), '--json'), env(h));
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      `host key pin: from ~/.ssh/known_hosts (${join(h, '.ssh/known_hosts')}), as no pin is given: 1 key(s) for ${name()} (line 3)`,
    );
    expect(r.stderr).toContain(`host key ssh-ed25519 ${hostFp()} matches the pin`);
    expect(JSON.parse(r.stdout).facts.memTotalBytes).toBe(localMemTotal());
  });

  it('a line hashed by ssh-keygen -H pins the host, with the agent logging in', async () => {
    const h = home(
      `example.org ${keyPart(keyPair().publicKey)}\n${name()} ${keyPart(sshd.hostKeyPub)}\n`,
    );
    const file = join(h, '.ssh/known_hosts');
    execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' });
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('127.0.0.1');
    expect(text).toMatch(/^\|1\|/);
    const r = await counted(probe('--json'), env(h, agent.socket));
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('host key pin: from ~/.ssh/known_hosts');
    expect(r.stderr).toContain('ssh login: the ssh-agent at');
    expect(r.logins).toBe(1);
  });

  it('a wrong key there: refused, naming both fingerprints and the line, before any login', async () => {
    const wrong = keyPart(keyPair().publicKey);
    const h = home(`${name()} ${wrong}\n`);
    const r = await counted(probe(...key()), env(h));
    expect(r.code).toBe(1);
    expect(r.out).toContain(
      `host key mismatch for ${name()}: it presented ssh-ed25519 ${hostFp()}, expected ssh-ed25519 ${opensshFingerprint(wrong)} (~/.ssh/known_hosts line 1)`,
    );
    expect(r.out).toMatch(/replace its line in ~\/\.ssh\/known_hosts/);
    expect(r.logins).toBe(0);
  });

  it('its key marked @revoked there: refused as revoked', async () => {
    const h = home(
      `${name()} ${keyPart(sshd.hostKeyPub)}\n@revoked * ${keyPart(sshd.hostKeyPub)}\n`,
    );
    const r = await counted(probe(...key()), env(h));
    expect(r.code).toBe(1);
    expect(r.out).toContain(
      `host key revoked for ${name()}: it presented ssh-ed25519 ${hostFp()}, which ~/.ssh/known_hosts marks @revoked (line 2)`,
    );
    expect(r.logins).toBe(0);
  });

  it('no line for the host: connects to see its key, refuses it naming the fingerprint and the fix', async () => {
    const h = home(
      `example.org ${keyPart(keyPair().publicKey)}\n127.0.0.1 ${keyPart(sshd.hostKeyPub)}\n`,
    );
    const r = await counted(probe(...key()), env(h));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /host key pin: none: no pin is given, and ~\/\.ssh\/known_hosts has 2 key lines, none for/,
    );
    expect(r.out).toContain(
      `host key not known for ${name()}: it presented ssh-ed25519 ${hostFp()}; no pin is given, and ~/.ssh/known_hosts has 2 key lines, none for ${name()}; nothing was run on it`,
    );
    expect(r.out).toContain(`--host-key-fingerprint ${hostFp()}`);
    expect(r.out).toContain(`ssh-keyscan -p ${sshd.port} 127.0.0.1`);
    expect(r.out).toContain('provider console');
    expect(r.out).toContain('add that line to ~/.ssh/known_hosts');
    expect(r.connections).toBeGreaterThan(0);
    expect(r.logins).toBe(0);
  });

  it('no ~/.ssh at all: the same refusal, saying the file does not exist', async () => {
    const r = await counted(probe('--json'), env(home(), agent.socket));
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as { error: { message: string; fix: string } };
    expect(doc.error.message).toBe(
      `host key not known for ${name()}: it presented ssh-ed25519 ${hostFp()}; no pin is given, and ~/.ssh/known_hosts does not exist; nothing was run on it`,
    );
    expect(doc.error.fix).toContain(`--host-key-fingerprint ${hostFp()}`);
    expect(r.logins).toBe(0);
  });

  it('only a @cert-authority line for the host: not a pin, refused the same way', async () => {
    const h = home(`@cert-authority ${name()} ${keyPart(keyPair().publicKey)}\n`);
    const r = await counted(probe(...key()), env(h));
    expect(r.code).toBe(1);
    expect(r.out).toContain(
      `host key not known for ${name()}: it presented ssh-ed25519 ${hostFp()}`,
    );
    expect(r.out).toContain('only @cert-authority lines');
    expect(r.logins).toBe(0);
  });

  it('--trust-on-first-use is still the explicit way to accept an unknown host', async () => {
    const r = await counted(probe(...key(), '--trust-on-first-use', '--json'), env(home()));
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/trust-on-first-use accepts the key the host presents/);
    expect(r.stderr).toMatch(/trust-on-first-use: accepted/);
  });

  it('a pin given wins: ~/.ssh/known_hosts is not read', async () => {
    const h = home(`${name()} ${keyPart(keyPair().publicKey)}\n`);
    const r = await counted(probe(...key(), '--host-key-fingerprint', hostFp()), env(h));
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('host key pin: from --host-key-fingerprint');
    expect(r.stderr).not.toContain('~/.ssh/known_hosts');
  });
});

describe("the deploy's OpenSSH options (NIX_SSHOPTS), run by real ssh and nix-copy-closure", () => {
  let t: Target;
  const hostKey = () => ({ type: 'ssh-ed25519', blob: blobOf(sshd.hostKeyPub) });
  beforeAll(() => {
    t = parseTarget(`root@127.0.0.1:${sshd.port}`) as Target;
  });

  function ssh(opts: string, e: NodeJS.ProcessEnv) {
    return spawnSync('ssh', [...opts.split(' '), `root@${t.host}`, 'echo logged-in'], {
      env: e,
      encoding: 'utf8',
      timeout: 30_000,
    });
  }

  it('without a key: no key file, no IdentitiesOnly=yes; ssh logs in with the agent', () => {
    const tmp = mkdtempSync(join(dir, 'deploy-'));
    const d = writeDeploySsh(tmp, t, undefined, hostKey());
    expect(d.keyFile).toBeUndefined();
    expect(existsSync(join(tmp, 'deploy-ssh/id'))).toBe(false);
    expect(d.sshOpts).not.toMatch(/IdentityFile|IdentitiesOnly=yes/);
    const logins = count('Accepted publickey');
    const r = ssh(d.sshOpts, env(home(), agent.socket));
    expect(r.stdout).toBe('logged-in\n');
    expect(count('Accepted publickey')).toBe(logins + 1);
    // The same options with no agent have nothing to log in with.
    const none = ssh(d.sshOpts, env(home()));
    expect(none.status).not.toBe(0);
    expect(none.stderr).toMatch(/Permission denied/);
  });

  it('with a key file: only that key, even when the agent holds the authorized one', () => {
    const stranger = keyPair().privateKey;
    const d = writeDeploySsh(mkdtempSync(join(dir, 'deploy-')), t, stranger, hostKey());
    expect(d.sshOpts).toContain(`-o IdentityFile=${d.keyFile}`);
    expect(d.sshOpts).toContain('-o IdentitiesOnly=yes');
    const r = ssh(d.sshOpts, env(home(), agent.socket));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
    const right = writeDeploySsh(
      mkdtempSync(join(dir, 'deploy-')),
      t,
      readFileSync(sshd.clientKeyFile, 'utf8'),
      hostKey(),
    );
    expect(ssh(right.sshOpts, env(home())).stdout).toBe('logged-in\n');
  });

  it('nix-copy-closure (what nixos-rebuild --target-host runs) gets through with the agent', () => {
    const nixEnv = { NIX_CONFIG: 'build-users-group =' };
    const src = join(dir, 'payload.txt');
    writeFileSync(src, 'vps-nixos agent test\n');
    const path = execFileSync('nix-store', ['--add', src], {
      env: { ...process.env, ...nixEnv },
      encoding: 'utf8',
    }).trim();
    const d = writeDeploySsh(mkdtempSync(join(dir, 'deploy-')), t, undefined, hostKey());
    const logins = count('Accepted publickey');
    const r = spawnSync('nix-copy-closure', ['--to', `root@${t.host}`, path], {
      env: { ...env(home(), agent.socket), ...nixEnv, NIX_SSHOPTS: d.sshOpts },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.stderr).not.toMatch(/Permission denied|Host key verification failed/);
    expect(r.status).toBe(0);
    expect(count('Accepted publickey')).toBeGreaterThan(logins);
  });
});
