/** The one pipeline the action and the CLI both call; only the input source and the reporter differ. */
import type { Config } from '../inputs';
import { plan } from '../plan/plan';
import { probe } from '../probe/probe';
import type { Facts } from '../probe/facts';
import { formatTarget } from '../target';
import { fingerprint, formatKey, pinFor } from '../ssh/hostkeys';
import { connect as sshConnect, type ConnectOptions, type RemoteSession } from '../ssh/session';
import { InputError, VpsNixosError, describeError } from '../errors';
import {
  buildSystem,
  evalToplevel,
  nixVersion,
  type BuildResult,
  type Evaluated,
} from '../nix/build';
import { resolveKexecTarball, type KexecTarball } from '../nix/kexec';
import {
  MIRROR_ENV,
  RELEASED,
  releasedInstaller,
  type InstallersManifest,
} from '../release/installers';
import { diffClosures, type ClosureDiff } from '../nix/closure';
import { runPreflight, type PreflightResult } from '../preflight/run';
import { evaluatePreflightInputs, type Evaluation } from '../preflight/evaluate';
import { publicKeyOf } from '../ssh/keys';
import { NixError, localNix, type Nix } from '../nix/nix';
import type { CacheStore } from '../cache/store';
import { runnerSubstituters, saveClosure, type SaveOutcome } from '../cache/closure-cache';
import { cacheKey } from '../cache/keys';
import { parsePathInfo } from '../nix/closure';
import type { RunRecord, StageName } from './record';
import { runBootstrap, type BootstrapArtifacts } from '../phases/bootstrap';
import { runDeploy, unchangedDeploy } from '../deploy/deploy';
import { prepareInfect } from '../infect/script';
import { checkInstall } from '../plan/install-checks';
import type { Plan } from '../plan/plan';
import { decide, entryStages, wantsEvaluation, type BuildNeeds, type Entry } from './decide';
import { resolveRebuild } from '../deploy/rebuild-pin';
import type { DeployResult } from '../deploy/deploy';
import { findSystemNix } from '../nix/system-nix';
import { checkWipeLayout } from '../phases/wipe-guard';

export interface Logger {
  info(line: string): void;
  warn(line: string): void;
  /** A collapsed group in the Actions log; plain lines in a terminal. */
  group?<T>(title: string, fn: () => Promise<T>): Promise<T>;
}

/** The store paths and installer the bootstrap needs: built by this run, or given prebuilt. */
async function artifacts(
  cfg: Config,
  deps: PipelineDeps,
  record: RunRecord,
): Promise<BootstrapArtifacts> {
  // Fetched and checked on the runner before any phase touches the host.
  const infect = record.plan?.phases.includes('infect')
    ? await prepareInfect({
        url: cfg.infectUrl,
        sha256: cfg.infectSha256,
        revision: cfg.infectRevision,
        channel: cfg.nixosChannel,
        downloadDir: deps.tempDir,
        log: (l) => deps.log.info(l),
      })
    : undefined;
  return {
    kexec: record.installer,
    kexecRootfs: record.installerRootfs,
    infect,
    toplevel: cfg.toplevel ?? record.build?.toplevel,
    diskScript: cfg.diskScript ?? record.build?.diskScript,
  };
}

/** New sessions to the same target, accepting only the key the first session was pinned to. */
function reconnector(
  cfg: Config,
  deps: PipelineDeps,
  first: RemoteSession,
): () => Promise<RemoteSession> {
  const target = cfg.target!;
  const pin = { keys: [first.hostKey], fingerprints: [], revoked: [] };
  return () =>
    (deps.connect ?? sshConnect)({
      target,
      privateKey: cfg.sshPrivateKey!,
      pin,
      connectTimeoutMs: 10_000,
      retries: 0,
    });
}

export interface PipelineDeps {
  log: Logger;
  connect?: (opts: ConnectOptions) => Promise<RemoteSession>;
  /**
   * The CLI with no key given: the public keys of the ssh-agent `connect` logs in with, for the
   * checks that the configuration keeps authorizing one of them.
   */
  agentKeys?: readonly string[];
  nix?: Nix;
  /** Where closures are cached between runs, and the working dir for the file cache. */
  cache?: { store: CacheStore; dir: string };
  toolVersion: string;
  /**
   * The installers released with this version (default: the one committed in this build,
   * src/release/installers.json) and a mirror of their files (VPS_NIXOS_INSTALLER_MIRROR).
   */
  released?: { manifest: InstallersManifest; mirror?: string };
  /** A private directory for downloads and key files (RUNNER_TEMP's, or a mkdtemp for the CLI). */
  tempDir: string;
}

