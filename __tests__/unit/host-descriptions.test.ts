/**
 * Host descriptions (vpsNixos.deploy) and the fan-out, pure: each bad description names its host
 * and field with the fix; explicit inputs win; no machine under two names; the old JSON list.
 */
import {
  DESCRIBED_INPUTS,
  DESCRIPTION_FIELDS,
  DescriptionError,
  mergeDescription,
  parseDescription,
  publicKeyLine,
  type DescriptionState,
  type HostDescription,
} from '../../src/hosts/description';
import { descriptionsApply } from '../../src/hosts/eval';
import {
  ROW_INPUTS,
  describedFleet,
  planFleet,
  type FleetRequest,
  type HostRow,
} from '../../src/hosts/fleet';
import { INPUTS, parseConfig } from '../../src/inputs';
import { InputError } from '../../src/errors';
import { keyPair, opensshFingerprint } from '../helpers/keys';

const hostKey = keyPair().publicKey; // "ssh-ed25519 AAAA…"
const otherKey = keyPair().publicKey;
const [type, b64] = hostKey.split(' ') as [string, string];

/** What our module's option gives for a host that sets only these fields (nix/tests checks it). */
const moduleJson = (set: Record<string, unknown>) => ({
  buildHost: null,
  confirmTimeout: null,
  healthCheck: null,
  healthTimeout: null,
  healthUrl: null,
  hostKey: [],
  hostKeyFingerprint: [],
  method: null,
  target: null,
  useSudo: null,
  ...set,
});

function refused(host: string, value: unknown): DescriptionError {
  try {
    parseDescription(host, value);
  } catch (e) {
    expect(e).toBeInstanceOf(DescriptionError);
    expect(e).toBeInstanceOf(InputError); // the CLI exits 2, as for a bad option
    return e as DescriptionError;
  }
  throw new Error(`${JSON.stringify(value)} was accepted`);
}

