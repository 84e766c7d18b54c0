import { actionLogger, terminalLogger } from '../../src/report/log';

describe('what the target prints is data in the log', () => {
  const lines: string[] = [];
  const core = {
    info: (m: string) => lines.push(`info ${m}`),
    warning: (m: string) => lines.push(`warning ${m}`),
    group: <T>(name: string, fn: () => Promise<T>) => {
      lines.push(`group ${name}`);
      return fn();
    },
  };
  beforeEach(() => (lines.length = 0));

  it('no line of it can be a workflow command on the Actions runner', async () => {
    const log = actionLogger(core);
    log.info('switching...\n::set-output name=system-path::/nix/store/evil\n  ::add-mask::x');
    log.info('##[error]old style');
    log.info('::stop-commands::tok');
    await log.group!('nixos-rebuild\n::error::title', async () => undefined);
    const printed = lines.join('\n').split('\n');
    for (const l of printed) {
      expect(l.replace(/^(info|group|warning) /, '')).not.toMatch(/^\s*::|##\[/);
    }
    // still readable
    expect(lines[0]).toContain('set-output name=system-path');
  });

  it('no terminal escape sequence reaches the log or the terminal', () => {
    actionLogger(core).warn('\x1b]0;owned\x07red \x1b[31mtext\x1b[0m');
    expect(lines).toEqual(['warning red text']);
    let out = '';
    terminalLogger((s) => (out += s)).info('a\x1b[2Jb\x1b]8;;http://x\x07c');
    expect(out).toBe('abc\n');
  });
});
