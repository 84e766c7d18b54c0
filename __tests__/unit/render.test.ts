import { escapeCell, renderMarkdown, renderText } from '../../src/report/render';
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
