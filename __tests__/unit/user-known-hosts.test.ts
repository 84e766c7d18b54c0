/**
 * The known_hosts a user keeps (~/.ssh/known_hosts, the CLI's pin when none is given): hashed
 * names as ssh-keygen -H wrote them, [host]:port, comma lists, markers, lines it cannot use; the
 * CLI's choice of key (file, variable, ssh-agent) and pin; and the deploy's ssh options for each.
 */
import { homedir } from 'node:os';
import {
  entryMatches,
  expectedFingerprints,
  judgeHostKey,
  parseKnownHosts,
  pinFor,
  userKnownHostsPath,
  whyNotPinned,
} from '../../src/ssh/hostkeys';
import { parseConfig } from '../../src/inputs';
import { findCommand, runCommand, usage } from '../../src/cli/commands';
import { nixSshOpts } from '../../src/deploy/sshopts';
import { parseTarget, type Target } from '../../src/target';
import { blobOf, hashedName, keyPair, opensshFingerprint } from '../helpers/keys';

/** Written by `ssh-keygen -H` (OpenSSH 9.2) from `[203.0.113.7]:2222 K1` and `vps.example K2`. */
const K1 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAZch/KcxeFc39FBU4WqhvGrEqkoN6HiwmNHqW0WF52/';
const K2 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIv04SWWj0LHxBvVWIKuUUkqKXalUyEWUxbMbHk1fhBp';
const HASHED = [
  `|1|94iMFzlIJY1NEabz2L66RvNCNnQ=|FNEchOPm4BZ59AfWsoQ1ypF9JRM= ${K1}`,
  `|1|/jtPf7uI3+rCYGSIAe23VDG3EZQ=|zER8qP3OuUFTnjAy/i9A1Yn3zMA= ${K2}`,
].join('\n');
const SOURCE = '~/.ssh/known_hosts';

const keyPart = (pub: string) => pub.split(' ').slice(0, 2).join(' ');
const other = keyPart(keyPair().publicKey);
const silent = { info: () => undefined, warn: () => undefined };

describe('hashed |1|salt|hash names', () => {
  it('match the name ssh-keygen -H hashed: [host]:port off port 22, the plain host on 22', () => {
    const { entries, errors } = parseKnownHosts(HASHED);
    expect(errors).toEqual([]);
    expect(entries.map((e) => e.hosts.kind)).toEqual(['hashed', 'hashed']);
    expect(entries.map((e) => entryMatches(e, '[203.0.113.7]:2222'))).toEqual([true, false]);
    expect(entries.map((e) => entryMatches(e, 'vps.example'))).toEqual([false, true]);
    // the same host on another port, or on 22, is another name
    expect(entries.some((e) => entryMatches(e, '203.0.113.7'))).toBe(false);
    expect(entries.some((e) => entryMatches(e, '[203.0.113.7]:22'))).toBe(false);
    expect(entries.some((e) => entryMatches(e, '[vps.example]:2222'))).toBe(false);
  });

  it('match a host name written in capitals (ssh lowercases it before hashing)', () => {
    const pin = pinFor('VPS.Example', HASHED, []);
    expect(pin.keys.map((k) => k.blob.equals(blobOf(K2)))).toEqual([true]);
    expect(pin.keys[0]!.line).toBe(2);
  });

  it('are reported, not guessed, when malformed', () => {
    const { entries, errors } = parseKnownHosts(`|1|onlysalt ${K1}\n${HASHED}`);
    expect(errors).toEqual(["line 1: malformed hashed host '|1|onlysalt'"]);
    expect(entries).toHaveLength(2);
  });
});

