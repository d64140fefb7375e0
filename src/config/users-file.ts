import { chown, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConfigError } from '../shared/errors.js';
import { parseCredential, type Credential } from '../shared/password-hash.js';
import { removeIfPresent } from '../shared/files.js';

/**
 * users.txt: one `user:secret` per line, where the secret is a plain password (the seed relay's format) or
 * `$scrypt$…` (written by `mta-server passwd`). `#` comments and blank lines are ignored. The user name is
 * everything before the first colon, so passwords may contain colons.
 */
export async function loadUsersFile(filePath: string): Promise<Map<string, Credential>> {
  let text: string;
  try {
    text = await readFile(filePath, 'utf8');
  } catch (error) {
    throw new ConfigError(`users file ${filePath}: ${describeFsError(error)}`, { cause: error });
  }
  return parseUsers(text, filePath);
}

export function parseUsers(text: string, source: string): Map<string, Credential> {
  const users = new Map<string, Credential>();
  text.split(/\r?\n/).forEach((line, index) => {
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    const colon = line.indexOf(':');
    const credential = colon > 0 ? parseCredential(line.slice(colon + 1)) : undefined;
    if (!credential) throw new ConfigError(`users file ${source} line ${index + 1}: expected user:password or user:$scrypt$…`);
    users.set(line.slice(0, colon), credential);
  });
  return users;
}

/** Replaces USER's line (or appends one), leaving every other line and comment as it was; atomic and 0600. */
export async function setUserSecret(filePath: string, user: string, secret: string): Promise<'added' | 'replaced'> {
  if (!/^[^\s:#][^\s:]*$/.test(user)) throw new ConfigError(`user name "${user}" must not be empty or contain spaces or colons`);
  let text = '';
  try {
    text = await readFile(filePath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError(`users file ${filePath}: ${describeFsError(error)}`, { cause: error });
  }
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  const index = lines.findIndex((line) => line.startsWith(`${user}:`));
  const entry = `${user}:${secret}`;
  if (index >= 0) lines[index] = entry;
  else lines.push(entry);
  const previous = await stat(filePath).catch(() => undefined);
  const tmpPath = path.join(path.dirname(filePath), `.${path.basename(filePath)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    // Always 0600, whatever the old file's mode: a copy of the example made it 0644, and the file holds passwords.
    await writeFile(tmpPath, lines.join('\n') + '\n', { mode: 0o600, flag: 'wx' });
    // Run as root for a service user's file, the rewrite must stay readable by that user: keep the owner. Anyone
    // else may only give a file to themselves, which it already is (EPERM then changes nothing).
    if (previous) await chown(tmpPath, previous.uid, previous.gid).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPERM') throw error;
    });
    await rename(tmpPath, filePath);
  } catch (error) {
    await removeIfPresent(tmpPath).catch(() => undefined);
    throw new ConfigError(`users file ${filePath}: ${describeFsError(error)}`, { cause: error });
  }
  return index >= 0 ? 'replaced' : 'added';
}

export function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const reasons: Record<string, string> = { ENOENT: 'no such file', EACCES: 'permission denied', EISDIR: 'is a directory', EPERM: 'not permitted' };
  return (code && reasons[code]) ?? (error as Error).message;
}
