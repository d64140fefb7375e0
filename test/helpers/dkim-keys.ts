import { execFile } from 'node:child_process';
import { generateKeyPair, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { dkimTxtRecord } from '../../src/dkim/dkim-record.js';
import type { DkimKey, DkimKeyState, DkimKeyType } from '../../src/dkim/key-store.js';
import { REPO_ROOT } from './daemon-process.js';

/**
 * DKIM keys written the way the key store's contract lays them out (DIR/<domain>/<selector>.pem PKCS#8 0600 and
 * <selector>.json, each replaced by a rename), without our CLI, and verification by dkimpy (dkim_verify.py).
 */

export type TestKeyType = DkimKeyType;
export type TestKeyState = DkimKeyState;

/** A key as the test knows it: what the store's record names, the private key, and what the zone publishes. */
export interface TestKey extends Pick<DkimKey, 'domain' | 'selector' | 'type' | 'privateKey'> {
  /** `SEL._domainkey.DOMAIN`, its TXT record: what the test's zone publishes. */
  recordName: string;
  record: string;
}

const generate = promisify(generateKeyPair) as (type: string, options: object) => Promise<{ privateKey: KeyObject }>;
const run = promisify(execFile);

export async function newTestKey(domain: string, selector: string, type: TestKeyType): Promise<TestKey> {
  const { privateKey } = type === 'rsa' ? await generate('rsa', { modulusLength: 2048 }) : await generate('ed25519', {});
  return { domain, selector, type, privateKey, recordName: `${selector}._domainkey.${domain}`, record: dkimTxtRecord({ type, privateKey }) };
}

async function replaceFile(file: string, data: string): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.tmp`);
  await writeFile(temp, data, { mode: 0o600 });
  await rename(temp, file);
}

/** Writes (or rewrites) the key's two files in `dir` with `state`; the PEM first, as the store does. */
export async function writeTestKey(dir: string, key: TestKey, state: TestKeyState, now = Date.now()): Promise<void> {
  const domainDir = path.join(dir, key.domain);
  await mkdir(domainDir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  await replaceFile(path.join(domainDir, `${key.selector}.pem`), key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  const record = {
    domain: key.domain,
    selector: key.selector,
    type: key.type,
    bits: key.type === 'rsa' ? 2048 : null,
    state,
    created: now,
    activated: state === 'pending' ? null : now,
    retired: state === 'retired' ? now : null,
  };
  await replaceFile(path.join(domainDir, `${key.selector}.json`), JSON.stringify(record, null, 2) + '\n');
}

/** Changes only the state in the key's record, as `mta-queue dkim activate` does (an atomic rename). */
export async function setTestKeyState(dir: string, key: TestKey, state: TestKeyState, now = Date.now()): Promise<void> {
  const file = path.join(dir, key.domain, `${key.selector}.json`);
  const record = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  await replaceFile(file, JSON.stringify({ ...record, state, activated: state === 'active' ? now : record.activated }, null, 2) + '\n');
}

export interface DkimpyResult {
  d: string;
  s: string;
  a: string;
  h: string;
  ok: boolean;
  error: string | null;
}

const SCRIPT = path.join(REPO_ROOT, 'test/helpers/dkim_verify.py');

async function dkimpy(request: object): Promise<string> {
  const child = run('/usr/bin/python3', [SCRIPT], { maxBuffer: 256 * 1024 * 1024 });
  child.child.stdin!.end(JSON.stringify(request));
  return (await child).stdout;
}

/** Every DKIM-Signature of `message`, in order, as dkimpy verifies it against `keys`' records. */
export async function verifyWithDkimpy(message: Buffer, keys: readonly TestKey[]): Promise<DkimpyResult[]> {
  const records = Object.fromEntries(keys.map((key) => [key.recordName, key.record]));
  return (JSON.parse(await dkimpy({ message: message.toString('base64'), records })) as { signatures: DkimpyResult[] }).signatures;
}

/** `message` signed by dkimpy with an rsa `key` (a client's own signature, as Acelle can add). */
export async function signWithDkimpy(message: Buffer, key: TestKey, headers: string[]): Promise<Buffer> {
  const pkcs1 = key.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
  const out = JSON.parse(await dkimpy({ message: message.toString('base64'), sign: { selector: key.selector, domain: key.domain, key: pkcs1, headers } })) as { message: string };
  return Buffer.from(out.message, 'base64');
}
