/** Renders a RunRecord for people: markdown for the job summary, plain text for the terminal. Pure. */
import type { Facts } from '../probe/facts';
import type { RunRecord, StageRecord } from '../pipeline/record';
import { formatBytes } from '../size';
import type { BuildResult } from '../nix/build';
import type { SaveOutcome } from '../cache/closure-cache';
import type { KexecTarball } from '../nix/kexec';
import { splitVersion, storeName, type ClosureDiff } from '../nix/closure';
import type { DeployResult } from '../deploy/deploy';
import { renderFindingsMarkdown, renderFindingsText } from '../preflight/run';
import type { Finding } from '../preflight/types';
import { Cuts, DEFAULT_MAX_BYTES, fitToBytes } from './summary-limit';

type Row = [string, string];

/** What the caller knows that the record does not. */
export interface RenderOptions {
  /** The commit the configuration came from (GITHUB_SHA); the headline shows 7 characters. */
  commit?: string;
  /** The branch or tag (GITHUB_REF_NAME). */
  ref?: string;
  /** The run was cancelled: the record holds what happened before, nothing more. */
  cancelled?: boolean;
  /**
   * UTF-8 bytes the rendering may take. Markdown: default 1,000,000 (GitHub drops a step summary
   * over 1 MiB whole); text: no limit unless given.
   */
  maxBytes?: number;
}

/** The facts worth showing, in the order a person checks them. */
export function factRows(f: Facts): Row[] {
  const fs = (x: Facts['tmp']) =>
    x ? `${x.fsType}, ${formatBytes(x.sizeBytes)} (${formatBytes(x.availBytes)} free)` : 'unknown';
  const addrs = f.interfaces
    .flatMap((i) =>
      i.addresses
        .filter((a) => a.scope === 'global')
        .map(
          (a) =>
            `${i.name} ${a.address}/${a.prefixLength}${a.dynamic ? ' (dynamic)' : ' (static)'}`,
        ),
    )
    .join(', ');
  const gw = f.routes
    .filter((r) => r.dst === 'default')
    .map((r) => `${r.gateway ?? 'on-link'} dev ${r.dev ?? '?'}${r.onlink ? ' onlink' : ''}`)
    .join(', ');
  return [
    ['OS', `${f.osPrettyName ?? f.osId}${f.osVariantId ? ` (variant ${f.osVariantId})` : ''}`],
    [
      'NixOS',
      f.isInstaller
        ? 'kexec installer (mid-install)'
        : f.isNixos
          ? `yes${f.currentSystem ? `: ${f.currentSystem}` : ''}`
          : 'no',
    ],
    [
      'Virtualization',
      `${f.virtualization}${f.isContainer ? ' (container)' : ''}${f.virtualizationSource === 'hints' ? ' — from hints, no systemd-detect-virt' : ''}`,
    ],
    [
      'Memory',
      `${formatBytes(f.memTotalBytes)} total${f.memAvailableBytes !== undefined ? `, ${formatBytes(f.memAvailableBytes)} available` : ''}`,
    ],
    ['Swap', f.swapTotalBytes ? formatBytes(f.swapTotalBytes) : 'none'],
    ['Architecture / kernel', `${f.arch} / ${f.kernel}${f.efi ? ' (UEFI)' : ' (BIOS)'}`],
    ['Root', `${f.rootSource ?? '?'} ${fs(f.root)}`],
    ['/tmp', fs(f.tmp)],
    [
      'Disks',
      f.disks.map((d) => `${d.path} ${formatBytes(d.sizeBytes)}`).join(', ') || 'none found',
    ],
    ['Addresses', addrs || 'none'],
    ['Default routes', gw || 'none'],
    ['DNS', f.dns.join(', ') || 'none'],
    ['Package manager', f.packageManager ?? 'none found'],
    [
      'Missing tools',
      ['tar', 'cpio', 'setsid', 'kexec'].filter((t) => !f.tools[t]).join(', ') || 'none',
    ],
    ['boot_id', f.bootId],
  ];
}

/**
 * The closure section: totals, the biggest contributors, known leaks, the cache outcome. `cuts`
 * shortens the long lists (the job summary's size limit).
 */