describe('a description', () => {
  it("reads the module's JSON: nulls and [ ] are not set, keys lose their comment", () => {
    const d = parseDescription(
      'web',
      moduleJson({
        target: 'root@203.0.113.7',
        hostKey: [`${hostKey} root@web`],
        healthUrl: 'https://203.0.113.7/',
        useSudo: false,
        confirmTimeout: 90,
        _module: { args: {} },
      }),
    );
    expect(d).toEqual<HostDescription>({
      name: 'web',
      target: 'root@203.0.113.7',
      hostKeys: [hostKey],
      inputs: {
        'health-url': 'https://203.0.113.7/',
        'use-sudo': 'false',
        'confirm-timeout': '90',
      },
      fields: ['target', 'hostKey', 'useSudo', 'confirmTimeout', 'healthUrl'],
    });
  });

  it('is absent when nothing is set: no module, null, or the defaults', () => {
    expect(parseDescription('a', null)).toBeUndefined();
    expect(parseDescription('a', undefined)).toBeUndefined();
    expect(parseDescription('a', moduleJson({}))).toBeUndefined();
    expect(parseDescription('a', {})).toBeUndefined();
  });

  it('takes a plain attribute set (a flake without the module) and one key as a string', () => {
    const d = parseDescription('db', { target: 'deploy@[2001:db8::5]:2222', hostKey });
    expect(d?.hostKeys).toEqual([hostKey]);
    expect(d?.target).toBe('deploy@[2001:db8::5]:2222');
  });

  it('each field fills the input of the same name, every such input is a row input', () => {
    for (const [field, { input }] of Object.entries(DESCRIPTION_FIELDS)) {
      expect(INPUTS).toHaveProperty(input);
      expect(field).toBe(
        input === 'known-hosts'
          ? 'hostKey'
          : input.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()),
      );
    }
    for (const input of DESCRIBED_INPUTS) expect(ROW_INPUTS).toContain(input);
  });

  describe('refused, naming the host and the field, with the fix', () => {
    const cases: [string, Record<string, unknown>, string, RegExp, RegExp][] = [
      [
        'a missing target',
        { hostKey },
        'target',
        /is missing: the host is described \(hostKey\)/,
        /target = "root@203\.0\.113\.7"; to vpsNixos\.deploy of nixosConfigurations\.web/,
      ],
      [
        'a bad target',
        { target: 'root@a b' },
        'target',
        /'root@a b' is not a valid target/,
        /user@host\[:port\]/,
      ],
      [
        'a target not a string',
        { target: 7 },
        'target',
        /is a number, not a string/,
        /target = "root@/,
      ],
      ['an empty target', { target: ' ' }, 'target', /is empty/, /leave it out/],
      [
        'a malformed key',
        { target: 'root@a', hostKey: 'ssh-ed25519 AAAAnotakey' },
        'hostKey',
        /'ssh-ed25519 AAAAnotakey' is not an SSH public key/,
        /ssh_host_ed25519_key\.pub/,
      ],
      [
        'a key of another type than it says',
        { target: 'root@a', hostKey: `ssh-rsa ${b64}` },
        'hostKey',
        /is not an SSH public key/,
        /ssh-keyscan/,
      ],
      [
        'a known_hosts line for a key',
        { target: 'root@a', hostKey: `203.0.113.7 ${hostKey}` },
        'hostKey',
        /is a known_hosts line: it starts with the host name/,
        new RegExp(`give the key alone: hostKey = "${type} `),
      ],
      [
        'a key list with a number',
        { target: 'root@a', hostKey: [hostKey, 3] },
        'hostKey',
        /not a string or a list of strings/,
        /hostKey = "ssh-ed25519/,
      ],
      [
        'a bad fingerprint',
        { target: 'root@a', hostKeyFingerprint: 'MD5:aa' },
        'hostKeyFingerprint',
        /'MD5:aa' is not a SHA256 host key fingerprint/,
        /ssh-keygen -lf/,
      ],
      [
        'an unknown method',
        { target: 'root@a', method: 'nuke' },
        'method',
        /'nuke' is not a method/,
        /auto, kexec/,
      ],
      [
        'a string for a bool',
        { target: 'root@a', useSudo: 'yes' },
        'useSudo',
        /is a string \(yes\), not true or false/,
        /useSudo = true/,
      ],
      [
        'a timeout out of range',
        { target: 'root@a', confirmTimeout: 2 },
        'confirmTimeout',
        /'2' is not a whole number from 5 to 3600/,
        /seconds/,
      ],
      [
        'a fraction',
        { target: 'root@a', healthTimeout: 1.5 },
        'healthTimeout',
        /not a whole number/,
        /healthTimeout = 60/,
      ],
      [
        'a bad health URL',
        { target: 'root@a', healthUrl: 'ftp://x/' },
        'healthUrl',
        /is not an http\(s\) URL/,
        /http:\/\//,
      ],
      [
        'a build host with a port',
        { target: 'root@a', buildHost: 'b@c:22' },
        'buildHost',
        /names a port/,
        /ssh config/,
      ],
      [
        'confirm-wipe: never implied',
        { target: 'root@a', confirmWipe: '/dev/vda' },
        'confirmWipe',
        /is not a field of the description/,
        /confirmed per run, never by the description: give --confirm-wipe \/dev\/vda/,
      ],
      [
        'a disk',
        { target: 'root@a', disk: '/dev/vda' },
        'disk',
        /is not a field/,
        /--confirm-wipe/,
      ],
      [
        'known-hosts',
        { target: 'root@a', knownHosts: 'x' },
        'knownHosts',
        /is not a field/,
        /hostKey = "ssh-ed25519/,
      ],
      [
        'a kebab-case name',
        { target: 'root@a', 'health-url': 'https://a/' },
        'health-url',
        /is not a field/,
        /write healthUrl/,
      ],
      [
        'a typo',
        { target: 'root@a', tagret: 'root@b' },
        'tagret',
        /is not a field/,
        /the fields are target, hostKey, /,
      ],
    ];
    it.each(cases)('%s', (_, value, field, problem, fix) => {
      const e = refused('web', value);
      expect(e.host).toBe('web');
      expect(e.field).toBe(field);
      expect(e.message).toMatch(
        new RegExp(`^host 'web': vpsNixos\\.deploy\\.${field.replace(/[.-]/g, '\\$&')}: `),
      );
      expect(e.message).toMatch(problem);
      expect(e.fix).toMatch(fix);
    });

    it('a private key anywhere, without quoting it', () => {
      const { privateKey } = keyPair();
      const e = refused('web', { target: 'root@a', healthCheck: privateKey });
      expect(e.field).toBe('healthCheck');
      expect(e.message).toMatch(/holds a private key \(not shown\)/);
      expect(e.fix).toMatch(/readable in the Nix store/);
      for (const line of privateKey.split('\n').filter((l) => l.length > 20))
        expect(e.message + e.fix).not.toContain(line);
    });

    it('a description that is not an attribute set', () => {
      const e = refused('web', 'root@a');
      expect(e.message).toBe("host 'web': vpsNixos.deploy: is a string, not an attribute set");
    });
  });

  it('publicKeyLine keeps type and key, drops the comment', () => {
    expect(publicKeyLine(`  ${hostKey}  some comment `)).toBe(hostKey);
  });
});

