import { OpenSSHAgent, utils, type ParsedKey } from 'ssh2';

/** The authorized_keys form (`type base64`) of a private key's public half. */
export function publicKeyOf(privateKey: string): string | undefined {
  const parsed = utils.parseKey(privateKey);
  const key = parsed instanceof Error ? undefined : Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key) return undefined;
  return `${key.type} ${key.getPublicSSH().toString('base64')}`;
}

/**
 * The public keys (`type base64`) the ssh-agent at `socket` holds; rejects when it does not
 * answer within `timeoutMs`. Asked before connecting, so an empty or dead agent is said first.
 */
export function agentKeys(socket: string, timeoutMs = 5000): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no answer in ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    new OpenSSHAgent(socket).getIdentities((err, keys) => {
      clearTimeout(timer);
      if (err) return reject(err);
      // ssh2 parses each identity; its types also allow the entries a custom agent may give.
      const parsed = (keys ?? []).filter((k): k is ParsedKey => 'getPublicSSH' in k);
      resolve(parsed.map((k) => `${k.type} ${k.getPublicSSH().toString('base64')}`));
    });
  });
}