export interface PipelineRequest {
  /** Who asks: the action or a CLI command; with the inputs and the plan it decides what runs. */
  entry: Entry;
  /** Plan from these facts instead of probing (CLI `plan --facts FILE`). */
  facts?: Facts;
  /** Tests: run only these of the entry's stages (the decision is the same). */
  only?: StageName[];
}

type StageFn<T> = () => Promise<T>;

/** The public halves of the keys this run logs in with: the deploy key's, or the agent's. */
function loginPublicKeys(cfg: Config, deps: PipelineDeps): string[] {
  if (cfg.sshPrivateKey === undefined) return [...(deps.agentKeys ?? [])];
  const pub = publicKeyOf(cfg.sshPrivateKey);
  return pub ? [pub] : [];
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };
/** A promise that never rejects (no unhandled rejection while nobody awaits it yet). */
const settle = <T>(p: Promise<T>): Promise<Settled<T>> =>
  p.then(
    (value) => ({ ok: true, value }),
    (error: unknown) => ({ ok: false, error }),
  );
const unwrap = <T>(s: Settled<T>): T => {
  if (s.ok) return s.value;
  throw s.error;
};
const settledValue = <T>(s: Settled<T>): T | undefined => (s.ok ? s.value : undefined);

/** Whether this run evaluates the flake's toplevel whatever the plan (build or deploy from it). */
function evaluatesFlake(entry: Entry, cfg: Config): boolean {
  const stages = entryStages(entry, cfg);
  return !!cfg.flake && !cfg.toplevel && (stages.includes('build') || stages.includes('deploy'));
}

/** An empty record for this run (the caller may keep it to report a cancelled run). */
export function newRecord(cfg: Pick<Config, 'target'>): RunRecord {
  return { stages: [], target: cfg.target ? formatTarget(cfg.target) : undefined };
}

/**
 * Runs the stages in order, filling `record` as it goes (so a signal handler can report what ran
 * so far); never throws (errors land in the record).
 */
