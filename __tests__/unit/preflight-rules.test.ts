import {
  canonicalAddress,
  findings,
  publicKeyId,
  tmpfsSizeBytes,
  type PreflightContext,
  type PreflightFacts,
} from '../../src/preflight/rules';
import { renderFindingsMarkdown, renderFindingsText, hasErrors } from '../../src/preflight/run';
import { parseCidr } from '../../src/preflight/evaluate';
import type { Finding, PreflightInputs, UserInputs } from '../../src/preflight/types';

const GiB = 1024 ** 3;
const DEPLOY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK/UnUMJXly6GKaAAJ4BbkHdfkE07/ga+GhJ9cZ/aJVV';
const OTHER = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE+zoHjXsGNQfez3JT7f/Xtrjts1/iIJW9RSOmDCpdbJ';

const user = (name: string, over: Partial<UserInputs> = {}): UserInputs => ({
  name,
  isNormalUser: name !== 'root',
  groups: [],
  password: 'unset',
  initialPassword: 'unset',
  hashedPassword: 'unset',
  initialHashedPassword: 'unset',
  hashedPasswordFile: null,
  authorizedKeys: [],
  ...over,
});

/** The clean fixture (fixtures/preflight/clean), by hand. */
function clean(): PreflightInputs {
  return {
    persistence: [
      {
        root: '/persist',
        enable: true,
        directories: ['/var/lib/sing-box', '/var/log', '/var/lib/nixos'],
        files: ['/etc/machine-id', '/etc/ssh/ssh_host_ed25519_key'],
      },
    ],
    etc: ['sing-box/config.json', 'ssh/sshd_config'],
    ssh: {
      enable: true,
      startWhenNeeded: false,
      permitRootLogin: 'prohibit-password',
      hostKeyPaths: ['/etc/ssh/ssh_host_ed25519_key'],
    },
    users: {
      mutableUsers: false,
      wheelNeedsPassword: true,
      autologinUser: null,
      users: [
        user('root', { hashedPassword: 'set', authorizedKeys: [`${DEPLOY} deploy@ci`] }),
        user('ops', { groups: ['users', 'wheel'], hashedPassword: 'set', authorizedKeys: [OTHER] }),
      ],
    },
    packages: {
      enableRedistributableFirmware: false,
      enableAllFirmware: false,
      firmware: [],
      systemPackages: ['htop', 'sing-box', 'git'],
    },
    memory: {
      zramSwap: true,
      swapDevices: [{ device: '/nix/swapfile', sizeMiB: 2048 }],
      tmpUseTmpfs: true,
      tmpTmpfsSize: '25%',
      fileSystems: [
        { mountPoint: '/', fsType: 'tmpfs', device: 'none' },
        { mountPoint: '/nix', fsType: 'btrfs', device: '/dev/vda2' },
      ],
    },
    disko: { disks: [{ name: 'main', device: '/dev/vda' }], hasScript: true },
    network: {
      useDHCP: false,
      useNetworkd: false,
      interfaces: [
        {
          name: 'ens3',
          useDHCP: null,
          ipv4: [{ address: '192.0.2.10', prefixLength: 24 }],
          ipv6: [{ address: '2001:db8:1::10', prefixLength: 64 }],
        },
      ],
      defaultGateway: '192.0.2.1',
      defaultGateway6: '2001:db8:1::1',
      networkdEnable: false,
      networkd: [],
    },
  };
}

/** A 1 GB KVM guest with static addresses (fixtures/facts/debian-12-kvm.txt). */
function host(over: Partial<PreflightFacts> = {}): PreflightFacts {
  return {
    memTotalBytes: 1028231168,
    virtualization: 'kvm',
    rootDisk: '/dev/vda',
    disks: [{ name: 'vda', path: '/dev/vda', sizeBytes: 25 * GiB, partitions: [] }],
    tmp: { fsType: 'ext4', sizeBytes: 25 * GiB, availBytes: 20 * GiB, mountpoint: '/' },
    interfaces: [
      {
        name: 'ens3',
        addresses: [
          {
            family: 'inet',
            address: '192.0.2.10',
            prefixLength: 24,
            scope: 'global',
            dynamic: false,
          },
          {
            family: 'inet6',
            address: '2001:db8:1::10',
            prefixLength: 64,
            scope: 'global',
            dynamic: false,
          },
          { family: 'inet6', address: 'fe80::1', prefixLength: 64, scope: 'link', dynamic: false },
        ],
      },
    ],
    routes: [
      { family: 'inet', dst: 'default', gateway: '192.0.2.1', dev: 'ens3', onlink: true },
      { family: 'inet6', dst: 'default', gateway: '2001:db8:1::1', dev: 'ens3', onlink: true },
    ],
    ...over,
  };
}