describe('explicit inputs and the description', () => {
  const d = parseDescription('web', {
    target: 'root@203.0.113.7:2222',
    hostKey: [hostKey, otherKey],
    hostKeyFingerprint: opensshFingerprint(otherKey),
    method: 'kexec',
    healthUrl: 'https://203.0.113.7/',
  })!;

  it('the description fills what is not given; its keys pin the target', () => {
    const m = mergeDescription({ flake: '.#web' }, d);
    expect(m.raw).toEqual({
      flake: '.#web',
      target: 'root@203.0.113.7:2222',
      'known-hosts': `[203.0.113.7]:2222 ${hostKey}\n[203.0.113.7]:2222 ${otherKey}\n`,
      'host-key-fingerprint': opensshFingerprint(otherKey),
      method: 'kexec',
      'health-url': 'https://203.0.113.7/',
    });
    expect(m.overridden).toEqual([]);
    // The merged inputs are a Config by the same schema as any other.
    const cfg = parseConfig({ ...m.raw, 'ssh-private-key': keyPair().privateKey });
    expect(cfg.target?.port).toBe(2222);
    expect(cfg.method).toBe('kexec');
  });

  it('an explicit value wins; an explicit target gets the described keys for its own name', () => {
    const m = mergeDescription(
      { target: 'root@198.51.100.9', method: 'auto', 'health-url': '' },
      d,
    );
    expect(m.raw.target).toBe('root@198.51.100.9');
    expect(m.raw['known-hosts']).toBe(`198.51.100.9 ${hostKey}\n198.51.100.9 ${otherKey}\n`);
    expect(m.raw.method).toBe('auto');
    // '' is "not given", as for the action's inputs
    expect(m.raw['health-url']).toBe('https://203.0.113.7/');
    expect(m.overridden).toEqual(['target', 'method']);
  });

  it('any explicit pin replaces both described pins', () => {
    for (const pin of [
      { 'known-hosts': 'x ssh-ed25519 AAAA' },
      { 'host-key-fingerprint': 'SHA256:x' },
    ]) {
      const m = mergeDescription(pin, d);
      expect(m.raw['known-hosts']).toBe(pin['known-hosts']);
      expect(m.raw['host-key-fingerprint']).toBe(pin['host-key-fingerprint']);
      expect(m.overridden).toEqual(['known-hosts', 'host-key-fingerprint']);
    }
  });
});

