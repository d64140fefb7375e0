import { dkimRecordName } from './dkim-names.js';
import { parseDkimTxtRecord, recordMismatch, type PublishableKey } from './dkim-record.js';

/**
 * Is a key's record published, and does it match the private key? The question `dkim check` answers for every
 * key and `dkim activate` asks before a key may sign: activating a key whose record is absent breaks all mail
 * (wader/postfix-relay#368).
 */

/** The resolver seam: node's `dns.promises.Resolver` fits, pointed at `--dns-servers` in src/cli. */
export interface TxtResolver {
  resolveTxt(hostname: string): Promise<string[][]>;
}

export type DkimRecordStatus = 'published' | 'missing' | 'different' | 'unparseable' | 'lookup-failed';

export interface DkimRecordCheck {
  /** `SEL._domainkey.DOMAIN`. */
  name: string;
  status: DkimRecordStatus;
  /** One line for an operator: what was found, or why it does not do. */
  detail: string;
}

export interface CheckableKey extends PublishableKey {
  domain: string;
  selector: string;
}

/** node's codes for "the name or its TXT record does not exist" (c-ares: NXDOMAIN, NODATA). */
const ABSENT = new Set(['ENOTFOUND', 'ENODATA']);

/**
 * Judges the TXT records found at the name (each already a list of strings), pure. RFC 6376 §3.6.2.2: a record's
 * strings are joined without spaces; with several records a verifier may pick any, so all must match.
 */
export function judgeDkimRecords(key: PublishableKey, txt: readonly (readonly string[])[]): Omit<DkimRecordCheck, 'name'> {
  if (txt.length === 0) return { status: 'missing', detail: 'no TXT record' };
  const parsed = txt.map((strings) => parseDkimTxtRecord(strings.join('')));
  const several = txt.length > 1 ? ` (${txt.length} TXT records at the name; a verifier may use any)` : '';
  const broken = parsed.find((result) => !result.ok);
  if (broken && !broken.ok) return { status: 'unparseable', detail: `not a DKIM key record: ${broken.reason}${several}` };
  for (const result of parsed) {
    const mismatch = result.ok ? recordMismatch(result.record, key) : null;
    if (mismatch) return { status: 'different', detail: `${mismatch}${several}` };
  }
  return { status: 'published', detail: 'published and matching the private key' };
}

export async function checkDkimRecord(resolver: TxtResolver, key: CheckableKey): Promise<DkimRecordCheck> {
  const name = dkimRecordName(key.selector, key.domain);
  let txt: string[][];
  try {
    txt = await resolver.resolveTxt(name);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    if (ABSENT.has(code)) return { name, status: 'missing', detail: `no TXT record (${code === 'ENOTFOUND' ? 'NXDOMAIN' : 'NODATA'})` };
    return { name, status: 'lookup-failed', detail: `DNS look-up failed: ${code}` };
  }
  return { name, ...judgeDkimRecords(key, txt) };
}
