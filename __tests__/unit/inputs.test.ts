import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import {
  INPUTS,
  inputSchema,
  isBooleanInput,
  looksLikeKeyMaterial,
  parseConfig,
  withDefaults,
  type Config,
  type InputName,
  type RawInputs,
} from '../../src/inputs';
import { INFECT_DEFAULT_REVISION } from '../../src/infect/script';
import { InputError } from '../../src/errors';
import { keyPair } from '../helpers/keys';

const { privateKey, publicKey } = keyPair();
const pkcs8 = generateKeyPairSync('ed25519')
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();
const hostLine = (name: string) => `${name} ${publicKey.split(' ').slice(0, 2).join(' ')}`;

// kexec-tarball and infect-url name files that must exist when the inputs are read.
const files = mkdtempSync(join(tmpdir(), 'vps-nixos-inputs-'));
const tarballFile = join(files, 'kexec.tar.gz');
const infectFile = join(files, 'nixos-infect');
writeFileSync(tarballFile, 'stand-in');
writeFileSync(infectFile, '#!/bin/sh\n');
mkdirSync(join(files, 'a-directory'));

const good: RawInputs = {
  target: 'root@203.0.113.7',
  'ssh-private-key': privateKey,
  'known-hosts': hostLine('203.0.113.7'),
  'plan-only': 'true',
};

interface ActionYml {
  inputs: Record<string, { description: string; required?: boolean; default?: string }>;
  outputs: Record<string, unknown>;
  runs: { using: string; main: string; post: string; 'post-if'?: string };
}
const action = parseYaml(readFileSync(join(__dirname, '../../action.yml'), 'utf8')) as ActionYml;

describe('action.yml and the input schema agree', () => {
  const names = Object.keys(INPUTS).sort();
  it('has the same input names, in the same order', () => {
    expect(Object.keys(action.inputs)).toEqual(Object.keys(INPUTS));
    expect(Object.keys(inputSchema.shape)).toEqual(Object.values(INPUTS).map((i) => i.key));
  });
  it.each(names)('%s has the same description, default and required flag', (name) => {
    const yml = action.inputs[name]!;
    const spec: { description: string; required: boolean; default?: string } =
      INPUTS[name as InputName];
    expect(yml.description).toBe(spec.description);
    expect(yml.required ?? false).toBe(spec.required);
    expect(yml.default).toEqual(spec.default);
    expect(yml.description.length).toBeGreaterThan(10);
  });
  it('applies every documented default when the input is empty', () => {
    const defaults = withDefaults({});
    for (const [name, yml] of Object.entries(action.inputs)) {
      if (yml.default === undefined) expect(defaults[name as InputName]).toBeUndefined();
      else expect(defaults[name as InputName]).toBe(yml.default);
    }
    const cfg = parseConfig({ ...good });
    // measured (issue 17): 512 MB (MemTotal ≈ 457 MiB) and 384 MB (≈ 331 MiB, the installer on
    // ramfs) VPSes install with the initrd-only installer
    expect(cfg.minRamKexecBytes).toBe(320 * 1024 * 1024);
    expect(cfg.minRamInfectBytes).toBe(700 * 1024 * 1024);
    expect(cfg.method).toBe('auto');
    expect(cfg.trustOnFirstUse).toBe(false);
    expect(cfg.connectTimeoutSeconds).toBe(20);
  });
  it('rejects a missing required input (the runner does not enforce required)', () => {
    for (const name of names.filter((n) => INPUTS[n as InputName].required)) {
      const raw = { ...good, [name]: '' };
      expect(() => parseConfig(raw)).toThrow(InputError);
    }
  });
  it('runs on node24 with a post step that always runs', () => {
    expect(action.runs).toMatchObject({
      using: 'node24',
      main: 'dist/main/index.js',
      post: 'dist/post/index.js',
      'post-if': 'always()',
    });
    expect(Object.keys(action.outputs)).toEqual(expect.arrayContaining(['method', 'host-key']));
  });
});