describe('the fan-out', () => {
  const req = (r: Partial<FleetRequest>): FleetRequest => ({ flake: '.', explicit: {}, ...r });
  const read = (description: unknown): DescriptionState => ({ state: 'read', description });
  const three = new Map<string, DescriptionState>([
    ['web', read({ target: 'root@203.0.113.7', hostKey })],
    ['db', read(moduleJson({ target: 'deploy@[2001:db8::5]:2222', useSudo: true }))],
    ['api', read({ target: 'Root@API.example', healthUrl: 'https://api.example/health' })],
    ['laptop', read(moduleJson({}))],
    ['desktop', read(null)],
  ]);
  const fleet = (r: Partial<FleetRequest>, found = three) => {
    const p = planFleet(req(r));
    if (p.kind !== 'describe') throw new Error('not described');
    return describedFleet(p, found, req(r));
  };
  const row = (name: string, set: Partial<HostRow>): HostRow => ({
    name,
    flake: `.#${name}`,
    key: '',
    id: name,
    ...(Object.fromEntries(ROW_INPUTS.map((n) => [n, ''])) as Record<
      (typeof ROW_INPUTS)[number],
      string
    >),
    ...set,
  });

  it('all: every described host, by name; the rest listed as not described', () => {
    const f = fleet({ hosts: 'all' });
    expect(f.rows).toEqual([
      row('api', {
        target: 'Root@API.example',
        key: 'api.example',
        'health-url': 'https://api.example/health',
      }),
      row('db', {
        target: 'deploy@[2001:db8::5]:2222',
        key: '[2001:db8::5]:2222',
        'use-sudo': 'true',
      }),
      row('web', {
        target: 'root@203.0.113.7',
        key: '203.0.113.7',
        'known-hosts': `203.0.113.7 ${hostKey}\n`,
      }),
    ]);
    expect(f.undescribed).toEqual(['desktop', 'laptop']);
    // The flake without hosts is the same as all.
    expect(fleet({}).rows).toEqual(f.rows);
  });

  it('names, space or comma separated; explicit inputs in every row', () => {
    const f = fleet({
      hosts: 'web, db',
      explicit: { method: 'infect', 'confirm-wipe': '/dev/vda' },
    });
    expect(f.rows.map((r) => [r.name, r.method, r['confirm-wipe']])).toEqual([
      ['web', 'infect', '/dev/vda'],
      ['db', 'infect', '/dev/vda'],
    ]);
  });

  it('one configuration, with or without an explicit target', () => {
    expect(fleet({ flake: '.#web' }).rows.map((r) => r.target)).toEqual(['root@203.0.113.7']);
    const t = fleet({ flake: '.#web', explicit: { target: 'root@198.51.100.9' } }).rows[0]!;
    expect([t.target, t.key, t['known-hosts']]).toEqual([
      'root@198.51.100.9',
      '198.51.100.9',
      `198.51.100.9 ${hostKey}\n`,
    ]);
    // An undescribed configuration takes the target given.
    expect(fleet({ flake: '.#laptop', explicit: { target: 'root@a' } }).rows[0]!.target).toBe(
      'root@a',
    );
  });

  it('two names for one machine are refused, naming both', () => {
    const found = new Map(three);
    found.set('web2', read({ target: 'admin@203.0.113.7:22' }));
    expect(() => fleet({ hosts: 'all' }, found)).toThrow(
      expect.objectContaining({
        host: 'web2',
        field: 'target',
        message: expect.stringMatching(
          /^host 'web2': vpsNixos\.deploy\.target: is admin@203\.0\.113\.7:22, the machine web is described at too \(root@203\.0\.113\.7\): two names for one machine$/,
        ),
        fix: expect.stringMatching(/one configuration per machine/),
      }),
    );
    // The same host on another port is another machine.
    found.set('web2', read({ target: 'root@203.0.113.7:2222' }));
    expect(fleet({ hosts: 'all' }, found).rows).toHaveLength(4);
  });

  it('a bad description anywhere in the fleet names its host', () => {
    const found = new Map(three);
    found.set('cache', read({ target: 'root@c', hostKey: 'nope' }));
    expect(() => fleet({ hosts: 'all' }, found)).toThrow(
      expect.objectContaining({ host: 'cache', field: 'hostKey' }),
    );
    found.set('cache', { state: 'failed' });
    expect(() => fleet({ hosts: 'all' }, found)).toThrow(
      /host 'cache': vpsNixos\.deploy: does not evaluate/,
    );
  });

  it('a named host that is missing or not described is refused; target-optional keeps it', () => {
    expect(() => fleet({ hosts: 'web nope' })).toThrow(/has no nixosConfigurations\.nope/);
    expect(() => fleet({ hosts: 'laptop' })).toThrow(
      expect.objectContaining({ host: 'laptop', field: 'target' }),
    );
    expect(fleet({ flake: '.#laptop', targetOptional: true }).rows).toEqual([row('laptop', {})]);
    expect(() => fleet({ hosts: 'all' }, new Map([['x', read(null)]]))).toThrow(
      /\. describes no host \(not described: x\)/,
    );
  });

  it('explicit inputs are checked by their schema, naming the host', () => {
    expect(() => fleet({ hosts: 'web', explicit: { 'health-url': 'ftp://x' } })).toThrow(
      /input 'health-url': 'ftp:\/\/x' is not an http\(s\) URL \(host web\)/,
    );
  });

  it('requests that cannot be answered', () => {
    expect(() => planFleet(req({ hosts: 'all', explicit: { target: 'root@a' } }))).toThrow(
      /hosts': and target are both given/,
    );
    expect(() => planFleet(req({ flake: '.#web', hosts: 'all' }))).toThrow(
      /names one configuration \(web\)/,
    );
    expect(() => planFleet(req({ explicit: { target: 'root@a' } }))).toThrow(
      /names no configuration/,
    );
    expect(() => planFleet(req({ hosts: 'web "x"' }))).toThrow(/is not a configuration name/);
    expect(() => planFleet(req({ flake: 'a b' }))).toThrow(/is not a flake/);
  });
});

