/** `vps-nixos check` as users run it (built CLI, real Nix), on the preflight fixture flakes. */
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli';
import { OFFLINE_NIX_CONFIG } from '../helpers/nixflake';

jest.setTimeout(60_000);
const FIXTURES = join(__dirname, '../fixtures/preflight');
const env = { NIX_CONFIG: OFFLINE_NIX_CONFIG };

/** A copy outside the git work tree: a path flake inside it would see only tracked files. */
function flake(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `vps-nixos-check-${name}-`));
  cpSync(join(FIXTURES, name), dir, { recursive: true });
  return dir;
}

interface Finding {
  id: string;
  severity: string;
  message: string;
  fix: string;
}

describe('vps-nixos check', () => {
  it('stops on an impermanence trap (seed bug 4) with the fix, and exits non-zero', async () => {
    const r = await runCli(
      [
        'check',
        '--flake',
        `${flake('persist-etc-ssh')}#vps`,
        '--facts',
        join(FIXTURES, 'facts-debian-12-1gb-static.json'),
        '--json',
      ],
      { env },
    );
    const doc = JSON.parse(r.stdout) as { findings: Finding[] };
    const f = doc.findings.find((x) => x.id === 'persist-activation-dir');
    expect(f).toMatchObject({ severity: 'error' });
    expect(f!.fix).toMatch(/files/);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/allow-preflight-errors/);
  });
  it('goes on with allow-preflight-errors, still reporting', async () => {
    const r = await runCli(
      ['check', '--flake', `${flake('persist-etc-ssh')}#vps`, '--allow-preflight-errors', '--json'],
      { env },
    );
    expect(r.code).toBe(0);
    expect(
      (JSON.parse(r.stdout) as { findings: Finding[] }).findings.some(
        (x) => x.severity === 'error',
      ),
    ).toBe(true);
  });
  it('passes the clean configuration, printing the findings as text', async () => {
    const r = await runCli(
      [
        'check',
        '--flake',
        `${flake('clean')}#vps`,
        '--facts',
        join(FIXTURES, 'facts-debian-12-1gb-static.json'),
      ],
      { env },
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/preflight:/);
    expect(r.stdout).not.toMatch(/\berror\b.*persist|sshd-disabled/);
  });
});
