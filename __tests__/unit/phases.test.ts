import { runPhases, PhaseTimeout, type Phase, type PhaseLogger } from '../../src/phases/phase';
import { parseKv } from '../../src/phases/prep';

const lines: string[] = [];
const log: PhaseLogger = {
  info: (l) => lines.push(l),
  warn: (l) => lines.push(`warn ${l}`),
  group: (_t, fn) => fn(),
};

function phase(
  name: Phase<unknown>['name'],
  opts: { done?: boolean; fail?: boolean; hang?: boolean },
  ran: string[],
): Phase<unknown> {
  return {
    name,
    timeoutMs: 50,
    onTimeout: `check ${name}`,
    detect: async () => ({ done: !!opts.done, evidence: `${name} evidence` }),
    run: async () => {
      ran.push(name);
      if (opts.fail) throw new Error(`${name} broke`);
      if (opts.hang) await new Promise((r) => setTimeout(r, 1000));
      return `${name} ok`;
    },
  };
}

describe('runPhases', () => {
  it('skips what is done (with evidence), runs the rest, in order', async () => {
    const ran: string[] = [];
    const r = await runPhases(
      [phase('prep', { done: true }, ran), phase('kexec', {}, ran)],
      null,
      log,
    );
    expect(ran).toEqual(['kexec']);
    expect(r.records.map((x) => [x.name, x.status, x.detail])).toEqual([
      ['prep', 'skipped', 'prep evidence'],
      ['kexec', 'done', 'kexec ok'],
    ]);
    expect(r.error).toBeUndefined();
  });
  it('stops at the first failure', async () => {
    const ran: string[] = [];
    const r = await runPhases(
      [phase('prep', { fail: true }, ran), phase('kexec', {}, ran)],
      null,
      log,
    );
    expect(ran).toEqual(['prep']);
    expect(r.records).toEqual([
      expect.objectContaining({ name: 'prep', status: 'failed', detail: 'prep broke' }),
    ]);
  });
  it('bounds each phase by its timeout and says what to check', async () => {
    const r = await runPhases([phase('install', { hang: true }, [])], null, log);
    expect(r.error).toBeInstanceOf(PhaseTimeout);
    expect(r.records[0]!.detail).toMatch(/did not finish within 0.05s[\s\S]*check install/);
  });
});

describe('parseKv', () => {
  it('reads values and collects warnings', () => {
    expect(parseKv('zram=/dev/zram0\nwarning=a\nwarning=b\nnoise\nswapfile=none\n')).toEqual({
      values: { zram: '/dev/zram0', swapfile: 'none' },
      warnings: ['a', 'b'],
    });
  });
});
