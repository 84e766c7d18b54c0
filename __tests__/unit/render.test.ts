import { closureRows, escapeCell, renderMarkdown, renderText } from '../../src/report/render';
import { parseFacts } from '../../src/probe/facts';
import { plan } from '../../src/plan/plan';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

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
