import type { Nix, NixResult } from '../../src/nix/nix';
import {
  applyExpression,
  configInstallable,
  evaluatePreflightInputs,
  PreflightError,
  SECTION_NAMES,
} from '../../src/preflight/evaluate';

/** A Nix that answers from a function of the args and records them. */
function fakeNix(answer: (args: string[]) => NixResult): Nix & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    run: async (args) => {
      calls.push(args);
      return answer(args);
    },
  };
}

const SECTIONS_JSON: Record<string, unknown> = {
  persistence: [{ root: '/persist', enable: true, directories: ['/etc/ssh'], files: [] }, null],
  etc: ['ssh/sshd_config'],
  ssh: { enable: true, startWhenNeeded: false, permitRootLogin: 'no', hostKeyPaths: [] },
  users: { mutableUsers: true, wheelNeedsPassword: true, autologinUser: null, users: [] },
  packages: {
    enableRedistributableFirmware: false,
    enableAllFirmware: false,
    firmware: [],
    systemPackages: [],
  },
  memory: {
    zramSwap: true,
    swapDevices: [],
    tmpUseTmpfs: false,
    tmpTmpfsSize: '50%',
    fileSystems: [],
  },
  disko: { disks: [], hasScript: false },
  network: {
    useDHCP: true,
    useNetworkd: false,
    interfaces: [
      {
        name: 'eth0',
        useDHCP: null,
        ipv4: [
          { address: '192.0.2.5', prefixLength: 24 },
          { address: null, prefixLength: null },
        ],
        ipv6: [],
      },
    ],
    defaultGateway: null,
    defaultGateway6: null,
    networkdEnable: true,
    networkd: [
      {
        name: 'wan',
        matchName: ['eth0'],
        dhcp: null,
        addresses: ['2001:db8::5/64'],
        gateways: ['fe80::1'],
      },
    ],
  },
};

const ok = (value: unknown): NixResult => ({ code: 0, stdout: JSON.stringify(value), stderr: '' });
const fail = (stderr: string): NixResult => ({ code: 1, stdout: '', stderr });

describe('preflight evaluation', () => {
  it('reads every section with one nix eval --json --apply on the config', async () => {
    const nix = fakeNix(() => ok(SECTIONS_JSON));
    const { inputs, nixCalls } = await evaluatePreflightInputs(nix, { ref: '/f', name: 'vps' });
    expect(nixCalls).toBe(1);
    expect(nix.calls).toHaveLength(1);
    const [args] = nix.calls;
    expect(args!.slice(0, 3)).toEqual(['eval', '--json', '/f#nixosConfigurations.vps.config']);
    expect(args![3]).toBe('--apply');
    expect(args![4]).toMatch(/^c: let/);
    expect(inputs.persistence).toHaveLength(1); // the null (a root that threw) is dropped
    expect(inputs.network!.interfaces[0]!.ipv4).toEqual([
      { address: '192.0.2.5', prefixLength: 24 },
    ]);
    expect(inputs.network!.networkd[0]!.addresses).toEqual([
      { address: '2001:db8::5', prefixLength: 64 },
    ]);
    expect(inputs.failed).toBeUndefined();
  });

  it('a section of another shape is reported as failed, the rest is kept', async () => {
    const nix = fakeNix(() => ok({ ...SECTIONS_JSON, ssh: { enable: 'yes' } }));
    const { inputs } = await evaluatePreflightInputs(nix, { ref: '/f', name: 'vps' });
    expect(inputs.ssh).toBeUndefined();
    expect(inputs.failed).toEqual([{ section: 'ssh', error: expect.stringMatching(/unexpected/) }]);
    expect(inputs.users).toBeDefined();
  });

  it('when the combined eval fails, each section is evaluated alone', async () => {
    const nix = fakeNix((args) => {
      const expr = args[4] ?? '';
      if (/packages =/.test(expr)) return fail('error: infinite recursion encountered');
      const section = SECTION_NAMES.find((s) => expr.includes(`  ${s} = `));
      return ok({ [section as string]: SECTIONS_JSON[section as string] });
    });
    const { inputs, nixCalls } = await evaluatePreflightInputs(nix, { ref: '/f', name: 'vps' });
    expect(nixCalls).toBe(1 + SECTION_NAMES.length);
    expect(inputs.failed).toEqual([
      { section: 'packages', error: 'error: infinite recursion encountered' },
    ]);
    expect(inputs.ssh!.permitRootLogin).toBe('no');
  });

  it('a flake or configuration that does not exist throws at once', async () => {
    const missing = fakeNix(() =>
      fail(
        "warning: the group 'nixbld' specified in 'build-users-group' does not exist\n" +
          "error: flake 'path:/f' does not provide attribute 'nixosConfigurations.nope.config'",
      ),
    );
    await expect(evaluatePreflightInputs(missing, { ref: '/f', name: 'nope' })).rejects.toThrow(
      /no nixosConfigurations\.nope/,
    );
    expect(missing.calls).toHaveLength(1);
    const gone = fakeNix(() =>
      fail("error: getting status of '/nowhere': No such file or directory"),
    );
    await expect(evaluatePreflightInputs(gone, { ref: '/nowhere', name: 'vps' })).rejects.toThrow(
      PreflightError,
    );
  });

  it('a warning about a missing group is not a missing flake', async () => {
    const nix = fakeNix((args) =>
      (args[4] ?? '').includes('  etc = ') && !(args[4] ?? '').includes('  ssh = ')
        ? ok({ etc: [] })
        : fail(
            "warning: the group 'nixbld' specified in 'build-users-group' does not exist\nerror: boom",
          ),
    );
    const { inputs } = await evaluatePreflightInputs(nix, { ref: '/f', name: 'vps' });
    expect(inputs.etc).toEqual([]);
    expect(inputs.failed).toHaveLength(SECTION_NAMES.length - 1);
  });

  it('quotes configuration names that are not identifiers', () => {
    expect(configInstallable({ ref: '.', name: 'vps-1' })).toBe(
      '.#nixosConfigurations.vps-1.config',
    );
    expect(configInstallable({ ref: '.', name: 'vps.example.org' })).toBe(
      '.#nixosConfigurations."vps.example.org".config',
    );
  });

  it('the expression reads only the sections asked for', () => {
    const e = applyExpression(['ssh']);
    expect(e).toContain('  ssh = ');
    expect(e).not.toContain('  users = ');
  });
});