export async function runPipeline(
  cfg: Config,
  req: PipelineRequest,
  deps: PipelineDeps,
  record: RunRecord = newRecord(cfg),
): Promise<RunRecord> {
  const stage = async <T>(name: StageName, fn: StageFn<T>, detail?: () => string): Promise<T> => {
    const start = Date.now();
    deps.log.info(`── ${name}`);
    try {
      const v = await fn();
      const seconds = (Date.now() - start) / 1000;
      record.stages.push({ name, status: 'done', seconds, detail: detail?.() });
      deps.log.info(`── ${name}: done in ${seconds.toFixed(1)} s`);
      return v;
    } catch (err) {
      const seconds = (Date.now() - start) / 1000;
      record.stages.push({ name, status: 'failed', seconds, detail: describeError(err) });
      deps.log.info(`── ${name}: failed after ${seconds.toFixed(1)} s`);
      throw err;
    }
  };
  const skipped = (name: StageName, why: string) => {
    record.stages.push({ name, status: 'skipped', seconds: 0, detail: why });
    deps.log.info(`── ${name}: skipped (${why})`);
  };
  const wanted = entryStages(req.entry, cfg).filter((s) => !req.only || req.only.includes(s));
  const nix = () => deps.nix ?? localNix();
  // The flake's toplevel is evaluated beside the probe (local and read-only, so it may start
  // before the plan says whether it is needed): an unchanged deploy then waits for the longer of
  // the two, not their sum. Its error is only raised where its result is used.
  const early = evaluatesFlake(req.entry, cfg)
    ? settle(Promise.all([nixVersion(nix()), evalToplevel(nix(), cfg.flake!)]))
    : undefined;
  let session: RemoteSession | undefined;
  // Ends what was started ahead and is no longer needed (the preflight's evaluation after a failed build).
  const stopAhead = new AbortController();
  try {
    // 1. probe (read-only) and plan (pure)
    if (wanted.includes('probe')) {
      if (req.facts) skipped('probe', 'facts read from a file');
      else
        record.facts = await stage('probe', async () => {
          session = await openSession(cfg, deps, record);
          return probe(session);
        });
    }
    if (req.facts) record.facts = req.facts;
    const facts = record.facts;
    if (wanted.includes('plan')) {
      if (facts) {
        record.plan = await stage('plan', async () => plan(facts, cfg));
        for (const w of record.plan.warnings) deps.log.warn(w);
      } else skipped('plan', 'no facts: give a target or --facts');
    }
    const planned = record.plan;

    // 2. one evaluation, when an unchanged deploy is possible; then the one decision
    const host = facts && !facts.isInstaller ? facts : undefined;
    const ask = { entry: req.entry, cfg, factsFromFile: !!req.facts, plan: planned, host };
    let evaluated: Evaluated | undefined;
    if (wantsEvaluation(ask)) {
      const t0 = Date.now();
      const [version, toplevel] = early
        ? unwrap(await early)
        : await Promise.all([nixVersion(nix()), evalToplevel(nix(), cfg.flake!)]);
      evaluated = toplevel;
      deps.log.info(`nix: ${version}`);
      deps.log.info(
        `evaluated ${evaluated.outPath} (${early ? `beside the probe; waited ${((Date.now() - t0) / 1000).toFixed(1)} s more` : `in ${((Date.now() - t0) / 1000).toFixed(1)} s`}); the host runs ${host?.currentSystem}`,
      );
    }
    const decision = decide({ ...ask, evaluated: cfg.toplevel ?? evaluated?.outPath });
    record.decision = decision;
    record.evaluated = evaluated?.outPath;
    if (decision.blocked) throw new VpsNixosError(decision.blocked.message, decision.blocked.fix);
    /** Whether a stage runs; a skipped one is recorded with its reason (unless only asked). */
    const runs = (name: StageName, record = true): boolean => {
      const d = decision.stages.find((x) => x.name === name);
      if (!d || !wanted.includes(name)) return false;
      if (!d.run && record) skipped(name, d.why ?? 'not needed');
      return d.run;
    };

    // The preflight's evaluation runs beside the build once the decision says the check runs (a
    // deploy that changes nothing evaluates nothing more); its lines are logged in the check stage.
    const checkEval =
      runs('check', false) && cfg.flake
        ? earlyPreflight(deps.nix ?? localNix(), cfg.flake, stopAhead.signal)
        : undefined;

    // 3. build what the plan needs; install refusals and budgets fail here, before any change
    if (runs('build')) {
      await stage('build', async () => {
        // The evaluation beside the probe, when it succeeded; else the build evaluates (and
        // says what failed).
        const besideProbe = early ? settledValue(await early) : undefined;
        const prior = evaluated ?? besideProbe?.[1];
        const built = await runBuild(cfg, deps, decision.build, prior, besideProbe?.[0]);
        record.build = built.build;
        record.installer = built.installer;
        // What a deploy would change, when no deploy runs to say it (action build).
        const deploys = decision.stages.some((d) => d.name === 'deploy' && d.run);
        if (record.build && host?.currentSystem && session && !deploys) {
          record.build.closure.diff = await remoteClosureDiff(session, record.build);
        }
        if (planned && facts) {
          const checked = installChecks(planned, cfg, record, facts);
          for (const w of checked.warnings.slice(planned.warnings.length)) deps.log.warn(w);
          if (checked.refusal)
            throw new VpsNixosError(
              `refused: ${checked.refusal.reason}`,
              checked.refusal.remediation,
            );
          record.installerRootfs = checked.installerRootfs;
        }
      });
    }

    // 4. check
    if (runs('check')) {
      try {
        record.preflight = await stage('check', () => runCheck(cfg, deps, record, checkEval));
      } catch (err) {
        // A plan-only run needs no Nix on the runner: without it the preflight is skipped, not fatal.
        if (!(cfg.planOnly && err instanceof NixError)) throw err;
        record.stages[record.stages.length - 1] = {
          name: 'check',
          status: 'skipped',
          seconds: 0,
          detail: err.message,
        };
        deps.log.warn(`preflight skipped: ${err.message}`);
      }
    }

    // Errors in the configuration stop the run before anything changes on the host.
    const errors = record.preflight?.findings.filter((f) => f.severity === 'error') ?? [];
    const changes = wanted.some((n) => (n === 'bootstrap' || n === 'deploy') && runs(n, false));
    if (errors.length && !cfg.allowPreflightErrors && changes)
      throw new VpsNixosError(
        `preflight found ${errors.length} error(s) in the configuration: ${errors.map((e) => e.id).join(', ')}; nothing was changed on the target`,
        'fix them (see the summary), or set allow-preflight-errors: true',
      );

    // 5. bootstrap
    if (runs('bootstrap') && planned && facts && session) {
      const open = session;
      await stage('bootstrap', async () => {
        if (planned.refusal)
          throw new VpsNixosError(
            `refused: ${planned.refusal.reason}`,
            planned.refusal.remediation,
          );
        const result = await runBootstrap(
          open,
          facts,
          planned,
          await artifacts(cfg, deps, record),
          {
            confirmWipe: cfg.confirmWipe,
            patchUdevadm: cfg.patchUdevadm,
            substituters: { urls: cfg.substituters, publicKeys: cfg.trustedPublicKeys },
            deployPublicKeys: loginPublicKeys(cfg, deps),
            user: cfg.target!.user,
            reconnect: reconnector(cfg, deps, open),
            log: { ...deps.log, group: deps.log.group ?? ((_t, fn) => fn()) },
          },
        );
        session = result.session;
        record.bootstrap = {
          phases: result.phases,
          host: result.host,
          bytesSent: result.bytesSent,
          warnings: result.warnings,
          infect: result.infect,
        };
        if (result.error) throw result.error;
      });
    }

    // 6. deploy: unchanged needs nothing more than the probe's round trip
    const deploying = runs('deploy'); // once: a skipped stage is recorded by the call
    if (deploying && decision.unchanged && host) {
      const system = cfg.toplevel ?? evaluated!.outPath;
      await stage(
        'deploy',
        async () => {
          record.deploy = unchangedDeploy(cfg.deployAction as DeployResult['action'], system, host);
          deps.log.info(
            `no change: the host runs ${system} (current system and system profile) with no failed unit; nothing built, copied or activated (force-switch: true deploys anyway)`,
          );
        },
        () => 'unchanged: confirmed by the probe',
      );
    } else if (deploying && session) {
      const open = session;
      session = undefined;
      await stage('deploy', async () => {
        // nixos-rebuild only where the system is built elsewhere (decide.ts deployWith)
        const rebuild =
          decision.deployWith === 'nixos-rebuild'
            ? await resolveRebuild(nix(), { flake: cfg.flake, log: (l) => deps.log.info(l) })
            : undefined;
        if (decision.forced)
          deps.log.info('force-switch: the host already runs this system; switching anyway');
        const { result, session: after } = await runDeploy(open, {
          action: cfg.deployAction as DeployResult['action'],
          deployWith: decision.deployWith,
          flake: cfg.flake,
          toplevel: cfg.toplevel ?? record.build?.toplevel,
          toplevelClosure:
            record.build && record.build.toplevel === (cfg.toplevel ?? record.build.toplevel)
              ? record.build.paths
              : undefined,
          buildHost: cfg.buildHost,
          useSudo: cfg.useSudo,
          confirmTimeoutSeconds: cfg.confirmTimeoutSeconds,
          healthCheck: cfg.healthCheck,
          healthUrl: cfg.healthUrl,
          healthTimeoutSeconds: cfg.healthTimeoutSeconds,
          rollback: cfg.rollback,
          privateKey: cfg.sshPrivateKey!,
          rebuild,
          tempDir: deps.tempDir,
          reconnect: reconnector(cfg, deps, open),
          log: { ...deps.log, group: deps.log.group ?? ((_t, fn) => fn()) },
        });
        session = after;
        record.deploy = decision.forced ? { ...result, forced: true } : result;
        if (result.error) throw new VpsNixosError(result.error.message, result.error.fix ?? '');
      });
    }
  } catch (err) {
    record.error =
      err instanceof VpsNixosError
        ? { message: err.message, fix: err.fix }
        : { message: describeError(err) };
  } finally {
    stopAhead.abort();
    session?.close();
  }
  // After the deploy (also a failed one: the build was good), never before the host is contacted.
  if (record.build && (cfg.pushTo || cacheFor(cfg, deps, true))) {
    const build = record.build;
    record.cacheSave = await stage('cache', () => saveCache(cfg, deps, build)).catch(
      () => undefined, // saveClosure never throws; this is only for the unexpected
    );
  }
  return record;
}

