/** The one pipeline the action and the CLI both call; only the input source and the reporter differ. */
import type { Config } from '../inputs';
import { plan } from '../plan/plan';
import { probe } from '../probe/probe';
import type { Facts } from '../probe/facts';
import { formatTarget } from '../target';
import { fingerprint, formatKey, pinFor } from '../ssh/hostkeys';
import { connect as sshConnect, type ConnectOptions, type RemoteSession } from '../ssh/session';
import { InputError, VpsNixosError, describeError } from '../errors';
import { buildSystem, type BuildResult } from '../nix/build';
import { resolveKexecTarball, type KexecTarball } from '../nix/kexec';
import { diffClosures, type ClosureDiff } from '../nix/closure';
import { runPreflight, type PreflightResult } from '../preflight/run';
import { publicKeyOf } from '../ssh/keys';
import { NixError, localNix, type Nix } from '../nix/nix';
import type { CacheStore } from '../cache/store';
import type { RunRecord, StageName } from './record';
import { runBootstrap, type BootstrapArtifacts } from '../phases/bootstrap';
import { runDeploy } from '../deploy/deploy';
import { prepareInfect } from '../infect/script';
import { checkInstall } from '../plan/install-checks';
import type { Plan } from '../plan/plan';
import { findSystemNix } from '../nix/system-nix';
import { checkWipeLayout } from '../phases/wipe-guard';

export interface Logger {
  info(line: string): void;
  warn(line: string): void;
  /** A collapsed group in the Actions log; plain lines in a terminal. */
  group?<T>(title: string, fn: () => Promise<T>): Promise<T>;
}

const prebuilt = (cfg: Config) =>
  !!cfg.toplevel && (!!cfg.diskScript || cfg.method === 'infect' || !cfg.flake);

/** The kexec installer when the build stage did not resolve it. */
function resolveInstaller(
  cfg: Config,
  deps: PipelineDeps,
  record: RunRecord,
): Promise<KexecTarball> {
  return resolveKexecTarball(deps.nix ?? localNix(), {
    tarball: cfg.kexecTarball,
    sha256: cfg.kexecTarballSha256,
    system: record.build?.system ?? `${record.facts?.arch ?? 'x86_64'}-linux`,
    budgetBytes: cfg.installerBudgetBytes,
    downloadDir: deps.tempDir,
    log: (l) => deps.log.info(l),
  });
}

/** The store paths and installer the bootstrap needs: from the build, or given prebuilt. */
async function artifacts(
  cfg: Config,
  deps: PipelineDeps,
  record: RunRecord,
  resolved?: KexecTarball,
): Promise<BootstrapArtifacts> {
  const needsKexec = record.plan?.phases.includes('kexec') ?? false;
  let kexec = record.build?.kexec ?? resolved;
  if (!kexec && needsKexec) kexec = await resolveInstaller(cfg, deps, record);
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
    kexec,
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
  nix?: Nix;
  /** Where closures are cached between runs, and the working dir for the file cache. */
  cache?: { store: CacheStore; dir: string };
  toolVersion: string;
  /** A private directory for downloads and key files (RUNNER_TEMP's, or a mkdtemp for the CLI). */
  tempDir: string;
}

export interface PipelineRequest {
  /** Plan from these facts instead of probing (CLI `plan --facts FILE`). */
  facts?: Facts;
  /** The stages to run, in this order. The build comes first so a budget fails before any SSH connection. */
  stages: StageName[];
  /** Also resolve the kexec installer tarball in the build stage (the plan may need it). */
  kexec?: boolean;
}

