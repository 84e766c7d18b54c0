/**
 * `--flake path:…#NAME` and nothing else, through the CLI from source: Debian's Nix reads the
 * description from a stand-in flake (one `nix eval`), a real OpenSSH sshd on loopback is the
 * host, a real ssh-agent holds the key. The described key is the pin; a wrong one is refused
 * before logging in; explicit options replace the description; a bad description or none at all
 * stops the run before any connection.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSshd, type Sshd } from '../helpers/sshd';
import { runSourceCli } from '../helpers/source-cli';
import { describedFlake, OFFLINE_NIX_CONFIG } from '../helpers/nixflake';
import { keyPair, opensshFingerprint } from '../helpers/keys';

jest.setTimeout(120_000);

let sshd: Sshd;
let dir: string;
let agent: ChildProcess;
let socket: string;
let flake: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vps-nixos-described-'));
  sshd = await startSshd();
  socket = join(dir, 'agent.sock');
  agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
  const deadline = Date.now() + 5000;
  while (!existsSync(socket)) {
    if (Date.now() > deadline) throw new Error('ssh-agent did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  execFileSync('ssh-add', ['-q', sshd.clientKeyFile], {
    env: { PATH: process.env.PATH, SSH_AUTH_SOCK: socket },
    stdio: 'ignore',
  });
  const target = `root@127.0.0.1:${sshd.port}`;
  flake = describedFlake({
    web: { target, hostKey: sshd.hostKeyPub, method: 'deploy-only' },
    // The same machine, pinned to a key it does not have.
    wrongkey: { target, hostKey: keyPair().publicKey },
    typo: { target, hostkey: sshd.hostKeyPub },
    bare: null,
  });
});
afterAll(async () => {
  if (agent && agent.exitCode === null) {
    const exited = new Promise((r) => agent.once('exit', r));
    agent.kill('SIGTERM');
    await exited;
  }
  await sshd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs the CLI from source with only the agent, an empty HOME and Nix's offline settings. */
async function cli(args: string[]) {
  const count = (what: string) => sshd.log().split(what).length - 1;
  const before = { connections: count('Connection from'), logins: count('Accepted publickey') };
  const r = await runSourceCli(args, {
    PATH: process.env.PATH,
    HOME: dir, // no ~/.ssh/known_hosts: the pin must come from the description
    SSH_AUTH_SOCK: socket,
    NIX_CONFIG: OFFLINE_NIX_CONFIG,
  });
  return {
    ...r,
    connections: count('Connection from') - before.connections,
    logins: count('Accepted publickey') - before.logins,
  };
}

describe('a described host', () => {
  it('probe --flake .#web needs nothing else: target and pin from the description, key from the agent', async () => {
    const r = await cli(['probe', '--flake', `${flake}#web`, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).facts.bootId).toEqual(expect.any(String));
    expect(r.stderr).toMatch(
      /host description: nixosConfigurations\.web\.config\.vpsNixos\.deploy: target, hostKey, method/,
    );
    expect(r.stderr).toContain('host key pin: from vpsNixos.deploy.hostKey of web');
    expect(r.stderr).toMatch(/ssh login: the ssh-agent at /);
    expect(r.logins).toBe(1);
  });

  it('plan plans with the described method (deploy-only: refused, the host is not NixOS)', async () => {
    const r = await cli(['plan', '--flake', `${flake}#web`, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).plan.refusal.reason).toMatch(/^method deploy-only needs NixOS/);
  });

  it('a described key the host does not have is refused before logging in, naming the description', async () => {
    const r = await cli(['probe', '--flake', `${flake}#wrongkey`]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/error: host key mismatch for \[127\.0\.0\.1\]:\d+: it presented/);
    expect(r.stdout).toContain(opensshFingerprint(sshd.hostKeyPub));
    expect(r.stdout).toMatch(/nothing was run on it/);
    expect(r.stdout).toMatch(/replace its line in vpsNixos\.deploy\.hostKey of wrongkey/);
    expect(r.logins).toBe(0);
  });

  it('an explicit pin replaces the described one, an explicit option its field', async () => {
    const r = await cli([
      'plan',
      '--flake',
      `${flake}#wrongkey`,
      '--known-hosts-file',
      sshd.knownHostsFile,
      '--method',
      'kexec',
      '--json',
    ]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/the options given replace its hostKey/);
    expect(r.stderr).toContain(`host key pin: from --known-hosts-file ${sshd.knownHostsFile}`);
    expect(r.logins).toBe(1);
  });

  it('a bad description stops the run before any connection, naming host and field', async () => {
    const r = await cli(['probe', '--flake', `${flake}#typo`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^vps-nixos: host 'typo': vpsNixos\.deploy\.hostkey: is not a field of the description\n {2}fix: write hostKey/,
    );
    expect(r.connections).toBe(0);
  });

  it('no description and no --target: refused before any connection, with both ways out', async () => {
    const r = await cli(['deploy', '--flake', `${flake}#bare`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /input 'target': is not given, and nixosConfigurations\.bare describes no host \(no vpsNixos\.deploy\.target\)/,
    );
    expect(r.stderr).toMatch(/fix: give --target user@host\[:port\], or describe the host/);
    expect(r.connections).toBe(0);
  });
});
