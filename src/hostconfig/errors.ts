/** Errors of the host configuration generator. */
import { VpsNixosError } from '../errors';

/**
 * A fact from the remote host is not something we will write into a Nix file (an interface name
 * with quotes, an address that is not an address, …). Nothing is generated.
 */
export class HostConfigError extends VpsNixosError {
  constructor(
    /** Which fact, e.g. `interfaces[0].name` or `routes[3].gateway`. */
    readonly field: string,
    /** The offending value as the facts carry it. */
    readonly value: unknown,
    problem: string,
  ) {
    super(
      `facts-to-nix: ${field} = ${printable(value)} ${problem}; nothing was generated`,
      'the probe reports what the host says: check the host (`ip -j addr`, `ip -j route`, ' +
        '/etc/resolv.conf, lsblk) and fix the facts file, or run `vps-nixos probe --json` again',
    );
  }
}

/** The value as a JSON literal, cut short, so a hostile value cannot break the message either. */
function printable(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}