const full = (over: Partial<PreflightContext> = {}): PreflightContext => ({
  facts: host(),
  plan: { method: 'kexec' },
  deployPublicKeys: [`${DEPLOY} deploy@ci`],
  ...over,
});

/** `severity id` of each finding, sorted. */
const ids = (found: Finding[]) => found.map((f) => `${f.severity} ${f.id}`).sort();
const check = (edit: (i: PreflightInputs) => void, ctx: PreflightContext = full()) => {
  const inputs = clean();
  edit(inputs);
  return findings(inputs, ctx);
};

describe('preflight rules', () => {
  it('the clean configuration has no finding at all', () => {
    expect(findings(clean(), full())).toEqual([]);
  });

  describe('persist-activation-dir', () => {
    it.each([['/etc/ssh'], ['/etc/ssh/'], ['/etc/containers'], ['/etc']])('%s → error', (dir) => {
      const f = check((i) => i.persistence![0]!.directories.push(dir));
      expect(ids(f)).toEqual(['error persist-activation-dir']);
      expect(f[0]!.why).toMatch(/bug 4/);
    });

    it('a directory holding environment.etc entries → error naming them', () => {
      const f = check((i) => i.persistence![0]!.directories.push('/etc/sing-box'));
      expect(ids(f)).toEqual(['error persist-activation-dir']);
      expect(f[0]!.message).toContain('environment.etc: /etc/sing-box/config.json');
    });

    it('the /etc/ssh fix lists the host keys, private and public', () => {
      const [f] = check((i) => {
        i.persistence![0]!.directories.push('/etc/ssh');
        i.ssh!.hostKeyPaths = ['/etc/ssh/ssh_host_ed25519_key', '/etc/ssh/ssh_host_rsa_key'];
      });
      expect(f!.fix).toContain('"/etc/ssh/ssh_host_rsa_key.pub"');
      expect(f!.fix).toContain('directories = [ /* remove "/etc/ssh" */ ]');
    });

    it('state directories, /etc/nixos without etc entries, and disabled roots pass', () => {
      expect(
        check((i) => {
          i.persistence![0]!.directories.push('/etc/nixos', '/var/lib/containers');
          i.persistence!.push({
            root: '/old',
            enable: false,
            directories: ['/etc/ssh'],
            files: [],
          });
        }),
      ).toEqual([]);
    });
  });

  describe('ssh and the deploy key', () => {
    it('sshd disabled → error', () => {
      expect(ids(check((i) => (i.ssh!.enable = false)))).toEqual(['error sshd-disabled']);
    });

    it('the deploy key matches whatever its comment and options', () => {
      expect(
        check(
          (i) => (i.users!.users[0]!.authorizedKeys = [`from="192.0.2.0/24",no-pty ${DEPLOY}`]),
        ),
      ).toEqual([]);
      expect(findings(clean(), full({ deployPublicKeys: [`${DEPLOY}\n`] }))).toEqual([]);
    });

    it('a missing deploy key → error with the key in the fix', () => {
      const f = check((i) => (i.users!.users[0]!.authorizedKeys = [OTHER]));
      expect(ids(f)).toEqual(['error deploy-key-missing']);
      expect(f[0]!.message).toMatch(
        /users\.users\.root\.openssh\.authorizedKeys \(1 other key there\)/,
      );
      expect(f[0]!.fix).toContain(DEPLOY);
    });

    it("the ssh-agent's keys: one of them authorized is enough; none → error naming them", () => {
      const agent = full({ deployPublicKeys: [OTHER, `${DEPLOY} agent@laptop`] });
      expect(findings(clean(), agent)).toEqual([]);
      const f = check(
        (i) => (i.users!.users[0]!.authorizedKeys = []),
        full({
          deployPublicKeys: [OTHER, DEPLOY],
        }),
      );
      expect(ids(f)).toEqual(['error deploy-key-missing']);
      expect(f[0]!.message).toMatch(/none of the ssh-agent's 2 keys .* is in users\.users\.root/);
      expect(
        check(
          (i) => (i.users!.users[0]!.authorizedKeys = [OTHER]),
          full({
            deployPublicKeys: [DEPLOY, OTHER],
          }),
        ),
      ).toEqual([]);
    });

    it('checks the target user, and a target user the config lacks', () => {
      expect(ids(findings(clean(), full({ targetUser: 'ops' })))).toEqual([
        'error deploy-key-missing',
      ]);
      const f = findings(clean(), full({ targetUser: 'deploy' }));
      expect(f[0]!.message).toMatch(/"deploy" is not defined/);
      expect(
        check((i) => i.users!.users[1]!.authorizedKeys.push(DEPLOY), full({ targetUser: 'ops' })),
      ).toEqual([]);
    });

    it('root as deploy user with PermitRootLogin no → error', () => {
      expect(ids(check((i) => (i.ssh!.permitRootLogin = 'no')))).toEqual([
        'error deploy-key-missing',
      ]);
    });

    it('socket activation warns only below 2 GiB', () => {
      expect(ids(check((i) => (i.ssh!.startWhenNeeded = true)))).toEqual([
        'warning sshd-socket-activated',
      ]);
      expect(
        check(
          (i) => (i.ssh!.startWhenNeeded = true),
          full({ facts: host({ memTotalBytes: 4 * GiB }) }),
        ),
      ).toEqual([]);
    });

    it('publicKeyId reads type and blob', () => {
      expect(publicKeyId(`${DEPLOY} a comment`)).toBe(DEPLOY);
      expect(publicKeyId(`command="x y",no-pty ${DEPLOY}`)).toBe(DEPLOY);
      expect(publicKeyId('ecdsa-sha2-nistp256 AAAAE2VjZHNh= c')).toBe(
        'ecdsa-sha2-nistp256 AAAAE2VjZHNh=',
      );
      expect(publicKeyId('not a key')).toBeUndefined();
    });
  });

  describe('no-console-login', () => {
    const noPasswords = (i: PreflightInputs) => {
      i.users!.users = i.users!.users.map((u) => ({ ...u, hashedPassword: 'unset' as const }));
    };

    it('no password for root or wheel → warning citing bug 5', () => {
      const f = check(noPasswords);
      expect(ids(f)).toEqual(['warning no-console-login']);
      expect(f[0]!.why).toMatch(/bug 5/);
      expect(f[0]!.message).toMatch(/mutableUsers = false/);
    });

    it('hashedPasswordFile alone does not count (the agenix chicken and egg)', () => {
      const f = check((i) => {
        noPasswords(i);
        i.users!.users[0]!.hashedPasswordFile = '/run/agenix/root';
      });
      expect(f[0]!.message).toContain('/run/agenix/root');
      expect(f[0]!.fix).toMatch(/keep hashedPasswordFile/);
    });

    it("root's NixOS default initialHashedPassword '!' is overridden by initialPassword (the seed's fix)", () => {
      expect(
        check((i) => {
          noPasswords(i);
          i.users!.mutableUsers = true;
          Object.assign(i.users!.users[0]!, {
            initialHashedPassword: 'locked',
            initialPassword: 'set',
          });
        }),
      ).toEqual([]);
    });

    it('a locked hashedPassword wins over initialPassword when users are mutable', () => {
      expect(
        ids(
          check((i) => {
            noPasswords(i);
            i.users!.mutableUsers = true;
            Object.assign(i.users!.users[0]!, { initialPassword: 'set', hashedPassword: 'locked' });
          }),
        ),
      ).toEqual(['warning no-console-login']);
    });

    it('an empty hash (login without a password) or autologin is a way in', () => {
      expect(
        check((i) => {
          i.users!.users[0]!.hashedPassword = 'empty';
        }),
      ).toEqual([]);
      expect(
        check((i) => {
          noPasswords(i);
          i.users!.autologinUser = 'root';
        }),
      ).toEqual([]);
    });

    it('mutableUsers = false and no password in wheel → warning unless wheel needs none', () => {
      const noOps = (i: PreflightInputs) => (i.users!.users[1]!.hashedPassword = 'unset');
      const f = check(noOps);
      expect(ids(f)).toEqual(['warning no-console-login']);
      expect(f[0]!.message).toMatch(/no wheel user \(ops\)/);
      expect(
        check((i) => {
          noOps(i);
          i.users!.wheelNeedsPassword = false;
        }),
      ).toEqual([]);
      expect(
        check((i) => {
          noOps(i);
          i.users!.mutableUsers = true;
        }),
      ).toEqual([]);
    });
  });

  describe('closure-leak', () => {
    it('firmware on a VM, and without facts; not on bare metal', () => {
      const fw = (i: PreflightInputs) => (i.packages!.enableRedistributableFirmware = true);
      expect(ids(check(fw))).toEqual(['warning closure-leak']);
      expect(check(fw, full({ facts: host({ virtualization: 'none' }) }))).toEqual([]);
      const noFacts = check(fw, { plan: { method: 'kexec' }, deployPublicKeys: [DEPLOY] });
      expect(noFacts.find((f) => f.id === 'closure-leak')!.message).toMatch(/assumed a VM/);
      expect(ids(check((i) => (i.packages!.firmware = ['linux-firmware'])))).toEqual([
        'warning closure-leak',
      ]);
    });

    it('desktop packages and toolchains, one finding per kind', () => {
      const f = check((i) => i.packages!.systemPackages.push('hyprland', 'zbar', 'rustc', 'cargo'));
      expect(ids(f)).toEqual(['warning closure-leak', 'warning closure-leak']);
      expect(f.map((x) => x.message).join('\n')).toMatch(/desktop packages: hyprland, zbar/);
      expect(f.map((x) => x.message).join('\n')).toMatch(/toolchains: rustc, cargo/);
    });
  });

  describe('memory', () => {
    it('no zram below 2 GiB → warning; above, none', () => {
      expect(ids(check((i) => (i.memory!.zramSwap = false)))).toEqual(['warning no-zram-low-ram']);
      expect(
        check(
          (i) => (i.memory!.zramSwap = false),
          full({ facts: host({ memTotalBytes: 2 * GiB }) }),
        ),
      ).toEqual([]);
    });

    it.each([
      ['/swapfile', 'root is tmpfs'],
      ['/tmp/swap', 'boot.tmp.useTmpfs'],
      ['/run/swap', '/run'],
      ['/dev/shm/swap', '/dev/shm'],
    ])('swap at %s is on tmpfs (%s)', (device) => {
      const f = check((i) => (i.memory!.swapDevices = [{ device, sizeMiB: 1024 }]));
      expect(ids(f)).toEqual(['warning swap-on-tmpfs']);
      expect(f[0]!.fix).toContain('size = 1024;');
    });

    it('swap on a disk-backed mount or a block device passes; /tmp counts when the probe says tmpfs', () => {
      const diskRoot = (i: PreflightInputs) =>
        (i.memory!.fileSystems[0] = { mountPoint: '/', fsType: 'ext4', device: '/dev/vda1' });
      expect(
        check((i) => {
          diskRoot(i);
          i.memory!.tmpUseTmpfs = false;
          i.memory!.swapDevices = [
            { device: '/nix/swapfile', sizeMiB: null },
            { device: '/dev/vda3', sizeMiB: null },
            { device: '/tmp/swap', sizeMiB: null },
          ];
        }),
      ).toEqual([]);
      const tmpfsTmp = host({
        tmp: { fsType: 'tmpfs', sizeBytes: GiB / 2, availBytes: GiB / 2, mountpoint: '/tmp' },
      });
      expect(
        ids(
          check(
            (i) => {
              diskRoot(i);
              i.memory!.tmpUseTmpfs = false;
              i.memory!.swapDevices = [{ device: '/tmp/swap', sizeMiB: null }];
            },
            full({ facts: tmpfsTmp }),
          ),
        ),
      ).toEqual(['warning swap-on-tmpfs']);
    });

    it('a /tmp tmpfs larger than RAM → warning; percentages above 100 even without facts', () => {
      expect(ids(check((i) => (i.memory!.tmpTmpfsSize = '2G')))).toEqual([
        'warning tmp-tmpfs-too-big',
      ]);
      expect(ids(check((i) => (i.memory!.tmpTmpfsSize = 2 * GiB)))).toEqual([
        'warning tmp-tmpfs-too-big',
      ]);
      expect(check((i) => (i.memory!.tmpTmpfsSize = '512m'))).toEqual([]);
      expect(
        ids(
          check((i) => (i.memory!.tmpTmpfsSize = '150%'), {
            deployPublicKeys: [DEPLOY],
            plan: { method: 'kexec' },
          }),
        ),
      ).toEqual(['info skipped-no-facts', 'warning tmp-tmpfs-too-big']);
      expect(
        check((i) => {
          i.memory!.tmpUseTmpfs = false;
          i.memory!.tmpTmpfsSize = '900%';
        }),
      ).toEqual([]);
    });

    it('tmpfsSizeBytes reads tmpfs sizes', () => {
      expect(tmpfsSizeBytes('2G')).toEqual({ bytes: 2 * GiB });
      expect(tmpfsSizeBytes('512m')).toEqual({ bytes: 512 * 1024 ** 2 });
      expect(tmpfsSizeBytes('1048576')).toEqual({ bytes: 1048576 });
      expect(tmpfsSizeBytes('50%', 2 * GiB)).toEqual({ percent: 50, bytes: GiB });
      expect(tmpfsSizeBytes('50%')).toEqual({ percent: 50, bytes: undefined });
      expect(tmpfsSizeBytes('lots')).toEqual({});
    });
  });

  describe('disko', () => {
    it('no disko while the plan is kexec → error with a layout for the probed disk', () => {
      const f = check((i) => (i.disko!.disks = []));
      expect(ids(f)).toEqual(['error no-disko']);
      expect(f[0]!.fix).toContain('device = "/dev/vda";');
      expect(check((i) => (i.disko!.disks = []), full({ plan: { method: 'infect' } }))).toEqual([]);
      expect(ids(check((i) => (i.disko!.disks = []), full({ plan: undefined })))).toEqual([
        'info skipped-no-plan',
      ]);
    });

    it('a device the probe did not find → error; by-id names and non-kexec plans are not checked', () => {
      const sda = (i: PreflightInputs) => (i.disko!.disks[0]!.device = '/dev/sda');
      const f = check(sda);
      expect(ids(f)).toEqual(['error disko-device-mismatch']);
      expect(f[0]!.fix).toBe('disko.devices.disk.main.device = "/dev/vda";');
      expect(check(sda, full({ plan: { method: 'deploy-only' } }))).toEqual([]);
      expect(check((i) => (i.disko!.disks[0]!.device = '/dev/disk/by-id/virtio-abc'))).toEqual([]);
    });

    it("a disk with a device and no content (the host module's 'main' beside a layout named otherwise) → error naming both fixes", () => {
      const renamed = (i: PreflightInputs) =>
        (i.disko!.disks = [
          { name: 'main', device: '/dev/vda', hasContent: false },
          { name: 'root-disk', device: '/dev/vda', hasContent: true },
        ]);
      const f = check(renamed);
      expect(ids(f)).toEqual(['error disko-disk-empty']);
      expect(f[0]!.message).toContain(
        'disko.devices.disk.main has device = "/dev/vda" but nothing',
      );
      expect(f[0]!.message).toContain("the layout's disks are root-disk");
      expect(f[0]!.fix).toContain('--disk-name root-disk');
      // Alone, the fix is a layout for it; a plan that does not partition is not checked.
      const alone = check((i) => (i.disko!.disks[0]!.hasContent = false));
      expect(alone[0]!.fix).toContain('type = "gpt"');
      expect(check(renamed, full({ plan: { method: 'infect' } }))).toEqual([]);
    });
  });

  describe('uefi-no-esp', () => {
    const efi = (over: Partial<PreflightContext> = {}) =>
      full({ facts: host({ efi: true }), ...over });
    const esp = { mountPoint: '/boot', fsType: 'vfat', device: '/dev/disk/by-partlabel/ESP' };

    it('a UEFI host without an ESP at the efiSysMountPoint → error with the partition to add', () => {
      const f = check(() => undefined, efi());
      expect(ids(f)).toEqual(['error uefi-no-esp']);
      expect(f[0]!.message).toContain('no EFI system partition at /boot');
      expect(f[0]!.fix).toContain('type = "EF00"');
      expect(f[0]!.fix).toContain('mountpoint = "/boot"');
    });

    it('an ESP at /boot, or at a moved efiSysMountPoint → nothing', () => {
      expect(check((i) => i.memory!.fileSystems.push(esp), efi())).toEqual([]);
      const moved = (i: PreflightInputs) => {
        i.memory!.fileSystems.push({ ...esp, mountPoint: '/boot/efi/' });
        i.memory!.efiSysMountPoint = '/boot/efi';
      };
      expect(check(moved, efi())).toEqual([]);
      // The ESP at /boot while the loader looks in /boot/efi: named.
      const wrong = check((i) => {
        i.memory!.fileSystems.push(esp);
        i.memory!.efiSysMountPoint = '/boot/efi';
      }, efi());
      expect(wrong[0]!.message).toContain('no EFI system partition at /boot/efi');
    });

    it('a /boot that is not FAT → error naming its type', () => {
      const f = check((i) => i.memory!.fileSystems.push({ ...esp, fsType: 'ext4' }), efi());
      expect(f[0]!.message).toContain('/boot is ext4 file system, not vfat');
    });

    it('BIOS hosts, plans that keep the partitions, and no facts are not checked', () => {
      expect(check(() => undefined, full())).toEqual([]);
      expect(check(() => undefined, efi({ plan: { method: 'infect' } }))).toEqual([]);
      expect(ids(check(() => undefined, full({ facts: undefined })))).toEqual([
        'info skipped-no-facts',
      ]);
    });
  });

  describe('network-mismatch', () => {
    const dhcpOnly = (i: PreflightInputs) => {
      i.network!.useDHCP = true;
      i.network!.interfaces = [];
      i.network!.defaultGateway = null;
      i.network!.defaultGateway6 = null;
    };

    it('static host, DHCP-only configuration → one error (IPv4; IPv6 loss is not a lock-out)', () => {
      const f = check(dhcpOnly);
      expect(ids(f)).toEqual(['error network-mismatch']);
      expect(f[0]!.message).toMatch(
        /static IPv4 192\.0\.2\.10\/24 on ens3 \(no DHCP lease\).*DHCP only/,
      );
      expect(f[0]!.fix).toContain('networking.useDHCP = false;');
    });

    it('only the uplink counts: a static docker0 next to a leased uplink is not a lock-out', () => {
      const docker = host();
      docker.interfaces[0]!.addresses.forEach((a) => (a.dynamic = true));
      docker.interfaces.push({
        name: 'docker0',
        addresses: [
          {
            family: 'inet',
            address: '172.17.0.1',
            prefixLength: 16,
            scope: 'global',
            dynamic: false,
          },
        ],
      });
      expect(check(dhcpOnly, full({ facts: docker }))).toEqual([]);
      // Without routes, virtual interfaces are left out by name.
      expect(check(dhcpOnly, full({ facts: { ...docker, routes: [] } }))).toEqual([]);
    });

    it('no address and no DHCP at all → error saying so', () => {
      const f = check((i) => {
        dhcpOnly(i);
        i.network!.useDHCP = false;
      });
      expect(f[0]!.message).toMatch(/sets no IPv4 address at all/);
    });

    it('an IPv6-only static host needs its IPv6 configured', () => {
      const v6only = host();
      v6only.interfaces[0]!.addresses = v6only.interfaces[0]!.addresses.filter(
        (a) => a.family === 'inet6',
      );
      expect(ids(check(dhcpOnly, full({ facts: v6only })))).toEqual(['error network-mismatch']);
    });

    it('DHCP on a DHCP host passes; a static address equal to the lease passes', () => {
      const leased = host();
      leased.interfaces[0]!.addresses.forEach((a) => (a.dynamic = true));
      expect(check(dhcpOnly, full({ facts: leased }))).toEqual([]);
      expect(findings(clean(), full({ facts: leased }))).toEqual([]);
    });

    it('a different address, a different gateway, no gateway → errors', () => {
      expect(
        ids(
          check(
            (i) => (i.network!.interfaces[0]!.ipv4 = [{ address: '192.0.2.99', prefixLength: 24 }]),
          ),
        ),
      ).toEqual(['error network-mismatch']);
      expect(ids(check((i) => (i.network!.defaultGateway = '192.0.2.254')))).toEqual([
        'error network-mismatch',
      ]);
      const f = check((i) => (i.network!.defaultGateway = null));
      expect(f[0]!.message).toMatch(/no default gateway.*192\.0\.2\.1/);
    });

    it('an explicitly different IPv6 address is an error even on dual stack', () => {
      expect(
        ids(
          check(
            (i) =>
              (i.network!.interfaces[0]!.ipv6 = [{ address: '2001:db8:9::1', prefixLength: 64 }]),
          ),
        ),
      ).toEqual(['error network-mismatch']);
    });

    it('reads systemd-networkd networks, with IPv6 written another way', () => {
      expect(
        check((i) => {
          i.network!.interfaces = [];
          i.network!.defaultGateway = null;
          i.network!.defaultGateway6 = null;
          i.network!.useNetworkd = true;
          i.network!.networkd = [
            {
              name: '10-wan',
              matchName: ['ens3'],
              dhcp: 'no',
              addresses: [parseCidr('192.0.2.10/24'), parseCidr('2001:0db8:1:0::10/64')],
              gateways: ['192.0.2.1', '2001:db8:1::1', '_ipv6ra'],
            },
          ];
        }),
      ).toEqual([]);
    });

    it('canonicalAddress', () => {
      expect(canonicalAddress('2001:0DB8:1:0::10')).toBe('2001:db8:1:0:0:0:0:10');
      expect(canonicalAddress('2001:db8:1::10')).toBe(canonicalAddress('2001:db8:1:0:0:0:0:10'));
      expect(canonicalAddress('::1')).toBe('0:0:0:0:0:0:0:1');
      expect(canonicalAddress('fe80::1%ens3')).toBe('fe80:0:0:0:0:0:0:1');
      expect(canonicalAddress('::ffff:192.0.2.1')).toBe('0:0:0:0:0:ffff:c000:201');
      expect(canonicalAddress('192.0.2.1')).toBe('192.0.2.1');
      expect(parseCidr('192.0.2.1')).toEqual({ address: '192.0.2.1', prefixLength: null });
    });
  });

  describe('skipped checks and failures', () => {
    it('each missing context item is one info naming what it skipped', () => {
      const f = findings(clean(), {});
      expect(ids(f)).toEqual([
        'info skipped-no-deploy-key',
        'info skipped-no-facts',
        'info skipped-no-plan',
      ]);
      expect(f.find((x) => x.id === 'skipped-no-facts')!.message).toMatch(/network-mismatch/);
    });

    it('a section Nix could not evaluate is a warning naming the checks it skips', () => {
      const inputs = clean();
      delete inputs.users;
      inputs.failed = [{ section: 'users', error: 'error: boom' }];
      const f = findings(inputs, full());
      expect(ids(f)).toEqual(['warning eval-failed']);
      expect(f[0]!.why).toMatch(/deploy-key-missing, no-console-login/);
    });

    it('errors come first, then warnings, then notes', () => {
      const f = findings(
        {
          ...clean(),
          ssh: { ...clean().ssh!, enable: false },
          memory: { ...clean().memory!, zramSwap: false },
        },
        { facts: host() },
      );
      expect(f.map((x) => x.severity)).toEqual(['error', 'warning', 'info', 'info']);
      expect(hasErrors(f)).toBe(true);
    });
  });
});

describe('preflight rendering', () => {
  const sample: Finding[] = [
    {
      id: 'network-mismatch',
      severity: 'error',
      message: 'address a|b <x>',
      why: 'because\nreasons',
      fix: 'networking.useDHCP = false;\n# ``` inside',
    },
    { id: 'skipped-no-plan', severity: 'info', message: 'no plan', why: 'w', fix: 'give a plan' },
  ];

  it('markdown escapes cells and fences each fix', () => {
    const md = renderFindingsMarkdown(sample);
    expect(md).toContain('### Preflight: 1 error, 0 warnings, 1 note');
    expect(md).toContain('| ❌ error | `network-mismatch` | address a&#124;b &lt;x&gt; |');
    expect(md).toContain('because<br>reasons');
    expect(md).toContain('````nix\nnetworking.useDHCP = false;\n# ``` inside\n````');
    expect(md).not.toMatch(/give a plan/);
  });

  it('text shows why and an indented fix; an empty list says it passed', () => {
    const text = renderFindingsText(sample);
    expect(text).toContain('ERROR   network-mismatch: address a|b <x>');
    expect(text).toContain('      networking.useDHCP = false;');
    expect(text).toContain('INFO    skipped-no-plan: no plan\n  fix: give a plan');
    expect(renderFindingsMarkdown([])).toMatch(/passes every check/);
  });
});
