/**
 * The preflight checks: a pure function of what Nix said about the configuration, the probed
 * facts, the plan and the deploy key. Each check cites the seed bug it prevents
 * (seeds/bootstrap-1gb-vps-5-bugs.txt) and says the change that fixes it.
 */
import type { Facts } from '../probe/facts';
import type { Plan } from '../plan/plan';
import { formatBytes } from '../size';
import type {
  Finding,
  FindingId,
  MemoryInputs,
  PreflightInputs,
  SectionName,
  Severity,
  StaticAddress,
  UserInputs,
} from './types';

/** The facts the checks read; a whole `Facts` fits. */
export type PreflightFacts = Pick<
  Facts,
  'memTotalBytes' | 'virtualization' | 'disks' | 'interfaces' | 'routes'
> &
  Partial<Pick<Facts, 'rootDisk' | 'tmp' | 'isContainer' | 'efi'>>;

export interface PreflightContext {
  facts?: PreflightFacts;
  plan?: Pick<Plan, 'method'>;
  /**
   * The public halves of the keys deploys log in with (`ssh-ed25519 AAAA… comment`): the deploy
   * key, or every key of the CLI's ssh-agent (any one of them authorized lets the login in).
   */
  deployPublicKeys?: readonly string[];
  /** The user deploys log in as; root when not given. */
  targetUser?: string;
}

const GiB = 1024 ** 3;
/** Below this the seed's advice applies: zram, a persistent sshd. */
const LOW_RAM_BYTES = 2 * GiB;
const SEED = 'seed bootstrap-1gb-vps-5-bugs';

type Add = (id: FindingId, severity: Severity, message: string, why: string, fix: string) => void;

const q = (s: string) => JSON.stringify(s);
const nixList = (items: string[], indent = '  ') =>
  items.length ? `[\n${items.map((i) => `${indent}  ${q(i)}`).join('\n')}\n${indent}]` : '[ ]';
const trimSlash = (p: string) => p.replace(/\/+$/, '') || '/';
const under = (path: string, dir: string) =>
  dir === '/' ? path.startsWith('/') : path === dir || path.startsWith(dir + '/');

// ---- impermanence ------------------------------------------------------------------------

/** Directories NixOS activation (or the service's own module) writes config files into. */
const ACTIVATION_DIRS: Record<string, string> = {
  '/etc': 'activation links every environment.etc entry and /etc/static here',
  '/etc/ssh': 'activation links sshd_config (and ssh_config, moduli) here',
  '/etc/containers': 'activation links registries.conf, policy.json and storage.conf here',
};

function persistActivationDir(inputs: PreflightInputs, add: Add): void {
  const hostKeys = inputs.ssh?.hostKeyPaths.length
    ? inputs.ssh.hostKeyPaths
    : ['/etc/ssh/ssh_host_ed25519_key'];
  const etcPaths = (inputs.etc ?? []).map((t) => '/etc/' + t.replace(/^\/+/, ''));
  for (const root of inputs.persistence ?? []) {
    if (!root.enable) continue;
    for (const raw of root.directories) {
      const dir = trimSlash(raw);
      const managed = etcPaths.filter((p) => under(p, dir));
      const known = ACTIVATION_DIRS[dir];
      if (!known && managed.length === 0) continue;
      const shown = managed.slice(0, 5).join(', ') + (managed.length > 5 ? ', …' : '');
      const files =
        dir === '/etc/ssh'
          ? hostKeys.flatMap((k) => [k, `${k}.pub`])
          : [`${dir}/<each file the service writes itself>`];
      add(
        'persist-activation-dir',
        'error',
        `environment.persistence.${q(root.root)}.directories contains ${q(raw)}: ` +
          (known ?? 'NixOS activation writes into it') +
          (managed.length ? ` (environment.etc: ${shown})` : ''),
        `Impermanence bind-mounts ${root.root}${dir} over ${dir} at boot, racing the activation that creates the ` +
          `links there: on first boot the persisted copy is empty and hides them. In the seed, sshd then failed with ` +
          `"/etc/ssh/sshd_config: No such file or directory" and the host was unreachable (${SEED}, bug 4; ` +
          `podman's /etc/containers the same). Persist the state files, never a directory activation writes into.`,
        `environment.persistence.${q(root.root)} = {\n` +
          `  directories = [ /* remove ${q(raw)} */ ];\n` +
          `  files = ${nixList(files)};\n` +
          `};`,
      );
    }
  }
}

// ---- ssh and users -----------------------------------------------------------------------

