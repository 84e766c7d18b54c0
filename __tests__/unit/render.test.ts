import {
  closureRows,
  escapeCell,
  jsonText,
  renderMarkdown,
  renderText,
  plainText,
  safeText,
} from '../../src/report/render';
import { Cuts, cutUtf8, utf8Bytes } from '../../src/report/summary-limit';
import { parseFacts } from '../../src/probe/facts';
import { plan } from '../../src/plan/plan';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DeployResult } from '../../src/deploy/deploy';
import type { BuildResult } from '../../src/nix/build';
import type { RunRecord } from '../../src/pipeline/record';

const facts = parseFacts(
  readFileSync(join(__dirname, '../fixtures/facts/debian-12-kvm.txt'), 'utf8'),
);
const cfg = {
  method: 'auto' as const,
  minRamKexecBytes: 700 * 2 ** 20,
  minRamInfectBytes: 700 * 2 ** 20,
  allowLowRam: false,
  reinstall: false,
  flake: undefined,
};

describe('reports', () => {
  it('escapes remote text for the HTML job summary', () => {
    expect(escapeCell('<script>a|b & c</script>\nx')).toBe(
      '&lt;script&gt;a&#124;b &amp; c&lt;/script&gt;<br>x',
    );
  });
  it('escapes a hostile os-release in the summary', () => {
    const evil = { ...facts, osPrettyName: '<img src=x onerror=alert(1)> | pwned' };
    const md = renderMarkdown({ stages: [], facts: evil, plan: plan(evil, cfg) });
    expect(md).not.toContain('<img');
    expect(md).toContain('&lt;img src=x onerror=alert(1)&gt; &#124; pwned');
  });
  it('shows the plan, its reasons and the facts in both renderings', () => {
    const rec = { stages: [], facts, plan: plan(facts, cfg), target: 'root@203.0.113.7' };
    const md = renderMarkdown(rec);
    const text = renderText(rec);
    expect(md).toMatch(/### Plan: `kexec`/);
    expect(md).toMatch(/\| Memory \| .*MiB total/);
    expect(text).toMatch(/^plan: kexec$/m);
    expect(text).toContain('prep → kexec → installer-prep → install → reboot');
    for (const r of rec.plan.reasons) {
      expect(text).toContain(r);
    }
  });
  it('shows a refusal with what would work', () => {
    const small = { ...facts, memTotalBytes: 480 * 2 ** 20 };
    const rec = { stages: [], facts: small, plan: plan(small, cfg) };
    expect(renderMarkdown(rec)).toMatch(/\*\*Refused:\*\*.*\*\*What would work:\*\*/s);
    expect(renderText(rec)).toMatch(/refused: .*\n\s+what would work: /);
  });
});

describe('bootstrap report', () => {
  const bootstrap = {
    phases: [
      { name: 'prep' as const, status: 'skipped' as const, seconds: 1.2, detail: 'tools present' },
      {
        name: 'kexec' as const,
        status: 'done' as const,
        seconds: 76.7,
        peakMemBytes: 285 * 2 ** 20,
        bytesSent: 88_683_846,
        detail: 'sent <84.6 MiB>',
      },
      {
        name: 'install' as const,
        status: 'failed' as const,
        seconds: 3,
        detail: 'the disk script failed | exit 1',
      },
    ],
    host: { isNixos: true, currentSystem: null, bootId: 'b-1', variantId: 'installer' },
    bytesSent: 88_683_846,
    warnings: ['the disk script names no disk device'],
  };
  it('shows every phase with status, time, peak memory and bytes sent', () => {
    const md = renderMarkdown({ stages: [], bootstrap });
    expect(md).toContain('### Bootstrap');
    expect(md).toContain('the host runs the NixOS kexec installer (boot_id b-1); 84.6 MiB sent');
    expect(md).toContain(
      '| kexec | done | 76.7 s | 285.0 MiB | 84.6 MiB | sent &lt;84.6 MiB&gt; |',
    );
    expect(md).toContain('| prep | skipped | 1.2 s | – | – | tools present |');
    expect(md).toContain('the disk script failed &#124; exit 1');
    expect(md).toMatch(/\[!WARNING\]\n> the disk script names no disk device/);
    const text = renderText({ stages: [], bootstrap });
    expect(text).toMatch(/kexec\s+done\s+76\.7 s\s+peak 285\.0 MiB, sent 84\.6 MiB/);
  });
  it('says when there was nothing to bootstrap', () => {
    const idle = { ...bootstrap, phases: [], host: { ...bootstrap.host, variantId: '' } };
    expect(renderMarkdown({ stages: [], bootstrap: idle })).toContain('Nothing to bootstrap.');
    expect(renderText({ stages: [], bootstrap: idle })).toContain('nothing to bootstrap');
  });
});

describe('closure report', () => {
  it('shows what the vpsNixos module saved, with the biggest paths it left out', () => {
    const fw = `/nix/store/${'f'.repeat(32)}-linux-firmware-20241110`;
    const rows = closureRows({
      toplevel: '/nix/store/x-nixos-system',
      drvPath: '/nix/store/x.drv',
      system: 'x86_64-linux',
      paths: [],
      seconds: 1,
      closure: {
        root: '/nix/store/x-nixos-system',
        pathCount: 2,
        narBytes: 600 * 2 ** 20,
        top: [],
        topOwn: [],
        leaks: [],
        trimming: {
          untrimmedNarBytes: 1500 * 2 ** 20,
          savedBytes: 900 * 2 ** 20,
          removed: [{ path: fw, narBytes: 787 * 2 ** 20 }],
        },
      },
    });
    expect(rows.totals).toContainEqual([
      'Saved by the vpsNixos module',
      '900.0 MiB (the same configuration without it: 1.5 GiB); left out: linux-firmware-20241110 787.0 MiB',
    ]);
  });
});

const h = (c: string) => c.repeat(32);
const sp = (c: string, name: string) => `/nix/store/${h(c)}-${name}`;
const target = 'root@203.0.113.7';
const at = { commit: 'abc1234def5678abc1234def5678abc1234def56', ref: 'main' };
const deploy = (over: Partial<DeployResult> = {}): DeployResult => ({
  action: 'switch',
  systemPath: sp('c', 'nixos-system-vps-25.11.20250601.abcdef0'),
  previousSystemPath: sp('a', 'nixos-system-vps-25.11.20250501.1234567'),
  changed: true,
  bytesSent: 6000,
  pathsSent: 2,
  rolledBack: false,
  nothingToRollBackTo: false,
  rebootNeeded: [],
  failedUnits: [],
  checks: [],
  hostRuns: sp('c', 'nixos-system-vps-25.11.20250601.abcdef0'),
  rebuild: { from: '/bin/nixos-rebuild', args: ['switch'], code: 0, seconds: 3 },
  seconds: 9,
  diff: {
    added: [sp('d', 'hello-2.0')],
    removed: [sp('e', 'hello-1.0')],
    changed: [{ name: 'hello', from: '1.0', to: '2.0' }],
    bytesToSend: 6000,
  },
  ...over,
});
const build = (over: Partial<BuildResult['closure']> = {}): BuildResult => ({
  toplevel: sp('c', 'nixos-system-vps-25.11.20250601.abcdef0'),
  drvPath: sp('x', 'nixos-system.drv'),
  system: 'x86_64-linux',
  paths: [],
  seconds: 42,
  closure: {
    root: sp('c', 'nixos-system-vps-25.11.20250601.abcdef0'),
    pathCount: 812,
    narBytes: 1200 * 2 ** 20,
    top: [],
    topOwn: [{ path: sp('f', 'linux-6.12.30'), narBytes: 2 ** 27, closureBytes: 2 ** 28 }],
    leaks: [],
    ...over,
  },
});
const stages = (...xs: [RunRecord['stages'][number]['name'], 'done' | 'skipped' | 'failed'][]) =>
  xs.map(([name, status]) => ({ name, status, seconds: 1.5 }));
const routineRun = (over: Partial<RunRecord> = {}): RunRecord => ({
  target,
  facts,
  build: build(),
  stages: stages(['probe', 'done'], ['plan', 'done'], ['build', 'done'], ['deploy', 'done']),
  deploy: deploy(),
  ...over,
});
const firstLine = (s: string) => s.split('\n')[0];

describe('the headline', () => {
  it('says what happened to which host at which commit, first, in both renderings', () => {
    const r = routineRun();
    expect(firstLine(renderMarkdown(r, at))).toBe(
      '**deployed** root@203.0.113.7: switched to nixos-system-vps-25.11.20250601.abcdef0 at commit abc1234 (main)',
    );
    expect(firstLine(renderText(r, at))).toBe(
      'deployed root@203.0.113.7: switched to nixos-system-vps-25.11.20250601.abcdef0 at commit abc1234 (main)',
    );
    expect(firstLine(renderMarkdown(r))).toBe(
      '**deployed** root@203.0.113.7: switched to nixos-system-vps-25.11.20250601.abcdef0',
    );
    expect(firstLine(renderMarkdown(r, { ref: 'v1.2' }))).toMatch(/abcdef0 at v1\.2$/);
  });
  it('names the stage and the message of a failure, with the error right after it', () => {
    const md = renderMarkdown(
      {
        target,
        stages: stages(['probe', 'done'], ['plan', 'done'], ['deploy', 'failed']),
        error: { message: 'nixos-rebuild failed: exit 1\nlast lines…', fix: 'see the log' },
      },
      at,
    );
    const [head, error] = md.split('\n\n');
    expect(head).toBe(
      '**failed** at stage deploy on root@203.0.113.7 at commit abc1234 (main): nixos-rebuild failed: exit 1',
    );
    expect(error).toMatch(
      /^> \[!CAUTION\]\n> nixos-rebuild failed: exit 1<br>last lines…<br>\*\*Fix:\*\* see the log$/,
    );
    expect(firstLine(renderMarkdown({ stages: [], error: { message: 'bad input' } }))).toBe(
      '**failed** before the first stage on the host: bad input',
    );
  });
  it('says installed, with the method and the phases that ran, on a first install', () => {
    const phase = (name: 'prep' | 'kexec' | 'installer-prep' | 'install' | 'reboot') => ({
      name,
      status: 'done' as const,
      seconds: 10,
    });
    const r = routineRun({
      plan: plan(facts, cfg),
      bootstrap: {
        phases: [
          phase('prep'),
          phase('kexec'),
          phase('installer-prep'),
          phase('install'),
          phase('reboot'),
        ],
        host: {
          isNixos: true,
          currentSystem: sp('b', 'nixos-system-nixos-25.11'),
          bootId: 'b',
          variantId: '',
        },
        bytesSent: 2 ** 30,
        warnings: [],
      },
      deploy: deploy({ previousSystemPath: '', nothingToRollBackTo: true }),
    });
    expect(firstLine(renderMarkdown(r, at))).toBe(
      '**installed** (kexec, 5 phases) root@203.0.113.7: switched to nixos-system-vps-25.11.20250601.abcdef0 at commit abc1234 (main)',
    );
  });
  it('says planned for a plan-only run, and refused with the reason', () => {
    const planned = {
      target,
      stages: stages(['probe', 'done'], ['plan', 'done']),
      facts,
      plan: plan(facts, cfg),
    };
    expect(firstLine(renderMarkdown(planned, at))).toBe(
      '**planned** kexec (plan-only) for root@203.0.113.7 at commit abc1234 (main): prep → kexec → installer-prep → install → reboot',
    );
    const small = { ...facts, memTotalBytes: 200 * 2 ** 20 };
    const refused = { ...planned, facts: small, plan: plan(small, cfg) };
    expect(refused.plan.refusal).toBeDefined();
    expect(firstLine(renderMarkdown(refused, at))).toBe(
      `**refused** root@203.0.113.7 at commit abc1234 (main): ${escapeCell(refused.plan.refusal!.reason)}`,
    );
    expect(firstLine(renderText(refused))).toMatch(/^refused root@203\.0\.113\.7: /);
  });
  it('says built, probed or checked when nothing was deployed', () => {
    const runs = sp('a', 'nixos-system-vps-1');
    const none = { system: false, diskScript: false, layout: false, installer: false } as const;
    const decision = {
      stages: [],
      build: none,
      unchanged: true,
      forced: false,
      deployWith: 'switch' as const,
    };
    expect(firstLine(renderMarkdown({ target, stages: [], evaluated: runs, decision }, at))).toBe(
      '**no change** root@203.0.113.7: already runs nixos-system-vps-1 at commit abc1234 (main); nothing was built',
    );
    const findings = [
      {
        id: 'network-mismatch' as const,
        severity: 'error' as const,
        message: 'm',
        why: 'w',
        fix: 'f',
      },
    ];
    expect(
      firstLine(renderText({ stages: [], preflight: { findings, seconds: 1, nixCalls: 1 } })),
    ).toBe('checked the configuration: preflight found 1 error, 0 warnings');
    expect(firstLine(renderMarkdown({ stages: stages(['build', 'done']), build: build() }))).toBe(
      '**built** nixos-system-vps-25.11.20250601.abcdef0; nothing deployed',
    );
    expect(firstLine(renderText({ target, stages: stages(['probe', 'done']), facts }))).toMatch(
      /^probed root@203\.0\.113\.7: Debian GNU\/Linux 12 \(bookworm\), /,
    );
  });
});

describe('the deployed commit and an unchanged or forced deploy', () => {
  it('puts the commit and ref in the deploy table', () => {
    const md = renderMarkdown(routineRun(), at);
    expect(md).toContain(`| Commit | <code>${at.commit}</code> (main) |`);
    expect(renderText(routineRun(), at)).toContain(`  Commit: ${at.commit} (main)`);
  });
  it('says plainly that an unchanged deploy built, copied and activated nothing', () => {
    const now = sp('a', 'nixos-system-vps-25.11.20250501.1234567');
    const d = deploy({
      changed: false,
      skipped: 'unchanged',
      systemPath: now,
      previousSystemPath: now,
      hostRuns: now,
      bytesSent: 0,
      pathsSent: 0,
      diff: undefined,
      rebuild: { from: '', args: [], code: 0, seconds: 0 },
    });
    const r = routineRun({ deploy: d, build: undefined });
    const md = renderMarkdown(r, at);
    expect(firstLine(md)).toBe(
      '**no change** root@203.0.113.7: already runs nixos-system-vps-25.11.20250501.1234567 at commit abc1234 (main); nothing was built, copied or activated',
    );
    expect(md.split('\n\n')[1]).toBe(
      `Nothing was built, copied or activated: the host already runs <code>${now}</code>, the configuration's system.`,
    );
    expect(md).toContain('| Switch | not run |');
    expect(renderText(r)).toContain('Nothing was built, copied or activated');
  });
  it('says a forced switch was forced although the host already ran it', () => {
    const now = sp('a', 'nixos-system-vps-1');
    const r = routineRun({
      deploy: deploy({
        forced: true,
        changed: false,
        systemPath: now,
        previousSystemPath: now,
        hostRuns: now,
      }),
    });
    const md = renderMarkdown(r, at);
    expect(firstLine(md)).toBe(
      '**deployed** root@203.0.113.7: switched to nixos-system-vps-1 again (force-switch: the host already ran it) at commit abc1234 (main)',
    );
    expect(md).toContain('The switch was forced (force-switch): the host already ran');
    expect(md).toContain('| Forced | yes (force-switch)');
    expect(renderText(r)).toContain('The switch was forced (force-switch)');
  });
});

describe('folded details', () => {
  const open = (md: string) => {
    expect(md).toContain('### Facts');
    expect(md).toContain('### Closure');
    expect(md).toContain('### Stages');
    expect(md).not.toContain('<details><summary>Host facts');
  };
  it('folds the facts, closure and stage timings of a routine deploy', () => {
    const md = renderMarkdown(routineRun(), at);
    expect(md).toMatch(
      /<details><summary>Host facts: Debian GNU\/Linux 12 \(bookworm\), 980\.6 MiB<\/summary>\n\n\| Fact \| Value \|[^]*?\n\n<\/details>/,
    );
    expect(md).toMatch(
      /<details><summary>Closure: 1\.2 GiB in 812 paths<\/summary>\n\n\| {2}\| {2}\|/,
    );
    expect(md).toMatch(
      /<details><summary>Stages: 4 in 6\.0 s<\/summary>\n\n\| Stage \| Status \| Time \| Detail \|\n\| --- \| --- \| --- \| --- \|\n\| probe \| done \| 1\.5 s \| {2}\|/,
    );
    expect(md).toContain('| total |  | 6.0 s |  |');
    expect(md).not.toMatch(/### (Facts|Closure|Stages)/);
    // what changed stays open
    expect(md).toContain('#### What changed');
    expect(md).toContain('| hello | 1.0 | 2.0 |');
  });
  it('keeps them open on a failure, a rollback, a first deploy and a refusal', () => {
    open(renderMarkdown(routineRun({ error: { message: 'health check failed' } })));
    open(
      renderMarkdown(
        routineRun({
          deploy: deploy({ rolledBack: true, rollback: { by: 'runner', reason: 'health check' } }),
        }),
      ),
    );
    open(
      renderMarkdown(
        routineRun({ deploy: deploy({ previousSystemPath: '', nothingToRollBackTo: true }) }),
      ),
    );
    const small = { ...facts, memTotalBytes: 200 * 2 ** 20 };
    open(renderMarkdown(routineRun({ facts: small, plan: plan(small, cfg) })));
  });
});

describe('a partial summary', () => {
  it('says cancelled, and where, from any partial record', () => {
    const cancelled = { ...at, cancelled: true };
    expect(firstLine(renderMarkdown({ stages: [] }, cancelled))).toBe(
      '**cancelled** before the first stage on the host at commit abc1234 (main)',
    );
    expect(
      firstLine(
        renderMarkdown(
          { target, stages: stages(['probe', 'done'], ['plan', 'done']), facts },
          cancelled,
        ),
      ),
    ).toBe('**cancelled** after stage plan on root@203.0.113.7 at commit abc1234 (main)');
    const failed = { target, stages: stages(['probe', 'done'], ['build', 'failed']) };
    expect(firstLine(renderMarkdown(failed, cancelled))).toBe(
      '**cancelled** during stage build on root@203.0.113.7 at commit abc1234 (main)',
    );
    expect(firstLine(renderText(failed, cancelled))).toBe(
      'cancelled during stage build on root@203.0.113.7 at commit abc1234 (main)',
    );
  });
  it('renders every part on its own', () => {
    const parts: Partial<RunRecord>[] = [
      {},
      { facts },
      { plan: plan(facts, cfg) },
      { build: build() },
      { deploy: deploy() },
      { hostKeyFingerprint: 'SHA256:abc', hostKeyTrustedOnFirstUse: true },
      { preflight: { findings: [], seconds: 1, nixCalls: 1 } },
      { stages: stages(['probe', 'done']) },
    ];
    for (const part of parts) {
      for (const o of [{}, { cancelled: true }]) {
        const rec = { stages: [], ...part };
        expect(renderMarkdown(rec, o)).toMatch(/^\*\*[a-z ]+\*\* /);
        expect(renderText(rec, o)).toMatch(/^[a-z ]+ /);
      }
    }
  });
});

describe('the size limit', () => {
  const huge = (n: number, log = 50_000): RunRecord => {
    const changed = Array.from({ length: n }, (_, i) => ({
      name: `package-${i}`,
      from: `1.${i}`,
      to: `2.${i}`,
    }));
    const added = Array.from({ length: n }, (_, i) => sp('d', `added-${i}-1.0`));
    const diff = { added, removed: [], changed, bytesToSend: 2 ** 30 };
    return routineRun({
      build: build({ diff }),
      deploy: deploy({ diff }),
      stages: [
        ...stages(['probe', 'done'], ['plan', 'done'], ['build', 'done']),
        { name: 'deploy', status: 'failed', seconds: 3, detail: 'x'.repeat(log * 6) },
      ],
      error: { message: 'deploy failed: ' + 'output line\n'.repeat(log), fix: 'read it' },
    });
  };
  it('stays under 1,000,000 bytes with a 100k-row diff, headline and error first, and says what it cut', () => {
    const md = renderMarkdown(huge(100_000), at);
    expect(utf8Bytes(md)).toBeLessThanOrEqual(1_000_000);
    const [head, error, note] = md.split('\n\n');
    expect(head).toMatch(
      /^\*\*failed\*\* at stage deploy on root@203\.0\.113\.7 at commit abc1234 \(main\): deploy failed:/,
    );
    expect(error).toMatch(/^> \[!CAUTION\]\n> deploy failed: output line<br>/);
    expect(note).toMatch(
      /^> \[!NOTE\]\n> Shortened to stay under GitHub's step-summary limit \(1,000,000 bytes\); left out: /,
    );
    expect(note).toContain('of 100,000 changed packages (What changed)');
    expect(note).toContain('characters of stage details');
    expect(md).toContain('| package-0 | 1.0 | 2.0 |');
    expect(md).not.toContain('| package-99999 |');
    expect(md).toMatch(/… and [\d]+ more changed packages/);
  });
  it('leaves a summary that fits as it is', () => {
    const md = renderMarkdown(huge(100, 100), at);
    expect(md).not.toContain('[!NOTE]');
    expect(md).toContain('| package-99 | 1.99 | 2.99 |');
  });
  it('honours a smaller limit, down to cutting bytes at a character boundary', () => {
    for (const maxBytes of [50_000, 5_000, 300]) {
      const md = renderMarkdown(huge(1000), { ...at, maxBytes });
      expect(utf8Bytes(md)).toBeLessThanOrEqual(maxBytes);
      expect(md).toMatch(/^\*\*failed\*\* at stage deploy/);
    }
    expect(utf8Bytes(renderText(huge(1000), { maxBytes: 5_000 }))).toBeLessThanOrEqual(5_000);
    expect(cutUtf8('aé€😀', 4)).toBe('aé');
    expect(cutUtf8('aé€😀', 6)).toBe('aé€');
  });
  it('keeps the head and the tail of a long text', () => {
    const cuts = new Cuts({ rows: 2, chars: 30 });
    expect(cuts.text(`start ${'-'.repeat(100)} the end`, 'the log')).toMatch(
      /^start ---- … \[\d+ characters left out\] … -+ the end$/,
    );
    expect(cuts.rows([1, 2, 3, 4], 'numbers')).toEqual([1, 2]);
    expect(cuts.notes()).toEqual(['84 of 114 characters of the log', '2 of 4 numbers']);
  });
});

describe('remote text is data', () => {
  const evil =
    '::error::x\r::warning::y <script>alert(1)</script> | `code` *em* _em_ [link](http://e) \x1b[31mred\x1b[0m ##[error]z';
  const hostile = (): RunRecord => ({
    target,
    facts: { ...facts, osPrettyName: evil, dns: [evil] },
    stages: [{ name: 'deploy', status: 'failed', seconds: 1, detail: evil }],
    bootstrap: {
      phases: [{ name: 'install', status: 'failed', seconds: 1, detail: evil }],
      host: { isNixos: false, currentSystem: null, bootId: evil, variantId: '' },
      bytesSent: 0,
      warnings: [evil],
    },
    deploy: deploy({
      failedUnits: [`${evil}.service`],
      checks: [{ name: 'health-url', ok: false, detail: evil, seconds: 1 }],
      diff: {
        added: [sp('d', evil)],
        removed: [],
        changed: [{ name: evil, from: '1', to: '2' }],
        bytesToSend: 1,
      },
    }),
    error: { message: evil, fix: evil },
  });
  it('cannot become markup in the summary', () => {
    const md = renderMarkdown(hostile(), at);
    expect(md).not.toContain('<script');
    expect(md).not.toContain('\x1b');
    expect(md).not.toContain('\r');
    expect(md).not.toContain('[link]');
    expect(md).not.toContain('*em*');
    expect(md).not.toContain(' _em_');
    expect(md).not.toContain('`code`');
    expect(md).not.toMatch(/^\s*::/m);
    expect(md).toContain(
      '::error::x<br>::warning::y &lt;script&gt;alert(1)&lt;/script&gt; &#124; &#96;code&#96; &#42;em&#42; &#95;em&#95; &#91;link&#93;(http:<wbr>//e) red ##&#91;error&#93;z',
    );
    // every table row keeps its columns
    for (const line of md.split('\n').filter((l) => l.startsWith('| Failed units')))
      expect(line.split('|')).toHaveLength(4);
  });
  it('cannot become a workflow command or a terminal escape in the text', () => {
    const text = renderText(hostile(), at);
    expect(text).not.toMatch(/^\s*::/m);
    expect(text).not.toContain('##[');
    expect(text).not.toContain('\x1b');
    expect(text).not.toContain('\r');
    expect(text).toContain('::error::x');
    expect(safeText('  ::add-mask::x\n\t::stop-commands::t')).toBe(
      '  :\u200b:add-mask::x\n\t:\u200b:stop-commands::t',
    );
  });
  it('escapes Markdown but leaves a name like NIX_CHANNEL readable', () => {
    expect(escapeCell('NIX_CHANNEL=nixos-25.11 a__b')).toBe('NIX_CHANNEL=nixos-25.11 a__b');
    expect(escapeCell('_x_ *y* ~~z~~ $m$ \\')).toBe(
      '&#95;x&#95; &#42;y&#42; &#126;&#126;z&#126;&#126; &#36;m&#36; &#92;',
    );
    expect(escapeCell('\x1b[1mbold\x1b[0m\r\nnext\rline')).toBe('bold<br>next<br>line');
  });
  it('breaks what GitHub would link by itself with an element that shows nothing', () => {
    // A URL, a www. name, an email and a mention; an entity would not do (GitHub finds emails
    // and mentions in the decoded text).
    expect(escapeCell('see https://evil.example/x and HTTP://e.example')).toBe(
      'see https:<wbr>//evil.example/x and HTTP:<wbr>//e.example',
    );
    expect(escapeCell('www.evil.example WWW.e.example wwww.e.example')).toBe(
      'www<wbr>.evil.example WWW<wbr>.e.example wwww<wbr>.e.example',
    );
    expect(escapeCell('evil@evil.example @octocat x@_y.example')).toBe(
      'evil@<wbr>evil.example @<wbr>octocat x@<wbr>&#95;y.example',
    );
    // An address is no email: a target like root@203.0.113.7 reads as it did.
    expect(escapeCell('root@203.0.113.7 [::1]:22')).toBe('root@203.0.113.7 &#91;::1&#93;:22');
  });
});

describe('bidirectional controls (a path shown other than it is)', () => {
  const TROJAN = '/nix/store/abc-\u202eevil\u202c-\u2066x\u2069\u200f\u061c\u2028y';
  it('are gone from plain, log-safe and Markdown text', () => {
    for (const f of [plainText, safeText, escapeCell])
      expect(f(TROJAN)).not.toMatch(/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/);
    expect(plainText(TROJAN)).toBe('/nix/store/abc-evil-xy');
  });
  it('are escaped in JSON, which parses back to the exact value', () => {
    const text = jsonText({ p: TROJAN });
    expect(text).toContain('\\u202eevil\\u202c');
    expect(text).not.toMatch(/[\u202a-\u202e\u2066-\u2069\u2028]/);
    expect(JSON.parse(text)).toEqual({ p: TROJAN });
  });
});

describe('jsonText', () => {
  it('escapes DEL, C1 controls and `##[`, and parses back to the same values', () => {
    const value = { s: 'a\x1b[31m\x9b31m\x7f\x85\u2028é ##[error]x', '##[k]': '::error::y' };
    const text = jsonText(value);
    // eslint-disable-next-line no-control-regex -- looking for control characters is the point
    expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    expect(text).toContain('\\u001b[31m\\u009b31m\\u007f\\u0085');
    expect(text).not.toContain('##[');
    expect(text).toContain('#\\u0023[error]x');
    expect(JSON.parse(text)).toEqual(value);
    expect(text.endsWith('}\n')).toBe(true);
  });
});
