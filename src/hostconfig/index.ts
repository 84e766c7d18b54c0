/** facts-to-nix: the probe's facts as a NixOS module the user commits. */
export {
  DISK_NAME_RE,
  factsToNix,
  initrdModules,
  INITRD_MODULES,
  type FactsToNixOptions,
} from './facts-to-nix';
export { hostNetwork, type HostNetwork, type NetworkUnit, type UnitRoute } from './network';
export { HostConfigError } from './errors';
