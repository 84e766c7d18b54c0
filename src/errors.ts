/**
 * Errors a user sees. Each carries the remediation text, so every layer can
 * print `message` + `fix` without knowing where the error came from.
 */
export class VpsNixosError extends Error {
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** One block of text for logs and the CLI: what happened, then how to fix it. */
  describe(): string {
    return this.fix ? `${this.message}\n  fix: ${this.fix}` : this.message;
  }
}

/** An input (action input or CLI option) is missing or malformed. Raised before any connection. */
export class InputError extends VpsNixosError {
  constructor(
    readonly input: string,
    problem: string,
    fix: string,
  ) {
    super(`input '${input}': ${problem}`, fix);
  }
}

/** The host answered with a key that matches none of the pins. Nothing was run on it. */
export class HostKeyMismatch extends VpsNixosError {
  constructor(
    readonly host: string,
    readonly presented: string,
    readonly expected: readonly string[],
  ) {
    super(
      `host key mismatch for ${host}: it presented ${presented}, expected ${expected.join(' or ')}; nothing was run on it`,
      'if the host was reinstalled on purpose, update known-hosts / host-key-fingerprint ' +
        `(ssh-keyscan ${host}); otherwise you may be talking to the wrong machine`,
    );
  }
}

/** The SSH connection could not be made or was refused. */
export class SshConnectError extends VpsNixosError {}

/** The remote facts script failed or printed something we cannot read. */
export class ProbeError extends VpsNixosError {}

/** Returns a readable message for any thrown value. */
export function describeError(err: unknown): string {
  if (err instanceof VpsNixosError) return err.describe();
  if (err instanceof Error) return err.message;
  return String(err);
}
