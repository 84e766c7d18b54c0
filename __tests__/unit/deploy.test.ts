import { failedUnitsFrom, rebuildArgs, rebuildOnPath } from '../../src/deploy/rebuild';
import {
  bytesAdded,
  deployDiff,
  parseAfter,
  parseClosure,
  parseState,
  rebootReasons,
} from '../../src/deploy/state';
import { knownHostsLine, nixSshOpts } from '../../src/deploy/sshopts';
import { deployedMessage, finalStatus } from '../../src/pipeline/status';
import { deployRows, diffMarkdown, renderMarkdown, renderText } from '../../src/report/render';
import { parseTarget, type Target } from '../../src/target';
import type { DeployResult } from '../../src/deploy/deploy';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const h = (c: string) => c.repeat(32);
const sp = (c: string, name: string) => `/nix/store/${h(c)}-${name}`;

describe('nixos-rebuild command line', () => {
  it('switches a flake on the target host, with sudo and a build host when asked', () => {
    expect(
      rebuildArgs({
        action: 'switch',
        flake: { ref: '/src/flake', name: 'my-vps' },
        targetHost: 'deploy@203.0.113.7',
        buildHost: 'root@builder',
        useSudo: true,
      }),
    ).toEqual([
      'switch',
      '--flake',
      '/src/flake#my-vps',
      '--target-host',
      'deploy@203.0.113.7',
      '--build-host',
      'root@builder',
      '--use-remote-sudo',
    ]);
  });
  it('deploys a prebuilt system with --store-path', () => {
    expect(
      rebuildArgs({
        action: 'test',
        storePath: sp('a', 'nixos-system-x'),
        targetHost: 'root@h',
        useSudo: false,
      }),
    ).toEqual(['test', '--store-path', sp('a', 'nixos-system-x'), '--target-host', 'root@h']);
  });
  it('never touches the target for build', () => {
    const args = rebuildArgs({
      action: 'build',
      flake: { ref: '.', name: 'x' },
      targetHost: 'root@h',
      useSudo: true,
    });
    expect(args).not.toContain('--target-host');
    expect(args).not.toContain('--use-remote-sudo');
  });
  it('takes nixos-rebuild from PATH, and never an unpinned one from a registry', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rebuild-path-'));
    writeFileSync(join(dir, 'nixos-rebuild'), '#!/bin/sh\n');
    chmodSync(join(dir, 'nixos-rebuild'), 0o755);
    expect(rebuildOnPath(`/nonexistent:${dir}`)?.argv0).toBe(join(dir, 'nixos-rebuild'));
    expect(rebuildOnPath('/nonexistent')).toBeUndefined();
  });
  it("reads switch-to-configuration's failed units (it exits 4)", () => {
    const out = [
      'activating the configuration...',
      'warning: the following units failed: nginx.service, acme-x.service',
      '× nginx.service - Nginx',
      'warning: error(s) occurred while switching to the new configuration',
    ].join('\n');
    expect(failedUnitsFrom(out)).toEqual(['acme-x.service', 'nginx.service']);
    expect(failedUnitsFrom('all good')).toEqual([]);
  });
});

describe('ssh options for nixos-rebuild and nix copy', () => {
  const t = parseTarget('root@203.0.113.7:2222') as Target;
  it('pin exactly the verified key under the name OpenSSH looks up', () => {
    const line = knownHostsLine(t, { type: 'ssh-ed25519', blob: Buffer.from('key') });
    expect(line).toBe(`[203.0.113.7]:2222 ssh-ed25519 ${Buffer.from('key').toString('base64')}`);
    const opts = nixSshOpts(t, { knownHostsFile: '/r/kh', keyFile: '/r/id' });
    expect(opts).toContain('-o StrictHostKeyChecking=yes');
    expect(opts).toContain('-o UserKnownHostsFile=/r/kh');
    expect(opts).toContain('-o GlobalKnownHostsFile=/dev/null');
    expect(opts).toContain('-o IdentityFile=/r/id');
    expect(opts).toContain('-o BatchMode=yes');
    expect(opts).toMatch(/-p 2222$/);
  });
  it('refuses a temp path NIX_SSHOPTS would split', () => {
    expect(() => nixSshOpts(t, { knownHostsFile: '/my temp/kh', keyFile: '/r/id' })).toThrow(
      /whitespace/,
    );
  });
});