/** Runs the stages in order, filling the record as it goes; never throws (errors land in the record). */
export async function runPipeline(
  cfg: Config,
  req: PipelineRequest,
  deps: PipelineDeps,
): Promise<RunRecord> {
  const record: RunRecord = {
    stages: [],
    target: cfg.target ? formatTarget(cfg.target) : undefined,
  };
  const stage = async <T>(name: StageName, fn: () => Promise<T>): Promise<T> => {
    const start = Date.now();
    deps.log.info(`── ${name}`);
    try {
      const v = await fn();
      record.stages.push({ name, status: 'done', seconds: (Date.now() - start) / 1000 });
      return v;
    } catch (err) {
      record.stages.push({
        name,
        status: 'failed',
        seconds: (Date.now() - start) / 1000,
        detail: describeError(err),
      });
      throw err;
    }
  };
  let session: RemoteSession | undefined;
  let installer: KexecTarball | undefined;
  try {
    if (req.stages.includes('build') && prebuilt(cfg)) {
      record.stages.push({
        name: 'build',
        status: 'skipped',
        seconds: 0,
        detail: 'prebuilt store paths given (toplevel, disk-script)',
      });
    } else if (req.stages.includes('build') && !cfg.flake) {
      record.stages.push({
        name: 'build',
        status: 'skipped',
        seconds: 0,
        detail: 'no flake: nothing to build (method infect converts with its own configuration)',
      });
    } else if (req.stages.includes('build') && cfg.buildHost) {
      record.stages.push({
        name: 'build',
        status: 'skipped',
        seconds: 0,
        detail: `build-host given: nixos-rebuild builds on ${cfg.buildHost}`,
      });
    } else if (req.stages.includes('build')) {
      record.build = await stage('build', () => runBuild(cfg, deps, req.kexec ?? false));
    }
    if (req.facts) {
      record.facts = req.facts;
      record.stages.push({
        name: 'probe',
        status: 'skipped',
        seconds: 0,
        detail: 'facts read from a file',
      });
    } else if (req.stages.includes('probe')) {
      record.facts = await stage('probe', async () => {
        session = await openSession(cfg, deps, record);
        return probe(session);
      });
      if (record.build && record.facts.currentSystem && !record.facts.isInstaller && session) {
        record.build.closure.diff = await remoteClosureDiff(session, record.build);
      }
    }
    const facts = record.facts;
    if (req.stages.includes('plan') && facts) {
      record.plan = await stage('plan', async () => {
        const checked = await installChecks(
          plan(facts, cfg),
          cfg,
          deps,
          record,
          facts,
          req.stages.includes('bootstrap'),
        );
        installer = checked.installer;
        return checked.plan;
      });
      for (const w of record.plan.warnings) deps.log.warn(w);
    }
    if (req.stages.includes('check') && !cfg.flake && req.stages.includes('bootstrap')) {
      record.stages.push({
        name: 'check',
        status: 'skipped',
        seconds: 0,
        detail: 'no flake: nothing to check',
      });
    } else if (req.stages.includes('check')) {
      try {
        record.preflight = await stage('check', () => runCheck(cfg, deps, record));
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
    const planned = record.plan;
    if (req.stages.includes('bootstrap') && planned && facts && session) {
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
          await artifacts(cfg, deps, record, installer),
          {
            confirmWipe: cfg.confirmWipe,
            patchUdevadm: cfg.patchUdevadm,
            substituters: { urls: cfg.substituters, publicKeys: cfg.trustedPublicKeys },
            deployPublicKey: publicKeyOf(cfg.sshPrivateKey!),
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
    if (req.stages.includes('deploy') && planned?.phases.includes('deploy') && session) {
      if (planned.refusal) {
        // the bootstrap stage (or the plan) already said why
      } else if (cfg.deployAction === 'build') {
        record.stages.push({
          name: 'deploy',
          status: 'skipped',
          seconds: 0,
          detail: 'action build: built and compared with what the host runs; nothing deployed',
        });
      } else {
        const open = session;
        session = undefined;
        await stage('deploy', async () => {
          const { result, session: after } = await runDeploy(open, {
            action: cfg.deployAction as Exclude<typeof cfg.deployAction, 'build'>,
            flake: cfg.flake,
            toplevel: cfg.toplevel ?? record.build?.toplevel,
            buildHost: cfg.buildHost,
            useSudo: cfg.useSudo,
            confirmTimeoutSeconds: cfg.confirmTimeoutSeconds,
            healthCheck: cfg.healthCheck,
            healthUrl: cfg.healthUrl,
            healthTimeoutSeconds: cfg.healthTimeoutSeconds,
            rollback: cfg.rollback,
            privateKey: cfg.sshPrivateKey!,
            tempDir: deps.tempDir,
            reconnect: reconnector(cfg, deps, open),
            log: { ...deps.log, group: deps.log.group ?? ((_t, fn) => fn()) },
          });
          session = after;
          record.deploy = result;
          if (result.error) throw new VpsNixosError(result.error.message, result.error.fix ?? '');
        });
      }
    }
  } catch (err) {
    record.error =
      err instanceof VpsNixosError
        ? { message: err.message, fix: err.fix }
        : { message: describeError(err) };
  } finally {
    session?.close();
  }
  return record;
}

/** Preflight of the configuration, with whatever the run knows: facts, plan, deploy key. */
async function runCheck(
  cfg: Config,
  deps: PipelineDeps,
  record: RunRecord,
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
      deployPublicKey: cfg.sshPrivateKey ? publicKeyOf(cfg.sshPrivateKey) : undefined,
      targetUser: cfg.target?.user,
    },
    { log: (l) => deps.log.info(l) },
  );
  for (const f of result.findings) {
    if (f.severity === 'error') deps.log.warn(`preflight error ${f.id}: ${f.message}`);
  }
  return result;
}

async function runBuild(cfg: Config, deps: PipelineDeps, withKexec: boolean): Promise<BuildResult> {
  if (!cfg.flake)
    throw new InputError('flake', 'is required to build', 'set flake to PATH#NAME, e.g. .#my-vps');
  const nix = deps.nix ?? localNix();
  const result = await buildSystem(nix, {
    flake: cfg.flake,
    diskScript: {
      attr: cfg.diskoWithDeps ? 'diskoScript' : 'diskoScriptNoDeps',
      required: cfg.method === 'kexec',
    },
    closureBudgetBytes: cfg.closureBudgetBytes,
    measureTrimming: cfg.measureTrimming,
    layout: cfg.method === 'kexec' || cfg.method === 'auto',
    cache: cfg.cache && deps.cache ? { ...deps.cache, capBytes: cfg.cacheMaxBytes } : undefined,
    toolVersion: deps.toolVersion,
    log: (l) => deps.log.info(l),
    warn: (l) => deps.log.warn(l),
  });
  // Issue 17: confirm-wipe against the disks the layout formats, before any connection.
  if (result.layout) {
    const w = checkWipeLayout(cfg.confirmWipe, result.layout.disks);
    if (w) deps.log.warn(w);
  }
  if (withKexec) {
    result.kexec = await resolveKexecTarball(nix, {
      tarball: cfg.kexecTarball,
      sha256: cfg.kexecTarballSha256,
      system: result.system,
      budgetBytes: cfg.installerBudgetBytes,
      downloadDir: deps.tempDir,
      cache:
        cfg.cache && deps.cache
          ? {
              store: deps.cache.store,
              dir: `${deps.cache.dir}-kexec`,
              toolVersion: deps.toolVersion,
            }
          : undefined,
      log: (l) => deps.log.info(l),
    });
    deps.log.info(
      `kexec tarball: ${result.kexec.from} (${result.kexec.bytes} bytes, sha256 ${result.kexec.sha256})`,
    );
  }
  return result;
}

/**
 * Issue 17, after plan() and before any phase changes the host: what the initrd-only installer
 * cannot do (a closure without Nix, a layout it cannot format, an installer over the RAM limits)
 * refuses the plan. A run that will bootstrap resolves the kexec installer here (else the
 * bootstrap would) so its sizes are checked now; it is handed on to the bootstrap.
 */
async function installChecks(
  p: Plan,
  cfg: Config,
  deps: PipelineDeps,
  record: RunRecord,
  facts: Facts,
  willBootstrap: boolean,
): Promise<{ plan: Plan; installer?: KexecTarball }> {
  if (p.refusal || !(p.phases.includes('install') || p.phases.includes('kexec')))
    return { plan: p };
  let installer = record.build?.kexec;
  if (!installer && willBootstrap && p.phases.includes('kexec'))
    installer = await resolveInstaller(cfg, deps, record);
  const toplevel = cfg.toplevel ?? record.build?.toplevel;
  const checked = checkInstall(p, {
    config: cfg.flake ? `nixosConfigurations.${cfg.flake.name}` : 'the configuration',
    systemNix: toplevel ? findSystemNix(toplevel) : undefined,
    layout: record.build?.layout,
    installer,
    memTotalBytes: facts.memTotalBytes,
  });
  return { plan: checked, installer };
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
