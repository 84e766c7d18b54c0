import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { embedScript, scriptCommand, scriptText, type TargetScript } from '../../src/ssh/script';

/** The argv a real `sh` makes of a command line (what the target's login shell does with it). */
function argvOf(command: string): string[] {
  const out = execFileSync('sh', ['-c', `set -- ${command}; printf '%s\\0' "$@"`]);
  return out.toString().split('\0').slice(0, -1);
}

describe('scriptCommand: the one way a script of ours runs on the target', () => {
  it('gives sh the script text, its name as $0 and each argument as one word, whatever it holds', () => {
    const args = ["it's", '$(reboot)', 'a b\nc', '\\n', '"', '', '--', '`id`', '*'];
    const argv = argvOf(scriptCommand('phases/store.sh', { args }));
    expect(argv).toEqual(['sh', '-c', scriptText('phases/store.sh'), 'store.sh', ...args]);
  });

  it('prefixes sudo when asked, and nothing else', () => {
    const argv = argvOf(scriptCommand('who.sh', { sudo: 'sudo -n ' }));
    expect(argv).toEqual(['sudo', '-n', 'sh', '-c', scriptText('who.sh'), 'who.sh']);
  });

  it("sends a script with another one the target's sh gets back byte for byte", () => {
    const argv = argvOf(
      scriptCommand('deploy/state.sh', { embed: { guard_sh: 'deploy/guard.sh' } }),
    );
    const sent = argv[2] as string;
    expect(sent.endsWith(scriptText('deploy/state.sh'))).toBe(true);
    // the function alone, then called: prints guard.sh exactly
    const fn = sent.slice(0, sent.length - scriptText('deploy/state.sh').length);
    expect(execFileSync('sh', ['-c', `${fn}guard_sh`]).toString()).toBe(
      scriptText('deploy/guard.sh'),
    );
    expect(() => embedScript('x', 'a\nVPS_NIXOS_X_END\nb\n', '')).toThrow(/end line/);
  });

  it('knows every script under scripts/ that runs on the target, and each one exists', () => {
    const root = join(__dirname, '..', '..', 'scripts');
    const onDisk = [
      ...readdirSync(root).filter((f) => f.endsWith('.sh')),
      ...['phases', 'deploy'].flatMap((d) =>
        readdirSync(join(root, d))
          .filter((f) => f.endsWith('.sh'))
          .map((f) => `${d}/${f}`),
      ),
    ].sort();
    const known: TargetScript[] = [
      'facts.sh',
      'who.sh',
      'reboot.sh',
      'phases/prep.sh',
      'phases/kexec-stage.sh',
      'phases/disko-patch.sh',
      'phases/install.sh',
      'phases/store.sh',
      'phases/infect.sh',
      'deploy/state.sh',
      'deploy/after.sh',
      'deploy/guard.sh',
      'deploy/closure.sh',
      'deploy/switch.sh',
    ];
    expect([...known].sort()).toEqual(onDisk);
    for (const s of known) expect(scriptText(s)).toMatch(/^#!\/bin\/sh\n/);
  });
});
