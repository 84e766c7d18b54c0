/**
 * Reads the few attributes preflight needs from `nixosConfigurations.<name>.config` with one
 * `nix eval --json --apply`: a small attribute set, never the whole configuration or a build.
 * Attributes a configuration does not define take their NixOS defaults (`or`), so a plain
 * attribute set (our test flakes) and a real NixOS configuration read the same way.
 */
import { z } from 'zod';
import { VpsNixosError } from '../errors';
import { nixErrorText, type Nix } from '../nix/nix';
import type {
  DiskoInputs,
  MemoryInputs,
  NetworkInputs,
  PackagesInputs,
  PersistenceRoot,
  PreflightInputs,
  SectionName,
  SshInputs,
  StaticAddress,
  UsersInputs,
} from './types';

/** The flake or the configuration cannot be evaluated at all; nothing was checked. */
export class PreflightError extends VpsNixosError {}

export interface FlakeConfigRef {
  ref: string;
  name: string;
}

export interface EvaluateOptions {
  timeoutMs?: number;
  log?: (line: string) => void;
  /** Stops the evaluation (started ahead of the plan, which may not need it). */
  signal?: AbortSignal;
}

export interface Evaluation {
  inputs: PreflightInputs;
  /** `nix eval` processes run: 1, or 1 + one per section when the combined one failed. */
  nixCalls: number;
}

// Helpers shared by every section. `tryEval` only catches `throw` and `assert` (an option used
// but not defined, a removed option): missing attributes are handled with `or`, wrong types
// with the is* checks, so a section fails only on errors that would break the build too.
const HELPERS = `
  isStr = builtins.isString;
  str = v: if builtins.isString v then v else if builtins.isPath v then toString v else null;
  try = d: v: let r = builtins.tryEval v; in if r.success then r.value else d;
  tryDeep = d: v: let r = builtins.tryEval (builtins.deepSeq v v); in if r.success then r.value else d;
  bool = d: v: if builtins.isBool v then v else d;
  list = v: if builtins.isList v then v else [ ];
  asList = v: if builtins.isList v then v else if v == null then [ ] else [ v ];
  attrs = v: if builtins.isAttrs v then v else { };
  strs = l: builtins.filter isStr (map str (list l));
  notNull = builtins.filter (x: x != null);
  pw = v: if v == null then "unset" else if !(isStr v) then "set" else if v == "" then "empty" else "set";
  hpw = v: if v == null then "unset" else if !(isStr v) then "set" else if v == "" then "empty"
    else if builtins.elem v [ "!" "!!" "*" ] || builtins.substring 0 1 v == "!" then "locked" else "set";
  pkgName = p: if builtins.isAttrs p
    then (let n = p.pname or null; in if isStr n then n else (builtins.parseDrvName (p.name or "?")).name)
    else if isStr p then (builtins.parseDrvName (baseNameOf p)).name else "?";
  pkgNames = l: map (p: try "?" (pkgName p)) (list l);
  keyLines = f: if builtins.isPath f && builtins.pathExists f
    then builtins.filter (l: isStr l && l != "") (builtins.split "\\n" (builtins.readFile f)) else [ ];
`;

