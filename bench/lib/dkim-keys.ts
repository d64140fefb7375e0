import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * DKIM keys for the signed scenarios, written by the benchmark itself (node:crypto), in the layout mta-queue
 * reads (docs/dkim.md): DIR/<domain>/<selector>.pem (PKCS#8 PEM, 0600) beside <selector>.json, DIR and the
 * domain directory 0700, every key `active`. No `mta-queue dkim` command is used, so the benchmark measures
 * the signer whatever state the CLI is in.
 */

export type BenchKeyType = 'rsa' | 'ed25519';
/** Which keys a measurement signs with: none (the unsigned drain), one type, or both at once. */
export type Signing = 'none' | 'rsa' | 'ed25519' | 'both';

export const SIGNING_LABELS: Record<Signing, string> = { none: 'unsigned', rsa: 'rsa-2048', ed25519: 'ed25519', both: 'rsa+ed25519' };
/** The a= tags a message signed with `signing` must carry, one per signature. */
export const SIGNING_ALGORITHMS: Record<Signing, string[]> = { none: [], rsa: ['rsa-sha256'], ed25519: ['ed25519-sha256'], both: ['rsa-sha256', 'ed25519-sha256'] };

export interface BenchKey {
  domain: string;
  selector: string;
  type: BenchKeyType;
  privateKeyPem: string;
  /** The TXT record a verifier finds at `<selector>._domainkey.<domain>`. */
  txt: string;
}

/** One key pair of each type for `domain`, generated once per benchmark run (an rsa-2048 takes ~100 ms). */
export function generateBenchKeys(domain: string): Record<BenchKeyType, BenchKey> {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ed = generateKeyPairSync('ed25519');
  return {
    rsa: { domain, selector: 'bench-rsa', type: 'rsa', privateKeyPem: pkcs8(rsa.privateKey), txt: `v=DKIM1; k=rsa; p=${spki(rsa.publicKey).toString('base64')}` },
    // RFC 8463 §4.2: p= is the bare 32-byte key, the tail of its SubjectPublicKeyInfo.
    ed25519: { domain, selector: 'bench-ed25519', type: 'ed25519', privateKeyPem: pkcs8(ed.privateKey), txt: `v=DKIM1; k=ed25519; p=${spki(ed.publicKey).subarray(-32).toString('base64')}` },
  };
}

const pkcs8 = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }).toString();
const spki = (key: KeyObject) => key.export({ type: 'spki', format: 'der' });

/** The keys `signing` uses: rsa, ed25519, both, or none (an empty directory: nothing signs). */
export function keysFor(signing: Signing, keys: Record<BenchKeyType, BenchKey>): BenchKey[] {
  return signing === 'none' ? [] : signing === 'both' ? [keys.rsa, keys.ed25519] : [keys[signing]];
}

/** Writes `keys` as active keys into a new key directory `dir` (which must not exist). */
export async function writeKeyDirectory(dir: string, keys: BenchKey[], now = Date.now()): Promise<void> {
  await mkdir(dir, { mode: 0o700 });
  await chmod(dir, 0o700);
  for (const key of keys) {
    const domainDir = path.join(dir, key.domain);
    await mkdir(domainDir, { mode: 0o700, recursive: true });
    await chmod(domainDir, 0o700);
    await writeFile(path.join(domainDir, `${key.selector}.pem`), key.privateKeyPem, { mode: 0o600 });
    const record = { domain: key.domain, selector: key.selector, type: key.type, bits: key.type === 'rsa' ? 2048 : null, state: 'active', created: now - 60_000, activated: now - 30_000, retired: null };
    await writeFile(path.join(domainDir, `${key.selector}.json`), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  }
}

/** A DNS look-up for a verifier: the TXT records of these keys and nothing else. */
export function txtResolver(keys: BenchKey[]): (name: string, type: string) => Promise<string[][]> {
  const records = new Map(keys.map((key) => [`${key.selector}._domainkey.${key.domain}`, key.txt]));
  return async (name, type) => {
    const txt = type === 'TXT' ? records.get(name.toLowerCase().replace(/\.$/, '')) : undefined;
    if (txt === undefined) throw Object.assign(new Error(`no ${type} record for ${name}`), { code: 'ENOTFOUND' });
    return [[txt]];
  };
}