// Every Config field; the compiler checks the list against Config both ways.
const CONFIG_KEYS = [
  'target',
  'sshPrivateKey',
  'knownHosts',
  'hostKeyFingerprints',
  'trustOnFirstUse',
  'method',
  'planOnly',
  'flake',
  'minRamKexecBytes',
  'minRamInfectBytes',
  'allowLowRam',
  'reinstall',
  'connectTimeoutSeconds',
  'connectRetries',
  'closureBudgetBytes',
  'installerBudgetBytes',
  'diskoWithDeps',
  'cache',
  'cacheMaxBytes',
  'pushTo',
  'githubToken',
  'kexecTarball',
  'kexecTarballSha256',
  'allowPreflightErrors',
  'confirmWipe',
  'zramBytes',
  'swapBytes',
  'patchUdevadm',
  'toplevel',
  'diskScript',
  'substituters',
  'trustedPublicKeys',
  'measureTrimming',
  'deployAction',
  'buildHost',
  'useSudo',
  'confirmTimeoutSeconds',
  'healthCheck',
  'healthUrl',
  'healthTimeoutSeconds',
  'rollback',
  'forceSwitch',
  'infectRevision',
  'infectUrl',
  'infectSha256',
  'nixosChannel',
] as const satisfies readonly (keyof Config)[];
const allListed: Exclude<keyof Config, (typeof CONFIG_KEYS)[number]> extends never ? true : false =
  true;

// The inputs the CLI takes as flags (without a value).
const BOOLEANS: InputName[] = [
  'trust-on-first-use',
  'plan-only',
  'allow-low-ram',
  'reinstall',
  'disko-with-deps',
  'cache',
  'allow-preflight-errors',
  'measure-trimming',
  'use-sudo',
  'rollback',
  'force-switch',
];

describe('the schema', () => {
  const store = (name: string) => `/nix/store/${'c'.repeat(32)}-${name}`;
  // Every input given (the type makes a new input fail to compile here until it is added).
  const every: Record<InputName, string> = {
    target: 'root@203.0.113.7',
    'ssh-private-key': privateKey,
    'known-hosts': hostLine('203.0.113.7'),
    'host-key-fingerprint': 'SHA256:' + 'A'.repeat(43),
    'trust-on-first-use': 'false',
    method: 'kexec',
    'plan-only': 'false',
    flake: '.#my-vps',
    'min-ram-kexec': '400MiB',
    'min-ram-infect': '700MiB',
    'allow-low-ram': 'false',
    reinstall: 'false',
    'connect-timeout': '20',
    'connect-retries': '3',
    'closure-budget': '3GiB',
    'installer-budget': '400MiB',
    'disko-with-deps': 'false',
    cache: 'true',
    'cache-max-size': '4GiB',
    'push-to': 'cachix:my-cache',
    'github-token': 'ghs_x',
    'allow-preflight-errors': 'false',
    'kexec-tarball': tarballFile,
    'kexec-tarball-sha256': 'a'.repeat(64),
    'confirm-wipe': '/dev/vda',
    'zram-size': '1GiB',
    'swap-size': '2GiB',
    'patch-udevadm': 'auto',
    toplevel: store('nixos-system-x'),
    'disk-script': store('disko'),
    substituters: 'https://cache.example',
    'trusted-public-keys': 'cache.example-1:AAAA=',
    'measure-trimming': 'false',
    action: 'switch',
    'build-host': 'root@builder',
    'use-sudo': 'false',
    'confirm-timeout': '60',
    'health-check': 'systemctl is-system-running',
    'health-url': 'http://203.0.113.7/',
    'health-timeout': '60',
    rollback: 'true',
    'force-switch': 'true',
    'infect-revision': INFECT_DEFAULT_REVISION,
    'infect-url': infectFile,
    'infect-sha256': 'b'.repeat(64),
    'nixos-channel': 'nixos-25.11',
  };

  it('produces every Config field, and nothing else', () => {
    expect(allListed).toBe(true);
    const cfg = parseConfig(every);
    expect(Object.keys(cfg).sort()).toEqual([...CONFIG_KEYS].sort());
    for (const key of CONFIG_KEYS) expect(cfg[key]).toBeDefined();
    expect(cfg).toMatchObject({
      hostKeyFingerprints: ['SHA256:' + 'A'.repeat(43)],
      deployAction: 'switch',
      forceSwitch: true,
      healthCheck: 'systemctl is-system-running',
      infectUrl: infectFile,
    });
  });
  it('always fills the fields that have a default or an empty value', () => {
    const cfg = parseConfig({ 'plan-only': 'true' }, { noConnection: true });
    expect(cfg).toMatchObject({
      hostKeyFingerprints: [],
      substituters: [],
      trustedPublicKeys: [],
      swapBytes: 2 * 1024 ** 3,
      forceSwitch: false,
      infectRevision: INFECT_DEFAULT_REVISION,
    });
    expect(cfg.target).toBeUndefined();
    expect(cfg.healthCheck).toBeUndefined();
    expect(parseConfig({ ...good, 'health-check': '  ' }).healthCheck).toBeUndefined();
  });
  it('knows which inputs are booleans', () => {
    expect(Object.keys(INPUTS).filter((n) => isBooleanInput(n as InputName))).toEqual(BOOLEANS);
    for (const name of BOOLEANS) expect(INPUTS[name]).toHaveProperty('default');
  });
  it.each(BOOLEANS)('%s takes true or false, and nothing else', (name) => {
    const flagOf = (value: string) => {
      const cfg = parseConfig({ ...good, flake: '.#my-vps', [name]: value });
      return cfg[INPUTS[name].key];
    };
    expect(flagOf('true')).toBe(true);
    expect(flagOf('FALSE')).toBe(false);
    for (const value of ['yes', '1']) {
      let err: unknown;
      try {
        flagOf(value);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).message).toBe(`input '${name}': '${value}' is not a boolean`);
      expect((err as InputError).fix).toBe('write true or false');
    }
  });
  it('reads force-switch (false unless given)', () => {
    expect(parseConfig({ ...good }).forceSwitch).toBe(false);
    expect(parseConfig({ ...good, 'force-switch': '' }).forceSwitch).toBe(false);
    expect(parseConfig({ ...good, 'force-switch': 'true' }).forceSwitch).toBe(true);
    expect(parseConfig({ ...good, 'force-switch': 'False' }).forceSwitch).toBe(false);
  });
});

