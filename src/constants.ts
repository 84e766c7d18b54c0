/** Names shared by the action's main and post steps and its outputs. */
export const State = {
  keyDir: 'vps-nixos-key-dir',
} as const;

export const Output = {
  method: 'method',
  hostKey: 'host-key',
  hostConfig: 'host-config',
  phases: 'phases',
  currentSystem: 'current-system',
  systemPath: 'system-path',
  previousSystemPath: 'previous-system-path',
  changed: 'changed',
  rolledBack: 'rolled-back',
  rebootNeeded: 'reboot-needed',
  diff: 'diff',
} as const;

/** The CLI's environment variable for the private key (a key on the command line is refused). */
export const KEY_ENV = 'VPS_NIXOS_SSH_PRIVATE_KEY';