export function closureRows(
  b: BuildResult,
  more: { installer?: KexecTarball; cuts?: Cuts; saved?: SaveOutcome } = {},
): { totals: Row[]; top: Row[]; leaks: Row[] } {
  const c = b.closure;
  const cuts = more.cuts ?? new Cuts();
  const totals: Row[] = [
    ['System', b.toplevel],
    ['Closure', `${formatBytes(c.narBytes)} in ${c.pathCount} paths`],
  ];
  if (b.diskScript) totals.push(['Disk script', b.diskScript]);
  if (b.cache) {
    const cache = b.cache;
    totals.push([
      'Cache restore',
      `${cache.hit}${cache.restoredKey ? ` (${cache.restoredKey}: ${cache.restoredPaths} paths the store lacked)` : ''}`,
    ]);
  }
  if (more.saved) totals.push(['Cache save', `${more.saved.saved}: ${more.saved.detail}`]);
  if (c.diff) {
    const changed = cuts.rows(c.diff.changed, 'package versions against the target');
    const hidden = c.diff.changed.length - changed.length;
    totals.push([
      'Against the target',
      `${c.diff.added.length} paths added, ${c.diff.removed.length} removed, ${formatBytes(c.diff.bytesToSend)} to send` +
        (changed.length
          ? `; ${changed.map((x) => `${x.name} ${x.from} → ${x.to}`).join(', ')}${hidden ? ` and ${hidden} more` : ''}`
          : hidden
            ? `; ${hidden} package versions changed`
            : ''),
    ]);
  }
  if (c.trimming) {
    const t = c.trimming;
    totals.push([
      'Saved by the vpsNixos module',
      `${formatBytes(t.savedBytes)} (the same configuration without it: ${formatBytes(t.untrimmedNarBytes)})` +
        (t.removed.length
          ? `; left out: ${t.removed
              .slice(0, 5)
              .map((r) => `${storeName(r.path)} ${formatBytes(r.narBytes)}`)
              .join(', ')}`
          : ''),
    ]);
  }
  if (more.installer) totals.push(installerRow(more.installer));
  totals.push(['Build time', `${b.seconds.toFixed(1)} s`]);
  return {
    totals,
    top: cuts
      .rows(c.topOwn, 'biggest paths')
      .map((t) => [
        storeName(t.path),
        `${formatBytes(t.narBytes)} own, ${formatBytes(t.closureBytes)} with dependencies`,
      ]),
    leaks: cuts
      .rows(c.leaks, 'known leaks')
      .map((l) => [storeName(l.path), `${formatBytes(l.narBytes)}: ${l.what} — ${l.option}`]),
  };
}

function installerRow(k: KexecTarball): Row {
  return ['Kexec installer', `${k.from}: ${formatBytes(k.bytes)}, sha256 ${k.sha256}`];
}

// Terminal control sequences (colours, cursor moves, OSC titles) and the other C0/C1 controls.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-_]?/g;
// eslint-disable-next-line no-control-regex -- as above
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/g;
// Bidirectional controls reorder what a reader sees (the "Trojan Source" trick: a path or a
// command shown other than it is); U+2028/2029 break lines in some viewers and not in others.
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;

/**
 * Remote text without control sequences or bidirectional controls; every line break is `\n` (a
 * lone `\r` ends a line too).
 */
export function plainText(s: string): string {
  return s.replace(/\r\n?/g, '\n').replace(ANSI, '').replace(CONTROL, '').replace(BIDI, '');
}

/**
 * Text safe to print where the Actions runner reads stdout: no control sequences, and no line it
 * would take as a workflow command (`::cmd::` after leading whitespace, or the old `##[cmd]`).
 */
