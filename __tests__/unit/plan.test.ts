import { plan, type PlanConfig, type PlanFacts } from '../../src/plan/plan';

const MiB = 2 ** 20;
const cfg: PlanConfig = {
  method: 'auto',
  minRamKexecBytes: 700 * MiB,
  minRamInfectBytes: 700 * MiB,
  allowLowRam: false,
  reinstall: false,
  flake: { ref: '.', name: 'vps' },
};
const debian = (mem: number, virtualization = 'kvm'): PlanFacts => ({
  memTotalBytes: mem * MiB,
  virtualization,
  isNixos: false,
  osVariantId: undefined,
  osId: 'debian',
  osVersionId: '12',
});
const nixos: PlanFacts = {
  memTotalBytes: 960 * MiB,
  virtualization: 'kvm',
  isNixos: true,
  osVariantId: undefined,
  osId: 'nixos',
};
const installer: PlanFacts = { ...nixos, osVariantId: 'installer' };

const KEXEC = ['prep', 'kexec', 'installer-prep', 'install', 'reboot', 'deploy'];
const INFECT = ['prep', 'infect', 'reboot', 'deploy'];

// [case, facts, config overrides, method, phases, reason/refusal text]
const table: [string, PlanFacts, Partial<PlanConfig>, string, string[], RegExp][] = [
  ['installed NixOS → deploy only', nixos, {}, 'deploy-only', ['deploy'], /already runs NixOS/],
  [
    'installed NixOS, method deploy-only',
    nixos,
    { method: 'deploy-only' },
    'deploy-only',
    ['deploy'],
    /already runs NixOS/,
  ],
  [
    'installed NixOS + reinstall → kexec',
    nixos,
    { reinstall: true },
    'kexec',
    KEXEC,
    /reinstall is true/,
  ],
  [
    'installed NixOS, explicit kexec without reinstall → deploy only (a re-run of a kexec workflow)',
    nixos,
    { method: 'kexec' },
    'deploy-only',
    ['deploy'],
    /nothing is wiped \(set reinstall: true/,
  ],
  [
    'installed NixOS, explicit infect → deploy only (a re-run of an infect workflow)',
    nixos,
    { method: 'infect' },
    'deploy-only',
    ['deploy'],
    /nothing to convert/,
  ],
  [
    'installed NixOS, infect + reinstall → refuse',
    nixos,
    { method: 'infect', reinstall: true },
    'refuse',
    [],
    /cannot re-install/,
  ],
  [
    'infected and rebooted → deploy only, saying so',
    {
      ...debian(960),
      isNixos: true,
      bootId: 'b2',
      infect: { bootId: 'b1', exit: 0, running: false },
    },
    { method: 'infect' },
    'deploy-only',
    ['deploy'],
    /nixos-infect converted it/,
  ],
  [
    'nixos-infect still running → follow it, then reboot',
    { ...debian(960), bootId: 'b1', infect: { bootId: 'b1', running: true } },
    {},
    'infect',
    INFECT.slice(1),
    /nixos-infect is running/,
  ],
  [
    'nixos-infect finished, not rebooted (/etc/NIXOS already there) → reboot',
    {
      ...debian(960),
      isNixos: true,
      bootId: 'b1',
      infect: { bootId: 'b1', exit: 0, running: false },
    },
    {},
    'infect',
    INFECT.slice(2),
    /has not rebooted/,
  ],
  [
    'nixos-infect finished, not rebooted, kexec asked → refuse',
    {
      ...debian(960),
      isNixos: true,
      bootId: 'b1',
      infect: { bootId: 'b1', exit: 0, running: false },
    },
    { method: 'kexec' },
    'refuse',
    [],
    /cannot continue an in-place conversion/,
  ],
  [
    'nixos-infect failed earlier → infect again from prep',
    { ...debian(960), bootId: 'b1', infect: { bootId: 'b1', exit: 1, running: false } },
    { method: 'infect' },
    'infect',
    INFECT,
    /method infect was asked/,
  ],
  [
    'kexec installer → resume at installer prep',
    installer,
    {},
    'kexec',
    KEXEC.slice(2),
    /VARIANT_ID=installer/,
  ],
  [
    'kexec installer, infect asked → refuse',
    installer,
    { method: 'infect' },
    'refuse',
    [],
    /cannot continue/,
  ],
  ['KVM 1 GB → kexec', debian(960), {}, 'kexec', KEXEC, /min-ram-kexec/],
  ['KVM 2 GB → kexec', debian(1980), {}, 'kexec', KEXEC, /slim kexec/],
  ['KVM 768 MB (≈720 MiB) → kexec', debian(720), {}, 'kexec', KEXEC, /min-ram-kexec/],
  [
    'KVM 1 GB, infect asked → infect',
    debian(960),
    { method: 'infect' },
    'infect',
    INFECT,
    /method infect was asked/,
  ],
  ['KVM 512 MB, floors at 700 MiB → refuse', debian(480), {}, 'refuse', [], /512 MB|allow-low-ram/],
  [
    'KVM 512 MB + allow-low-ram → kexec with warning',
    debian(480),
    { allowLowRam: true },
    'kexec',
    KEXEC,
    /kexec is possible/,
  ],
  [
    'KVM between floors → infect',
    debian(800),
    { minRamKexecBytes: 900 * MiB },
    'infect',
    INFECT,
    /converting in place/,
  ],
  [
    'KVM between floors, kexec asked → refuse',
    debian(800),
    { minRamKexecBytes: 900 * MiB, method: 'kexec' },
    'refuse',
    [],
    /min-ram-kexec/,
  ],
  ['OpenVZ 1 GB → infect', debian(1024, 'openvz'), {}, 'infect', INFECT, /container/],
  ['LXC 1 GB → infect', debian(1024, 'lxc'), {}, 'infect', INFECT, /container/],
  ['systemd-nspawn → infect', debian(1024, 'systemd-nspawn'), {}, 'infect', INFECT, /container/],
  ['docker → infect', debian(1024, 'docker'), {}, 'infect', INFECT, /container/],
  ['podman → infect', debian(1024, 'podman'), {}, 'infect', INFECT, /container/],
  [
    'OpenVZ, kexec asked → refuse',
    debian(1024, 'openvz'),
    { method: 'kexec' },
    'refuse',
    [],
    /cannot work in a openvz container/,
  ],
  ['OpenVZ 512 MB → refuse', debian(512, 'openvz'), {}, 'refuse', [], /min-ram-infect/],
  [
    'OpenVZ 512 MB + allow-low-ram → infect',
    debian(512, 'openvz'),
    { allowLowRam: true },
    'infect',
    INFECT,
    /container/,
  ],
  [
    'Debian, deploy-only asked → refuse',
    debian(960),
    { method: 'deploy-only' },
    'refuse',
    [],
    /needs NixOS/,
  ],
  ['bare metal (none) → kexec', debian(4096, 'none'), {}, 'kexec', KEXEC, /full VM/],
  ['xen → kexec', debian(960, 'xen'), {}, 'kexec', KEXEC, /kexec is possible/],
];

describe('plan: the decision table', () => {
  it.each(table)('%s', (_title, facts, over, method, phases, text) => {
    const p = plan(facts, { ...cfg, ...over });
    expect(p.method).toBe(method);
    expect(p.phases).toEqual(phases);
    const all = [...p.reasons, p.refusal?.reason ?? '', p.refusal?.remediation ?? ''].join('\n');
    expect(all).toMatch(text);
    if (method === 'refuse') {
      expect(p.refusal?.remediation).toBeTruthy();
    } else {
      expect(p.refusal).toBeUndefined();
    }
  });

  it('with the default floors (min-ram-kexec 320 MiB), 512 and 384 MB VPSes plan kexec without allow-low-ram', () => {
    const defaults = { ...cfg, minRamKexecBytes: 320 * MiB };
    const p = plan(debian(457), defaults);
    expect(p.method).toBe('kexec');
    expect(p.warnings).toEqual([]);
    expect(p.reasons.join()).toMatch(/MemTotal 457\.0 MiB ≥ min-ram-kexec 320\.0 MiB/);
    // a 384 MB VPS: measured to install, its installer on ramfs (the install checks decide that)
    expect(plan(debian(331), defaults).method).toBe('kexec');
    const low = plan(debian(300), defaults);
    expect(low.method).toBe('refuse');
    expect(low.refusal?.remediation).toMatch(/at least 384 MB.*MemTotal 331 MiB/);
  });
  it('warns whenever it plans below a floor', () => {
    expect(plan(debian(480), { ...cfg, allowLowRam: true }).warnings.join()).toMatch(
      /below min-ram-kexec/,
    );
    expect(plan(debian(512, 'lxc'), { ...cfg, allowLowRam: true }).warnings.join()).toMatch(
      /below min-ram-infect/,
    );
    expect(plan(debian(960), cfg).warnings).toEqual([]);
  });
  it('warns that infect in a container is best effort', () => {
    expect(plan(debian(1024, 'openvz'), cfg).warnings.join()).toMatch(/best effort/);
  });
  it('sizes zram from RAM and a disk swapfile for install methods only', () => {
    const p = plan(debian(960), cfg);
    expect(p.zramBytes).toBe(960 * MiB);
    expect(p.swapfileBytes).toBe(2048 * MiB);
    expect(plan(nixos, cfg).zramBytes).toBeUndefined();
    expect(plan(debian(8000), cfg).zramBytes).toBe(4096 * MiB);
  });
  it('plans no zram and no swapfile in a container (it cannot swapon)', () => {
    const p = plan(debian(1024, 'lxc'), cfg);
    expect([p.method, p.zramBytes, p.swapfileBytes]).toEqual(['infect', 0, 0]);
    expect(p.reasons.join('\n')).toMatch(/cannot swapon/);
    expect(plan(debian(960), { ...cfg, method: 'infect' }).swapfileBytes).toBe(2048 * MiB);
  });
  it('takes zram-size and swap-size from the config (0 turns the swapfile off)', () => {
    const p = plan(debian(960), { ...cfg, zramBytes: 256 * MiB, swapBytes: 0 });
    expect(p.zramBytes).toBe(256 * MiB);
    expect(p.swapfileBytes).toBe(0);
  });
  it('leaves deploy out without a flake', () => {
    const p = plan(debian(960), { ...cfg, flake: undefined });
    expect(p.phases).toEqual(KEXEC.slice(0, -1));
  });
  it('compares against MemTotal exactly at the floor', () => {
    expect(plan(debian(700), cfg).method).toBe('kexec');
    expect(plan({ ...debian(700), memTotalBytes: 700 * MiB - 1 }, cfg).method).toBe('refuse');
  });
});