function sshdDisabled(inputs: PreflightInputs, add: Add): void {
  if (!inputs.ssh || inputs.ssh.enable) return;
  add(
    'sshd-disabled',
    'error',
    'services.openssh.enable is false (the NixOS default when nothing enables it)',
    'vps-nixos installs and deploys over SSH: a system without sshd boots fine and is never reachable again; ' +
      `the next deploy (and any repair) needs the provider's console, where the seed had no password either (${SEED}, bugs 4 and 5).`,
    'services.openssh.enable = true;',
  );
}

/** The key type and base64 blob of an authorized_keys or .pub line (options and comment ignored). */
export function publicKeyId(line: string): string | undefined {
  const m = /(?:^|\s)((?:ssh|ecdsa|sk)-[A-Za-z0-9@.+-]+)\s+(AAAA[A-Za-z0-9+/]+={0,3})(?:\s|$)/.exec(
    line.trim(),
  );
  return m ? `${m[1]} ${m[2]}` : undefined;
}

function deployKeyMissing(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  const keys = ctx.deployPublicKeys ?? [];
  if (keys.length === 0 || !inputs.users) return;
  const target = ctx.targetUser ?? 'root';
  const lines = keys.map((k) => publicKeyId(k) ?? k.trim());
  const short = (l: string) => (l.length > 60 ? `${l.slice(0, 40)}…${l.slice(-12)}` : l);
  const keyLine = lines[0]!;
  const which =
    lines.length === 1
      ? `the deploy key (${short(keyLine)})`
      : `none of the ssh-agent's ${lines.length} keys (${lines.map(short).join(', ')})`;
  const user = inputs.users.users.find((u) => u.name === target);
  const fix = `users.users.${nixAttr(target)}.openssh.authorizedKeys.keys = [\n  ${q(keyLine)}\n];`;
  const why =
    'After install and after each deploy the host runs only what the configuration says: the key vps-nixos logs in ' +
    'with must be in it, or the first connection after the switch is refused and the host can only be reached from ' +
    `the provider's console (${SEED}, bugs 4 and 5: no SSH, no console password).`;
  if (!user && target !== 'root') {
    add(
      'deploy-key-missing',
      'error',
      `the deploy user ${q(target)} is not defined in users.users`,
      why,
      `users.users.${nixAttr(target)} = {\n  isNormalUser = true;\n  extraGroups = [ "wheel" ];\n  openssh.authorizedKeys.keys = [ ${q(keyLine)} ];\n};`,
    );
    return;
  }
  const authorized = user?.authorizedKeys ?? [];
  const present = lines.some((line) => {
    const id = publicKeyId(line);
    return id
      ? authorized.some((k) => publicKeyId(k) === id)
      : authorized.some((k) => k.includes(line));
  });
  if (!present) {
    add(
      'deploy-key-missing',
      'error',
      `${which} ${lines.length === 1 ? 'is not' : 'is'} in users.users.${nixAttr(target)}.openssh.authorizedKeys` +
        ` (${authorized.length} other key${authorized.length === 1 ? '' : 's'} there)`,
      why,
      fix,
    );
  }
  const prl = inputs.ssh?.permitRootLogin ?? 'prohibit-password';
  if (target === 'root' && (prl === 'no' || prl === 'forced-commands-only')) {
    add(
      'deploy-key-missing',
      'error',
      `the deploy user is root but services.openssh.settings.PermitRootLogin = ${q(prl)}`,
      why,
      'services.openssh.settings.PermitRootLogin = "prohibit-password";  # keys only\n' +
        '# or deploy as a wheel user: target admin@host, with the key in users.users.admin',
    );
  }
}