describe("the target's state and the new closure", () => {
  it('parses state.sh', () => {
    const st = parseState(
      [
        'nixos=1',
        `current=${sp('a', 'nixos-system-vps-1')}`,
        'booted=',
        'profile_link=system-12-link',
        `profile=${sp('a', 'nixos-system-vps-1')}`,
        'boot_id=abc',
        'systemd_run=/run/current-system/sw/bin/systemd-run',
        'failed=old.service ',
        'store:',
        `${h('a')}-nixos-system-vps-1`,
        `${h('b')}-hello-1.0`,
      ].join('\n'),
    );
    expect(st.isNixos).toBe(true);
    expect(st.profileLink).toBe('system-12-link');
    expect(st.failed).toEqual(['old.service']);
    expect(st.hasSystemdRun).toBe(true);
    expect(st.store.has(`${h('b')}-hello-1.0`)).toBe(true);
    expect(st.store.size).toBe(2);
  });
  it('parses what state.sh arm did: the install, guard.sh arm, the guards it stopped', () => {
    const st = parseState(
      [
        'nixos=1',
        `current=${sp('a', 'nixos-system-vps-1')}`,
        'systemd_run=/run/current-system/sw/bin/systemd-run',
        'failed=',
        'guard_install=ok',
        'guard_superseded=old-run-1',
        'guard_superseded=old-run-2',
        'guard_armed=vps-nixos-guard-x',
        'guard_exit=0',
        'store:',
      ].join('\n'),
    );
    expect(st.arm).toEqual({
      installed: true,
      exit: 0,
      unit: 'vps-nixos-guard-x',
      error: undefined,
      superseded: ['old-run-1', 'old-run-2'],
    });
    expect(parseState('nixos=1\nstore:\n').arm).toBeUndefined();
    expect(
      parseState(
        'guard_install=ok\nguard_error=/x has no bin/switch-to-configuration\nguard_exit=1',
      ).arm,
    ).toMatchObject({ exit: 1, error: '/x has no bin/switch-to-configuration', unit: '' });
  });
  it('parses after.sh: the guard, its confirm, the units, the check, the closure', () => {
    const b64 = (t: string) => Buffer.from(t).toString('base64');
    const facts = parseAfter(
      [
        `current=${sp('c', 'nixos-system-vps-2')}`,
        `guard_current=${sp('c', 'nixos-system-vps-2')}`,
        `guard_prev=${sp('a', 'nixos-system-vps-1')}`,
        'guard_result=armed',
        'guard_by=',
        'guard_reason=',
        `guard_switched_to=${sp('c', 'nixos-system-vps-2')}`,
        'guard_rollback_status=',
        'guard_exit=0',
        'confirm_result=confirmed',
        'confirm_exit=0',
        'failed=nginx.service ',
        'check_exit=3',
        'check_seconds=1',
        `check_stdout=${b64('hi\nclosure:\n')}`,
        `check_stderr=${b64('err\n')}`,
        `closure_of=${sp('c', 'nixos-system-vps-2')}`,
        'closure_exit=0',
        'closure_stderr=',
        `end_current=${sp('c', 'nixos-system-vps-2')}`,
        `end_profile=${sp('c', 'nixos-system-vps-2')}`,
        'closure:',
        `new_kernel=${sp('k', 'linux-6.6/bzImage')}`,
        `new ${sp('c', 'nixos-system-vps-2')} 1000`,
        '',
      ].join('\n'),
    );
    expect(facts).toMatchObject({
      current: sp('c', 'nixos-system-vps-2'),
      guard: { result: 'armed', exit: 0, switchedTo: sp('c', 'nixos-system-vps-2') },
      confirm: { result: 'confirmed', exit: 0 },
      failed: ['nginx.service'],
      // what the command printed is data, whatever it holds
      check: { code: 3, seconds: 1, stdout: 'hi\nclosure:\n', stderr: 'err\n' },
      closure: { of: sp('c', 'nixos-system-vps-2'), exit: 0, stderr: '' },
      end: { current: sp('c', 'nixos-system-vps-2'), profile: sp('c', 'nixos-system-vps-2') },
    });
    expect(facts.disarm).toBeUndefined();
    expect(parseClosure(facts.closure?.output ?? '').paths).toHaveLength(1);
    const bare = parseAfter('current=\nend_current=\nend_profile=\nclosure:\n');
    expect(bare).toEqual({ current: '', end: { current: '', profile: '' } });
  });
  const closureOut = [
    `new_kernel=${sp('k', 'linux-6.6/bzImage')}`,
    `booted_kernel=${sp('j', 'linux-6.1/bzImage')}`,
    `new_initrd=${sp('i', 'initrd')}`,
    `booted_initrd=${sp('i', 'initrd')}`,
    'new_kernel-modules=',
    'booted_kernel-modules=',
    `new ${sp('c', 'nixos-system-vps-2')} 1000`,
    `new ${sp('d', 'hello-2.0')} 5000`,
    `new ${sp('b', 'shared-1')} 7000`,
    `prev ${sp('a', 'nixos-system-vps-1')}`,
    `prev ${sp('e', 'hello-1.0')}`,
    `prev ${sp('b', 'shared-1')}`,
  ].join('\n');
  it('counts only the paths the target lacked before as sent', () => {
    const c = parseClosure(closureOut);
    expect(c.paths).toHaveLength(3);
    const before = new Set([`${h('b')}-shared-1`, `${h('a')}-nixos-system-vps-1`]);
    expect(bytesAdded(c, before)).toEqual({ bytes: 6000, paths: 2 });
    expect(bytesAdded(c, new Set(c.paths.map((p) => p.path.slice(11))))).toEqual({
      bytes: 0,
      paths: 0,
    });
  });
  it('needs a reboot only for a changed kernel, initrd or modules', () => {
    expect(rebootReasons(parseClosure(closureOut))).toEqual(['kernel']);
    const same = closureOut.replace(sp('k', 'linux-6.6/bzImage'), sp('j', 'linux-6.1/bzImage'));
    expect(rebootReasons(parseClosure(same))).toEqual([]);
  });
  it('diffs the package versions', () => {
    const d = deployDiff(parseClosure(closureOut));
    expect(d.changed).toEqual([
      { name: 'hello', from: '1.0', to: '2.0' },
      { name: 'nixos-system-vps', from: '1', to: '2' },
    ]);
    const md = diffMarkdown(d, 6000);
    expect(md).toMatch(/2 changed, 0 added, 0 removed; 5\.9 KiB sent/);
    expect(md).toContain('| hello | 1.0 | 2.0 |');
  });
});

