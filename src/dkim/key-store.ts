import { createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { constants, type Dirent } from 'node:fs';
import { chmod, link, mkdir, open, readdir, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { RelayError } from '../shared/errors.js';
import { removeIfPresent, syncDirectory } from '../shared/files.js';
import { isDkimDomain, isDkimSelector } from './dkim-names.js';

/**
 * The DKIM key directory (docs/dkim.md), shared by `mta-queue dkim …` (writes) and the signer in a running
 * mta-queue (reads, again after every change):
 *
 *     DIR/                          0700
 *     DIR/<domain>/                 0700   domain lower-case, as in DNS
 *     DIR/<domain>/<selector>.pem   0600   PKCS#8 PEM private key, rsa or ed25519
 *     DIR/<domain>/<selector>.json  0600   DkimKeyRecord
 *
 * Every write is atomic and durable (chasquid safeio, Postfix): a temp file beside the target whose name starts
 * with `.` (no selector does, so readers skip it), fsync, rename (or link, for a new key, so that an existing one
 * is never replaced), fsync of the directory. A reader sees the old file or the new one, never half of either.
 */

export { dkimTxtRecord } from './dkim-record.js';

export type DkimKeyType = 'rsa' | 'ed25519';
export type DkimKeyState = 'pending' | 'active' | 'retiring' | 'retired';

export interface DkimKeyRecord {
  domain: string;
  selector: string;
  type: DkimKeyType;
  /** RSA modulus length; null for ed25519. */
  bits: number | null;
  state: DkimKeyState;
  /** Epoch ms. */
  created: number;
  activated: number | null;
  retired: number | null;
}

export interface DkimKey extends DkimKeyRecord {
  /** Parsed once when the directory is loaded: signing never parses a PEM per message. */
  privateKey: KeyObject;
}

/** A key file loadDkimKeys left out, and why (for a log line or a CLI warning). */
export interface SkippedDkimKey {
  file: string;
  reason: string;
}

export const DEFAULT_DKIM_DIR = '/etc/mta-relay/dkim';
export const DKIM_KEY_STATES: readonly DkimKeyState[] = ['pending', 'active', 'retiring', 'retired'];
export const DKIM_KEY_TYPES: readonly DkimKeyType[] = ['rsa', 'ed25519'];

/** A refused key operation (an existing selector, an unknown key): exit status 1 in the CLI. */
export class DkimKeyError extends RelayError {
  constructor(
    readonly code: 'EDKIMEXISTS' | 'EDKIMUNKNOWN' | 'EDKIMSTATE' | 'EDKIMDNS',
    message: string,
  ) {
    super(message);
  }
}

export interface DkimKeyPaths {
  domainDir: string;
  pem: string;
  json: string;
}

/** Where a key lives; throws on a name that is not DNS syntax, so no caller can build a path outside `dir`. */
export function dkimKeyPaths(dir: string, domain: string, selector: string): DkimKeyPaths {
  if (!isDkimDomain(domain) || !isDkimSelector(selector)) throw new Error(`not a DKIM domain and selector: ${JSON.stringify([domain, selector])}`);
  const domainDir = path.join(dir, domain);
  return { domainDir, pem: path.join(domainDir, `${selector}.pem`), json: path.join(domainDir, `${selector}.json`) };
}

/** The file-system calls of the key store, injectable so a test can record their order or fail one. */
export interface DkimFs {
  readdir(dir: string): Promise<Dirent[]>;
  readFile(file: string): Promise<Buffer>;
  /** Creates the directory if missing, mode exactly 0700 whatever the umask; an existing one is left as it is. */
  mkdir(dir: string): Promise<void>;
  /** A new file, 0600, failing when the name exists. */
  create(file: string): Promise<Pick<FileHandle, 'writeFile' | 'sync' | 'close'>>;
  link(from: string, to: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(file: string): Promise<void>;
  syncDirectory(dir: string): Promise<void>;
}

export const nodeDkimFs: DkimFs = {
  readdir: (dir) => readdir(dir, { withFileTypes: true }),
  readFile: (file) => readFile(file),
  async mkdir(dir) {
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return;
      throw error;
    }
    await chmod(dir, 0o700);
  },
  create: (file) => open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600),
  link,
  rename,
  unlink,
  syncDirectory,
};

const tempName = (target: string) => path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(8).toString('hex')}.tmp`);

async function writeTemp(fs: DkimFs, target: string, data: string): Promise<string> {
  const temp = tempName(target);
  const handle = await fs.create(temp);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await removeIfPresent(temp, fs.unlink).catch(() => undefined);
    throw error;
  }
  await handle.close();
  return temp;
}

/** Writes `data` under `target` only if nothing is there (link fails with EEXIST where rename would replace). */
async function createFileDurably(fs: DkimFs, target: string, data: string): Promise<void> {
  const temp = await writeTemp(fs, target, data);
  try {
    await fs.link(temp, target);
  } finally {
    await removeIfPresent(temp, fs.unlink).catch(() => undefined);
  }
}

/** Replaces `target` with `data` atomically; the directory sync is the caller's. */
async function replaceFileDurably(fs: DkimFs, target: string, data: string): Promise<void> {
  const temp = await writeTemp(fs, target, data);
  try {
    await fs.rename(temp, target);
  } catch (error) {
    await removeIfPresent(temp, fs.unlink).catch(() => undefined);
    throw error;
  }
}

const recordJson = (record: DkimKeyRecord) =>
  JSON.stringify({ domain: record.domain, selector: record.selector, type: record.type, bits: record.bits, state: record.state, created: record.created, activated: record.activated, retired: record.retired }, null, 2) + '\n';

/**
 * Stores a new key: the PEM first, then its record, so a reader that finds the record finds the key. An existing
 * selector (either file) is never replaced: DkimKeyError EDKIMEXISTS.
 */
export async function createDkimKey(dir: string, record: DkimKeyRecord, privateKeyPem: string, fs: DkimFs = nodeDkimFs): Promise<void> {
  const paths = dkimKeyPaths(dir, record.domain, record.selector);
  await fs.mkdir(dir);
  await fs.mkdir(paths.domainDir);
  const exists = () => new DkimKeyError('EDKIMEXISTS', `${record.domain}: selector ${record.selector} already exists in ${paths.domainDir}; choose another selector`);
  try {
    await createFileDurably(fs, paths.pem, privateKeyPem);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw exists();
    throw error;
  }
  try {
    await createFileDurably(fs, paths.json, recordJson(record));
  } catch (error) {
    // Ours is the PEM just linked: without its record it is no key, and it would block this selector.
    await removeIfPresent(paths.pem, fs.unlink).catch(() => undefined);
    throw (error as NodeJS.ErrnoException).code === 'EEXIST' ? exists() : error;
  }
  await fs.syncDirectory(paths.domainDir);
  await fs.syncDirectory(dir);
}

/** Writes the records a state transition changed, in the order given (key-states.ts puts the new active first). */
export async function writeDkimKeyRecords(dir: string, records: readonly DkimKeyRecord[], fs: DkimFs = nodeDkimFs): Promise<void> {
  for (const record of records) {
    const paths = dkimKeyPaths(dir, record.domain, record.selector);
    await replaceFileDurably(fs, paths.json, recordJson(record));
    // Synced at once, not at the end: the order of the changes is what a reader in between sees.
    await fs.syncDirectory(paths.domainDir);
  }
}

/** Deletes a key: its record first (from then on no reader loads it), then the private key. */
export async function removeDkimKeyFiles(dir: string, domain: string, selector: string, fs: DkimFs = nodeDkimFs): Promise<void> {
  const paths = dkimKeyPaths(dir, domain, selector);
  await removeIfPresent(paths.json, fs.unlink);
  await removeIfPresent(paths.pem, fs.unlink);
  await fs.syncDirectory(paths.domainDir);
}

/** Checks a parsed record file against the names it was found under; a string says what is wrong. */
export function parseDkimKeyRecord(value: unknown, domain: string, selector: string): DkimKeyRecord | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const v = value as Record<string, unknown>;
  const time = (name: string, nullable: boolean) => (nullable && v[name] === null) || (Number.isSafeInteger(v[name]) && (v[name] as number) >= 0);
  if (v.domain !== domain) return `"domain" is ${JSON.stringify(v.domain)}, the directory says ${domain}`;
  if (v.selector !== selector) return `"selector" is ${JSON.stringify(v.selector)}, the file name says ${selector}`;
  if (!DKIM_KEY_TYPES.includes(v.type as DkimKeyType)) return `"type" is ${JSON.stringify(v.type)}, not rsa or ed25519`;
  if (v.type === 'rsa' ? !(Number.isSafeInteger(v.bits) && (v.bits as number) >= 1024) : v.bits !== null) return `"bits" is ${JSON.stringify(v.bits)} for ${String(v.type)}`;
  if (!DKIM_KEY_STATES.includes(v.state as DkimKeyState)) return `"state" is ${JSON.stringify(v.state)}, not one of ${DKIM_KEY_STATES.join(', ')}`;
  if (!time('created', false) || !time('activated', true) || !time('retired', true)) return '"created", "activated" or "retired" is not a time in epoch ms';
  return { domain, selector, type: v.type as DkimKeyType, bits: v.bits as number | null, state: v.state as DkimKeyState, created: v.created as number, activated: v.activated as number | null, retired: v.retired as number | null };
}

/** The private key, checked against its record: a PEM of another type or size would sign under a false record. */
export function parseDkimPrivateKey(pem: Buffer, record: DkimKeyRecord): KeyObject | string {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (error) {
    return `the private key does not parse (${(error as Error).message})`;
  }
  if (key.asymmetricKeyType !== record.type) return `the private key is ${key.asymmetricKeyType ?? 'unknown'}, the record says ${record.type}`;
  if (record.type === 'rsa' && key.asymmetricKeyDetails?.modulusLength !== record.bits) return `the private key has ${key.asymmetricKeyDetails?.modulusLength} bits, the record says ${record.bits}`;
  return key;
}

async function loadKey(fs: DkimFs, dir: string, domain: string, selector: string): Promise<DkimKey | SkippedDkimKey> {
  const paths = dkimKeyPaths(dir, domain, selector);
  const skip = (file: string, reason: string): SkippedDkimKey => ({ file, reason });
  let value: unknown;
  try {
    value = JSON.parse((await fs.readFile(paths.json)).toString('utf8'));
  } catch (error) {
    return skip(paths.json, error instanceof SyntaxError ? `not JSON (${error.message})` : ((error as NodeJS.ErrnoException).code ?? (error as Error).message));
  }
  const record = parseDkimKeyRecord(value, domain, selector);
  if (typeof record === 'string') return skip(paths.json, record);
  let pem: Buffer;
  try {
    pem = await fs.readFile(paths.pem);
  } catch (error) {
    return skip(paths.pem, (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing (the record has no private key)' : ((error as NodeJS.ErrnoException).code ?? (error as Error).message));
  }
  const privateKey = parseDkimPrivateKey(pem, record);
  return typeof privateKey === 'string' ? skip(paths.pem, privateKey) : { ...record, privateKey };
}

async function entries(fs: DkimFs, dir: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/**
 * Every key under `dir`, sorted by domain and selector; a missing directory holds none. A key whose files do not
 * parse, or disagree with each other or with their names, is left out and passed to `onSkipped` (the CLI prints
 * it, the daemon logs it), so one bad file never stops the others from signing. Dot files (our temp files) and
 * names that are no domain or selector are ignored. An unreadable `dir` itself rejects.
 */
export async function loadDkimKeys(dir: string, onSkipped?: (skipped: SkippedDkimKey) => void, fs: DkimFs = nodeDkimFs): Promise<DkimKey[]> {
  const found: Promise<DkimKey | SkippedDkimKey>[] = [];
  for (const domainEntry of await entries(fs, dir)) {
    if (!domainEntry.isDirectory() || !isDkimDomain(domainEntry.name)) continue;
    for (const file of await entries(fs, path.join(dir, domainEntry.name))) {
      const selector = file.name.endsWith('.json') ? file.name.slice(0, -'.json'.length) : '';
      if (!file.isFile() || !isDkimSelector(selector)) continue;
      found.push(loadKey(fs, dir, domainEntry.name, selector));
    }
  }
  const keys: DkimKey[] = [];
  for (const result of await Promise.all(found)) {
    if ('privateKey' in result) keys.push(result);
    else onSkipped?.(result);
  }
  return keys.sort((a, b) => a.domain.localeCompare(b.domain) || a.selector.localeCompare(b.selector));
}
