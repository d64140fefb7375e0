import { createHash, randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { promisify } from 'node:util';

const scrypt = promisify(scryptCallback) as (password: string, salt: Buffer, keylen: number, options: ScryptOptions) => Promise<Buffer>;

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