const result = (over: Partial<DeployResult> = {}): DeployResult => ({
  action: 'switch',
  systemPath: sp('c', 'nixos-system-vps-2'),
  previousSystemPath: sp('a', 'nixos-system-vps-1'),
  changed: true,
  bytesSent: 6000,
  pathsSent: 2,
  rolledBack: false,
  nothingToRollBackTo: false,
  rebootNeeded: [],
  failedUnits: [],
  checks: [],
  hostRuns: sp('c', 'nixos-system-vps-2'),
  rebuild: { from: '/bin/nixos-rebuild', args: ['switch'], code: 0, seconds: 3 },
  seconds: 9,
  ...over,
});

describe('deploy reports', () => {
  it('say no change, a switch, the first deploy and a needed reboot', () => {
    expect(deployedMessage(result({ changed: false }))).toMatch(/^no change: the host runs/);
    expect(deployedMessage(result())).toMatch(/switched to .*vps-2 \(was .*vps-1\); 2 paths/);
    expect(deployedMessage(result({ previousSystemPath: '' }))).toMatch(
      /first deploy: nothing to roll back to/,
    );
    expect(deployedMessage(result({ rebootNeeded: ['kernel'] }))).toMatch(/reboot needed/);
  });
  it('say who rolled back and why, and fail the run', () => {
    const d = result({
      rolledBack: true,
      rollback: { by: 'target', reason: 'not confirmed within 30 s' },
      hostRuns: sp('a', 'nixos-system-vps-1'),
    });
    const rec = {
      stages: [],
      deploy: d,
      error: { message: 'deploy failed and was rolled back by the target itself: x' },
    };
    expect(finalStatus(rec, { planOnly: false, allowPreflightErrors: false }).ok).toBe(false);
    expect(deployRows(d)[0]?.[1]).toMatch(/rolled back by the target itself.*not confirmed/);
    const md = renderMarkdown(rec);
    expect(md).toContain('### Deploy');
    expect(md).toContain('rolled back by the target itself');
    expect(renderText(rec)).toMatch(/Runs now: .*vps-1/);
  });
  it('list the health checks with their results', () => {
    const md = renderMarkdown({
      stages: [],
      deploy: result({
        checks: [{ name: 'health-url: http://x/', ok: false, detail: 'HTTP 500', seconds: 3 }],
      }),
    });
    expect(md).toContain('| health-url: http://x/ | **failed** | HTTP 500 |');
  });
});