const nixAttr = (name: string) => (/^[A-Za-z_][A-Za-z0-9_'-]*$/.test(name) ? name : q(name));

type Credential = 'password' | 'none';

/**
 * Whether a user can log in with a password on first boot. NixOS applies the options in
 * this order, the last one set winning (users-groups.nix); hashedPasswordFile would win
 * but on a fresh install its file usually does not exist yet (agenix/sops decrypt it with
 * the host key: the seed's chicken and egg), so what is under it decides.
 */
function firstBootCredential(u: UserInputs, mutableUsers: boolean): Credential {
  const order = mutableUsers
    ? [u.initialHashedPassword, u.initialPassword, u.hashedPassword, u.password]
    : [u.initialHashedPassword, u.hashedPassword, u.initialPassword, u.password];
  const last = order.filter((s) => s !== 'unset').pop();
  return last === 'set' || last === 'empty' ? 'password' : 'none';
}

function noConsoleLogin(inputs: PreflightInputs, add: Add): void {
  const u = inputs.users;
  if (!u) return;
  if (u.autologinUser) return;
  const admins = u.users.filter((x) => x.name === 'root' || x.groups.includes('wheel'));
  const wheel = u.users.filter((x) => x.groups.includes('wheel') && x.name !== 'root');
  const has = (x: UserInputs) => firstBootCredential(x, u.mutableUsers) === 'password';
  const fileOnly = admins.filter((x) => !has(x) && x.hashedPasswordFile);
  const why =
    'When SSH fails on first boot (sshd config hidden by a persisted /etc/ssh, a wrong address, a missing key) ' +
    `the provider's web console is the only way in, and it needs a password. The seed sat at "tty1 login:" with no root password: its hashedPasswordFile came from agenix, which needs the host keys that did not exist yet (${SEED}, bug 5).`;
  if (!admins.some(has)) {
    add(
      'no-console-login',
      'warning',
      'neither root nor any wheel user has a password on first boot' +
        (fileOnly.length
          ? ` (${fileOnly.map((x) => `${x.name}: only hashedPasswordFile ${q(x.hashedPasswordFile ?? '')}, which a fresh install does not have yet`).join('; ')})`
          : '') +
        (u.mutableUsers ? '' : '; users.mutableUsers = false, so passwd cannot add one later'),
      why,
      (fileOnly.length
        ? `# keep hashedPasswordFile; this applies while its file does not exist yet\n`
        : '') +
        'users.users.root.initialHashedPassword = "<mkpasswd -m sha-512>";  # or initialPassword = "…" for the bootstrap only\n' +
        (u.mutableUsers ? '' : '# or: users.mutableUsers = true; during the bootstrap'),
    );
    return;
  }
  if (!u.mutableUsers && u.wheelNeedsPassword && wheel.length > 0 && !wheel.some(has)) {
    add(
      'no-console-login',
      'warning',
      `users.mutableUsers = false and no wheel user (${wheel.map((x) => x.name).join(', ')}) has a password: ` +
        'sudo asks for one that cannot exist, and passwd is undone by the next activation',
      `${why} Without a password an admin cannot sudo there either.`,
      `users.users.${nixAttr(wheel[0]?.name ?? 'admin')}.hashedPassword = "<mkpasswd -m sha-512>";\n` +
        '# or, for key-only admins: security.sudo.wheelNeedsPassword = false;',
    );
  }
}

function sshdSocketActivated(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  const s = inputs.ssh;
  const f = ctx.facts;
  if (!s?.enable || !s.startWhenNeeded || !f || f.memTotalBytes >= LOW_RAM_BYTES) return;
  add(
    'sshd-socket-activated',
    'warning',
    `services.openssh.startWhenNeeded = true on a host with MemTotal ${formatBytes(f.memTotalBytes)}`,
    'Socket activation starts one sshd per connection from a systemd socket; under memory pressure that start ' +
      `fails silently and the connection just closes. It saves ~5 MB; the seed switched back to a persistent daemon (${SEED}, bug 4 and principle 5).`,
    'services.openssh.startWhenNeeded = false;',
  );
}

// ---- closure -----------------------------------------------------------------------------

const DESKTOP =
  /^(hyprland|hyprpaper|hyprlock|sway|swaylock|niri|grim|grimblast|slurp|wl-clipboard|wlroots|xwayland|waybar|rofi|rofi-wayland|wofi|dunst|mako|firefox|chromium|google-chrome|thunderbird|kitty|alacritty|foot|wezterm|zbar|mpv|vlc|obs-studio|libreoffice|gimp|inkscape|xorg-server|qtbase|qtwayland|gtk3|gtk4|gnome-shell|plasma-workspace|vscode|discord|slack|spotify)$/;
const DEV =
  /^(clang|clang-tools|llvm|lldb|gcc|gdb|rustc|cargo|clippy|rust-analyzer|rustup|rust-docs|rustfmt|ghc|cabal-install|stack|go|zig|jdk|openjdk|cmake|valgrind)$/;

function closureLeak(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  const p = inputs.packages;
  if (!p) return;
  const report = 'vps-nixos build prints the closure report (biggest paths and known leaks)';
  const virt = ctx.facts?.virtualization;
  const firmware =
    p.enableRedistributableFirmware ||
    p.enableAllFirmware ||
    p.firmware.some((n) => /^linux-firmware/.test(n));
  if (firmware && virt !== 'none') {
    const opts = [
      p.enableRedistributableFirmware && 'hardware.enableRedistributableFirmware = true',
      p.enableAllFirmware && 'hardware.enableAllFirmware = true',
      !p.enableRedistributableFirmware &&
        !p.enableAllFirmware &&
        'hardware.firmware contains linux-firmware',
    ].filter(Boolean);
    add(
      'closure-leak',
      'warning',
      `${opts.join(', ')} on ${virt ? `a ${virt} guest` : 'a VPS (no facts: assumed a VM)'}`,
      `All redistributable firmware is ~790 MB in the closure and a VM loads none of it (virtio needs no firmware). ` +
        `On a 1 GB VPS the closure is staged in a tmpfs of half the RAM during install: the seed's 7.6 GB closure ` +
        `could not fit and nix copy was OOM-killed (${SEED}, bug 3). ${report}.`,
      'hardware.enableRedistributableFirmware = false;  # the seed put this in its qemu profile with lib.mkDefault',
    );
  }
  const groups: [string, string[], string, string][] = [
    [
      'desktop packages',
      p.systemPackages.filter((n) => DESKTOP.test(n)),
      'the seed found hyprland, grimblast, Qt/Wayland and zbar (5 GB) added unconditionally by a shared module',
      'move them to the desktop hosts only, e.g. environment.systemPackages = lib.optionals config.services.xserver.enable [ … ];',
    ],
    [
      'development toolchains',
      p.systemPackages.filter((n) => DEV.test(n)),
      'the seed found clang/llvm/lldb (7 GB) and rust (3.5 GB) from dev modules left enabled on the VPS',
      'disable the dev modules on this host (the seed: dev.cc.enable = false; dev.rust.enable = false;) and build elsewhere',
    ],
    [
      'microvm',
      p.systemPackages.filter((n) => /microvm/.test(n)),
      'the seed found the microvm host module (503 MB) imported on every host',
      'import the microvm module only on hosts that run micro VMs',
    ],
  ];
  for (const [what, names, seen, fix] of groups) {
    if (names.length === 0) continue;
    const uniq = [...new Set(names)];
    add(
      'closure-leak',
      'warning',
      `environment.systemPackages has ${what}: ${uniq.join(', ')}`,
      `A server does not need them and they multiply the closure: ${seen}; the 7.6 GB closure did not fit the ` +
        `installer's tmpfs and was OOM-killed (${SEED}, bug 3). ${report}.`,
      `# remove ${uniq.join(', ')} from this host's environment.systemPackages\n# ${fix}`,
    );
  }
}

// ---- memory ------------------------------------------------------------------------------

function noZramLowRam(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  const m = inputs.memory;
  const f = ctx.facts;
  if (!m || !f || m.zramSwap || f.memTotalBytes >= LOW_RAM_BYTES) return;
  add(
    'no-zram-low-ram',
    'warning',
    `zramSwap.enable is false on a host with MemTotal ${formatBytes(f.memTotalBytes)} (< 2 GiB)` +
      (m.swapDevices.length
        ? ` (swap on disk: ${m.swapDevices.map((s) => s.device).join(', ')})`
        : ''),
    'vps-nixos sets up zram for the install itself, but the installed system runs without it: nixos-rebuild on the ' +
      `host, a nix copy of a big deploy or a busy service then hits the OOM killer, which took out sshd in the seed (${SEED}, bug 1; "ZRAM is essential for <2GB RAM").`,
    'zramSwap.enable = true;\nzramSwap.memoryPercent = 100;  # compressed ~3:1; the seed used 4 GB on 962 MB',
  );
}

/** Mount points that are tmpfs on the installed system (and the ones known not to be). */
function mounts(m: MemoryInputs, facts?: PreflightFacts): { point: string; tmpfs: boolean }[] {
  const out = m.fileSystems.map((f) => ({
    point: trimSlash(f.mountPoint),
    tmpfs: f.fsType === 'tmpfs',
  }));
  for (const p of ['/run', '/dev/shm', '/run/user']) out.push({ point: p, tmpfs: true });
  if (m.tmpUseTmpfs || facts?.tmp?.fsType === 'tmpfs') out.push({ point: '/tmp', tmpfs: true });
  return out;
}

function swapOnTmpfs(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  const m = inputs.memory;
  if (!m) return;
  const all = mounts(m, ctx.facts);
  for (const s of m.swapDevices) {
    const path = s.device;
    if (!path.startsWith('/') || (path.startsWith('/dev/') && !under(path, '/dev/shm'))) continue;
    const at = all
      .filter((x) => under(path, x.point))
      .sort((a, b) => b.point.length - a.point.length)[0];
    if (!at?.tmpfs) continue;
    add(
      'swap-on-tmpfs',
      'warning',
      `swapDevices has ${q(path)}, which is on a tmpfs (${at.point})`,
      'A swapfile on tmpfs lives in the RAM it is meant to relieve: swapon fails (tmpfs has no swap support) or, ' +
        `worse, the file eats memory. The seed's root was a tmpfs (impermanence), so a swapfile there is in RAM; swap must be on a real disk (${SEED}, bugs 1 and 3).`,
      `swapDevices = [ { device = "/nix/swapfile"; size = ${s.sizeMiB ?? 2048}; } ];  # on the disk-backed /nix (or /persist)`,
    );
  }
}

/** `boot.tmp.tmpfsSize` in bytes (or a fraction of RAM), as mount(8) reads tmpfs size=. */
export function tmpfsSizeBytes(
  size: string | number,
  memTotalBytes?: number,
): { bytes?: number; percent?: number } {
  if (typeof size === 'number') return { bytes: size };
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtpe%]?)\s*$/i.exec(size);
  if (!m) return {};
  const n = Number(m[1]);
  const unit = (m[2] ?? '').toLowerCase();
  if (unit === '%')
    return {
      percent: n,
      bytes: memTotalBytes !== undefined ? (memTotalBytes * n) / 100 : undefined,
    };
  const exp = ' kmgtpe'.indexOf(unit || ' ');
  return { bytes: n * 1024 ** Math.max(exp, 0) };
}