export function safeText(s: string): string {
  return plainText(s)
    .replace(/^([^\S\n]*):(?=:)/gm, '$1:\u200b')
    .replace(/##\[/g, '#\u200b#[');
}

/**
 * A JSON document for a terminal or a workflow log, its values exactly as they are: DEL and the
 * C1 controls (U+009B is CSI, an escape sequence in one character) and the bidirectional
 * controls, which `JSON.stringify` leaves raw, become `\u` escapes, and so does the second `#` of
 * a `##[` (the runner takes `##[cmd]` anywhere in a line as a command). A `::` cannot start a
 * line of it.
 */
export function jsonText(value: unknown): string {
  const escape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  return (
    JSON.stringify(value, null, 2)
      .replace(/[\x7f-\x9f]/g, escape)
      .replace(BIDI, escape)
      .replace(/##\[/g, '#\\u0023[') + '\n'
  );
}

const ENTITY: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '|': '&#124;',
  '`': '&#96;',
  '*': '&#42;',
  _: '&#95;',
  '[': '&#91;',
  ']': '&#93;',
  '\\': '&#92;',
  '~': '&#126;',
  $: '&#36;',
};
const WORD = /[\p{L}\p{N}]/u;

/**
 * Escapes text for the job summary, which GitHub inserts as HTML and renders as Markdown: no tag,
 * table cell break, code span, emphasis, link, strikethrough or math survives. A `_` between
 * letters (NIX_CHANNEL) cannot start emphasis and stays readable. Bare URLs still link: for the
 * workflow's own text (a health-url), not the target's.
 */
function escapeMarkup(s: string): string {
  return plainText(s)
    .replace(/_+|[&<>|`*[\]\\~$]/g, (m: string, at: number, all: string) =>
      m[0] !== '_'
        ? (ENTITY[m] ?? m)
        : WORD.test(all[at - 1] ?? '') && WORD.test(all[at + m.length] ?? '')
          ? m
          : ENTITY['_']!.repeat(m.length),
    )
    .replace(/\n/g, '<br>');
}

/**
 * Escapes remote text for the job summary as escapeMarkup does, and more: GitHub also links what
 * merely looks like a link (`https://…`, `www.…`, `a@b.example`, `@name`). An entity does not
 * stop that (emails and mentions are found in the decoded text), an element does: a `<wbr>`
 * inside each, which shows nothing and copies as nothing.
 */
export function escapeCell(s: string): string {
  return escapeMarkup(s)
    .replace(/:(?=\/\/)/g, ':<wbr>')
    .replace(/(w{3})\./gi, '$1<wbr>.')
    .replace(/@(?=(?:[\w.-]|&#95;)*[A-Za-z])/g, '@<wbr>');
}

/** Remote text as inline code in the summary (a backtick span would show the entities raw). */
const code = (s: string) => `<code>${escapeCell(s)}</code>`;

function mdTable(header: string[], rows: string[][]): string {
  return rawTable(
    header,
    rows.map((r) => r.map(escapeCell)),
  );
}

/** A table whose cells are escaped (or our own markup) already. */
function rawTable(header: string[], rows: string[][]): string {
  const line = (r: string[]) => `| ${r.join(' | ')} |`;
  return [
    line(header.map(escapeCell)),
    `|${' --- |'.repeat(header.length)}`,
    ...rows.map(line),
  ].join('\n');
}

/** One row per bootstrap phase: status, duration, peak target memory, bytes sent, what it did. */
export function phaseRows(b: NonNullable<RunRecord['bootstrap']>, cuts = new Cuts()): string[][] {
  return b.phases.map((p) => [
    p.name,
    p.status,
    `${p.seconds.toFixed(1)} s`,
    p.peakMemBytes ? formatBytes(p.peakMemBytes) : '–',
    p.bytesSent ? formatBytes(p.bytesSent) : '–',
    cuts.text(p.detail ?? '', 'bootstrap phase details'),
  ]);
}

/** What the host runs after the bootstrap, in words (the report and the final status line). */
export function hostRuns(h: NonNullable<RunRecord['bootstrap']>['host']): string {
  if (!h.isNixos) return 'its own distribution';
  if (h.variantId === 'installer') return 'the NixOS kexec installer';
  return `NixOS ${h.currentSystem ?? '(no /run/current-system)'}`;
}

function hostLine(b: NonNullable<RunRecord['bootstrap']>): string {
  return `the host runs ${hostRuns(b.host)} (boot_id ${b.host.bootId}); ${formatBytes(b.bytesSent)} sent`;
}

const PHASE_HEADER = ['Phase', 'Status', 'Time', 'Peak target memory', 'Sent', 'Detail'];

/** The nixos-infect that ran: where from, the pinned revision, the verified hash, each patch. */
export function infectRows(i: NonNullable<NonNullable<RunRecord['bootstrap']>['infect']>): Row[] {
  return [
    ['nixos-infect', i.source.from],
    ['Revision', i.revision ?? 'not a pinned revision (infect-url)'],
    [
      'sha256',
      i.source.verified
        ? `${i.source.sha256} (checked on the runner, ${formatBytes(i.source.bytes)})`
        : `${i.source.sha256} (a local file, not checked against infect-sha256)`,
    ],
    ['Uploaded (patched) sha256', `${i.sha256} (checked again on the target)`],
    ['Channel', i.channel],
    ...i.patches.map((p): Row => [
      `Patch ${p.id}`,
      p.applied ? `applied: ${p.what}` : `NOT applied: ${p.why ?? ''}`,
    ]),
  ];
}

/** The deploy in rows: outcome, before and after, bytes, reboot, the switch, failed units. */
export function deployRows(d: DeployResult, cuts = new Cuts()): Row[] {
  const outcome = d.rolledBack
    ? `rolled back by ${d.rollback?.by === 'target' ? 'the target itself (not confirmed in time)' : 'the runner'}: ${cuts.text(d.rollback?.reason ?? '', 'the rollback reason', 10)}`
    : d.skipped === 'unchanged'
      ? 'no change: the host already runs this system; nothing was built, copied or activated'
      : d.action === 'dry-activate'
        ? 'dry-activate: nothing was changed'
        : d.changed
          ? `${d.action === 'boot' ? 'boot default set to' : 'switched to'} ${d.systemPath}`
          : 'no change';
  const rows: Row[] = [['Result', outcome]];
  if (d.forced)
    rows.push([
      'Forced',
      'yes (force-switch): the host already ran this system; it was activated again',
    ]);
  rows.push(
    [
      'Before',
      d.previousSystemPath || 'no system yet (first deploy: there was nothing to roll back to)',
    ],
    ['Runs now', d.hostRuns || '(no /run/current-system)'],
    ['Sent', `${formatBytes(d.bytesSent)} in ${d.pathsSent} store paths (measured on the target)`],
    ['Reboot needed', d.rebootNeeded.length ? `yes: ${d.rebootNeeded.join(', ')} changed` : 'no'],
    [
      'Switch',
      d.skipped === 'unchanged'
        ? 'not run'
        : `${d.rebuild.args.join(' ')} — exit ${d.rebuild.code} after ${d.rebuild.seconds.toFixed(1)} s (${d.rebuild.from})`,
    ],
  );
  if (d.failedUnits.length) {
    const units = cuts.rows(d.failedUnits, 'failed units', 5);
    const more = d.failedUnits.length - units.length;
    rows.push(['Failed units', units.join(', ') + (more ? ` and ${more} more` : '')]);
  }
  rows.push(['Deploy time', `${d.seconds.toFixed(1)} s`]);
  return rows;
}

/** Packages changed, added and removed: the `diff` output and the summary section. */
export function diffMarkdown(diff: ClosureDiff, bytesSent?: number, cuts = new Cuts()): string {
  const names = (paths: string[]) => [
    ...new Set(paths.map((p) => storeName(p)).filter((n) => !/^nixos-system-/.test(n))),
  ];
  const changedNames = new Set(diff.changed.map((c) => c.name));
  const onlyNew = (paths: string[]) =>
    names(paths).filter((n) => !changedNames.has(splitVersion(n).pname));
  const added = onlyNew(diff.added);
  const removed = onlyNew(diff.removed);
  const list = (xs: string[]) =>
    xs.slice(0, 40).map(code).join(', ') + (xs.length > 40 ? ` and ${xs.length - 40} more` : '');
  const lines = [
    `${diff.changed.length} changed, ${added.length} added, ${removed.length} removed; ${formatBytes(bytesSent ?? diff.bytesToSend)} ${bytesSent === undefined ? 'to send' : 'sent'}`,
  ];
  const changed = cuts.rows(diff.changed, 'changed packages (What changed)');
  if (changed.length)
    lines.push(
      mdTable(
        ['Package', 'Before', 'After'],
        changed.map((c) => [c.name, c.from || '–', c.to || '–']),
      ),
    );
  if (changed.length < diff.changed.length)
    lines.push(`… and ${diff.changed.length - changed.length} more changed packages`);
  if (added.length) lines.push(`**Added:** ${list(added)}`);
  if (removed.length) lines.push(`**Removed:** ${list(removed)}`);
  return lines.join('\n\n');
}

/** The short sha and the ref, as the headline says them. */
function commitPhrase(o: RenderOptions): string {
  const sha = o.commit && /^[0-9a-f]{8,}$/i.test(o.commit) ? o.commit.slice(0, 7) : o.commit;
  if (sha && o.ref) return ` at commit ${sha} (${o.ref})`;
  if (sha) return ` at commit ${sha}`;
  return o.ref ? ` at ${o.ref}` : '';
}

const firstLine = (s: string, max = 300) => {
  const line = plainText(s).trim().split('\n')[0] ?? '';
  return line.length > max ? `${line.slice(0, max)}…` : line;
};
const systemName = (p: string) => (p ? storeName(p) : 'an unknown system');
const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

function findingCounts(found: readonly Finding[]): string {
  const n = (s: Finding['severity']) => found.filter((f) => f.severity === s).length;
  return `${plural(n('error'), 'error')}, ${plural(n('warning'), 'warning')}`;
}

/** The stage a cancelled or failed run stopped in. */
function stoppedAt(stages: StageRecord[], failed: boolean): string {
  const hit = failed ? [...stages].reverse().find((s) => s.status === 'failed') : undefined;
  if (hit) return `at stage ${hit.name}`;
  const last = stages.at(-1);
  if (!last) return 'before the first stage';
  // A stage is recorded when it ends; one that did not end (failed, or still running) was interrupted.
  return last.status === 'done' || last.status === 'skipped'
    ? `after stage ${last.name}`
    : `during stage ${last.name}`;
}

/** What a deploy did, for the headline: the part before the commit, and the part after it. */
function deployPhrase(d: DeployResult): [string, string] {
  const reboot = d.rebootNeeded.length ? `; reboot needed (${d.rebootNeeded.join(', ')})` : '';
  const sys = systemName(d.systemPath || d.hostRuns);
  if (d.skipped === 'unchanged')
    return [
      `already runs ${systemName(d.hostRuns || d.systemPath)}`,
      `; nothing was built, copied or activated${reboot}`,
    ];
  if (d.action === 'dry-activate') return [`dry-activated ${sys}`, '; nothing was changed'];
  if (!d.changed && !d.forced) return [`already runs ${systemName(d.hostRuns)}`, reboot];
  const again = d.forced ? ' again (force-switch: the host already ran it)' : '';
  if (d.action === 'boot')
    return [`set ${sys} as the boot default${again}`, `; it runs after a reboot${reboot}`];
  if (d.action === 'test') return [`activated ${sys}${again}`, `; not the boot default${reboot}`];
  return [`switched to ${sys}${again}`, reboot];
}

/** The one line first: what happened to which host at which commit. */
function headline(r: RunRecord, o: RenderOptions): { verb: string; text: string } {
  const host = r.target ?? 'the host';
  const at = commitPhrase(o);
  if (o.cancelled)
    return { verb: 'cancelled', text: `${stoppedAt(r.stages, false)} on ${host}${at}` };
  const refusal = r.plan?.refusal;
  if (refusal && (!r.error || /^refused\b/.test(r.error.message)))
    return { verb: 'refused', text: `${host}${at}: ${firstLine(refusal.reason)}` };
  if (r.error)
    return {
      verb: 'failed',
      text: `${stoppedAt(r.stages, true)} on ${host}${at}: ${firstLine(r.error.message)}`,
    };
  const errors = r.preflight?.findings.filter((f) => f.severity === 'error').length ?? 0;
  const pre = errors ? `; preflight found ${plural(errors, 'error')}` : '';
  const ran = r.bootstrap?.phases.filter((p) => p.status === 'done').length ?? 0;
  const installed = `(${r.plan?.method ?? 'bootstrap'}, ${plural(ran, 'phase')}) `;
  const d = r.deploy;
  if (d) {
    const [what, after] = deployPhrase(d);
    const verb = ran
      ? 'installed'
      : d.action === 'dry-activate'
        ? 'dry-activated'
        : d.changed || d.forced
          ? 'deployed'
          : 'no change';
    return { verb, text: `${ran ? installed : ''}${host}: ${what}${at}${after}${pre}` };
  }
  if (r.bootstrap) {
    const runs = `the host runs ${hostRuns(r.bootstrap.host)}`;
    return ran
      ? { verb: 'installed', text: `${installed}${host}: ${runs}${at}${pre}` }
      : { verb: 'no change', text: `${host}: nothing to bootstrap, ${runs}${at}${pre}` };
  }
  if (r.decision?.unchanged && r.evaluated)
    return {
      verb: 'no change',
      text: `${host}: already runs ${systemName(r.evaluated)}${at}; nothing was built${pre}`,
    };
  if (r.build) {
    const diff = r.build.closure.diff;
    const against = diff
      ? `; ${diff.changed.length} changed, ${diff.added.length} paths added, ${diff.removed.length} removed against what ${host} runs`
      : '';
    return {
      verb: 'built',
      text: `${systemName(r.build.toplevel)}${at}${against}; nothing deployed${pre}`,
    };
  }
  if (r.plan) {
    const further = r.stages.some((s) => ['build', 'bootstrap', 'deploy'].includes(s.name));
    return {
      verb: 'planned',
      text: `${r.plan.method}${further ? '' : ' (plan-only)'} for ${host}${at}: ${r.plan.phases.join(' → ') || 'nothing to do'}${pre}`,
    };
  }
  if (r.preflight)
    return {
      verb: 'checked',
      text: `${r.target ?? 'the configuration'}${at}: preflight found ${findingCounts(r.preflight.findings)}`,
    };
  if (r.facts)
    return {
      verb: 'probed',
      text: `${host}: ${r.facts.osPrettyName ?? r.facts.osId}, ${formatBytes(r.facts.memTotalBytes)}${at}`,
    };
  return { verb: 'nothing ran', text: `for ${host}${at}` };
}

/**
 * A routine deploy (it went through, the host had a system before, nothing was rolled back or
 * installed): its details are folded. A failure, refusal, first install or rollback keeps them open.
 */
function routine(r: RunRecord, o: RenderOptions): boolean {
  const d = r.deploy;
  if (!d || r.error || o.cancelled || r.plan?.refusal) return false;
  const installed = r.bootstrap?.phases.some((p) => p.status === 'done') ?? false;
  const stage = r.stages.find((s) => s.name === 'deploy');
  return (
    !installed &&
    stage?.status !== 'failed' &&
    !d.rolledBack &&
    !d.nothingToRollBackTo &&
    d.previousSystemPath !== '' &&
    d.failedUnits.length === 0 &&
    d.checks.every((c) => c.ok)
  );
}

/** `### title` and the body, or all of it folded under `summary` (blank lines so it renders). */
/** The findings a rendering keeps, their texts shortened to its limits. */
function keptFindings(found: readonly Finding[], cuts: Cuts): Finding[] {
  return cuts.rows(found, 'preflight findings', 0.5).map((f) => ({
    ...f,
    message: cuts.text(f.message, 'preflight finding texts'),
    why: cuts.text(f.why, 'preflight finding texts'),
    fix: cuts.text(f.fix, 'preflight finding texts', 2),
  }));
}

function section(title: string, body: string[], folded: boolean, summary = title): string {
  return folded
    ? `<details><summary>${summary}</summary>\n\n${body.join('\n\n')}\n\n</details>`
    : [`### ${title}`, ...body].join('\n\n');
}

const totalSeconds = (stages: StageRecord[]) => stages.reduce((t, s) => t + s.seconds, 0);

/** What an unchanged or forced deploy means, in a sentence. */
function deployNote(d: DeployResult, markup: (s: string) => string): string | undefined {
  const pending = d.rebootNeeded.length
    ? ` A reboot is pending: ${d.rebootNeeded.join(', ')} differ from the booted system's.`
    : '';
  if (d.skipped === 'unchanged')
    return `Nothing was built, copied or activated: the host already runs ${markup(d.hostRuns || d.systemPath)}, the configuration's system.${pending}`;
  if (d.forced)
    return `The switch was forced (force-switch): the host already ran ${markup(d.systemPath)}, and it was activated again.`;
  return undefined;
}

function markdown(r: RunRecord, o: RenderOptions, cuts: Cuts, maxBytes: number): string {
  const fold = routine(r, o);
  const h = headline(r, o);
  const top = [`**${h.verb}** ${escapeCell(h.text)}`];
  if (r.error)
    top.push(
      `> [!CAUTION]\n> ${escapeCell(cuts.text(r.error.message, 'the error message', 10))}${r.error.fix ? `<br>**Fix:** ${escapeCell(cuts.text(r.error.fix, 'the fix', 10))}` : ''}`,
    );
  const note = r.deploy && deployNote(r.deploy, code);
  if (note) top.push(note);

  const out: string[] = [];
  if (r.deploy) {
    const d = r.deploy;
    const rows = deployRows(d, cuts).map(([k, v]) => [escapeCell(k), escapeCell(v)]);
    if (o.commit || o.ref)
      rows.splice(1, 0, [
        'Commit',
        `${o.commit ? code(o.commit) : ''}${o.commit && o.ref ? ' ' : ''}${o.ref ? `(${escapeCell(o.ref)})` : ''}`,
      ]);
    out.push('### Deploy', rawTable(['', ''], rows));
    if (d.checks.length)
      out.push(
        rawTable(
          ['Check', 'Result', 'Detail'],
          cuts.rows(d.checks, 'health checks', 5).map((c) => [
            // the workflow's check (health-check, health-url); its result is the target's
            escapeMarkup(c.name),
            c.ok ? 'passed' : '**failed**',
            escapeCell(cuts.text(c.detail, 'health check details')),
          ]),
        ),
      );
    if (d.diff && d.changed) out.push('#### What changed', diffMarkdown(d.diff, d.bytesSent, cuts));
  }
  if (r.bootstrap) {
    const b = r.bootstrap;
    out.push('### Bootstrap', escapeCell(hostLine(b)));
    if (b.phases.length) out.push(mdTable(PHASE_HEADER, phaseRows(b, cuts)));
    else out.push('Nothing to bootstrap.');
    if (b.infect) out.push(mdTable(['', ''], infectRows(b.infect)));
    for (const w of cuts.rows(b.warnings, 'bootstrap warnings', 5))
      out.push(`> [!WARNING]\n> ${escapeCell(cuts.text(w, 'bootstrap warnings'))}`);
  }
  if (r.plan) {
    const p = r.plan;
    const body: string[] = [];
    if (p.refusal)
      body.push(
        `**Refused:** ${escapeCell(p.refusal.reason)}<br>**What would work:** ${escapeCell(p.refusal.remediation)}`,
      );
    body.push(p.reasons.map((x) => `- ${escapeCell(x)}`).join('\n'));
    if (p.warnings.length)
      body.push(p.warnings.map((w) => `> [!WARNING]\n> ${escapeCell(w)}`).join('\n\n'));
    const rows: Row[] = [['Phases', p.phases.join(' → ') || 'none']];
    if (p.zramBytes) rows.push(['zram swap', formatBytes(p.zramBytes)]);
    if (p.swapfileBytes) rows.push(['swapfile (on disk)', formatBytes(p.swapfileBytes)]);
    body.push(mdTable(['', ''], rows));
    out.push(section(`Plan: \`${p.method}\``, body, fold, `Plan: <code>${p.method}</code>`));
  }
  if (r.preflight) {
    const found = r.preflight.findings;
    const kept = keptFindings(found, cuts);
    out.push(renderFindingsMarkdown(kept));
    if (kept.length < found.length)
      out.push(
        `… and ${found.length - kept.length} more findings (${findingCounts(found)} in all)`,
      );
  }
  if (r.hostKeyFingerprint) {
    out.push(
      `Host key: ${code(r.hostKeyFingerprint)}${r.hostKeyTrustedOnFirstUse ? ' — **trusted on first use**; pin it with the `host-key` output' : ' (pinned)'}`,
    );
  }
  if (r.build) {
    const c = closureRows(r.build, { installer: r.installer, cuts, saved: r.cacheSave });
    const body = [mdTable(['', ''], c.totals)];
    if (c.leaks.length)
      body.push('Known server-closure leaks:', mdTable(['Path', 'Why it is there'], c.leaks));
    if (c.top.length)
      body.push(
        '<details><summary>Biggest paths</summary>\n\n' +
          mdTable(['Path', 'Size'], c.top) +
          '\n\n</details>',
      );
    const cl = r.build.closure;
    out.push(
      section(
        'Closure',
        body,
        fold,
        `Closure: ${formatBytes(cl.narBytes)} in ${cl.pathCount} paths`,
      ),
    );
  } else if (r.installer) {
    out.push(section('Installer', [mdTable(['', ''], [installerRow(r.installer)])], fold));
  }
  if (r.facts) {
    const rows = factRows(r.facts).map(([k, v]): Row => [k, cuts.text(v, 'host facts', 2)]);
    out.push(
      section(
        'Facts',
        [mdTable(['Fact', 'Value'], rows)],
        fold,
        `Host facts: ${escapeCell(r.facts.osPrettyName ?? r.facts.osId)}, ${formatBytes(r.facts.memTotalBytes)}`,
      ),
    );
  }
  if (r.stages.length) {
    const rows = r.stages.map((s) => [
      s.name,
      s.status,
      `${s.seconds.toFixed(1)} s`,
      cuts.text(s.detail ?? '', 'stage details'),
    ]);
    rows.push(['total', '', `${totalSeconds(r.stages).toFixed(1)} s`, '']);
    out.push(
      section(
        'Stages',
        [mdTable(['Stage', 'Status', 'Time', 'Detail'], rows)],
        fold,
        `Stages: ${r.stages.length} in ${totalSeconds(r.stages).toFixed(1)} s`,
      ),
    );
  }
  const cut = cuts.notes();
  if (cut.length)
    top.push(
      `> [!NOTE]\n> Shortened to stay under GitHub's step-summary limit (${maxBytes.toLocaleString('en-US')} bytes); left out: ${cut.map(escapeCell).join('; ')}.`,
    );
  return [...top, ...out].join('\n\n') + '\n';
}

/**
 * Markdown for the job summary: the headline first, then what went wrong, then the sections
 * (folded on a routine deploy); kept under `maxBytes` (1,000,000 by default).
 */
export function renderMarkdown(r: RunRecord, o: RenderOptions = {}): string {
  const max = o.maxBytes ?? DEFAULT_MAX_BYTES;
  return fitToBytes(
    (cuts) => markdown(r, o, cuts, max),
    max,
    (n) => `\n\n(cut at ${n.toLocaleString('en-US')} bytes: GitHub drops a larger step summary)\n`,
  );
}

function text(r: RunRecord, o: RenderOptions, cuts: Cuts, maxBytes?: number): string {
  const h = headline(r, o);
  const out: string[] = [`${h.verb} ${h.text}`];
  if (r.error)
    out.push(
      `error: ${cuts.text(r.error.message, 'the error message', 10)}`,
      ...(r.error.fix ? [`  fix: ${cuts.text(r.error.fix, 'the fix', 10)}`] : []),
    );
  const note = r.deploy && deployNote(r.deploy, (s) => s);
  if (note) out.push(note);
  const body: string[] = [];
  if (r.hostKeyFingerprint)
    body.push(
      `host key: ${r.hostKeyFingerprint}${r.hostKeyTrustedOnFirstUse ? ' (trusted on first use)' : ' (pinned)'}`,
    );
  if (r.facts) {
    const rows = factRows(r.facts);
    const w = Math.max(...rows.map(([k]) => k.length));
    body.push(
      'facts:',
      ...rows.map(([k, v]) => `  ${k.padEnd(w)}  ${cuts.text(v, 'host facts', 2)}`),
    );
  }
  if (r.build) {
    const c = closureRows(r.build, { installer: r.installer, cuts, saved: r.cacheSave });
    body.push('closure:', ...c.totals.map(([k, v]) => `  ${k}: ${v}`));
    if (c.leaks.length) body.push('  known leaks:', ...c.leaks.map(([k, v]) => `    ${k}: ${v}`));
    body.push('  biggest paths:', ...c.top.slice(0, 10).map(([k, v]) => `    ${k}: ${v}`));
  } else if (r.installer) {
    const [k, v] = installerRow(r.installer);
    body.push(`${k.toLowerCase()}: ${v}`);
  }
  if (r.plan) {
    const p = r.plan;
    body.push(`plan: ${p.method}`);
    body.push(...p.reasons.map((x) => `  - ${x}`));
    body.push(...p.warnings.map((x) => `  ! ${x}`));
    if (p.refusal)
      body.push(`  refused: ${p.refusal.reason}`, `  what would work: ${p.refusal.remediation}`);
    body.push(`  phases: ${p.phases.join(' → ') || 'none'}`);
    if (p.zramBytes)
      body.push(
        `  zram: ${formatBytes(p.zramBytes)}, swapfile: ${formatBytes(p.swapfileBytes ?? 0)}`,
      );
  }
  if (r.preflight) {
    const found = r.preflight.findings;
    const kept = keptFindings(found, cuts);
    body.push('preflight:', renderFindingsText(kept).trimEnd());
    if (kept.length < found.length)
      body.push(`  … and ${found.length - kept.length} more findings`);
  }
  if (r.bootstrap) {
    body.push('bootstrap:');
    for (const [name, status, time, mem, sent, detail] of phaseRows(r.bootstrap, cuts))
      body.push(
        `  ${name!.padEnd(15)} ${status!.padEnd(8)} ${time!.padStart(8)}  peak ${mem}, sent ${sent}`,
        `    ${detail}`,
      );
    if (!r.bootstrap.phases.length) body.push('  nothing to bootstrap');
    if (r.bootstrap.infect)
      body.push(...infectRows(r.bootstrap.infect).map(([k, v]) => `  ${k}: ${v}`));
    for (const w of cuts.rows(r.bootstrap.warnings, 'bootstrap warnings', 5))
      body.push(`  ! ${cuts.text(w, 'bootstrap warnings')}`);
    body.push(`  ${hostLine(r.bootstrap)}`);
  }
  if (r.deploy) {
    const rows = deployRows(r.deploy, cuts);
    if (o.commit || o.ref)
      rows.splice(1, 0, ['Commit', [o.commit, o.ref && `(${o.ref})`].filter(Boolean).join(' ')]);
    body.push('deploy:', ...rows.map(([k, v]) => `  ${k}: ${v}`));
    for (const c of cuts.rows(r.deploy.checks, 'health checks', 5))
      body.push(
        `  check ${c.ok ? 'passed' : 'FAILED'}: ${c.name} — ${cuts.text(c.detail, 'health check details')}`,
      );
    const d = r.deploy.diff;
    if (d && r.deploy.changed) {
      const changed = cuts.rows(d.changed, 'changed packages (What changed)');
      const more = d.changed.length - changed.length;
      body.push(
        `  changed: ${changed.map((c) => `${c.name} ${c.from || '–'} → ${c.to || '–'}`).join(', ') || 'no package versions'}${more ? ` and ${more} more` : ''}`,
        `  paths: ${d.added.length} added, ${d.removed.length} removed`,
      );
    }
  }
  if (r.stages.length) {
    const w = Math.max(...r.stages.map((s) => s.name.length));
    body.push(
      `stages: ${totalSeconds(r.stages).toFixed(1)} s`,
      ...r.stages.map(
        (s) =>
          `  ${s.name.padEnd(w)}  ${s.status.padEnd(7)} ${`${s.seconds.toFixed(1)} s`.padStart(8)}${s.detail ? `  ${cuts.text(s.detail, 'stage details')}` : ''}`,
      ),
    );
  }
  const cut = cuts.notes();
  if (cut.length && maxBytes !== undefined)
    out.push(`note: shortened to stay under ${maxBytes} bytes; left out: ${cut.join('; ')}`);
  return safeText([...out, ...body].join('\n') + '\n');
}

/**
 * Plain text for the terminal: the headline first, then the sections. Remote text cannot act as a
 * workflow command or a terminal escape; `maxBytes`, when given, bounds it like the summary.
 */
export function renderText(r: RunRecord, o: RenderOptions = {}): string {
  const max = o.maxBytes;
  if (max === undefined) return text(r, o, new Cuts());
  return fitToBytes(
    (cuts) => text(r, o, cuts, max),
    max,
    (n) => `\n(cut at ${n} bytes)\n`,
  );
}
