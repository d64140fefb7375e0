import { createHash, randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { promisify } from 'node:util';
import { Fifo } from './fifo.js';

const scryptUnbounded = promisify(scryptCallback) as (password: string, salt: Buffer, keylen: number, options: ScryptOptions) => Promise<Buffer>;

/**
 * scrypt runs on libuv's thread pool (4 threads by default), the pool every fs call of the spool also waits in:
 * 180 failed AUTHs queued there held a trusted submission's writes for seconds. At most this many hashes run at
 * once, so the other threads stay free for the disk; the rest wait here, in JavaScript, not in the pool's queue.
 */
const CONCURRENT_HASHES = 2;
let hashesRunning = 0;
const hashesWaiting = new Fifo<() => void>();

async function scrypt(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  if (hashesRunning >= CONCURRENT_HASHES) await new Promise<void>((resolve) => hashesWaiting.push(resolve));
  else hashesRunning++;
  try {
    return await scryptUnbounded(password, salt, keylen, options);
  } finally {
    // The slot passes straight to the next waiter, so the count never dips and lets a newcomer jump the queue.
    const next = hashesWaiting.shift();
    if (next) next();
    else hashesRunning--;
  }
}

/** A users.txt credential: the seed relay's plain `user:password`, or a PHC-style scrypt string. */
export type Credential = { kind: 'plain'; password: string } | { kind: 'scrypt'; cost: number; blockSize: number; parallelization: number; salt: Buffer; hash: Buffer };

/** 2^14 × 8 × 128 B = 16 MiB and tens of milliseconds per check: slow for a guesser, cheap for one AUTH. */
const DEFAULT_LOG_COST = 14;
const KEY_LENGTH = 32;
const SCRYPT_FORMAT = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

export function parseCredential(text: string): Credential | undefined {
  if (!text.startsWith('$scrypt$')) return text.length > 0 ? { kind: 'plain', password: text } : undefined;
  const match = SCRYPT_FORMAT.exec(text);
  if (!match) return undefined;
  const [, logCost, blockSize, parallelization, salt, hash] = match;
  return {
    kind: 'scrypt',
    cost: 2 ** Number(logCost),
    blockSize: Number(blockSize),
    parallelization: Number(parallelization),
    salt: Buffer.from(salt!, 'base64'),
    hash: Buffer.from(hash!, 'base64'),
  };
}

export async function hashPassword(password: string, logCost = DEFAULT_LOG_COST): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(password, salt, KEY_LENGTH, scryptOptions(2 ** logCost, 8, 1));
  return `$scrypt$ln=${logCost},r=8,p=1$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/**
 * A plain `user:password` line as a scrypt credential of the default cost, so checking it costs what checking a
 * hashed line or the unknown-user decoy costs: the time of a failed AUTH tells nothing about which it was.
 */
export async function hashedCredential(credential: Credential): Promise<Credential> {
  if (credential.kind !== 'plain') return credential;
  return parseCredential(await hashPassword(credential.password))!;
}

/** Constant time in the password: plain ones are compared as digests, so length leaks nothing either. */
export async function verifyPassword(credential: Credential, password: string): Promise<boolean> {
  if (credential.kind === 'plain') return timingSafeEqual(sha256(credential.password), sha256(password));
  const options = scryptOptions(credential.cost, credential.blockSize, credential.parallelization);
  const candidate = await scrypt(password, credential.salt, credential.hash.length, options);
  return candidate.length === credential.hash.length && timingSafeEqual(candidate, credential.hash);
}

function scryptOptions(cost: number, blockSize: number, parallelization: number): ScryptOptions {
  return { N: cost, r: blockSize, p: parallelization, maxmem: 256 * cost * blockSize + 1024 * 1024 };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