/** One Nix expression per section, each a value computed from `c` (the config). */
const SECTIONS: Record<SectionName, string> = {
  persistence: `
    let p = attrs (c.environment.persistence or { });
        entry = key: d: if isStr d then d else if builtins.isAttrs d then str (d.\${key} or null) else null;
    in map (root: let r = attrs p.\${root}; in tryDeep null {
      inherit root;
      enable = bool true (r.enable or true);
      directories = builtins.filter isStr (map (d: try null (entry "directory" d)) (list (r.directories or [ ])));
      files = builtins.filter isStr (map (f: try null (entry "file" f)) (list (r.files or [ ])));
    }) (builtins.attrNames p)`,
  etc: `
    let e = attrs (c.environment.etc or { });
        one = n: let v = e.\${n}; in
          if builtins.isAttrs v then (if bool true (v.enable or true) then str (v.target or n) else null) else n;
    in builtins.filter isStr (map (n: try null (one n)) (builtins.attrNames e))`,
  ssh: `
    let s = attrs (c.services.openssh or { });
        prl = (attrs (s.settings or { })).PermitRootLogin or null;
    in {
      enable = bool false (s.enable or false);
      startWhenNeeded = bool false (s.startWhenNeeded or false);
      permitRootLogin = let v = if prl != null then prl else try null (s.permitRootLogin or "prohibit-password");
        in if isStr v then v else "prohibit-password";
      hostKeyPaths = if s ? hostKeys
        then notNull (map (k: try null (str (k.path or null))) (list s.hostKeys))
        else [ "/etc/ssh/ssh_host_rsa_key" "/etc/ssh/ssh_host_ed25519_key" ];
    }`,
  users: `
    let u = attrs (c.users.users or { });
        user = n: let x = attrs u.\${n}; k = attrs ((attrs (x.openssh or { })).authorizedKeys or { }); in
          if !(bool true (x.enable or true)) then null else {
            name = let v = x.name or n; in if isStr v then v else n;
            isNormalUser = bool false (x.isNormalUser or false);
            groups = strs (x.extraGroups or [ ]) ++ (let g = x.group or null; in if isStr g && g != "" then [ g ] else [ ]);
            password = pw (x.password or null);
            initialPassword = pw (x.initialPassword or null);
            hashedPassword = hpw (x.hashedPassword or null);
            initialHashedPassword = hpw (x.initialHashedPassword or null);
            hashedPasswordFile = str (let f = x.hashedPasswordFile or null; in if f != null then f else try null (x.passwordFile or null));
            authorizedKeys = strs (k.keys or [ ]) ++ builtins.concatMap keyLines (list (k.keyFiles or [ ]));
          };
    in {
      mutableUsers = bool true (c.users.mutableUsers or true);
      wheelNeedsPassword = bool true (c.security.sudo.wheelNeedsPassword or true);
      autologinUser = try null (str (c.services.getty.autologinUser or null));
      users = notNull (map (n: tryDeep null (user n)) (builtins.attrNames u));
    }`,
  packages: `
    let fw = try [ ] (c.hardware.firmware or [ ]); in {
      enableRedistributableFirmware = bool false (try false (c.hardware.enableRedistributableFirmware or false));
      enableAllFirmware = bool false (try false (c.hardware.enableAllFirmware or false));
      # NixOS turns the list into one buildEnv; its 'paths' are the packages.
      firmware = pkgNames (if builtins.isList fw then fw else try [ ] ((attrs fw).paths or [ ]));
      systemPackages = pkgNames (try [ ] (c.environment.systemPackages or [ ]));
    }`,
  memory: `
    let tmp = attrs (c.boot.tmp or { });
        fs = attrs (try { } (c.fileSystems or { }));
        size = v: if isStr v || builtins.isInt v then v else "50%";
    in {
      zramSwap = bool false (try false (c.zramSwap.enable or false));
      swapDevices = notNull (map (s: tryDeep null (let x = attrs s; in {
        device = let d = str (x.device or null); l = str (x.label or null); in
          if d != null then d else if l != null then "/dev/disk/by-label/\${l}" else "";
        sizeMiB = let v = x.size or null; in if builtins.isInt v then v else null;
      })) (list (try [ ] (c.swapDevices or [ ]))));
      tmpUseTmpfs = bool false (if tmp ? useTmpfs then tmp.useTmpfs else c.boot.tmpOnTmpfs or false);
      tmpTmpfsSize = size (if tmp ? tmpfsSize then tmp.tmpfsSize else c.boot.tmpOnTmpfsSize or "50%");
      fileSystems = notNull (map (n: tryDeep null (let x = attrs fs.\${n}; in {
        mountPoint = let m = str (x.mountPoint or null); in if m != null then m else n;
        fsType = str (x.fsType or null);
        device = str (x.device or null);
      })) (builtins.attrNames fs));
      efiSysMountPoint = let m = try null (str (c.boot.loader.efi.efiSysMountPoint or null)); in
        if m != null then m else "/boot";
    }`,
  disko: `
    let d = attrs (c.disko.devices.disk or { }); b = attrs (c.system.build or { }); in {
      disks = map (n: let x = attrs d.\${n}; in {
        name = n;
        device = try null (str (x.device or null));
        # A disk entry with a device and nothing to lay out: the generated host module names
        # the disk 'main', the layout another name.
        hasContent = try true (x ? content && x.content != null);
      }) (builtins.attrNames d);
      hasScript = b ? destroyFormatMountNoDeps || b ? destroyFormatMount || b ? diskoScript || b ? diskoScriptNoDeps;
    }`,
  network: `
    let n = attrs (c.networking or { });
        addrs = l: notNull (map (a: tryDeep null (let x = attrs a; in {
          address = str (x.address or null);
          prefixLength = let p = x.prefixLength or null; in if builtins.isInt p then p else null;
        })) (list l));
        gw = g: if isStr g then g else if builtins.isAttrs g then str (g.address or null) else null;
        ifs = attrs (n.interfaces or { });
        nets = attrs (try { } (c.systemd.network.networks or { }));
        net = name: let x = attrs nets.\${name}; nc = attrs (x.networkConfig or { }); mc = attrs (x.matchConfig or { });
          firstSet = a: b: if a != null then a else b;
        in if !(bool true (x.enable or true)) then null else {
          inherit name;
          matchName = let v = firstSet (mc.Name or null) (x.name or null); in
            if isStr v then builtins.filter (s: isStr s && s != "") (builtins.split " " v) else strs v;
          dhcp = let v = firstSet (x.DHCP or null) (nc.DHCP or null); in
            if isStr v then v else if builtins.isBool v then (if v then "yes" else "no") else null;
          addresses = builtins.filter isStr (map str (asList (x.address or [ ])) ++ asList (nc.Address or [ ])
            ++ map (a: try null (str (a.Address or a.addressConfig.Address or null))) (list (x.addresses or [ ])));
          gateways = builtins.filter isStr (map str (asList (x.gateway or [ ])) ++ asList (nc.Gateway or [ ])
            ++ map (r: try null (str (r.Gateway or r.routeConfig.Gateway or null))) (list (x.routes or [ ])));
        };
    in {
      useDHCP = bool true (n.useDHCP or true);
      useNetworkd = bool false (n.useNetworkd or false);
      interfaces = map (name: let i = attrs ifs.\${name}; in {
        inherit name;
        useDHCP = let v = try null (i.useDHCP or null); in if builtins.isBool v then v else null;
        ipv4 = addrs (try [ ] ((attrs (i.ipv4 or { })).addresses or [ ]));
        ipv6 = addrs (try [ ] ((attrs (i.ipv6 or { })).addresses or [ ]));
      }) (builtins.attrNames ifs);
      defaultGateway = try null (gw (n.defaultGateway or null));
      defaultGateway6 = try null (gw (n.defaultGateway6 or null));
      networkdEnable = bool false (try false (c.systemd.network.enable or false));
      networkd = notNull (map (name: tryDeep null (net name)) (builtins.attrNames nets));
    }`,
};