function tmpTmpfsTooBig(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  const m = inputs.memory;
  if (!m?.tmpUseTmpfs) return;
  const mem = ctx.facts?.memTotalBytes;
  const { bytes, percent } = tmpfsSizeBytes(m.tmpTmpfsSize, mem);
  const tooBig =
    percent !== undefined ? percent > 100 : bytes !== undefined && mem !== undefined && bytes > mem;
  if (!tooBig) return;
  add(
    'tmp-tmpfs-too-big',
    'warning',
    `boot.tmp.useTmpfs = true with boot.tmp.tmpfsSize = ${q(String(m.tmpTmpfsSize))}` +
      (mem !== undefined
        ? ` (${formatBytes(bytes ?? 0)}) on a host with MemTotal ${formatBytes(mem)}`
        : ' (more than the RAM)'),
    `/tmp in RAM larger than the RAM: nix builds and unpacked sources land in /tmp, and once it grows past free ` +
      `memory the OOM killer picks a process, sshd included, as it did during the seed's install (${SEED}, bugs 1 and 3).`,
    'boot.tmp.tmpfsSize = "25%";  # or: boot.tmp.useTmpfs = false; (then /tmp is on disk, cleaned at boot with boot.tmp.cleanOnBoot = true;)',
  );
}

// ---- disko -------------------------------------------------------------------------------

