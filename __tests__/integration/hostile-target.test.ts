/**
 * Everything a target prints is data (issue 20). A real OpenSSH sshd on loopback plays a hostile
 * host (helpers/hostile-host.ts): the real facts.sh runs there with fake tools, and its facts
 * carry workflow commands, escape sequences, Markdown, HTML and bare URLs. The action entry
 * (dist/main) and the CLI (dist/cli) probe it; what they print and write is read the way its
 * readers read it:
 *
 * - The runner reads the step's stdout and stderr for workflow commands. Its rules
 *   (helpers/workflow-commands.ts): a line ends at `\n`, `\r\n` or a lone `\r`; `::cmd::` is a
 *   command after any leading white space; the old `##[cmd]` is one anywhere in a line; names
 *   match in any case; `::stop-commands::tok` stops all parsing until `::tok::`. Every command
 *   it finds must be one this code writes.
 * - GitHub renders the job summary as GFM with HTML (helpers/gfm.ts: raw HTML, links, images,
 *   URL/www/email autolinks, @mentions): none may come from the target, and the target's values
 *   must still read as they were.
 * - A terminal acts on control characters: the CLI prints none of the target's, and its JSON
 *   holds the values exactly, as data.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { readCommandFile } from '../helpers/action';
import { runCli, type CliResult } from '../helpers/cli';
import { autolinks, htmlTags, linkSyntax, visibleText } from '../helpers/gfm';
import {
  FORGED,
  HOSTILE,
  keyLines,
  startHostileHost,
  type HostileHost,
} from '../helpers/hostile-host';
import { parseWorkflowCommands, type WorkflowCommand } from '../helpers/workflow-commands';
import * as core from '@actions/core';
import { actionLogger, terminalLogger } from '../../src/report/log';
import { plainText } from '../../src/report/render';
import { scriptCommand } from '../../src/ssh/script';

jest.setTimeout(120_000);

let host: HostileHost;
beforeAll(async () => {
  host = await startHostileHost();
});
afterAll(async () => host?.stop());

interface Step {
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  summary: string;
  code: number;
}

/** The action's main step as the runner runs it (plan-only), stdout and stderr kept apart. */
function runMain(): Step {
  const work = mkdtempSync(join(tmpdir(), 'vps-nixos-hostile-'));
  const files = {
    GITHUB_OUTPUT: join(work, 'output'),
    GITHUB_STATE: join(work, 'state'),
    GITHUB_STEP_SUMMARY: join(work, 'summary'),
  };
  for (const f of Object.values(files)) writeFileSync(f, '');
  const inputs: Record<string, string> = {
    target: host.target,
    'ssh-private-key': readFileSync(host.sshd.clientKeyFile, 'utf8'),
    'known-hosts': readFileSync(host.sshd.knownHostsFile, 'utf8'),
    'plan-only': 'true',
  };
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    RUNNER_TEMP: work,
    ...files,
  };
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
  const r = spawnSync(process.execPath, [join(__dirname, '../../dist/main/index.js')], {
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return {
    stdout: r.stdout,
    stderr: r.stderr,
    outputs: readCommandFile(files.GITHUB_OUTPUT),
    summary: readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8'),
    code: r.status ?? -1,
  };
}

/** The CLI against the hostile host, pinned to its key. */
const cli = (cmd: string, ...more: string[]): Promise<CliResult> =>
  runCli([
    cmd,
    '--target',
    host.target,
    '--ssh-private-key-file',
    host.sshd.clientKeyFile,
    '--known-hosts-file',
    host.sshd.knownHostsFile,
    ...more,
  ]);

/**
 * The commands found that this code does not write. Ours: the key's lines masked, groups, and
 * annotations through @actions/core, whose data is escaped (a line break of the target's cannot
 * end the command early, so a forged command never starts one). Outputs and state go to files.
 * A forged command's data starts with "pwned" (helpers/hostile-host.ts).
 */
function notOurs(step: Step): WorkflowCommand[] {
  const key = keyLines(host);
  const ours = (c: WorkflowCommand) => {
    if (c.legacy || FORGED.test(c.data)) return false;
    if (c.name === 'add-mask') return key.includes(c.data);
    return ['group', 'endgroup', 'warning', 'error', 'debug'].includes(c.name);
  };
  return [...parseWorkflowCommands(step.stdout), ...parseWorkflowCommands(step.stderr)].filter(
    (c) => !ours(c),
  );
}

const declaredOutputs = (): string[] =>
  Object.keys(
    (
      parseYaml(readFileSync(join(__dirname, '../../action.yml'), 'utf8')) as {
        outputs: Record<string, unknown>;
      }
    ).outputs,
  );

const METHODS = ['kexec', 'infect', 'deploy-only', 'refuse'];

// C0 and C1 controls but the tab and the line feed: what a terminal would act on; and the
// bidirectional controls (a text shown in another order than it is).
const CONTROL =
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/;

/** The summary's own HTML: line breaks, word-break hints, code, folded sections. */
const OUR_TAGS = new Set([
  '<br>',
  '<wbr>',
  '<code>',
  '</code>',
  '<details>',
  '</details>',
  '<summary>',
  '</summary>',
]);

function expectSummaryIsData(summary: string): void {
  expect(htmlTags(summary).filter((t) => !OUR_TAGS.has(t))).toEqual([]);
  expect(linkSyntax(summary)).toEqual([]);
  expect(autolinks(summary)).toEqual([]);
  expect(summary).not.toMatch(CONTROL);
  // No code fence; no code span but ours (a method, an input name).
  expect(summary).not.toMatch(/```|~~~/);
  for (const [, span] of summary.matchAll(/`([^`]*)`/g)) expect(span).toMatch(/^[\w-]+$/);
  // Every table row has its header's cells: no `|` of the target's splits one.
  const lines = summary.split('\n');
  lines.forEach((line, i) => {
    if (!line.startsWith('|') || lines[i - 1]?.startsWith('|')) return;
    for (let j = i; lines[j]?.startsWith('|'); j++)
      expect(lines[j]!.split('|').length).toBe(line.split('|').length);
  });
}

/** A remote value's lines as a reader may see them: no controls, a lone `\r` a line break. */
const readable = (v: string): string[] =>
  plainText(v)
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

const SHOWN = [
  HOSTILE.virt,
  HOSTILE.prettyName,
  HOSTILE.kernel,
  HOSTILE.bootId,
  HOSTILE.rootSource,
  HOSTILE.packageManager,
  HOSTILE.dns,
  HOSTILE.diskPath,
  HOSTILE.ifname,
  HOSTILE.address,
  HOSTILE.gateway,
  HOSTILE.dev,
];

describe('the hostile host', () => {
  it('prints what would act, were it printed as it is', () => {
    const raw = Object.values(HOSTILE).join('\n');
    const forged = parseWorkflowCommands(raw);
    expect(new Set(forged.map((c) => c.name))).toEqual(
      new Set(['error', 'warning', 'set-output', 'add-mask', 'stop-commands']),
    );
    expect(forged.filter((c) => c.legacy).map((c) => c.name)).toEqual(
      expect.arrayContaining(['error', 'set-output']),
    );
    expect(raw).toMatch(CONTROL);
    const kinds = (xs: string[]) => new Set(xs.map((x) => x.split(':')[0]));
    expect(kinds(autolinks(raw))).toEqual(new Set(['url', 'www', 'email', 'mention']));
    for (const tag of ['<img ', '<a href', '<script>', '<!--', '<https:'])
      expect(htmlTags(raw).some((t) => t.startsWith(tag))).toBe(true);
    expect(linkSyntax(raw).length).toBeGreaterThan(0);
  });
});

describe('a hostile target', () => {
  it('forges no workflow command, output or summary element through the action', () => {
    const step = runMain();
    expect(step.code).toBe(0);
    expect(notOurs(step)).toEqual([]);
    expect(step.stdout).not.toMatch(CONTROL);
    expect(step.stderr).not.toMatch(CONTROL);
    // Outputs go to the GITHUB_OUTPUT file: declared names only, the method a real one.
    expect(Object.keys(step.outputs).filter((k) => !declaredOutputs().includes(k))).toEqual([]);
    expect(METHODS).toContain(step.outputs.method);
    expect(step.outputs['host-key']).toBe(
      `[127.0.0.1]:${host.sshd.port} ${host.sshd.hostKeyPub.split(' ').slice(0, 2).join(' ')}`,
    );
    expect(JSON.parse(step.outputs.phases!)).toEqual([]);

    expectSummaryIsData(step.summary);
    const seen = visibleText(step.summary);
    for (const v of SHOWN) for (const l of readable(v)) expect(seen).toContain(l);
  });

  it('gives the CLI JSON the values exactly, as data, from the real facts.sh', async () => {
    const r = await cli('probe', '--json');
    expect(r.code).toBe(0);
    const { facts } = JSON.parse(r.stdout) as {
      facts: Record<string, unknown> & {
        tools: Record<string, string>;
        disks: { path: string }[];
        interfaces: { name: string; addresses: { address: string }[] }[];
        routes: { gateway: string; dev: string }[];
      };
    };
    // facts.sh ran for real, with the fake tools first in PATH.
    expect(facts.tools.lsblk).toBe(join(host.dir, 'bin/lsblk'));
    expect(facts).toMatchObject({
      virtualization: HOSTILE.virt,
      osPrettyName: HOSTILE.prettyName,
      kernel: HOSTILE.kernel,
      bootId: HOSTILE.bootId,
      rootSource: HOSTILE.rootSource,
      packageManager: HOSTILE.packageManager,
      dns: [HOSTILE.dns],
    });
    expect(facts.disks[0]!.path).toBe(HOSTILE.diskPath);
    expect(facts.interfaces[0]!.name).toBe(HOSTILE.ifname);
    expect(facts.interfaces[0]!.addresses[0]!.address).toBe(HOSTILE.address);
    expect(facts.routes[0]).toMatchObject({ gateway: HOSTILE.gateway, dev: HOSTILE.dev });
    expect(r.stderr).not.toMatch(CONTROL);
  });

  it('prints the CLI JSON with no control character and no workflow command', async () => {
    // JSON.stringify leaves DEL and C1 (U+009B is CSI) raw, and `##[` is a command anywhere in a
    // line: src/cli/commands.ts must print jsonText(doc) from src/report/render.ts.
    const r = await cli('probe', '--json');
    expect(r.stdout).not.toMatch(CONTROL);
    expect(parseWorkflowCommands(r.stdout)).toEqual([]);
  });

  it('prints the CLI text with no control character and no workflow command', async () => {
    for (const cmd of ['probe', 'plan']) {
      const r = await cli(cmd);
      expect(r.code).toBe(0);
      expect(r.stdout).not.toMatch(CONTROL);
      expect(r.stderr).not.toMatch(CONTROL);
      // The CLI runs in workflows too (`run: npx vps-nixos plan …`): the runner reads it as well.
      expect(parseWorkflowCommands(r.stdout)).toEqual([]);
      expect(parseWorkflowCommands(r.stderr)).toEqual([]);
      const shown = r.stdout.replace(/\u200b/g, '');
      for (const v of [HOSTILE.prettyName, HOSTILE.ifname, HOSTILE.gateway])
        for (const l of readable(v)) expect(shown).toContain(l);
    }
  });
});

/** What the target prints for facts.sh over the system's ssh client: stdout and stderr. */
function sshProbe(): { stdout: string; stderr: string } {
  const r = spawnSync(
    'ssh',
    [
      ...['-i', host.sshd.clientKeyFile, '-p', String(host.sshd.port)],
      ...['-o', `UserKnownHostsFile=${host.sshd.knownHostsFile}`, '-o', 'BatchMode=yes'],
      ...['-o', 'StrictHostKeyChecking=yes', '-o', 'IdentitiesOnly=yes'],
      'root@127.0.0.1',
      scriptCommand('facts.sh'),
    ],
    { encoding: 'utf8' },
  );
  return { stdout: r.stdout, stderr: r.stderr };
}

describe("the target's own output, line by line in the logs", () => {
  // In a plan-only run nothing the target prints is logged as it is; a bootstrap phase's and
  // nixos-rebuild's output are (a VM's worth of work): here the same loggers log this host's.
  it('forges no workflow command in the action log (real @actions/core)', async () => {
    const out = sshProbe();
    expect(out.stdout).toContain('facts.version=1');
    const written: string[] = [];
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation((s) => {
      written.push(String(s));
      return true;
    });
    try {
      const log = actionLogger(core);
      for (const l of out.stdout.split('\n')) log.info(l);
      log.info(out.stdout);
      log.warn(out.stdout);
      await log.group!(HOSTILE.ifname, async () => log.info(HOSTILE.stderr));
    } finally {
      spy.mockRestore();
    }
    const printed = written.join('');
    const ours = ['warning', 'group', 'endgroup'];
    expect(
      parseWorkflowCommands(printed).filter((c) => !ours.includes(c.name) || c.legacy),
    ).toEqual([]);
    expect(printed).not.toMatch(CONTROL);
    // Still readable: the values facts.sh prints as they are (the JSON ones stay JSON).
    const shown = printed.replace(/\u200b/g, '');
    for (const v of [HOSTILE.virt, HOSTILE.prettyName, HOSTILE.kernel, HOSTILE.rootSource])
      for (const l of readable(v)) expect(shown).toContain(l);
  });

  it('prints no control character in the terminal log', () => {
    const out = sshProbe();
    let printed = '';
    const log = terminalLogger((s) => (printed += s));
    for (const l of out.stdout.split('\n')) log.info(l);
    log.warn(out.stdout);
    expect(printed).not.toMatch(CONTROL);
  });
});

describe('a hostile target whose facts script fails', () => {
  beforeAll(() => host.setFailing(true));
  afterAll(() => host.setFailing(false));

  it('fails the action with its stderr as escaped data', () => {
    const step = runMain();
    expect(step.code).not.toBe(0);
    expect(notOurs(step)).toEqual([]);
    expect(step.stdout).not.toMatch(CONTROL);
    const errors = parseWorkflowCommands(step.stdout).filter((c) => c.name === 'error');
    expect(errors.map((c) => c.data).join('\n')).toMatch(/the facts script exited 3/);
    // The host key was pinned before the probe failed; nothing else is an output.
    expect(Object.keys(step.outputs)).toEqual(['host-key']);
    expectSummaryIsData(step.summary);
    const seen = visibleText(step.summary);
    for (const l of readable(HOSTILE.stderr)) expect(seen).toContain(l);
  });

  it('keeps the stderr as data in the CLI JSON', async () => {
    const r = await cli('probe', '--json');
    expect(r.code).toBe(1);
    expect(r.stdout).not.toMatch(CONTROL);
    const { error } = JSON.parse(r.stdout) as { error: { message: string } };
    expect(error.message).toContain('x\r::set-output name=method::pwned \x1b]0;PWNED\x07');
  });

  it('prints the CLI error with no control character and no workflow command', async () => {
    // src/cli.ts writes the error message to stderr as it is: it must go through safeText.
    for (const json of [[], ['--json']]) {
      const r = await cli('probe', ...json);
      expect(r.code).toBe(1);
      expect(r.stdout).not.toMatch(CONTROL);
      expect(r.stderr).not.toMatch(CONTROL);
      expect(parseWorkflowCommands(r.stdout)).toEqual([]);
      expect(parseWorkflowCommands(r.stderr)).toEqual([]);
    }
  });
});