/** Saves (or pushes) the closure's paths the binary caches do not serve. */
async function saveCache(
  cfg: Config,
  deps: PipelineDeps,
  build: BuildResult,
): Promise<SaveOutcome> {
  const nix = deps.nix ?? localNix();
  const runner = await runnerSubstituters(nix);
  let paths = build.paths;
  if (build.diskScript) {
    const r = await nix.run(['path-info', '--json', '-rsS', build.diskScript]);
    if (r.code === 0) {
      const seen = new Set(paths.map((p) => p.path));
      paths = [...paths, ...parsePathInfo(r.stdout).filter((p) => !seen.has(p.path))];
    }
  }
  return saveClosure(nix, {
    to: cfg.pushTo
      ? { kind: 'push', target: cfg.pushTo }
      : { kind: 'cache', ...deps.cache!, capBytes: cfg.cacheMaxBytes },
    key: cacheKey({
      system: build.system,
      name: cfg.flake?.name ?? 'toplevel',
      drvPath: build.drvPath,
      toolVersion: deps.toolVersion,
    }),
    restore: build.cache,
    paths,
    substituters: {
      urls: [...new Set([...runner.urls, ...cfg.substituters])],
      trustedKeys: [...new Set([...runner.trustedKeys, ...cfg.trustedPublicKeys])],
    },
    log: (l) => deps.log.info(l),
    warn: (l) => deps.log.warn(l),
  });
}

