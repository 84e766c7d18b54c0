import { utils } from 'ssh2';

/** The authorized_keys form (`type base64`) of a private key's public half. */
export function publicKeyOf(privateKey: string): string | undefined {
  const parsed = utils.parseKey(privateKey);
  const key = parsed instanceof Error ? undefined : Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key) return undefined;
  return `${key.type} ${key.getPublicSSH().toString('base64')}`;
}