describe('plain names', () => {
  it('a comma list names each host; [host]:port only that port; a comment after the key is ignored', () => {
    const text = `vps.example,203.0.113.7,[203.0.113.7]:2222 ${K1} root@laptop\n`;
    for (const n of ['vps.example', '203.0.113.7', '[203.0.113.7]:2222', 'VPS.EXAMPLE'])
      expect(pinFor(n, text, []).keys).toHaveLength(1);
    for (const n of ['[203.0.113.7]:2223', '[vps.example]:2222', 'vps.example.org'])
      expect(pinFor(n, text, []).keys).toHaveLength(0);
  });

  it('wildcards and negations, as in OpenSSH', () => {
    const text = `*.example,!db.example ${K1}\n[198.51.100.?]:22?? ${K2}\n`;
    expect(pinFor('web.example', text, []).keys).toHaveLength(1);
    expect(pinFor('db.example', text, []).keys).toHaveLength(0);
    expect(pinFor('[198.51.100.4]:2222', text, []).keys).toHaveLength(1);
    expect(pinFor('[198.51.100.4]:22', text, []).keys).toHaveLength(0);
  });

  it('every key the file has for the host is pinned, each with its line', () => {
    const text = `# mine\nh ${K1}\nother ${other}\nh,h2 ${K2}\n`;
    const pin = pinFor('h', text, [], SOURCE);
    expect(pin.keys.map((k) => k.line)).toEqual([2, 4]);
    expect(expectedFingerprints(pin)).toEqual([
      `ssh-ed25519 ${opensshFingerprint(K1)} (~/.ssh/known_hosts line 2)`,
      `ssh-ed25519 ${opensshFingerprint(K2)} (~/.ssh/known_hosts line 4)`,
    ]);
  });
});

describe('markers', () => {
  it('@revoked refuses that key even when another line pins it (by name, *, or hashed)', () => {
    for (const hosts of ['h', '*', hashedName('h')]) {
      const pin = pinFor('h', `h ${K1}\nh ${K2}\n@revoked ${hosts} ${K1}\n`, [], SOURCE);
      expect(judgeHostKey(pin, blobOf(K1))).toEqual({ kind: 'revoked', line: 3 });
      expect(judgeHostKey(pin, blobOf(K2))).toEqual({ kind: 'pinned' });
    }
  });

  it('@revoked for another host does not touch this one', () => {
    const pin = pinFor('h', `h ${K1}\n@revoked other ${K1}\n`, []);
    expect(judgeHostKey(pin, blobOf(K1))).toEqual({ kind: 'pinned' });
  });

  it('@cert-authority lines pin nothing, and the reason says so', () => {
    const pin = pinFor(
      'h',
      `@cert-authority h ${K1}\n@cert-authority *.example ${K2}\n`,
      [],
      SOURCE,
    );
    expect(pin.keys).toEqual([]);
    expect(judgeHostKey(pin, blobOf(K1))).toEqual({ kind: 'unpinned' });
    expect(whyNotPinned(pin, 'h')).toBe(
      '~/.ssh/known_hosts has only @cert-authority lines for h, and host certificates are not supported',
    );
  });

  it('an unknown marker is a line that cannot be used; the rest still pins', () => {
    const text = `@trusted h ${K2}\nh ${K1}\n`;
    expect(parseKnownHosts(text).errors).toEqual(['line 1: unknown marker @trusted']);
    expect(pinFor('h', text, []).keys.map((k) => k.line)).toEqual([2]);
  });

  it('whyNotPinned names the file the pin was looked for in', () => {
    expect(whyNotPinned(pinFor('h', `other ${K1}\nx ${K2}\n`, [], SOURCE), 'h')).toBe(
      '~/.ssh/known_hosts has 2 key lines, none for h',
    );
    expect(whyNotPinned(pinFor('h', `@revoked h ${K1}\n`, [], SOURCE), 'h')).toBe(
      '~/.ssh/known_hosts marks every key it has for h @revoked (line 1)',
    );
    // without a source, the input's name, as before
    expect(whyNotPinned(pinFor('h', `other ${K1}\n`, []), 'h')).toBe(
      'known-hosts has 1 key line, none for h',
    );
  });
});