function diskoSnippet(device: string): string {
  return (
    `# flake input disko, module disko.nixosModules.disko, then:\n` +
    `disko.devices.disk.main = {\n  type = "disk";\n  device = ${q(device)};\n` +
    `  content = {\n    type = "gpt";\n    partitions = {\n` +
    `      boot = { size = "1M"; type = "EF02"; };\n` +
    `      ESP = { size = "512M"; type = "EF00"; content = { type = "filesystem"; format = "vfat"; mountpoint = "/boot"; }; };\n` +
    `      root = { size = "100%"; content = { type = "filesystem"; format = "ext4"; mountpoint = "/"; }; };\n` +
    `    };\n  };\n};`
  );
}

function noDisko(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  const d = inputs.disko;
  if (!d || ctx.plan?.method !== 'kexec' || d.disks.length > 0) return;
  const device = ctx.facts?.rootDisk ?? ctx.facts?.disks[0]?.path ?? '/dev/vda';
  add(
    'no-disko',
    'error',
    'the plan installs through kexec and partitions the disk, but the configuration has no disko.devices.disk' +
      (d.hasScript ? ' (system.build.diskoScript exists, but no disk in it)' : ''),
    'The kexec install wipes the disk and lays it out from the disko configuration (as nixos-anywhere does in the ' +
      `seed); without one there is nothing to partition and nothing mounted at /mnt to install into.`,
    diskoSnippet(device),
  );
}

function diskoDeviceMismatch(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  const d = inputs.disko;
  const f = ctx.facts;
  if (!d || !f || f.disks.length === 0) return;
  if (ctx.plan && ctx.plan.method !== 'kexec') return; // disko runs only when kexec partitions
  const probed = f.disks.flatMap((x) => [x.path, `/dev/${x.name}`]);
  const want = f.rootDisk ?? f.disks[0]?.path ?? '/dev/vda';
  for (const disk of d.disks) {
    const dev = disk.device;
    // by-id/by-path names cannot be matched without udev on the target: not checked.
    if (!dev || dev.startsWith('/dev/disk/by-')) continue;
    if (probed.includes(dev)) continue;
    add(
      'disko-device-mismatch',
      'error',
      `disko.devices.disk.${nixAttr(disk.name)}.device = ${q(dev)}, but the probe found ${f.disks.map((x) => x.path).join(', ')}` +
        (f.rootDisk ? ` (root on ${f.rootDisk})` : ''),
      'disko partitions the device it is given: a name that does not exist on this VPS fails the install after ' +
        `kexec, when the old system is already gone and the host is only reachable through the installer (${SEED}: virtualized /dev/vda).`,
      `disko.devices.disk.${nixAttr(disk.name)}.device = ${q(want)};`,
    );
  }
}

