/** The CLI's inputs: the key never on the command line, from a file or VPS_NIXOS_SSH_PRIVATE_KEY. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from '../../src/cli/args';
import {
  KEY_ENV,
  cliInputs,
  findCommand,
  runCommand,
  usage,
  type Command,
} from '../../src/cli/commands';
import { InputError } from '../../src/errors';
import { keyPair } from '../helpers/keys';

const { privateKey } = keyPair();
const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-cli-'));
const keyFile = join(dir, 'deploy_key');
writeFileSync(keyFile, privateKey, { mode: 0o600 });
const FACTS = join(__dirname, '../fixtures/preflight/facts-debian-12-1gb-static.json');
const silent = { info: () => undefined, warn: () => undefined };
const command = (name: string): Command => findCommand(name)!;
const keyLines = privateKey.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'));

function thrown(fn: () => unknown): InputError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return e as InputError;
  }
  throw new Error('nothing was thrown');
}

describe('--ssh-private-key on the command line', () => {
  it('is refused, without echoing it, with the file option and the variable as the fix', () => {
    for (const name of ['probe', 'plan', 'check', 'bootstrap', 'deploy']) {
      const argv = [name, '--target', 'root@203.0.113.7', '--ssh-private-key', privateKey];
      const { options } = parseArgs(argv, (c) => findCommand(c)?.options);
      const e = thrown(() => cliInputs(command(name), options, {}));
      expect(e.input).toBe('ssh-private-key');
      expect(e.message).toMatch(/process list/);
      expect(e.fix).toMatch(/--ssh-private-key-file FILE/);
      expect(e.fix).toContain(KEY_ENV);
      for (const line of keyLines) expect(e.message + e.fix).not.toContain(line);
    }
  });
  it('is refused by runCommand before anything runs', async () => {
    await expect(
      runCommand(
        command('probe'),
        { target: 'root@203.0.113.7', 'ssh-private-key': privateKey, 'trust-on-first-use': 'true' },
        silent,
        {},
      ),
    ).rejects.toThrow(/input 'ssh-private-key': is not taken on the command line/);
  });
  it('says so in --help', () => {
    expect(usage(command('probe'))).toMatch(
      /--ssh-private-key VALUE +Not taken on the command line .*VPS_NIXOS_SSH_PRIVATE_KEY/,
    );
  });
});

describe(KEY_ENV, () => {
  it('gives the key when no key file is given, and is taken out of the environment', () => {
    const env: NodeJS.ProcessEnv = { [KEY_ENV]: privateKey, HOME: '/home/x' };
    const { raw, shownAs } = cliInputs(command('probe'), { target: 'root@203.0.113.7' }, env);
    expect(raw['ssh-private-key']).toBe(privateKey);
    expect(shownAs['ssh-private-key']).toBe(KEY_ENV);
    // nix, ssh and nixos-rebuild are spawned with this environment
    expect(env).toEqual({ HOME: '/home/x' });
  });
  it('yields to --ssh-private-key-file', () => {
    const env = { [KEY_ENV]: 'not the key' };
    const { raw, shownAs } = cliInputs(command('deploy'), { 'ssh-private-key-file': keyFile }, env);
    expect(raw['ssh-private-key']).toBe(privateKey);
    expect(shownAs['ssh-private-key']).toBe('ssh-private-key-file');
    expect(env).toEqual({});
  });
  it('is not read by a command that takes no key, but still removed', () => {
    const env = { [KEY_ENV]: privateKey };
    expect(cliInputs(command('build'), { flake: '.#vps' }, env).raw).toEqual({ flake: '.#vps' });
    expect(env).toEqual({});
  });
  it('is named when it holds no key', async () => {
    await expect(
      runCommand(command('plan'), { facts: FACTS }, silent, { [KEY_ENV]: 'hunter2' }),
    ).rejects.toThrow(/input 'VPS_NIXOS_SSH_PRIVATE_KEY': this is not a private key/);
  });
  it('plans from a facts file with the key from the environment', async () => {
    const listeners = process.listenerCount('SIGINT');
    const r = await runCommand(command('plan'), { facts: FACTS, json: 'true' }, silent, {
      [KEY_ENV]: privateKey,
    });
    expect(r.exitCode).toBe(0);
    expect((JSON.parse(r.output) as { plan: { method: string } }).plan.method).toBe('kexec');
    expect(process.listenerCount('SIGINT')).toBe(listeners);
  });
  it('is what the missing-key message points to', async () => {
    await expect(
      runCommand(command('probe'), { target: 'root@203.0.113.7' }, silent, {}),
    ).rejects.toMatchObject({
      message: "input 'ssh-private-key': is required to connect",
      fix: expect.stringContaining(
        `--ssh-private-key-file FILE, or the environment variable ${KEY_ENV}`,
      ) as string,
    });
  });
});

describe('a word after a boolean option', () => {
  it('is refused naming the boolean, not as an unknown option', () => {
    const e = thrown(() =>
      parseArgs(['plan', '--allow-low-ram', 'yes please'], (c) => findCommand(c)?.options),
    );
    expect(e.message).toBe("input 'allow-low-ram': 'yes please' is not true or false");
    expect(e.fix).toMatch(/--allow-low-ram true, --allow-low-ram false/);
  });
  it('still takes the boolean alone, or with its value', () => {
    for (const [argv, v] of [
      [['plan', '--allow-low-ram', '--method', 'kexec'], 'true'],
      [['plan', '--allow-low-ram', 'false'], 'false'],
      [['plan', '--allow-low-ram'], 'true'],
    ] as const)
      expect(parseArgs([...argv], (c) => findCommand(c)?.options).options['allow-low-ram']).toBe(v);
  });
});

describe('key material in the wrong place on the command line', () => {
  it('is not quoted by the argument parser', () => {
    for (const argv of [
      ['probe', privateKey],
      ['probe', `--${privateKey}`],
      ['probe', '--target', 'root@h', privateKey],
      ['plan', '--allow-low-ram', privateKey],
    ]) {
      const e = thrown(() => parseArgs(argv, (c) => findCommand(c)?.options));
      expect(e.input).toBe('(a private key, not shown)');
      for (const line of keyLines) expect(e.message + e.fix).not.toContain(line);
    }
  });
  it('is not quoted as a file option path', () => {
    const e = thrown(() =>
      cliInputs(command('probe'), { 'known-hosts-file': privateKey, target: 'root@h' }, {}),
    );
    expect(e.message).toBe(
      "input 'known-hosts-file': is given a private key instead of a path (not shown)",
    );
  });
  it('is refused unquoted when a file option reads a key where it wants known_hosts', async () => {
    const err = (await runCommand(
      command('probe'),
      { target: 'root@203.0.113.7', 'ssh-private-key-file': keyFile, 'known-hosts-file': keyFile },
      silent,
      {},
    ).catch((e: unknown) => e)) as InputError;
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toBe(
      "input 'known-hosts-file': holds a private key (its value is not shown)",
    );
    expect(err.fix).toMatch(/only as --ssh-private-key-file FILE, or the environment variable/);
    for (const line of keyLines) expect(err.message + err.fix).not.toContain(line);
  });
});
