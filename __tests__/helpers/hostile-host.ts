/**
 * A hostile target: a real sshd whose every answer carries text made to be mistaken for
 * something else (workflow commands, escape sequences, links, HTML). The probe's own command runs
 * for real (scripts/facts.sh as src/ssh/script.ts sends it) with fake `systemd-detect-virt`, `lsblk` and
 * `ip` first in PATH; what facts.sh reads from fixed paths (/etc/os-release, /etc/resolv.conf,
 * /proc) is replaced in its output afterwards, as a host with those files would print it.
 */
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scriptCommand } from '../../src/ssh/script';
import { startSshd, type Sshd } from './sshd';

/** Marks the start of every forged command: a parsed command whose data starts so is not ours. */
export const FORGED = /^pwned/i;

/** Text that would act, were it not treated as data. */
export const HOSTILE = {
  /** A lone CR ends a line for the runner; an OSC sets the terminal title; `##[` works anywhere. */
  virt: 'kvm\x1b]0;PWNED title\x07\r::warning::PWNED-virt ##[error]PWNED-virt-legacy',
  prettyName:
    'Debian <img src=x onerror=alert(1)> [x](https://evil.example/md) `code` ```fence``` |pipe| ' +
    '![i](https://evil.example/i.png) ##[set-output name=method;]pwned',
  variant:
    '\x1b[31mred\x1b[0m \x1b]8;;https://evil.example/osc8\x1b\\link\x1b]8;;\x1b\\ **bold** _em_ ~~s~~ $m$',
  kernel: '6.1.0 \x1b[2J\x1b[H\x1b]52;c;cHduZWQ=\x07\x9b31m \u0085::error::PWNED-nel',
  bootId: 'evil@evil.example www.evil.example https://evil.example/boot <https://evil.example/a>',
  /** Unicode spaces before `::`; a right-to-left override that would show `1adv/` as `vda1`. */
  rootSource: '/dev/vda1\r\u00a0\u3000::error::PWNED-unicode-space \u202e1adv/ved/\u202c',
  packageManager:
    'apt-get ##[error]PWNED-pkg <a href="https://evil.example/a">a</a> @octocat &lt;b&gt; <!-- c -->' +
    '\r  ::set-output name=method::pwned',
  dns: 'https://evil.example/dns',
  /**
   * In JSON strings: line breaks, tabs and escapes survive facts.sh as `\n`, `\r`, `\t`,
   * `\u001b` (it squeezes runs of spaces, so one space at a time).
   */
  diskPath: '/dev/vda\n::set-output name=method::pwned\n\t::stop-commands::tok',
  ifname: 'eth0\r::error::PWNED-ifname\n \t::add-mask::x',
  address: '[x](https://evil.example/addr)',
  gateway: 'https://evil.example/gw\nwww.evil.example\n<script>alert(1)</script>',
  dev: 'eth0\r\n::warning::PWNED-dev ```\nfence\n```',
  /** The stderr of a failing facts script, and of any command but the probe's. */
  stderr:
    'sh: 1: ::error::PWNED-stderr\n' +
    'x\r::set-output name=method::pwned \x1b]0;PWNED\x07\n' +
    '<img src=x onerror=alert(1)> https://evil.example/err ##[error]PWNED-stderr-legacy\n',
};

export interface HostileHost {
  sshd: Sshd;
  target: string;
  /** The fake tools, the replaced facts and the wrapper sshd runs. */
  dir: string;
  /** The facts script fails from now on, printing HOSTILE.stderr (or works again). */
  setFailing(on: boolean): void;
  stop(): Promise<void>;
}

const script = (body: string) => `#!/bin/sh\n${body}\n`;