function diskoDiskEmpty(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  const d = inputs.disko;
  if (!d || (ctx.plan && ctx.plan.method !== 'kexec')) return;
  const laidOut = d.disks.filter((x) => x.hasContent !== false).map((x) => x.name);
  for (const disk of d.disks) {
    if (disk.hasContent !== false) continue;
    add(
      'disko-disk-empty',
      'error',
      `disko.devices.disk.${nixAttr(disk.name)} has ${disk.device ? `device = ${q(disk.device)} but ` : ''}nothing to lay out on it (no content)` +
        (laidOut.length
          ? `; the layout's disks are ${laidOut.map((n) => nixAttr(n)).join(', ')}`
          : ''),
      "disko cannot partition a disk without content, so the install stops after kexec, when the old system is gone. The host module vps-nixos generates (facts-to-nix, host-config) sets disko.devices.disk.main.device: with a layout that names its disk otherwise, 'main' is a second, empty disk.",
      laidOut.length
        ? `name the layout's disk main (disko.devices.disk.main = { … };), or generate the host module with: vps-nixos facts-to-nix --facts facts.json --disk-name ${laidOut[0]}`
        : `give disko.devices.disk.${nixAttr(disk.name)} a content (a gpt table with its partitions), e.g.:\n${diskoSnippet(disk.device ?? '/dev/vda')}`,
    );
  }
}

function uefiNoEsp(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  const m = inputs.memory;
  if (!m || !ctx.facts?.efi || ctx.plan?.method !== 'kexec') return;
  const esp = trimSlash(m.efiSysMountPoint ?? '/boot');
  const mounted = m.fileSystems.find((f) => trimSlash(f.mountPoint) === esp);
  if (mounted && (mounted.fsType === 'vfat' || mounted.fsType === null)) return;
  add(
    'uefi-no-esp',
    'error',
    mounted
      ? `the host boots by UEFI and the EFI system partition must be at ${esp} (boot.loader.efi.efiSysMountPoint), but ${esp} is ${mounted.fsType ?? 'a'} file system, not vfat`
      : `the host boots by UEFI, but the configuration mounts no EFI system partition at ${esp} (boot.loader.efi.efiSysMountPoint)`,
    'The kexec install wipes the disk and lays it out from the configuration; UEFI firmware boots only from a FAT EFI system partition, so without one the boot-loader install fails, or the host reboots into nothing after the old system is gone.',
    `add an ESP to the disko layout:\nESP = { size = "512M"; type = "EF00"; content = { type = "filesystem"; format = "vfat"; mountpoint = ${q(esp)}; mountOptions = [ "umask=0077" ]; }; };`,
  );
}

// ---- network -----------------------------------------------------------------------------

type Family = 'inet' | 'inet6';
const familyOf = (a: string): Family => (a.includes(':') ? 'inet6' : 'inet');

/** Canonical text of an address, so 2001:db8:0:0::1 equals 2001:db8::1. */
export function canonicalAddress(a: string): string {
  const s = a.trim().toLowerCase().replace(/%.*$/, '');
  if (!s.includes(':')) return s;
  let [head, tail] = s.split('::') as [string, string | undefined];
  let v4: string[] = [];
  const embed = (part: string) => {
    const m = /(\d+\.\d+\.\d+\.\d+)$/.exec(part);
    if (!m) return part;
    const o = (m[1] as string).split('.').map(Number);
    v4 = [((o[0]! << 8) | o[1]!).toString(16), ((o[2]! << 8) | o[3]!).toString(16)];
    return part.slice(0, -(m[1] as string).length).replace(/:$/, '');
  };
  if (tail !== undefined) tail = embed(tail);
  else head = embed(head);
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail !== undefined ? 8 - h.length - t.length - v4.length : 0;
  const groups = [...h, ...Array<string>(Math.max(fill, 0)).fill('0'), ...t, ...v4];
  return groups.map((g) => g.replace(/^0+(?=.)/, '')).join(':');
}

const sameAddr = (a: string, b: string) => canonicalAddress(a) === canonicalAddress(b);
const showAddr = (a: StaticAddress) =>
  a.prefixLength !== null ? `${a.address}/${a.prefixLength}` : a.address;

const VIRTUAL_IFACE =
  /^(docker|br-|veth|virbr|lxcbr|lxdbr|incusbr|cni|flannel|cali|cilium|podman|tun|tap|wg|tailscale|zt|vnet)/;

