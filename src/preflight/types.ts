/**
 * What preflight reads from `nixosConfigurations.<name>.config` (PreflightInputs) and what it
 * says about it (Finding). Every section is optional: a section Nix could not evaluate is left
 * out and the checks that need it are skipped, with a finding saying so.
 */

export type Severity = 'error' | 'warning' | 'info';

/** Ids of the checks (errors and warnings); info findings use the `skipped-*` / `eval-*` ids. */
export type FindingId =
  | 'persist-activation-dir'
  | 'sshd-disabled'
  | 'deploy-key-missing'
  | 'no-disko'
  | 'disko-device-mismatch'
  | 'disko-disk-empty'
  | 'uefi-no-esp'
  | 'network-mismatch'
  | 'no-console-login'
  | 'sshd-socket-activated'
  | 'closure-leak'
  | 'no-zram-low-ram'
  | 'swap-on-tmpfs'
  | 'tmp-tmpfs-too-big'
  | 'skipped-no-facts'
  | 'skipped-no-deploy-key'
  | 'skipped-no-plan'
  | 'eval-failed';

export interface Finding {
  id: FindingId;
  severity: Severity;
  /** What is wrong in this configuration, naming the option and its value. */
  message: string;
  /** Why it matters: what goes wrong on the VPS (with the seed bug it comes from). */
  why: string;
  /** The concrete change, as a Nix snippet where there is one. */
  fix: string;
}

/** `environment.persistence.<root>` (impermanence). */
export interface PersistenceRoot {
  root: string;
  enable: boolean;
  directories: string[];
  files: string[];
}

/** `services.openssh`. */
export interface SshInputs {
  enable: boolean;
  startWhenNeeded: boolean;
  /** `settings.PermitRootLogin` (or the old `permitRootLogin`). */
  permitRootLogin: string;
  /** `hostKeys[].path`. */
  hostKeyPaths: string[];
}

/** How a password option is set; the value itself never leaves Nix. */
export type PasswordState = 'unset' | 'set' | 'empty' | 'locked';

export interface UserInputs {
  name: string;
  isNormalUser: boolean;
  groups: string[];
  password: PasswordState;
  initialPassword: PasswordState;
  hashedPassword: PasswordState;
  initialHashedPassword: PasswordState;
  /** `hashedPasswordFile` (or the old `passwordFile`), as a path string. */
  hashedPasswordFile: string | null;
  /** `openssh.authorizedKeys.keys` plus the lines of `keyFiles` Nix could read. */
  authorizedKeys: string[];
}

export interface UsersInputs {
  mutableUsers: boolean;
  wheelNeedsPassword: boolean;
  autologinUser: string | null;
  users: UserInputs[];
}

export interface PackagesInputs {
  enableRedistributableFirmware: boolean;
  enableAllFirmware: boolean;
  /** Names of `hardware.firmware` packages. */
  firmware: string[];
  /** Package names (pname, else the name without version) of `environment.systemPackages`. */
  systemPackages: string[];
}

export interface SwapDeviceInputs {
  device: string;
  /** MiB, when the swapfile is created by NixOS. */
  sizeMiB: number | null;
}

export interface FileSystemInputs {
  mountPoint: string;
  fsType: string | null;
  device: string | null;
}

export interface MemoryInputs {
  zramSwap: boolean;
  swapDevices: SwapDeviceInputs[];
  tmpUseTmpfs: boolean;
  /** `boot.tmp.tmpfsSize`: `"50%"`, `"2G"`, or bytes. */
  tmpTmpfsSize: string | number;
  fileSystems: FileSystemInputs[];
  /** `boot.loader.efi.efiSysMountPoint` (where the ESP must be mounted); `/boot` when unset. */
  efiSysMountPoint?: string;
}

export interface DiskoInputs {
  /** `disko.devices.disk.<name>.device`. */
  disks: { name: string; device: string | null; hasContent?: boolean }[];
  /** `system.build.diskoScript*` exists (the disko module is imported). */
  hasScript: boolean;
}

export interface StaticAddress {
  address: string;
  prefixLength: number | null;
}

export interface NetworkInterfaceInputs {
  name: string;
  useDHCP: boolean | null;
  ipv4: StaticAddress[];
  ipv6: StaticAddress[];
}

/** `systemd.network.networks.<name>`. */
export interface NetworkdNetworkInputs {
  name: string;
  matchName: string[];
  /** `DHCP` / `networkConfig.DHCP`: `yes`, `ipv4`, `ipv6`, `no`, or null. */
  dhcp: string | null;
  addresses: StaticAddress[];
  gateways: string[];
}

export interface NetworkInputs {
  useDHCP: boolean;
  useNetworkd: boolean;
  interfaces: NetworkInterfaceInputs[];
  defaultGateway: string | null;
  defaultGateway6: string | null;
  networkdEnable: boolean;
  networkd: NetworkdNetworkInputs[];
}

export type SectionName =
  'persistence' | 'etc' | 'ssh' | 'users' | 'packages' | 'memory' | 'disko' | 'network';

/** The few attributes of the configuration preflight needs, with NixOS defaults filled in. */
export interface PreflightInputs {
  persistence?: PersistenceRoot[];
  /** `environment.etc` targets that are enabled, relative to /etc. */
  etc?: string[];
  ssh?: SshInputs;
  users?: UsersInputs;
  packages?: PackagesInputs;
  memory?: MemoryInputs;
  disko?: DiskoInputs;
  network?: NetworkInputs;
  /** Sections Nix could not evaluate, with Nix's error. */
  failed?: { section: SectionName; error: string }[];
}