export const SECTION_NAMES = Object.keys(SECTIONS) as SectionName[];

/** The `--apply` function reading the given sections. */
export function applyExpression(sections: readonly SectionName[] = SECTION_NAMES): string {
  const body = sections.map((s) => `  ${s} = ${SECTIONS[s].trim()};`).join('\n');
  return `c: let ${HELPERS} in {\n${body}\n}`;
}

/** `REF#nixosConfigurations.NAME.config`, quoting a name that is not a plain identifier. */
export function configInstallable(flake: FlakeConfigRef): string {
  const name = /^[A-Za-z_][A-Za-z0-9_'-]*$/.test(flake.name)
    ? flake.name
    : JSON.stringify(flake.name);
  return `${flake.ref}#nixosConfigurations.${name}.config`;
}

// The shapes the expression above produces; a value of another shape means a section
// evaluated to something we did not expect, and that section is reported as failed.
const nullableStr = z.string().nullable();
const password = z.enum(['unset', 'set', 'empty', 'locked']);
const staticAddress = z.object({ address: z.string(), prefixLength: z.number().int().nullable() });

/** `"192.0.2.10/24"` → address and prefix; without a `/`, no prefix. */
export function parseCidr(text: string): StaticAddress {
  const m = /^([^/]+)\/(\d+)$/.exec(text.trim());
  return m
    ? { address: m[1] as string, prefixLength: Number(m[2]) }
    : { address: text.trim(), prefixLength: null };
}

const SCHEMAS = {
  persistence: z.array(
    z
      .object({
        root: z.string(),
        enable: z.boolean(),
        directories: z.array(z.string()),
        files: z.array(z.string()),
      })
      .nullable(),
  ),
  etc: z.array(z.string()),
  ssh: z.object({
    enable: z.boolean(),
    startWhenNeeded: z.boolean(),
    permitRootLogin: z.string(),
    hostKeyPaths: z.array(z.string()),
  }),
  users: z.object({
    mutableUsers: z.boolean(),
    wheelNeedsPassword: z.boolean(),
    autologinUser: nullableStr,
    users: z.array(
      z.object({
        name: z.string(),
        isNormalUser: z.boolean(),
        groups: z.array(z.string()),
        password,
        initialPassword: password,
        hashedPassword: password,
        initialHashedPassword: password,
        hashedPasswordFile: nullableStr,
        authorizedKeys: z.array(z.string()),
      }),
    ),
  }),
  packages: z.object({
    enableRedistributableFirmware: z.boolean(),
    enableAllFirmware: z.boolean(),
    firmware: z.array(z.string()),
    systemPackages: z.array(z.string()),
  }),
  memory: z.object({
    zramSwap: z.boolean(),
    swapDevices: z.array(z.object({ device: z.string(), sizeMiB: z.number().nullable() })),
    tmpUseTmpfs: z.boolean(),
    tmpTmpfsSize: z.union([z.string(), z.number()]),
    fileSystems: z.array(
      z.object({ mountPoint: z.string(), fsType: nullableStr, device: nullableStr }),
    ),
    efiSysMountPoint: z.string().optional(),
  }),
  disko: z.object({
    disks: z.array(
      z.object({ name: z.string(), device: nullableStr, hasContent: z.boolean().optional() }),
    ),
    hasScript: z.boolean(),
  }),
  network: z.object({
    useDHCP: z.boolean(),
    useNetworkd: z.boolean(),
    interfaces: z.array(
      z.object({
        name: z.string(),
        useDHCP: z.boolean().nullable(),
        ipv4: z.array(staticAddress.extend({ address: nullableStr })),
        ipv6: z.array(staticAddress.extend({ address: nullableStr })),
      }),
    ),
    defaultGateway: nullableStr,
    defaultGateway6: nullableStr,
    networkdEnable: z.boolean(),
    networkd: z.array(
      z.object({
        name: z.string(),
        matchName: z.array(z.string()),
        dhcp: nullableStr,
        addresses: z.array(z.string()),
        gateways: z.array(z.string()),
      }),
    ),
  }),
};

const withAddress = (l: { address: string | null; prefixLength: number | null }[]) =>
  l.filter((a): a is StaticAddress => a.address !== null && a.address !== '');

/** Puts one section's JSON value into `inputs`; returns an error text when it has another shape. */
function assign(inputs: PreflightInputs, section: SectionName, value: unknown): string | undefined {
  const schema = SCHEMAS[section];
  const parsed = schema.safeParse(value);
  if (!parsed.success) return `unexpected value: ${parsed.error.issues[0]?.message ?? 'invalid'}`;
  switch (section) {
    case 'persistence':
      inputs.persistence = (parsed.data as z.infer<typeof SCHEMAS.persistence>).filter(
        (r): r is PersistenceRoot => r !== null,
      );
      break;
    case 'etc':
      inputs.etc = parsed.data as string[];
      break;
    case 'ssh':
      inputs.ssh = parsed.data as SshInputs;
      break;
    case 'users':
      inputs.users = parsed.data as UsersInputs;
      break;
    case 'packages':
      inputs.packages = parsed.data as PackagesInputs;
      break;
    case 'memory':
      inputs.memory = parsed.data as MemoryInputs;
      break;
    case 'disko':
      inputs.disko = parsed.data as DiskoInputs;
      break;
    case 'network': {
      const n = parsed.data as z.infer<typeof SCHEMAS.network>;
      const network: NetworkInputs = {
        ...n,
        interfaces: n.interfaces.map((i) => ({
          ...i,
          ipv4: withAddress(i.ipv4),
          ipv6: withAddress(i.ipv6),
        })),
        networkd: n.networkd.map((w) => ({ ...w, addresses: w.addresses.map(parseCidr) })),
      };
      inputs.network = network;
      break;
    }
  }
  return undefined;
}

function flakeLevelError(flake: FlakeConfigRef, stderr: string): PreflightError | undefined {
  const text = nixErrorText(stderr);
  // Only the error itself: warnings before it say "does not exist" about other things.
  const at = stderr.indexOf('error:');
  stderr = at >= 0 ? stderr.slice(at) : stderr;
  if (/does not provide attribute|attribute 'nixosConfigurations' missing/.test(stderr)) {
    return new PreflightError(
      `flake '${flake.ref}' has no nixosConfigurations.${flake.name} (${text})`,
      `check the name after '#': nix flake show ${flake.ref} lists the configurations`,
    );
  }
  if (
    /(does not exist|No such file|cannot find flake|is not a flake|could not find a flake)/i.test(
      stderr,
    )
  ) {
    return new PreflightError(
      `flake '${flake.ref}' not found (${text})`,
      'check the flake input: a path to a directory with flake.nix, or a flake URL',
    );
  }
  if (/syntax error/.test(stderr)) {
    return new PreflightError(
      `flake '${flake.ref}' does not parse (${text})`,
      `fix the Nix syntax error; nix flake check ${flake.ref} shows it`,
    );
  }
  return undefined;
}

async function evalSections(
  nix: Nix,
  flake: FlakeConfigRef,
  sections: readonly SectionName[],
  opts: EvaluateOptions,
): Promise<{ ok: true; value: Record<string, unknown> } | { ok: false; stderr: string }> {
  const r = await nix.run(
    // No eval cache: an --apply result is not cached anyway, and this evaluation may run beside
    // the build's, which holds that cache's write transaction (older Nix blocks on it).
    [
      'eval',
      '--json',
      configInstallable(flake),
      '--apply',
      applyExpression(sections),
      '--option',
      'eval-cache',
      'false',
    ],
    { timeoutMs: opts.timeoutMs ?? 300_000, signal: opts.signal },
  );
  if (r.code !== 0) return { ok: false, stderr: r.stderr };
  try {
    return { ok: true, value: JSON.parse(r.stdout) as Record<string, unknown> };
  } catch {
    return { ok: false, stderr: `error: nix eval printed something that is not JSON` };
  }
}

/**
 * Evaluates the attributes preflight needs. One `nix eval`; if it fails, each section is
 * evaluated alone so one broken attribute skips only the checks that need it.
 * Throws PreflightError when the flake or the configuration itself cannot be evaluated.
 */
export async function evaluatePreflightInputs(
  nix: Nix,
  flake: FlakeConfigRef,
  opts: EvaluateOptions = {},
): Promise<Evaluation> {
  const inputs: PreflightInputs = {};
  const failed: NonNullable<PreflightInputs['failed']> = [];
  const all = await evalSections(nix, flake, SECTION_NAMES, opts);
  let nixCalls = 1;
  if (all.ok) {
    for (const s of SECTION_NAMES) {
      const err = assign(inputs, s, all.value[s]);
      if (err) failed.push({ section: s, error: err });
    }
  } else {
    // Stopped from outside (the run no longer needs it): no evaluation of each part either.
    if (opts.signal?.aborted) throw new Error('the preflight evaluation was stopped');
    const fatal = flakeLevelError(flake, all.stderr);
    if (fatal) throw fatal;
    opts.log?.(
      `preflight: the combined evaluation failed (${nixErrorText(all.stderr)}); evaluating each part alone`,
    );
    for (const s of SECTION_NAMES) {
      const one = await evalSections(nix, flake, [s], opts);
      nixCalls++;
      const err = one.ok ? assign(inputs, s, one.value[s]) : nixErrorText(one.stderr);
      if (err) failed.push({ section: s, error: err });
    }
    if (failed.length === SECTION_NAMES.length) {
      throw new PreflightError(
        `evaluating ${configInstallable(flake)} failed: ${failed[0]?.error ?? ''}`,
        `run nix eval ${configInstallable(flake)}.system.build.toplevel.drvPath locally to see the whole error`,
      );
    }
  }
  if (failed.length) inputs.failed = failed;
  return { inputs, nixCalls };
}
