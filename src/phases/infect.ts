/**
 * The in-place path (method infect): nixos-infect, verified and patched on the runner, uploaded
 * over the pinned session and run detached on the target (scripts/phases/infect.sh); its log is
 * followed across dropped connections; then our reboot into the converted system and the checks
 * that the host is still reachable the same way (address, host key, deploy key).
 */
import { HostKeyMismatch, SshConnectError, VpsNixosError } from '../errors';
import type { PreparedInfect } from '../infect/script';
import { runScript, scriptText } from '../ssh/script';
import { RemoteTimeout, type RemoteSession } from '../ssh/session';
import type { Phase } from './phase';
import { DEFAULT_SWAPFILE, parseKv } from './prep';
import { rebootAndWait } from './reboot';
import { whoAnswers } from './wait';

/** Where the run's state lives on the target: on disk, never /tmp, so it outlives the session. */
export const INFECT_DIR = '/var/lib/vps-nixos/infect';

export interface InfectStatus {
  state: 'none' | 'running' | 'finished' | 'failed';
  exit?: number;
  bootId?: string;
  currentBootId: string;
  logBytes: number;
  scriptSha256?: string;
  started?: number;
  finished?: number;
  pid?: number;
}

/** infect.sh's status lines. Pure. */
export function parseInfectStatus(text: string): InfectStatus {
  const v = parseKv(text).values;
  const num = (k: string) => (v[k] !== undefined && /^\d+$/.test(v[k]) ? Number(v[k]) : undefined);
  const state = ['none', 'running', 'finished', 'failed'].includes(v.state ?? '')
    ? (v.state as InfectStatus['state'])
    : 'none';
  return {
    state,
    exit: num('exit'),
    bootId: v.boot_id || undefined,
    currentBootId: v.current_boot_id ?? '',
    logBytes: num('log_bytes') ?? 0,
    scriptSha256: v.script_sha256 || undefined,
    started: num('started'),
    finished: num('finished'),
    pid: num('pid'),
  };
}