describe('the old JSON list (deploy.yml before descriptions), as the jq program read it', () => {
  const list = (hosts: string, more: Partial<FleetRequest> = {}) => {
    const p = planFleet({ flake: '.#my-vps', explicit: {}, hosts, ...more });
    if (p.kind !== 'list') throw new Error('not a list');
    return p.rows;
  };
  it('strings and objects, the defaults from the flake and confirm-wipe inputs', () => {
    const rows = list(
      '["root@203.0.113.7", {"target": "Deploy@Web.example:2222", "flake": ".#web", "name": "web 1", "confirm-wipe": "/dev/sda"}]',
      { explicit: { 'confirm-wipe': '/dev/vda' } },
    );
    expect(rows.map((r) => [r.target, r.flake, r.name, r['confirm-wipe'], r.key, r.id])).toEqual([
      ['root@203.0.113.7', '.#my-vps', '203.0.113.7', '/dev/vda', '203.0.113.7', '203.0.113.7'],
      ['Deploy@Web.example:2222', '.#web', 'web 1', '/dev/sda', 'web.example:2222', 'web-1'],
    ]);
  });
  it.each([
    ['[not json', /is not valid JSON/],
    ['[]', /non-empty JSON list/],
    ['{"target": "root@a"}', /non-empty JSON list/],
    ['[1]', /each entry/],
    ['[{"target": "root@a", "flak": ".#x"}]', /unknown key flak/],
    ['[{"flake": ".#x"}]', /without a target/],
    ['[{"target": "root@a", "name": 7}]', /are strings/],
    ['["root@a", "admin@A"]', /the same host twice: a/],
    [
      '[{"target": "root@a", "name": "x"}, {"target": "root@b", "name": "x"}]',
      /the same name twice/,
    ],
  ])('%s is refused', (hosts, want) => {
    expect(() => list(hosts)).toThrow(want);
  });
  it('no flake for an entry is refused', () => {
    expect(() => list('["root@a"]', { flake: '.' })).toThrow(/no flake for root@a/);
  });
});

describe('the evaluation', () => {
  it('asks for the names given (as a JSON string) or all, and reads only vpsNixos.deploy', () => {
    expect(descriptionsApply(['web', 'db-1'])).toContain(
      'builtins.fromJSON "[\\"web\\",\\"db-1\\"]"',
    );
    expect(descriptionsApply('all')).toContain('builtins.attrNames cs');
    expect(descriptionsApply('all')).toContain('c.config.vpsNixos.deploy or null');
    expect(() => descriptionsApply(['a${b}'])).toThrow(/internal/);
  });
});