/** Starts the sshd and makes every command of its client key run through the hostile host. */
export async function startHostileHost(): Promise<HostileHost> {
  const sshd = await startSshd();
  const dir = join(sshd.dir, 'hostile');
  mkdirSync(join(dir, 'bin'), { recursive: true });
  const file = (name: string, text: string, mode = 0o644) => {
    writeFileSync(join(dir, name), text);
    chmodSync(join(dir, name), mode);
  };
  const json = (x: unknown) => JSON.stringify(x);
  file('virt.txt', HOSTILE.virt);
  file(
    'lsblk.json',
    json({
      blockdevices: [
        {
          name: 'vda',
          path: HOSTILE.diskPath,
          type: 'disk',
          size: 26843545600,
          model: HOSTILE.prettyName,
          mountpoint: null,
          fstype: null,
          children: [],
        },
      ],
    }),
  );
  file(
    'ip-addr.json',
    json([
      {
        ifindex: 2,
        ifname: HOSTILE.ifname,
        mtu: 1500,
        link_type: 'ether',
        address: '52:54:00:3a:7c:10',
        addr_info: [
          { family: 'inet', local: HOSTILE.address, prefixlen: 24, scope: 'global' },
          { family: 'inet', local: '192.0.2.10', prefixlen: 24, scope: 'global' },
        ],
      },
    ]),
  );
  file(
    'ip-route4.json',
    json([{ dst: 'default', gateway: HOSTILE.gateway, dev: HOSTILE.dev, flags: ['onlink'] }]),
  );
  file('stderr.txt', HOSTILE.stderr);
  // What facts.sh reads from fixed paths, as this host's files would make it print.
  const override = [
    'osrelease=ID=debian',
    'osrelease=VERSION_ID="12"',
    `osrelease=PRETTY_NAME="${HOSTILE.prettyName}"`,
    `osrelease=VARIANT_ID=${HOSTILE.variant}`,
    `kernel=${HOSTILE.kernel}`,
    `boot_id=${HOSTILE.bootId}`,
    `root.source=${HOSTILE.rootSource}`,
    `dns.resolvconf=nameserver ${HOSTILE.dns}`,
    `pkgmgr=${HOSTILE.packageManager}`,
  ];
  for (const l of override) if (l.includes('\n')) throw new Error(`not one facts line: ${l}`);
  file('probe-command', scriptCommand('facts.sh'));
  file('override.txt', override.join('\n') + '\n');
  file('bin/systemd-detect-virt', script('cat "${0%/*}/../virt.txt"'), 0o755);
  file('bin/lsblk', script('cat "${0%/*}/../lsblk.json"'), 0o755);
  file(
    'bin/ip',
    script(
      [
        'case "$*" in',
        '  "-j addr show") cat "${0%/*}/../ip-addr.json" ;;',
        '  "-j -4 route show") cat "${0%/*}/../ip-route4.json" ;;',
        '  "-j -6 route show") echo "[]" ;;',
        '  *) exit 1 ;;',
        'esac',
      ].join('\n'),
    ),
    0o755,
  );
  // sshd runs this for every command of the key (authorized_keys `command=`); the command asked
  // for is in SSH_ORIGINAL_COMMAND. Only the probe's runs, read-only as facts.sh is: this host is
  // the test machine. Keys in override.txt replace facts.sh's lines of that key.
  file(
    'host.sh',
    script(
      [
        'dir=${0%/*}',
        'if [ "$SSH_ORIGINAL_COMMAND" != "$(cat "$dir/probe-command")" ]; then',
        '  cat "$dir/stderr.txt" >&2',
        '  exit 3',
        'fi',
        'if [ -e "$dir/failing" ]; then',
        '  cat >/dev/null',
        '  cat "$dir/stderr.txt" >&2',
        '  exit 3',
        'fi',
        'PATH="$dir/bin:$PATH" sh -c "$SSH_ORIGINAL_COMMAND" | awk -v o="$dir/override.txt" \'',
        '  BEGIN { while ((getline l < o) > 0) { print l; k[substr(l, 1, index(l, "=") - 1)] = 1 } }',
        '  !(substr($0, 1, index($0, "=") - 1) in k)\'',
      ].join('\n'),
    ),
    0o755,
  );
  writeFileSync(
    join(sshd.dir, 'authorized_keys'),
    `command="${join(dir, 'host.sh')}",no-pty,no-port-forwarding ${sshd.clientKeyPub}\n`,
    { mode: 0o600 },
  );
  return {
    sshd,
    target: `root@${sshd.host}:${sshd.port}`,
    dir,
    setFailing: (on) =>
      on ? writeFileSync(join(dir, 'failing'), '') : rmSync(join(dir, 'failing'), { force: true }),
    stop: () => sshd.stop(),
  };
}

/** The client key's lines, as the action masks them. */
export const keyLines = (h: HostileHost): string[] =>
  readFileSync(h.sshd.clientKeyFile, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