describe('parseConfig', () => {
  it('parses a full valid config', () => {
    const cfg = parseConfig({
      ...good,
      target: 'deploy@[2001:db8::7]:2222',
      'known-hosts': hostLine('[2001:db8::7]:2222'),
      method: 'kexec',
      'min-ram-kexec': '1GiB',
      flake: '.#my-vps',
      'plan-only': 'false',
    });
    expect(cfg.target).toEqual({
      user: 'deploy',
      host: '2001:db8::7',
      port: 2222,
      knownHostsName: '[2001:db8::7]:2222',
    });
    expect(cfg.method).toBe('kexec');
    expect(cfg.minRamKexecBytes).toBe(1024 ** 3);
    expect(cfg.flake).toEqual({ ref: '.', name: 'my-vps' });
    expect(cfg.planOnly).toBe(false);
  });
  it('accepts a fingerprint pin without known_hosts, and TOFU without any pin', () => {
    const fp = 'SHA256:' + 'A'.repeat(43);
    expect(
      parseConfig({ ...good, 'known-hosts': '', 'host-key-fingerprint': fp }).hostKeyFingerprints,
    ).toEqual([fp]);
    expect(
      parseConfig({ ...good, 'known-hosts': '', 'trust-on-first-use': 'true' }).trustOnFirstUse,
    ).toBe(true);
  });
  it('reads the bootstrap inputs', () => {
    const top = `/nix/store/${'b'.repeat(32)}-nixos-system-x`;
    const c = parseConfig({
      ...good,
      'plan-only': 'false',
      flake: '',
      'confirm-wipe': '/dev/vda',
      'zram-size': '512MiB',
      'swap-size': '0',
      toplevel: top,
      substituters: 'https://a.example\n https://b.example',
      'trusted-public-keys': 'a.example-1:AAAA= b:BBBB',
    });
    expect(c).toMatchObject({
      confirmWipe: '/dev/vda',
      zramBytes: 512 * 2 ** 20,
      swapBytes: 0,
      toplevel: top,
      patchUdevadm: 'auto',
      substituters: ['https://a.example', 'https://b.example'],
      trustedPublicKeys: ['a.example-1:AAAA=', 'b:BBBB'],
    });
  });
  it('kexec-tarball: empty is the released installer, build builds ours, a missing file is refused', () => {
    expect(parseConfig({ ...good, 'kexec-tarball': '' }).kexecTarball).toBeUndefined();
    expect(parseConfig({ ...good, 'kexec-tarball': ' build ' }).kexecTarball).toBe('build');
    let err: InputError | undefined;
    try {
      parseConfig({ ...good, 'kexec-tarball': 'buildx' });
    } catch (e) {
      err = e as InputError;
    }
    expect(err?.message).toMatch(/input 'kexec-tarball': 'buildx' is not a file/);
    expect(err?.fix).toMatch(
      /build \(ours, built from nix\/\), or leave it empty for the released one/,
    );
  });

  it('needs no target, key or pin when planning from a facts file', () => {
    expect(() => parseConfig({ 'plan-only': 'true' }, { noConnection: true })).not.toThrow();
  });

  // Each bad input fails before any connection, naming the input and saying how to fix it.
  const bad: [string, RawInputs, string, RegExp][] = [
    ['target without host', { target: 'root@' }, 'target', /user@host/],
    ['target with bad port', { target: 'root@203.0.113.7:99999' }, 'target', /port/],
    ['target with port 0', { target: 'root@203.0.113.7:0' }, 'target', /port/],
    ['target with bad IPv4', { target: 'root@300.1.2.3' }, 'target', /IPv4/],
    ['IPv6 without brackets', { target: 'root@2001:db8::7' }, 'target', /brackets/],
    ['bracketed non-IPv6', { target: 'root@[203.0.113.7]:22' }, 'target', /IPv6/],
    ['target with spaces', { target: 'root@my host' }, 'target', /hostname/],
    ['bad user name', { target: 'r;m -rf@host' }, 'target', /login name/],
    ['unknown method', { method: 'nuke' }, 'method', /auto, kexec, infect, deploy-only/],
    ['negative size', { 'min-ram-kexec': '-5MiB' }, 'min-ram-kexec', /negative/],
    ['size with unknown unit', { 'min-ram-infect': '700 parsecs' }, 'min-ram-infect', /unit/],
    ['size that is not a size', { 'min-ram-kexec': 'lots' }, 'min-ram-kexec', /700MiB/],
    ['boolean that is not one', { 'plan-only': 'yes please' }, 'plan-only', /true or false/],
    [
      'key that is not a key',
      { 'ssh-private-key': 'hunter2' },
      'ssh-private-key',
      /BEGIN OPENSSH PRIVATE KEY/,
    ],
    [
      'PKCS8 PEM ed25519 key (ssh2 cannot read it)',
      { 'ssh-private-key': pkcs8 },
      'ssh-private-key',
      /ssh-keygen -p/,
    ],
    [
      'public key given as private',
      { 'ssh-private-key': publicKey },
      'ssh-private-key',
      /private key|not a private key/,
    ],
    [
      'known_hosts that is garbage',
      { 'known-hosts': 'this is not known hosts' },
      'known-hosts',
      /ssh-keyscan/,
    ],
    [
      'known_hosts without the host',
      { 'known-hosts': hostLine('198.51.100.9') },
      'known-hosts',
      /ssh-keyscan 203\.0\.113\.7/,
    ],
    [
      'known_hosts for port 22 while target uses 2222',
      { target: 'root@203.0.113.7:2222' },
      'known-hosts',
      /\[host\]:port/,
    ],
    ['no pin and no TOFU', { 'known-hosts': '' }, 'known-hosts', /ssh-keyscan/],
    ['bad fingerprint', { 'host-key-fingerprint': 'MD5:ab:cd' }, 'host-key-fingerprint', /SHA256/],
    ['flake without attribute', { flake: './flake', 'plan-only': 'false' }, 'flake', /PATH#NAME/],
    ['real run without flake', { 'plan-only': 'false' }, 'flake', /plan-only/],
    ['timeout zero', { 'connect-timeout': '0' }, 'connect-timeout', /whole number/],
    ['retries not a number', { 'connect-retries': 'many' }, 'connect-retries', /whole number/],
    ['confirm-wipe not a device', { 'confirm-wipe': 'vda' }, 'confirm-wipe', /\/dev\/vda/],
    ['confirm-wipe escaping /dev', { 'confirm-wipe': '/dev/../etc' }, 'confirm-wipe', /whole disk/],
    ['patch-udevadm unknown', { 'patch-udevadm': 'maybe' }, 'patch-udevadm', /auto, true or false/],
    ['zram-size not a size', { 'zram-size': 'half' }, 'zram-size', /1GiB/],
    ['toplevel not a store path', { toplevel: '/tmp/system' }, 'toplevel', /\/nix\/store/],
    [
      'disk-script without toplevel',
      { 'disk-script': `/nix/store/${'a'.repeat(32)}-disko` },
      'disk-script',
      /both/,
    ],
    ['substituter not a URL', { substituters: 'cache.example' }, 'substituters', /https:/],
    [
      'public key not a key',
      { 'trusted-public-keys': 'nope' },
      'trusted-public-keys',
      /name:base64/,
    ],
    ['deploy action unknown', { action: 'reboot' }, 'action', /switch, boot, test, dry-activate/],
    ['build-host not user@host', { 'build-host': 'root@bad host' }, 'build-host', /user@host/],
    ['confirm-timeout too short', { 'confirm-timeout': '2' }, 'confirm-timeout', /whole number/],
    ['health-url not http', { 'health-url': 'ftp://x/' }, 'health-url', /http:\/\//],
    ['health-timeout not a number', { 'health-timeout': 'soon' }, 'health-timeout', /whole/],
    ['rollback not a boolean', { rollback: 'maybe' }, 'rollback', /true or false/],
    ['force-switch not a boolean', { 'force-switch': 'yes' }, 'force-switch', /true or false/],
    ['infect-revision a branch', { 'infect-revision': 'master' }, 'infect-revision', /40-hex/],
    [
      'infect-revision not the default, no hash',
      { 'infect-revision': 'a'.repeat(40) },
      'infect-sha256',
      /sha256sum/,
    ],
    [
      'infect-url without a hash',
      { 'infect-url': 'https://example.org/nixos-infect' },
      'infect-sha256',
      /curl -sL https:\/\/example.org\/nixos-infect \| sha256sum/,
    ],
    ['infect-sha256 not a hash', { 'infect-sha256': 'abc' }, 'infect-sha256', /64 hex/],
    [
      'nixos-channel with a space',
      { 'nixos-channel': 'nixos 25.11' },
      'nixos-channel',
      /nixos-unstable/,
    ],
    // issue 20 item 5: refused while reading the inputs, not when the stage gets there
    [
      'kexec-tarball over ftp',
      { 'kexec-tarball': 'ftp://example.org/k.tar.gz', 'kexec-tarball-sha256': 'a'.repeat(64) },
      'kexec-tarball',
      /ftp:\/\/ is not supported.*https:\/\/ URL with kexec-tarball-sha256/,
    ],
    [
      'kexec-tarball as a file:// URL',
      { 'kexec-tarball': `FILE://${tarballFile}` },
      'kexec-tarball',
      /file:\/\/ URL.*as a path/,
    ],
    [
      'kexec-tarball that does not exist',
      { 'kexec-tarball': join(files, 'missing.tar.gz') },
      'kexec-tarball',
      /is not a file: it does not exist.*kexec\/bzImage/,
    ],
    [
      'kexec-tarball that is a directory',
      { 'kexec-tarball': join(files, 'a-directory') },
      'kexec-tarball',
      /is not a file \(a directory\?\)/,
    ],
    [
      'kexec-tarball URL without a host',
      { 'kexec-tarball': 'https://', 'kexec-tarball-sha256': 'a'.repeat(64) },
      'kexec-tarball',
      /not a valid URL/,
    ],
    [
      'kexec-tarball http: without slashes',
      { 'kexec-tarball': 'https:/example.org/k.tar.gz' },
      'kexec-tarball',
      /not a valid URL/,
    ],
    [
      'kexec-tarball over http without a hash',
      { 'kexec-tarball': 'http://example.org/k.tar.gz' },
      'kexec-tarball-sha256',
      /sha256sum/,
    ],
    [
      'kexec-tarball over HTTPS without a hash',
      { 'kexec-tarball': 'HTTPS://example.org/k.tar.gz' },
      'kexec-tarball-sha256',
      /sha256sum/,
    ],
    [
      'infect-url as a file:// URL',
      { 'infect-url': `file://${infectFile}` },
      'infect-url',
      /file:\/\/ URL.*as a path/,
    ],
    [
      'infect-url over ftp',
      { 'infect-url': 'ftp://example.org/nixos-infect', 'infect-sha256': 'b'.repeat(64) },
      'infect-url',
      /ftp:\/\/ is not supported.*infect-sha256/,
    ],
    [
      'infect-url that does not exist',
      { 'infect-url': './vendor/nixos-infect' },
      'infect-url',
      /'\.\/vendor\/nixos-infect' is not a file: it does not exist/,
    ],
    [
      'infect-url over http without a hash',
      { 'infect-url': 'http://10.0.0.1/nixos-infect' },
      'infect-sha256',
      /curl -sL http:\/\/10\.0\.0\.1\/nixos-infect \| sha256sum/,
    ],
    ['build-host with port 22', { 'build-host': 'root@builder:22' }, 'build-host', /ssh config/],
    ['build-host with a port', { 'build-host': 'builder.example.org:2222' }, 'build-host', /port/],
    [
      'build-host IPv6 with a port',
      { 'build-host': 'root@[2001:db8::1]:2222' },
      'build-host',
      /names a port/,
    ],
    [
      'build-host IPv6 in brackets (ssh takes them literally)',
      { 'build-host': 'root@[2001:db8::1]' },
      'build-host',
      /brackets.*Host alias/,
    ],
    ['size of 400 digits', { 'closure-budget': '9'.repeat(400) }, 'closure-budget', /too large/],
    ['size above 8 PiB', { 'cache-max-size': '8192TiB' }, 'cache-max-size', /too large/],
    ['size of a fraction of a byte', { 'swap-size': '0.0001' }, 'swap-size', /whole number/],
    ['size below one byte', { 'zram-size': '0.0001KiB' }, 'zram-size', /less than one byte/],
    ['negative size', { 'installer-budget': '-1' }, 'installer-budget', /negative/],
  ];
  it('pins nixos-infect by default and keeps a local copy without a hash', () => {
    const c = parseConfig({ ...good });
    expect(c.infectUrl).toBe(
      'https://raw.githubusercontent.com/elitak/nixos-infect/7563801d3ae68c975e4027f4e31a3906dca95f30/nixos-infect',
    );
    expect(c.infectSha256).toMatch(/^4cc3b5f8/);
    expect(c.nixosChannel).toBe('nixos-26.11');
    const f = parseConfig({ ...good, 'infect-url': infectFile });
    expect(f.infectSha256).toBeUndefined();
    const h = parseConfig({
      ...good,
      'infect-url': 'http://10.0.0.1/nixos-infect',
      'infect-sha256': 'AB'.repeat(32),
    });
    expect(h.infectSha256).toBe('ab'.repeat(32));
  });
  it.each(bad)('%s', (_title, override, input, fixPattern) => {
    let err: unknown;
    try {
      parseConfig({ ...good, ...override });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    const e = err as InputError;
    expect(e.input).toBe(input);
    expect(e.message).toContain(`'${input}'`);
    expect(`${e.message} ${e.fix}`).toMatch(fixPattern);
    expect(e.fix.length).toBeGreaterThan(5);
  });

  it('normalises an upper-case scheme and keeps local files as given', () => {
    const sha = 'a'.repeat(64);
    expect(
      parseConfig({
        ...good,
        'kexec-tarball': 'HTTPS://example.org/Kexec.tar.gz',
        'kexec-tarball-sha256': sha,
      }).kexecTarball,
    ).toBe('https://example.org/Kexec.tar.gz');
    expect(
      parseConfig({
        ...good,
        'kexec-tarball': 'Http://10.0.0.1/k.tgz',
        'kexec-tarball-sha256': sha,
      }).kexecTarball,
    ).toBe('http://10.0.0.1/k.tgz');
    expect(parseConfig({ ...good, 'kexec-tarball': ` ${tarballFile} ` }).kexecTarball).toBe(
      tarballFile,
    );
    expect(parseConfig({ ...good, 'kexec-tarball': '  ' }).kexecTarball).toBeUndefined();
    const infect = parseConfig({
      ...good,
      'infect-url': 'HTTPS://example.org/nixos-infect',
      'infect-sha256': sha,
    });
    expect(infect.infectUrl).toBe('https://example.org/nixos-infect');
  });
  it('shows URLs without their user info and query (where tokens live)', () => {
    const messages = (raw: RawInputs): string => {
      try {
        parseConfig({ ...good, ...raw });
      } catch (e) {
        return `${(e as InputError).message} ${(e as InputError).fix}`;
      }
      throw new Error('accepted');
    };
    for (const text of [
      messages({ 'kexec-tarball': 'ftp://me:s3cret@example.org/k.tgz?sig=t0ken' }),
      messages({ 'infect-url': 'FILE://me:s3cret@example.org/x?sig=t0ken' }),
      messages({ 'infect-url': 'https://me:s3cret@example.org/nixos-infect?sig=t0ken' }),
      messages({ substituters: 'ftp://me:s3cret@cache.example?sig=t0ken' }),
      messages({ 'health-url': 'ftp://me:s3cret@example.org/?sig=t0ken' }),
    ]) {
      expect(text).toContain('***');
      expect(text).not.toMatch(/s3cret|t0ken/);
    }
  });
  it('takes a build-host ssh can be given as is', () => {
    for (const host of ['root@builder', 'builder.example.org', 'nix@203.0.113.9'])
      expect(parseConfig({ ...good, 'build-host': host }).buildHost).toBe(host);
  });

  it('names the CLI file option the user gave', () => {
    expect(() =>
      parseConfig(
        { ...good, 'known-hosts': hostLine('198.51.100.9') },
        { shownAs: { 'known-hosts': 'known-hosts-file' } },
      ),
    ).toThrow(/input 'known-hosts-file'/);
  });
  describe('a private key given to another input', () => {
    const pem = pkcs8.trim();
    const body = privateKey
      .split('\n')
      .filter((l) => l && !l.startsWith('-----'))
      .join('\n');
    const secretLines = (key: string) =>
      key.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'));
    const cases: [InputName, string, string][] = [
      ['known-hosts', privateKey, 'OpenSSH key in known-hosts'],
      ['target', privateKey, 'OpenSSH key as the target'],
      ['host-key-fingerprint', body, 'OpenSSH key body without its armour'],
      ['health-check', `echo '${pem}'`, 'PEM key inside a command'],
      ['kexec-tarball', pem, 'PEM key as a path'],
      ['substituters', body, 'key body as URLs'],
      ['trusted-public-keys', privateKey.replace(/\n/g, ' '), 'key on one line'],
      ['github-token', privateKey, 'key as the token (also secret, never a key)'],
    ];
    it.each(cases)('%s: %s (%s) is refused without quoting it', (name, value) => {
      let err: unknown;
      try {
        parseConfig({ ...good, [name]: value });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InputError);
      const e = err as InputError;
      expect(e.input).toBe(name);
      expect(e.message).toBe(`input '${name}': holds a private key (its value is not shown)`);
      expect(e.fix).toMatch(/only as the ssh-private-key input/);
      for (const line of [...secretLines(privateKey), ...secretLines(pkcs8)]) {
        expect(e.message + e.fix).not.toContain(line);
      }
    });
    it('names the CLI option and says how the CLI takes the key', () => {
      expect(() =>
        parseConfig(
          { ...good, 'known-hosts': privateKey },
          { shownAs: { 'known-hosts': 'known-hosts-file' }, keyHow: '--ssh-private-key-file' },
        ),
      ).toThrow(
        expect.objectContaining({
          message: "input 'known-hosts-file': holds a private key (its value is not shown)",
          fix: expect.stringMatching(/^give the key only as --ssh-private-key-file, /) as string,
        }),
      );
    });
    it('leaves the key where it belongs, and public keys anywhere', () => {
      expect(parseConfig({ ...good }).sshPrivateKey).toBe(privateKey.trim() + '\n');
      expect(looksLikeKeyMaterial(hostLine('203.0.113.7'))).toBe(false);
      expect(looksLikeKeyMaterial(publicKey)).toBe(false);
      expect(looksLikeKeyMaterial('-----BEGIN PUBLIC KEY-----')).toBe(false);
      expect(looksLikeKeyMaterial('-----BEGIN RSA PRIVATE KEY-----')).toBe(true);
      expect(looksLikeKeyMaterial('-----BEGIN ENCRYPTED PRIVATE KEY-----')).toBe(true);
    });
  });

  it('never echoes the private key in an error', () => {
    const mangled = privateKey.replace(/\n(\S)/, '\n$1$1');
    try {
      parseConfig({ ...good, 'ssh-private-key': mangled });
    } catch (e) {
      const text = `${(e as InputError).message} ${(e as InputError).fix}`;
      for (const line of privateKey
        .split('\n')
        .filter((l) => l.length > 20 && !l.startsWith('-----'))) {
        expect(text).not.toContain(line);
      }
      return;
    }
    throw new Error('a mangled key was accepted');
  });
});