describe('where ~/.ssh/known_hosts is', () => {
  it('under HOME, else the home directory of the user', () => {
    expect(userKnownHostsPath({ HOME: '/home/ada' })).toBe('/home/ada/.ssh/known_hosts');
    expect(userKnownHostsPath({})).toBe(`${homedir()}/.ssh/known_hosts`);
    expect(userKnownHostsPath({ HOME: '' })).toBe(`${homedir()}/.ssh/known_hosts`);
  });
});

describe('the CLI: a key or the ssh-agent; a pin or ~/.ssh/known_hosts', () => {
  const probe = findCommand('probe')!;
  const target = 'root@203.0.113.7';

  it('without key and agent: refused before connecting, naming the input and both fixes', async () => {
    await expect(
      runCommand(probe, { target }, silent, { HOME: '/nonexistent' }),
    ).rejects.toMatchObject({
      message: "input 'ssh-private-key': is required to connect",
      fix: 'pass the deploy key: --ssh-private-key-file FILE, or the environment variable VPS_NIXOS_SSH_PRIVATE_KEY, or run an ssh-agent with the key loaded (SSH_AUTH_SOCK is not set)',
    });
  });

  it('with SSH_AUTH_SOCK naming no agent: refused before connecting', async () => {
    await expect(
      runCommand(probe, { target }, silent, { SSH_AUTH_SOCK: '/nonexistent/agent.sock' }),
    ).rejects.toMatchObject({
      message: expect.stringMatching(
        /^input 'SSH_AUTH_SOCK': no ssh-agent answers at \/nonexistent\/agent\.sock/,
      ) as string,
    });
  });

  it('the action keeps requiring its key and a pin: the CLI options are not its defaults', () => {
    const raw = { target, 'plan-only': 'true' };
    const missing = (() => {
      try {
        parseConfig(raw);
      } catch (e) {
        return e as Error & { fix: string };
      }
    })();
    expect(missing?.message).toBe("input 'ssh-private-key': is required to connect");
    expect(missing?.fix).not.toMatch(/agent/);
    expect(() => parseConfig({ ...raw, 'ssh-private-key': keyPair().privateKey })).toThrow(
      /no host key is pinned for 203\.0\.113\.7/,
    );
    // the CLI's: an agent socket stands for the key, ~/.ssh/known_hosts for the pin
    const cfg = parseConfig(raw, { sshAgent: { socket: '/a.sock' }, userKnownHosts: true });
    expect(cfg.sshPrivateKey).toBeUndefined();
    expect(cfg.knownHosts).toBeUndefined();
  });

  it('--help says where the key and the pin come from when not given', () => {
    const text = usage(probe);
    expect(text).toMatch(/--ssh-private-key-file VALUE .*ssh-agent's keys: SSH_AUTH_SOCK/);
    expect(text).toMatch(/--known-hosts-file VALUE .*~\/\.ssh\/known_hosts/);
    expect(text).toContain(
      '$SSH_AUTH_SOCK (nix-copy-closure and nixos-rebuild use the same agent)',
    );
    expect(text).toContain('nothing is trusted on first use unless');
    expect(usage(findCommand('build')!)).not.toContain('SSH_AUTH_SOCK');
  });
});

describe("the deploy's ssh options", () => {
  const t = parseTarget('root@203.0.113.7:2222') as Target;
  it('with a key file: that key only', () => {
    const opts = nixSshOpts(t, { knownHostsFile: '/r/kh', keyFile: '/r/id' });
    expect(opts).toContain('-o IdentityFile=/r/id -o IdentitiesOnly=yes');
    expect(opts).not.toContain('IdentityAgent');
  });
  it("without one: the agent of SSH_AUTH_SOCK, whatever the user's ssh config says", () => {
    const opts = nixSshOpts(t, { knownHostsFile: '/r/kh' });
    expect(opts).not.toContain('IdentityFile');
    expect(opts).toContain('-o IdentityAgent=SSH_AUTH_SOCK -o IdentitiesOnly=no');
    // still pinned and never prompting
    expect(opts).toContain('-o StrictHostKeyChecking=yes');
    expect(opts).toContain('-o BatchMode=yes');
  });
});