function networkMismatch(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  const n = inputs.network;
  const f = ctx.facts;
  if (!n || !f) return;
  // Only the uplink matters: the interfaces default routes leave through (docker0, a private
  // network or a VPN have static addresses the configuration need not repeat).
  const uplinks = new Set(
    f.routes.filter((r) => r.dst === 'default' && r.dev).map((r) => r.dev as string),
  );
  const probed = f.interfaces
    .filter((i) => (uplinks.size ? uplinks.has(i.name) : !VIRTUAL_IFACE.test(i.name)))
    .flatMap((i) =>
      i.addresses.filter((a) => a.scope === 'global').map((a) => ({ ...a, iface: i.name })),
    );
  if (probed.length === 0) return;
  const networkdOn = n.useNetworkd || n.networkdEnable;
  const nets = networkdOn ? n.networkd : [];
  const configured: StaticAddress[] = [
    ...n.interfaces.flatMap((i) => [...i.ipv4, ...i.ipv6]),
    ...nets.flatMap((w) => w.addresses),
  ];
  const gateways = (fam: Family) =>
    [
      fam === 'inet' ? n.defaultGateway : n.defaultGateway6,
      ...nets.flatMap((w) => w.gateways).filter((g) => familyOf(g) === fam),
    ].filter((g): g is string => !!g && !g.startsWith('_'));
  const dhcp =
    n.useDHCP ||
    n.interfaces.some((i) => i.useDHCP === true) ||
    nets.some((w) => /^(yes|true|ipv4|ipv6|both)$/i.test(w.dhcp ?? ''));
  const hasV4 = probed.some((a) => a.family === 'inet');
  const why =
    'The installed system brings the network up from its configuration alone. A VPS whose provider assigns its ' +
    'address statically (no DHCP server answers) comes up without that address or route after the install, and ' +
    "SSH never answers again: the classic lock-out, fixable only from the provider's console.";

  for (const fam of ['inet', 'inet6'] as Family[]) {
    const here = probed.filter((a) => a.family === fam);
    if (here.length === 0) continue;
    const v = fam === 'inet' ? 'ipv4' : 'ipv6';
    const gwOpt = fam === 'inet' ? 'networking.defaultGateway' : 'networking.defaultGateway6';
    // Losing IPv6 on a dual-stack host is not a lock-out; only explicit differences count there.
    const lockout = fam === 'inet' || !hasV4;
    const statics = here.filter((a) => !a.dynamic);
    const mine = configured.filter((a) => familyOf(a.address) === fam);
    const probeGw = f.routes
      .filter((r) => r.family === fam && r.dst === 'default' && r.gateway)
      .map((r) => r.gateway as string);
    const first = statics[0] ?? here[0]!;
    const snippet =
      (dhcp ? 'networking.useDHCP = false;\n' : '') +
      `networking.interfaces.${nixAttr(first.iface)}.${v}.addresses = [ { address = ${q(first.address)}; prefixLength = ${first.prefixLength}; } ];\n` +
      (probeGw[0]
        ? `${gwOpt} = { address = ${q(probeGw[0])}; interface = ${q(first.iface)}; };\n`
        : '') +
      `# ${first.iface} is the name the old system gave this NIC; check NixOS names it the same (or use its MAC in systemd.network)`;
    if (mine.length === 0) {
      if (statics.length === 0 || !lockout) continue;
      add(
        'network-mismatch',
        'error',
        `the probe found static ${fam === 'inet' ? 'IPv4' : 'IPv6'} ${statics.map((a) => `${a.address}/${a.prefixLength} on ${a.iface}`).join(', ')} ` +
          '(no DHCP lease), but the configuration ' +
          (dhcp ? 'uses DHCP only' : `sets no ${fam === 'inet' ? 'IPv4' : 'IPv6'} address at all`),
        why,
        snippet,
      );
      continue;
    }
    if (!mine.some((c) => here.some((p) => sameAddr(p.address, c.address)))) {
      add(
        'network-mismatch',
        'error',
        `the configuration's ${fam === 'inet' ? 'IPv4' : 'IPv6'} address ${mine.map(showAddr).join(', ')} differs from the host's ` +
          here.map((a) => `${a.address}/${a.prefixLength}`).join(', '),
        why,
        snippet,
      );
    }
    const gws = gateways(fam);
    if (gws.length && probeGw.length && !gws.some((g) => probeGw.some((p) => sameAddr(g, p)))) {
      add(
        'network-mismatch',
        'error',
        `the configuration's default gateway ${gws.join(', ')} differs from the host's ${probeGw.join(', ')}`,
        why,
        `${gwOpt} = { address = ${q(probeGw[0] as string)}; interface = ${q(first.iface)}; };`,
      );
    } else if (!gws.length && probeGw.length && statics.length && lockout) {
      add(
        'network-mismatch',
        'error',
        `the configuration sets ${fam === 'inet' ? 'IPv4' : 'IPv6'} addresses statically but no default gateway; the host routes through ${probeGw.join(', ')}`,
        why,
        `${gwOpt} = { address = ${q(probeGw[0] as string)}; interface = ${q(first.iface)}; };`,
      );
    }
  }
}

