import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseFacts } from '../../src/probe/facts';
import { ProbeError } from '../../src/errors';

const DIR = join(__dirname, '../fixtures/facts');
const fixtures = readdirSync(DIR)
  .filter((f) => f.endsWith('.txt'))
  .map((f) => f.replace(/\.txt$/, ''));

interface Expected {
  memTotalBytes: number;
  swapTotalBytes: number;
  virtualization: string;
  isContainer: boolean;
  osId: string;
  osVersionId: string | null;
  osVariantId: string | null;
  isNixos: boolean;
  isInstaller: boolean;
  arch: string;
  tmp: { fsType: string; sizeBytes: number } | null;
  rootDisk: string | null;
  globalAddresses: string[];
  dynamicAddresses: string[];
  defaultGateways: string[];
  onlinkDefault: boolean;
  dns: string[];
  packageManager: string | null;
  missingTools: string[];
}

// Expectations were written by hand from each recorded output (see fixtures/facts/README.md).
describe.each(fixtures)('facts of %s', (name) => {
  const facts = parseFacts(readFileSync(join(DIR, `${name}.txt`), 'utf8'));
  const want = JSON.parse(readFileSync(join(DIR, `${name}.expected.json`), 'utf8')) as Expected;
  const global = facts.interfaces.flatMap((i) => i.addresses.filter((a) => a.scope === 'global'));

  it('memory, virtualization and OS', () => {
    expect(facts.memTotalBytes).toBe(want.memTotalBytes);
    expect(facts.swapTotalBytes).toBe(want.swapTotalBytes);
    expect(facts.virtualization).toBe(want.virtualization);
    expect(facts.isContainer).toBe(want.isContainer);
    expect(facts.osId).toBe(want.osId);
    expect(facts.osVersionId ?? null).toBe(want.osVersionId);
    expect(facts.osVariantId ?? null).toBe(want.osVariantId);
    expect(facts.isNixos).toBe(want.isNixos);
    expect(facts.isInstaller).toBe(want.isInstaller);
    expect(facts.arch).toBe(want.arch);
    expect(facts.bootId).toMatch(/^[0-9a-f-]{36}$/);
  });
  it('filesystems and disks', () => {
    expect(facts.tmp ? { fsType: facts.tmp.fsType, sizeBytes: facts.tmp.sizeBytes } : null).toEqual(
      want.tmp,
    );
    expect(facts.rootDisk ?? null).toBe(want.rootDisk);
  });
  it('network', () => {
    expect(global.map((a) => `${a.address}/${a.prefixLength}`)).toEqual(want.globalAddresses);
    expect(global.filter((a) => a.dynamic).map((a) => `${a.address}/${a.prefixLength}`)).toEqual(
      want.dynamicAddresses,
    );
    const defaults = facts.routes.filter((r) => r.dst === 'default');
    expect(defaults.map((r) => r.gateway ?? '')).toEqual(want.defaultGateways);
    expect(defaults.some((r) => r.onlink)).toBe(want.onlinkDefault);
    expect(facts.dns).toEqual(want.dns);
  });
  it('tools and package manager', () => {
    expect(facts.packageManager ?? null).toBe(want.packageManager);
    expect(['tar', 'cpio', 'setsid', 'kexec'].filter((t) => !facts.tools[t])).toEqual(
      want.missingTools,
    );
  });
});

describe('parseFacts on bad output', () => {
  it('refuses output without the version line', () => {
    expect(() => parseFacts('bash: sh: not found\n')).toThrow(ProbeError);
  });
  it('refuses output without MemTotal', () => {
    expect(() => parseFacts('facts.version=1\narch=x86_64\n')).toThrow(/MemTotal/);
  });
  it('reads the state of our nixos-infect run', () => {
    const base = 'facts.version=1\nmeminfo=MemTotal: 1000 kB\nboot_id=b2\n';
    expect(parseFacts(base).infect).toBeUndefined();
    expect(parseFacts(base + 'infect.boot_id=b1\ninfect.exit=0\n').infect).toEqual({
      bootId: 'b1',
      exit: 0,
      running: false,
    });
    expect(parseFacts(base + 'infect.boot_id=b2\ninfect.running=1\n').infect).toEqual({
      bootId: 'b2',
      exit: undefined,
      running: true,
    });
  });
  it('falls back on hints without systemd-detect-virt', () => {
    const base = 'facts.version=1\nmeminfo=MemTotal: 1000 kB\n';
    expect(parseFacts(base + 'hint.proc_vz=1\n').virtualization).toBe('openvz');
    expect(parseFacts(base + 'hint.proc_vz=1\nhint.proc_bc=1\n').virtualization).toBe('none');
    expect(parseFacts(base + 'hint.pid1_container=lxc\n').virtualization).toBe('lxc');
    expect(
      parseFacts(base + 'hint.dmi_sys_vendor=QEMU\nhint.clocksource=kvm-clock tsc\n')
        .virtualization,
    ).toBe('kvm');
    expect(parseFacts(base + 'hint.dmi_sys_vendor=QEMU\n').virtualization).toBe('qemu');
    expect(parseFacts(base).virtualization).toBe('none');
  });
});

describe('routes and links', () => {
  const base = 'facts.version=1\nmeminfo=MemTotal: 1000 kB\n';
  it('reads an IPv4 route via an IPv6 next hop, in text and JSON', () => {
    const text = parseFacts(
      base + 'ip.route4=default via inet6 fe80::1 dev eth0 proto static metric 100 onlink\n',
    );
    expect(text.routes[0]).toMatchObject({
      dst: 'default',
      gateway: 'fe80::1',
      metric: 100,
      onlink: true,
    });
    const json = parseFacts(
      base +
        'ip.addr.json=[]\nip.route4.json=[{"dst":"default","via":{"family":"inet6","host":"fe80::1"},"dev":"eth0","metric":5,"flags":[]}]\nip.route6.json=[]\n',
    );
    expect(json.routes[0]).toMatchObject({ gateway: 'fe80::1', metric: 5 });
  });
  it('keeps the MTU of each link', () => {
    const f = parseFacts(
      base +
        'ip.addr.json=[{"ifname":"eth0","address":"52:54:00:00:00:01","mtu":1450,"addr_info":[]}]\n',
    );
    expect(f.interfaces[0]).toMatchObject({ name: 'eth0', mtu: 1450 });
  });
});
