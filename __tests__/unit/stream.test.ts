/** lineCollector: streamed chunks become whole lines, per stream, in the order they complete. */
import { lineCollector, runStreaming } from '../../src/deploy/stream';

describe('lineCollector', () => {
  it('joins a line cut across chunks, keeps the two streams apart and flushes the rest at the end', () => {
    const seen: string[] = [];
    const c = lineCollector((l) => seen.push(l));
    c.chunk('stdout', 'copying pa');
    c.chunk('stderr', 'warning: slo');
    c.chunk('stdout', 'th 1\ncopying path 2\nactivat');
    c.chunk('stderr', 'w link\n');
    c.line('the SSH session dropped');
    expect(seen).toEqual([
      'copying path 1',
      'copying path 2',
      'warning: slow link',
      'the SSH session dropped',
    ]);
    expect(c.end()).toBe(
      'copying path 1\ncopying path 2\nwarning: slow link\nthe SSH session dropped\nactivat',
    );
    expect(seen.at(-1)).toBe('activat');
    // flushed once: a second end adds nothing
    expect(c.end().split('\n')).toHaveLength(5);
  });

  it('keeps only the last 400 lines for the report, but hands every line on', () => {
    let handed = 0;
    const c = lineCollector(() => handed++);
    c.chunk('stdout', Array.from({ length: 1000 }, (_, i) => `line ${i}\n`).join(''));
    const kept = c.end().split('\n');
    expect(handed).toBe(1000);
    expect(kept).toHaveLength(400);
    expect(kept[0]).toBe('line 600');
    expect(kept.at(-1)).toBe('line 999');
  });
});

describe('runStreaming', () => {
  it('streams a real child by lines and returns its exit status, never throwing for it', async () => {
    const seen: string[] = [];
    const r = await runStreaming(
      { argv0: 'sh', prefix: ['-c'] },
      ['printf "a\\nb"; printf "e\\n" >&2; exit 3'],
      process.env,
      (l) => seen.push(l),
      10_000,
    );
    expect(r.code).toBe(3);
    expect(seen.sort()).toEqual(['a', 'b', 'e']);
  });

  it('a command that is not there is exit 127 with the reason as its output', async () => {
    const r = await runStreaming(
      { argv0: '/nonexistent/nixos-rebuild', prefix: [] },
      [],
      process.env,
      () => undefined,
      10_000,
    );
    expect(r.code).toBe(127);
    expect(r.output).toMatch(/could not run \/nonexistent\/nixos-rebuild/);
  });
});