// ---- skipped checks ----------------------------------------------------------------------

const NEEDS_SECTION: Record<SectionName, FindingId[]> = {
  persistence: ['persist-activation-dir'],
  etc: ['persist-activation-dir'],
  ssh: ['sshd-disabled', 'sshd-socket-activated'],
  users: ['deploy-key-missing', 'no-console-login'],
  packages: ['closure-leak'],
  memory: ['no-zram-low-ram', 'swap-on-tmpfs', 'tmp-tmpfs-too-big', 'uefi-no-esp'],
  disko: ['no-disko', 'disko-device-mismatch', 'disko-disk-empty'],
  network: ['network-mismatch'],
};

/** An attribute to evaluate by hand to see the whole error. */
const SECTION_ATTR: Record<SectionName, string> = {
  persistence: 'environment.persistence',
  etc: 'environment.etc',
  ssh: 'services.openssh',
  users: 'users.users',
  packages: 'environment.systemPackages',
  memory: 'swapDevices',
  disko: 'disko.devices',
  network: 'networking.interfaces',
};

const SECTION_OPTIONS: Record<SectionName, string> = {
  persistence: 'environment.persistence',
  etc: 'environment.etc',
  ssh: 'services.openssh',
  users: 'users.users / users.mutableUsers',
  packages: 'hardware.*Firmware / environment.systemPackages',
  memory: 'zramSwap / swapDevices / boot.tmp / fileSystems / boot.loader.efi',
  disko: 'disko.devices.disk',
  network: 'networking / systemd.network',
};

function skipped(inputs: PreflightInputs, ctx: PreflightContext, add: Add): void {
  for (const f of inputs.failed ?? []) {
    add(
      'eval-failed',
      'warning',
      `could not evaluate ${SECTION_OPTIONS[f.section]}: ${f.error}`,
      `Skipped: ${NEEDS_SECTION[f.section].join(', ')}. The build evaluates the same options and will likely fail the same way.`,
      `nix eval --json FLAKE#nixosConfigurations.NAME.config.${SECTION_ATTR[f.section]} --show-trace  # shows the whole error`,
    );
  }
  if (!ctx.facts)
    add(
      'skipped-no-facts',
      'info',
      'no probe facts: skipped sshd-socket-activated, no-zram-low-ram, disko-device-mismatch, network-mismatch, uefi-no-esp, and tmp-tmpfs-too-big for absolute sizes',
      'These compare the configuration with the host (RAM, disks, addresses).',
      'vps-nixos check --facts facts.json (from vps-nixos probe --json), or run it in the action after the probe',
    );
  if (!ctx.deployPublicKeys?.length)
    add(
      'skipped-no-deploy-key',
      'info',
      'no deploy key given: skipped deploy-key-missing',
      'Without the key we cannot tell whether the new system will let vps-nixos back in.',
      'pass --ssh-private-key-file, or load the key into your ssh-agent (or ssh-private-key in the action)',
    );
  if (!ctx.plan)
    add(
      'skipped-no-plan',
      'info',
      'no plan: skipped no-disko and uefi-no-esp (whether the install partitions the disk)',
      'Only a kexec install needs a disko configuration; the plan says which method runs.',
      'give --facts so a plan can be made, or run preflight in the action after the plan',
    );
}

const ORDER: Record<Severity, number> = { error: 0, warning: 1, info: 2 };

/** Every finding for this configuration and context: errors first, then warnings, then notes. */
export function findings(inputs: PreflightInputs, ctx: PreflightContext = {}): Finding[] {
  const out: Finding[] = [];
  const add: Add = (id, severity, message, why, fix) =>
    out.push({ id, severity, message, why, fix });
  persistActivationDir(inputs, add);
  sshdDisabled(inputs, add);
  deployKeyMissing(inputs, ctx, add);
  noDisko(inputs, ctx, add);
  diskoDeviceMismatch(inputs, ctx, add);
  diskoDiskEmpty(inputs, ctx, add);
  uefiNoEsp(inputs, ctx, add);
  networkMismatch(inputs, ctx, add);
  noConsoleLogin(inputs, add);
  sshdSocketActivated(inputs, ctx, add);
  closureLeak(inputs, ctx, add);
  noZramLowRam(inputs, ctx, add);
  swapOnTmpfs(inputs, ctx, add);
  tmpTmpfsTooBig(inputs, ctx, add);
  skipped(inputs, ctx, add);
  return out
    .map((f, i) => ({ f, i }))
    .sort((a, b) => ORDER[a.f.severity] - ORDER[b.f.severity] || a.i - b.i)
    .map((x) => x.f);
}