/** The preflight's evaluation, started now; what it would log is kept for the check stage. */
function earlyPreflight(
  nix: Nix,
  flake: NonNullable<Config['flake']>,
  signal: AbortSignal,
): { evaluation: Promise<Settled<Evaluation>>; lines: string[] } {
  const lines: string[] = [];
  const evaluation = settle(
    evaluatePreflightInputs(nix, flake, { log: (l) => lines.push(l), signal }),
  );
  return { evaluation, lines };
}

/** Preflight of the configuration, with whatever the run knows: facts, plan, deploy key. */
async function runCheck(
  cfg: Config,
  deps: PipelineDeps,
  record: RunRecord,
  ahead?: ReturnType<typeof earlyPreflight>,
): Promise<PreflightResult> {
  if (!cfg.flake)
    throw new InputError(
      'flake',
      'is required to check a configuration',
      'set flake to PATH#NAME, e.g. .#my-vps',
    );
  const result = await runPreflight(
    deps.nix ?? localNix(),
    cfg.flake,
    {
      facts: record.facts,
      plan: record.plan,
      deployPublicKeys: loginPublicKeys(cfg, deps),
      targetUser: cfg.target?.user,
    },
    {
      log: (l) => deps.log.info(l),
      evaluation: ahead?.evaluation.then((settled) => {
        for (const l of ahead.lines) deps.log.info(l);
        return unwrap(settled);
      }),
    },
  );
  for (const f of result.findings) {
    if (f.severity === 'error') deps.log.warn(`preflight error ${f.id}: ${f.message}`);
  }
  return result;
}

/** Whether this run uses the cache: asked for, and a store that can restore or save here. */
function cacheFor(cfg: Config, deps: PipelineDeps, quiet = false): boolean {
  if (!cfg.cache || !deps.cache) return false;
  if (deps.cache.store.available?.() === false) {
    if (!quiet)
      deps.log.info(`cache: the ${deps.cache.store.kind} cache is not available here; not used`);
    return false;
  }
  return true;
}