export interface InfectContext {
  session: RemoteSession;
  reconnect(): Promise<RemoteSession>;
  log: (line: string) => void;
  infect?: PreparedInfect;
  isContainer: boolean;
  swapfilePath?: string;
  /**
   * The authorized_keys form of the keys the run logs in with (the deploy key, or the ssh-agent's),
   * checked after the reboot: one of them must be authorized.
   */
  deployPublicKeys?: readonly string[];
  /** The login user (root unless use-sudo). */
  user?: string;
  /** The network before the run (infect.sh network), for the checks and for failure messages. */
  network?: string;
  pollMs?: number;
  waitMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** scripts/phases/infect.sh MODE INFECT_DIR ARGS… (see its header). */
function infectSh(
  session: RemoteSession,
  mode: string,
  args: string[] = [],
  opts: { stdin?: string; timeoutMs?: number } = {},
) {
  return runScript(session, 'phases/infect.sh', {
    args: [mode, INFECT_DIR, ...args],
    stdin: opts.stdin,
    timeoutMs: opts.timeoutMs ?? 30_000,
  });
}

/** The run's state (infect.sh finds it under /old-root too, after NixOS's first boot). */
export async function infectStatus(
  ctx: Pick<InfectContext, 'session'>,
): Promise<InfectStatus & { dir: string }> {
  const r = await infectSh(ctx.session, 'status');
  return { ...parseInfectStatus(r.stdout), dir: parseKv(r.stdout).values.dir || INFECT_DIR };
}

const when = (epoch?: number) => (epoch ? new Date(epoch * 1000).toISOString() : 'unknown');

/** A connection failure (retry) rather than an answer (act on it). */
/** The connection went (the session says so, or a command timed out); anything else is a fault. */
function isConnectionLoss(err: unknown): boolean {
  return err instanceof SshConnectError || err instanceof RemoteTimeout;
}

/** Reconnects until it works or the phase's deadline (its timeout) ends the phase. */
async function reconnectUntilUp(ctx: InfectContext): Promise<void> {
  ctx.session.close();
  for (let attempt = 1; ; attempt++) {
    try {
      ctx.session = await ctx.reconnect();
      return;
    } catch (err) {
      if (err instanceof HostKeyMismatch) {
        throw new VpsNixosError(
          `the host answers with another host key (${err.presented}) while nixos-infect runs`,
          'someone else answers at this address, or the keys changed: check on the provider console',
        );
      }
      await sleep(Math.min(2000 * attempt, 10_000));
    }
  }
}

/**
 * Follows DIR/log from byte 0 until the run has an exit status, streaming whole lines. A dropped
 * session is replaced (nixos-infect does not depend on it); returns the final status.
 */
async function follow(
  ctx: InfectContext,
): Promise<{ status: InfectStatus; reconnects: number; lostSeconds: number }> {
  let offset = 0;
  let partial = '';
  let reconnects = 0;
  let lostSeconds = 0;
  let lostSince: number | undefined;
  // A cut is noticed only when a poll fails (keepalive, timeout): it began after the last good one.
  let lastOk = Date.now();
  const emit = (text: string, final = false) => {
    const lines = (partial + text).split(/\r?\n|\r/);
    partial = final ? '' : (lines.pop() ?? '');
    for (const l of lines) if (l.trim()) ctx.log(l);
  };
  for (;;) {
    let st: InfectStatus & { size: number };
    try {
      // The copy uploaded for this run (its runner uses it too): not 6 KB on stdin every 2 s.
      const r = await ctx.session.exec(`sh ${INFECT_DIR}/infect.sh poll ${INFECT_DIR} ${offset}`, {
        timeoutMs: 20_000,
      });
      // A channel that closes without an exit status: the connection went.
      if (r.code === -1 && !r.signal) throw new SshConnectError('the session closed', '');
      if (r.code !== 0)
        throw new VpsNixosError(
          `infect.sh poll failed (exit ${r.code}): ${r.stderr.trim()}`,
          `look at ${INFECT_DIR} on the target`,
        );
      st = { ...parseInfectStatus(r.stderr), size: Number(parseKv(r.stderr).values.size ?? 0) };
      emit(r.stdout);
    } catch (err) {
      if (!isConnectionLoss(err)) throw err;
      if (lostSince === undefined) {
        lostSince = lastOk;
        ctx.log(
          `connection lost (${(err as Error).message}); nixos-infect runs on by itself: reconnecting`,
        );
      }
      await reconnectUntilUp(ctx);
      continue;
    }
    if (lostSince !== undefined) {
      const s = (Date.now() - lostSince) / 1000;
      lostSeconds += s;
      reconnects++;
      ctx.log(
        `reconnected ${s.toFixed(0)} s after the last answer; nixos-infect kept running (log at byte ${offset})`,
      );
      lostSince = undefined;
    }
    offset = st.size;
    lastOk = Date.now();
    if (st.state === 'finished' || st.state === 'failed') {
      if (offset < st.logBytes) continue; // more log than one poll carries
      emit('', true);
      return { status: st, reconnects, lostSeconds };
    }
    if (st.state === 'none') {
      throw new VpsNixosError(
        `nixos-infect's state in ${INFECT_DIR} disappeared while it ran`,
        'someone removed it on the target; look at the host before re-running',
      );
    }
    await sleep(ctx.pollMs ?? 2000);
  }
}

function networkNote(network: string | undefined): string {
  return network
    ? `\nThe network before nixos-infect ran (to repair it from the provider's console):\n${network.trim()}`
    : '';
}

/** Uploads a file into INFECT_DIR atomically (tmp + mv), 0700 dir, 0600 file. */
async function upload(ctx: InfectContext, name: string, text: string): Promise<void> {
  const r = await infectSh(ctx.session, 'put', [name], { stdin: text, timeoutMs: 60_000 });
  if (r.code !== 0)
    throw new VpsNixosError(
      `cannot write ${INFECT_DIR}/${name} on the target: ${parseKv(r.stdout).values.error ?? r.stderr.trim()}`,
      `check that ${INFECT_DIR} is writable and the disk has room`,
    );
}

export const infectPhase: Phase<InfectContext> = {
  name: 'infect',
  // Installing Nix and building NixOS on 1 GB from the channel: 10–40 minutes.
  timeoutMs: 90 * 60_000,
  onTimeout: `nixos-infect still runs on the target: its log is ${INFECT_DIR}/log; re-run to follow it again (it is not started twice)`,
  async detect(ctx) {
    const st = await infectStatus(ctx);
    const done = st.state === 'finished';
    return {
      done,
      evidence: done
        ? `nixos-infect finished (exit 0) at ${when(st.finished)}, boot_id ${st.bootId}; its log is ${st.dir}/log`
        : `nixos-infect ${st.state === 'none' ? 'never ran here' : st.state}`,
    };
  },
  async run(ctx) {
    const start = Date.now();
    const before = await infectStatus(ctx);
    if (before.state === 'running') {
      ctx.log(
        `nixos-infect is already running (pid ${before.pid}, started ${when(before.started)}): following it, not starting it again`,
      );
      ctx.network ??= await readNetwork(ctx);
    } else {
      const inf = ctx.infect;
      if (!inf)
        throw new VpsNixosError(
          'the infect phase needs the verified nixos-infect script',
          'this is a bug: the pipeline fetches it before the bootstrap',
        );
      const net = await infectSh(ctx.session, 'network');
      ctx.network = net.stdout;
      ctx.log('network before nixos-infect (kept in ' + INFECT_DIR + '/network):');
      for (const l of net.stdout.trim().split('\n')) ctx.log(`  ${l}`);
      // the detached runner runs this copy (infect.sh _run), so it outlives our session
      await upload(ctx, 'infect.sh', scriptText('phases/infect.sh'));
      await upload(ctx, 'nixos-infect', inf.text);
      const noSwap = ctx.isContainer ? '1' : '0';
      const r = await infectSh(
        ctx.session,
        'start',
        [inf.sha256, noSwap, ctx.swapfilePath ?? DEFAULT_SWAPFILE],
        { timeoutMs: 120_000 },
      );
      const out = parseKv(r.stdout);
      if (r.code !== 0)
        throw new VpsNixosError(
          `nixos-infect did not start: ${out.values.error ?? r.stderr.trim()}`,
          'nothing was converted; fix the cause on the target and re-run',
        );
      for (const w of out.warnings) ctx.log(`warning: ${w}`);
      if (out.values.swap_order) ctx.log(`swap reordered (zram last): ${out.values.swap_order}`);
      if (out.values.no_swap) ctx.log(`NO_SWAP=y: ${out.values.no_swap}`);
      if (ctx.isContainer) ctx.log('NO_SWAP=y: a container cannot swapon');
      ctx.log(
        `nixos-infect started detached (pid ${out.values.pid}), sha256 ${inf.sha256} checked on the target; following ${INFECT_DIR}/log`,
      );
    }
    const { status, reconnects, lostSeconds } = await follow(ctx);
    const took = ((Date.now() - start) / 1000).toFixed(1);
    if (status.exit !== 0) {
      const rebooted = status.bootId && status.bootId !== status.currentBootId;
      throw new VpsNixosError(
        status.exit === undefined
          ? rebooted
            ? 'the host rebooted while nixos-infect ran (its boot_id changed), so it never finished'
            : 'nixos-infect stopped without an exit status (killed: out of memory? see dmesg)'
          : `nixos-infect failed with exit ${status.exit} after ${took} s (its output is above)`,
        `read ${INFECT_DIR}/log on the target, fix the cause, and re-run: nixos-infect keeps the /etc/nixos it wrote. Do not reboot the host before that: nixos-infect may have staged part of the switch.${networkNote(ctx.network)}`,
      );
    }
    const lost = reconnects
      ? `; the connection dropped ${reconnects}× (${lostSeconds.toFixed(0)} s) and nixos-infect ran on`
      : '';
    return `nixos-infect finished (exit 0) in ${took} s${lost}`;
  },
};

async function readNetwork(ctx: InfectContext): Promise<string | undefined> {
  const r = await infectSh(ctx.session, 'saved-network');
  return r.code === 0 && r.stdout.trim() ? r.stdout : undefined;
}

/** The global addresses of a recorded network (infect.sh network's first section). */
export function recordedAddresses(network: string): string[] {
  const out: string[] = [];
  let section = '';
  for (const line of network.split('\n')) {
    if (line.startsWith('#')) section = line;
    else if (section.startsWith('# addresses') && line.trim()) {
      const addr = line.trim().split(/\s+/)[2];
      if (addr) out.push(addr);
    }
  }
  return out;
}

/** Phase reboot of the in-place path: into the converted system, then the access checks. */
export const infectRebootPhase: Phase<InfectContext> = {
  name: 'reboot',
  timeoutMs: 20 * 60_000,
  onTimeout: "the converted system does not come up: look at the provider's console",
  async detect(ctx) {
    const who = await whoAnswers(ctx.session);
    const st = await infectStatus(ctx);
    const rebootedSince =
      st.state === 'finished' && !!st.bootId && st.bootId !== st.currentBootId && who.isNixos;
    const done = rebootedSince || (st.state === 'none' && who.isNixos && who.currentSystem !== '');
    return {
      done,
      evidence: done
        ? `the host runs NixOS since nixos-infect finished (boot_id ${who.bootId}, /etc/NIXOS)`
        : `nixos-infect ${st.state}, boot_id ${who.bootId} is the one it ran in`,
    };
  },
  async run(ctx) {
    ctx.network ??= await readNetwork(ctx);
    // Whatever stops the host coming back, the fix ends with the network it had.
    const back = await rebootAndWait(ctx, {
      what: 'the converted system',
      keyMismatchFix:
        'nixos-infect keeps /etc/ssh/ssh_host_*_key (NIXOS_LUSTRATE); look on the provider console at /old-root/etc/ssh',
      onTimeoutFix:
        "look at the provider console: the converted system's network may be wrong (doNetConf wrote /etc/nixos/networking.nix)",
      judge: (who) => {
        if (!who.isNixos)
          throw new VpsNixosError(
            'the host came back without /etc/NIXOS: it booted the old distribution, not NixOS',
            "the boot loader still starts the old system: look at the provider console and nixos-infect's log",
          );
        return true;
      },
    }).catch((err: unknown) => {
      throw err instanceof VpsNixosError
        ? new VpsNixosError(err.message, `${err.fix}${networkNote(ctx.network)}`)
        : err;
    });
    const checks = await accessChecks(ctx);
    return `rebooted in ${back.seconds.toFixed(1)} s into NixOS (boot_id ${back.who.bootId}, /etc/NIXOS, same address and pinned host key); ${checks}`;
  },
};

/** After the reboot: the deploy key is still authorized and the recorded addresses are still up. */
async function accessChecks(ctx: InfectContext): Promise<string> {
  const user = ctx.user ?? 'root';
  const home = user === 'root' ? '/root' : `/home/${user}`;
  const files = [`${home}/.ssh/authorized_keys`, `/etc/ssh/authorized_keys.d/${user}`];
  const r = await infectSh(ctx.session, 'access', files);
  // `---` on a line of its own; with no key file readable it is the very first line.
  const [keysPart = '', addrPart = ''] = `\n${r.stdout}`.split('\n---\n');
  const notes: string[] = [];
  const keys = ctx.deployPublicKeys ?? [];
  if (keys.length > 0) {
    const blobs = keys.map((k) => k.split(' ')[1] ?? k);
    const hit = keysPart.split('\n').find((l) => blobs.some((b) => l.includes(b)));
    if (hit) notes.push(`deploy key in ${hit.split(' ')[0]}`);
    else {
      const what =
        keys.length === 1 ? 'the deploy key is' : `none of the ${keys.length} login keys is`;
      const w = `${what} in neither ${files.join(' nor ')}: the next configuration must authorize it (users.users.${user}.openssh.authorizedKeys.keys)`;
      ctx.log(`warning: ${w}`);
      notes.push(w);
    }
  }
  if (ctx.network) {
    const now = new Set(addrPart.split('\n').map((l) => l.trim()));
    const was = recordedAddresses(ctx.network);
    const gone = was.filter((a) => !now.has(a));
    if (gone.length) {
      const w = `addresses configured before and missing now: ${gone.join(', ')}`;
      ctx.log(`warning: ${w}${networkNote(ctx.network)}`);
      notes.push(w);
    } else if (was.length) notes.push(`addresses kept: ${was.join(', ')}`);
  }
  return notes.join('; ');
}
