/** Renders a RunRecord for people: markdown for the job summary, plain text for the terminal. Pure. */
import type { Facts } from '../probe/facts';
import type { RunRecord } from '../pipeline/record';
import { formatBytes } from '../size';
import type { BuildResult } from '../nix/build';
import { splitVersion, storeName, type ClosureDiff } from '../nix/closure';
import type { DeployResult } from '../deploy/deploy';
import { renderFindingsMarkdown, renderFindingsText } from '../preflight/run';

type Row = [string, string];

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

/** The closure section: totals, the biggest contributors, known leaks, the cache outcome. */
export function closureRows(b: BuildResult): { totals: Row[]; top: Row[]; leaks: Row[] } {
  const c = b.closure;
  const totals: Row[] = [
    ['System', b.toplevel],
    ['Closure', `${formatBytes(c.narBytes)} in ${c.pathCount} paths`],
  ];
  if (b.diskScript) totals.push(['Disk script', b.diskScript]);
  if (b.cache) {
    const cache = b.cache;
    totals.push([
      'Cache',
      `${cache.hit}${cache.restoredKey ? ` (${cache.restoredKey}, ${cache.restoredPaths} paths restored)` : ''}; save: ${cache.saved}${cache.bytes !== undefined ? `, ${formatBytes(cache.bytes)}` : ''}`,
    ]);
  }
  if (c.diff) {
    totals.push([
      'Against the target',
      `${c.diff.added.length} paths added, ${c.diff.removed.length} removed, ${formatBytes(c.diff.bytesToSend)} to send` +
        (c.diff.changed.length
          ? `; ${c.diff.changed.map((x) => `${x.name} ${x.from} → ${x.to}`).join(', ')}`
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
  if (b.kexec)
    totals.push([
      'Kexec installer',
      `${b.kexec.from}: ${formatBytes(b.kexec.bytes)}, sha256 ${b.kexec.sha256}`,
    ]);
  totals.push(['Build time', `${b.seconds.toFixed(1)} s`]);
  return {
    totals,
    top: c.topOwn.map((t) => [
      storeName(t.path),
      `${formatBytes(t.narBytes)} own, ${formatBytes(t.closureBytes)} with dependencies`,
    ]),
    leaks: c.leaks.map((l) => [
      storeName(l.path),
      `${formatBytes(l.narBytes)}: ${l.what} — ${l.option}`,
    ]),
  };
}

/** Escapes remote text for the job summary, which GitHub inserts as HTML. */
export function escapeCell(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/\|/g, '&#124;')
    .replace(/\r?\n/g, '<br>');
}

function mdTable(header: string[], rows: string[][]): string {
  const line = (r: string[]) => `| ${r.map(escapeCell).join(' | ')} |`;
  return [line(header), `|${' --- |'.repeat(header.length)}`, ...rows.map(line)].join('\n');
}

/** One row per bootstrap phase: status, duration, peak target memory, bytes sent, what it did. */
export function phaseRows(b: NonNullable<RunRecord['bootstrap']>): string[][] {
  return b.phases.map((p) => [
    p.name,
    p.status,
    `${p.seconds.toFixed(1)} s`,
    p.peakMemBytes ? formatBytes(p.peakMemBytes) : '–',
    p.bytesSent ? formatBytes(p.bytesSent) : '–',
    p.detail ?? '',
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

/** The deploy in rows: outcome, before and after, bytes, reboot, nixos-rebuild, failed units. */
export function deployRows(d: DeployResult): Row[] {
  const outcome = d.rolledBack
    ? `rolled back by ${d.rollback?.by === 'target' ? 'the target itself (not confirmed in time)' : 'the runner'}: ${d.rollback?.reason ?? ''}`
    : d.action === 'dry-activate'
      ? 'dry-activate: nothing was changed'
      : d.changed
        ? `${d.action === 'boot' ? 'boot default set to' : 'switched to'} ${d.systemPath}`
        : 'no change';
  const rows: Row[] = [
    ['Result', outcome],
    [
      'Before',
      d.previousSystemPath || 'no system yet (first deploy: there was nothing to roll back to)',
    ],
    ['Runs now', d.hostRuns || '(no /run/current-system)'],
    ['Sent', `${formatBytes(d.bytesSent)} in ${d.pathsSent} store paths (measured on the target)`],
    ['Reboot needed', d.rebootNeeded.length ? `yes: ${d.rebootNeeded.join(', ')} changed` : 'no'],
    [
      'nixos-rebuild',
      `${d.rebuild.args.join(' ')} — exit ${d.rebuild.code} after ${d.rebuild.seconds.toFixed(1)} s (${d.rebuild.from})`,
    ],
  ];
  if (d.failedUnits.length) rows.push(['Failed units', d.failedUnits.join(', ')]);
  rows.push(['Deploy time', `${d.seconds.toFixed(1)} s`]);
  return rows;
}

/** Packages changed, added and removed: the `diff` output and the summary section. */
export function diffMarkdown(diff: ClosureDiff, bytesSent?: number): string {
  const names = (paths: string[]) => [
    ...new Set(paths.map((p) => storeName(p)).filter((n) => !/^nixos-system-/.test(n))),
  ];
  const changedNames = new Set(diff.changed.map((c) => c.name));
  const onlyNew = (paths: string[]) =>
    names(paths).filter((n) => !changedNames.has(splitVersion(n).pname));
  const added = onlyNew(diff.added);
  const removed = onlyNew(diff.removed);
  const list = (xs: string[]) =>
    xs
      .slice(0, 40)
      .map((x) => `\`${escapeCell(x)}\``)
      .join(', ') + (xs.length > 40 ? ` and ${xs.length - 40} more` : '');
  const lines = [
    `${diff.changed.length} changed, ${added.length} added, ${removed.length} removed; ${formatBytes(bytesSent ?? diff.bytesToSend)} ${bytesSent === undefined ? 'to send' : 'sent'}`,
  ];
  if (diff.changed.length)
    lines.push(
      mdTable(
        ['Package', 'Before', 'After'],
        diff.changed.map((c) => [c.name, c.from || '–', c.to || '–']),
      ),
    );
  if (added.length) lines.push(`**Added:** ${list(added)}`);
  if (removed.length) lines.push(`**Removed:** ${list(removed)}`);
  return lines.join('\n\n');
}

/** Markdown for the job summary. */
export function renderMarkdown(r: RunRecord): string {
  const out: string[] = [`## vps-nixos${r.target ? ` — ${escapeCell(r.target)}` : ''}`];
  if (r.error)
    out.push(
      `> [!CAUTION]\n> ${escapeCell(r.error.message)}${r.error.fix ? `<br>**Fix:** ${escapeCell(r.error.fix)}` : ''}`,
    );
  if (r.plan) {
    const p = r.plan;
    out.push(`### Plan: \`${p.method}\``);
    if (p.refusal)
      out.push(
        `**Refused:** ${escapeCell(p.refusal.reason)}<br>**What would work:** ${escapeCell(p.refusal.remediation)}`,
      );
    out.push(p.reasons.map((x) => `- ${escapeCell(x)}`).join('\n'));
    if (p.warnings.length)
      out.push(p.warnings.map((w) => `> [!WARNING]\n> ${escapeCell(w)}`).join('\n\n'));
    const rows: Row[] = [['Phases', p.phases.join(' → ') || 'none']];
    if (p.zramBytes) rows.push(['zram swap', formatBytes(p.zramBytes)]);
    if (p.swapfileBytes) rows.push(['swapfile (on disk)', formatBytes(p.swapfileBytes)]);
    out.push(mdTable(['', ''], rows));
  }
  if (r.hostKeyFingerprint) {
    out.push(
      `Host key: \`${escapeCell(r.hostKeyFingerprint)}\`${r.hostKeyTrustedOnFirstUse ? ' — **trusted on first use**; pin it with the `host-key` output' : ' (pinned)'}`,
    );
  }
  if (r.build) {
    const c = closureRows(r.build);
    out.push('### Closure', mdTable(['', ''], c.totals));
    if (c.leaks.length)
      out.push('Known server-closure leaks:', mdTable(['Path', 'Why it is there'], c.leaks));
    out.push(
      '<details><summary>Biggest paths</summary>\n\n' +
        mdTable(['Path', 'Size'], c.top) +
        '\n\n</details>',
    );
  }
  if (r.bootstrap) {
    out.push('### Bootstrap', escapeCell(hostLine(r.bootstrap)));
    if (r.bootstrap.phases.length) out.push(mdTable(PHASE_HEADER, phaseRows(r.bootstrap)));
    else out.push('Nothing to bootstrap.');
    if (r.bootstrap.infect) out.push(mdTable(['', ''], infectRows(r.bootstrap.infect)));
    for (const w of r.bootstrap.warnings) out.push(`> [!WARNING]\n> ${escapeCell(w)}`);
  }
  if (r.deploy) {
    out.push('### Deploy', mdTable(['', ''], deployRows(r.deploy)));
    if (r.deploy.checks.length)
      out.push(
        mdTable(
          ['Check', 'Result', 'Detail'],
          r.deploy.checks.map((c) => [c.name, c.ok ? 'passed' : '**failed**', c.detail]),
        ),
      );
    if (r.deploy.diff && r.deploy.changed)
      out.push('#### What changed', diffMarkdown(r.deploy.diff, r.deploy.bytesSent));
  }
  if (r.preflight) out.push('### Preflight', renderFindingsMarkdown(r.preflight.findings));
  if (r.facts) out.push('### Facts', mdTable(['Fact', 'Value'], factRows(r.facts)));
  if (r.stages.length) {
    out.push(
      '### Stages',
      mdTable(
        ['Stage', 'Result'],
        r.stages.map((s) => [
          s.name,
          `${s.status}, ${s.seconds.toFixed(1)} s${s.detail ? ` — ${s.detail}` : ''}`,
        ]),
      ),
    );
  }
  return out.join('\n\n') + '\n';
}

/** Plain text for the terminal. */
export function renderText(r: RunRecord): string {
  const out: string[] = [];
  if (r.hostKeyFingerprint)
    out.push(
      `host key: ${r.hostKeyFingerprint}${r.hostKeyTrustedOnFirstUse ? ' (trusted on first use)' : ' (pinned)'}`,
    );
  if (r.facts) {
    const rows = factRows(r.facts);
    const w = Math.max(...rows.map(([k]) => k.length));
    out.push('facts:', ...rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`));
  }
  if (r.build) {
    const c = closureRows(r.build);
    out.push('closure:', ...c.totals.map(([k, v]) => `  ${k}: ${v}`));
    if (c.leaks.length) out.push('  known leaks:', ...c.leaks.map(([k, v]) => `    ${k}: ${v}`));
    out.push('  biggest paths:', ...c.top.slice(0, 10).map(([k, v]) => `    ${k}: ${v}`));
  }
  if (r.plan) {
    const p = r.plan;
    out.push(`plan: ${p.method}`);
    out.push(...p.reasons.map((x) => `  - ${x}`));
    out.push(...p.warnings.map((x) => `  ! ${x}`));
    if (p.refusal)
      out.push(`  refused: ${p.refusal.reason}`, `  what would work: ${p.refusal.remediation}`);
    out.push(`  phases: ${p.phases.join(' → ') || 'none'}`);
    if (p.zramBytes)
      out.push(
        `  zram: ${formatBytes(p.zramBytes)}, swapfile: ${formatBytes(p.swapfileBytes ?? 0)}`,
      );
  }
  if (r.preflight) out.push('preflight:', renderFindingsText(r.preflight.findings).trimEnd());
  if (r.bootstrap) {
    out.push('bootstrap:');
    for (const [name, status, time, mem, sent, detail] of phaseRows(r.bootstrap))
      out.push(
        `  ${name!.padEnd(15)} ${status!.padEnd(8)} ${time!.padStart(8)}  peak ${mem}, sent ${sent}`,
        `    ${detail}`,
      );
    if (!r.bootstrap.phases.length) out.push('  nothing to bootstrap');
    if (r.bootstrap.infect)
      out.push(...infectRows(r.bootstrap.infect).map(([k, v]) => `  ${k}: ${v}`));
    out.push(`  ${hostLine(r.bootstrap)}`);
  }
  if (r.deploy) {
    out.push('deploy:', ...deployRows(r.deploy).map(([k, v]) => `  ${k}: ${v}`));
    for (const c of r.deploy.checks)
      out.push(`  check ${c.ok ? 'passed' : 'FAILED'}: ${c.name} — ${c.detail}`);
    const d = r.deploy.diff;
    if (d && r.deploy.changed) {
      out.push(
        `  changed: ${d.changed.map((c) => `${c.name} ${c.from || '–'} → ${c.to || '–'}`).join(', ') || 'no package versions'}`,
        `  paths: ${d.added.length} added, ${d.removed.length} removed`,
      );
    }
  }
  if (r.error)
    out.push(`error: ${r.error.message}`, ...(r.error.fix ? [`  fix: ${r.error.fix}`] : []));
  return out.join('\n') + '\n';
}