/** The build stage: the system (when the plan needs it built here) and the kexec installer. */
async function runBuild(
  cfg: Config,
  deps: PipelineDeps,
  needs: BuildNeeds,
  evaluated?: Evaluated,
  version?: string,
): Promise<{ build?: BuildResult; installer?: KexecTarball }> {
  const nix = deps.nix ?? localNix();
  let build: BuildResult | undefined;
  if (needs.system) {
    if (!cfg.flake)
      throw new InputError(
        'flake',
        'is required to build',
        'set flake to PATH#NAME, e.g. .#my-vps',
      );
    const run = () =>
      buildSystem(nix, {
        flake: cfg.flake!,
        diskScript: needs.diskScript
          ? { withDeps: cfg.diskoWithDeps, required: needs.diskScript === 'required' }
          : undefined,
        closureBudgetBytes: cfg.closureBudgetBytes,
        measureTrimming: cfg.measureTrimming,
        layout: needs.layout,
        cache: cacheFor(cfg, deps) ? deps.cache : undefined,
        evaluated,
        nixVersion: version,
        toolVersion: deps.toolVersion,
        log: (l) => deps.log.info(l),
        warn: (l) => deps.log.warn(l),
      });
    build = deps.log.group ? await deps.log.group('nix build', run) : await run();
    // Issue 17: confirm-wipe against the disks the layout formats, before any change.
    if (build.layout) {
      const w = checkWipeLayout(cfg.confirmWipe, build.layout.disks);
      if (w) deps.log.warn(w);
    }
  }
  let installer: KexecTarball | undefined;
  if (needs.installer) {
    const system = build?.system ?? evaluated?.system ?? 'x86_64-linux';
    const released = deps.released ?? { manifest: RELEASED, mirror: process.env[MIRROR_ENV] };
    installer = await resolveKexecTarball(nix, {
      tarball: cfg.kexecTarball,
      sha256: cfg.kexecTarballSha256,
      // Only when no tarball is given: the one released with this version, when there is one.
      released: cfg.kexecTarball
        ? undefined
        : releasedInstaller(released.manifest, system, deps.toolVersion, released.mirror),
      system,
      budgetBytes: cfg.installerBudgetBytes,
      downloadDir: deps.tempDir,
      cache: cacheFor(cfg, deps)
        ? {
            store: deps.cache!.store,
            dir: `${deps.cache!.dir}-kexec`,
            toolVersion: deps.toolVersion,
          }
        : undefined,
      log: (l) => deps.log.info(l),
    });
    deps.log.info(
      `kexec tarball: ${installer.from} (${installer.bytes} bytes, sha256 ${installer.sha256})`,
    );
  }
  return { build, installer };
}

/**
 * Issue 17, once the build has found them: what the initrd-only installer cannot do (a closure
 * without Nix, a layout it cannot format, an installer over the RAM limits). Nothing has changed
 * on the host yet: the probe only reads.
 */
function installChecks(
  p: Plan,
  cfg: Config,
  record: RunRecord,
  facts: Facts,
): Pick<Plan, 'refusal' | 'warnings' | 'installerRootfs'> {
  const toplevel = cfg.toplevel ?? record.build?.toplevel;
  const checked = checkInstall(p, {
    config: cfg.flake ? `nixosConfigurations.${cfg.flake.name}` : 'the configuration',
    systemNix: toplevel ? findSystemNix(toplevel) : undefined,
    layout: record.build?.layout,
    installer: record.installer,
    memTotalBytes: facts.memTotalBytes,
  });
  return {
    refusal: checked.refusal,
    warnings: checked.warnings,
    installerRootfs: checked.installerRootfs,
  };
}

/** What the new closure adds to the system the target runs now, and the bytes that must be sent. */
async function remoteClosureDiff(
  session: RemoteSession,
  build: BuildResult,
): Promise<ClosureDiff | undefined> {
  const r = await session.exec('nix-store -qR /run/current-system', { timeoutMs: 60_000 });
  if (r.code !== 0) return undefined;
  return diffClosures(
    build.paths,
    r.stdout.split('\n').filter((l) => l.startsWith('/nix/store/')),
  );
}

async function openSession(
  cfg: Config,
  deps: PipelineDeps,
  record: RunRecord,
): Promise<RemoteSession> {
  const target = cfg.target!;
  const tofu =
    cfg.trustOnFirstUse && cfg.knownHosts === undefined && cfg.hostKeyFingerprints.length === 0;
  const session = await (deps.connect ?? sshConnect)({
    target,
    privateKey: cfg.sshPrivateKey!,
    pin: tofu
      ? 'trust-on-first-use'
      : pinFor(target.knownHostsName, cfg.knownHosts, cfg.hostKeyFingerprints),
    connectTimeoutMs: cfg.connectTimeoutSeconds * 1000,
    retries: cfg.connectRetries,
    log: (l) => deps.log.info(l),
  });
  record.hostKey = `${target.knownHostsName} ${formatKey(session.hostKey)}`;
  record.hostKeyFingerprint = `${session.hostKey.type} ${fingerprint(session.hostKey.blob)}`;
  record.hostKeyTrustedOnFirstUse = tofu;
  if (tofu) {
    deps.log.warn(
      `trust-on-first-use: accepted ${record.hostKeyFingerprint} for ${target.knownHostsName}; pin it: ${record.hostKey}`,
    );
  } else {
    deps.log.info(`host key ${record.hostKeyFingerprint} matches the pin`);
  }
  return session;
}
