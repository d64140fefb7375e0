import type { BenchKey } from './dkim-keys.js';
import { txtResolver } from './dkim-keys.js';

/**
 * Whether messages that reached a sink really carry the DKIM signatures a measurement claims: a signed benchmark
 * row means nothing if its mail went out unsigned. Each message is verified by mailauth's verifier (a library we
 * did not write; the public keys come from `keys`, not from DNS) when it can be loaded; otherwise only the
 * DKIM-Signature fields are read (d=, a=), and the result says so.
 */

export interface SignatureCheck {
  /** Messages looked at. */
  checked: number;
  /** Messages carrying exactly the expected signatures, each verifying (or, without a verifier, present). */
  good: number;
  /** "verified" (mailauth) or "present" (fields read only). */
  method: 'verified' | 'present';
  /** What the signatures of the first message were, e.g. "rsa-sha256 d=bench.test s=bench-rsa pass". */
  sample: string;
  problems: string[];
}

interface Verified {
  signingDomain: string;
  selector?: string;
  algo?: string;
  status: { result: string; comment?: string };
}
type Verify = (message: Buffer, keys: BenchKey[]) => Promise<Verified[]>;

let verifier: Promise<Verify | null> | undefined;
function loadVerifier(): Promise<Verify | null> {
  verifier ??= import('mailauth/lib/dkim/verify.js').then(
    (module: { dkimVerify: (input: Buffer, options: { resolver: ReturnType<typeof txtResolver> }) => Promise<{ results: Verified[] }> }) =>
      async (message: Buffer, keys: BenchKey[]) =>
        (await module.dkimVerify(message, { resolver: txtResolver(keys) })).results.filter((result) => result.status.result !== 'none'),
    () => null,
  );
  return verifier;
}

/** DKIM-Signature fields as mailauth would report them, without verifying anything. */
function signatureFields(message: Buffer): Verified[] {
  const end = message.indexOf('\r\n\r\n');
  const head = message.subarray(0, end < 0 ? message.length : end).toString('latin1');
  const fields = head.split(/\r\n(?![ \t])/).filter((field) => /^dkim-signature:/i.test(field));
  return fields.map((field) => {
    const tag = (name: string) => new RegExp(`(?:^|;)\\s*${name}\\s*=\\s*([^;]*)`).exec(field.slice(field.indexOf(':') + 1).replace(/\s+/g, ' '))?.[1]?.trim();
    return { signingDomain: tag('d') ?? '', selector: tag('s'), algo: tag('a'), status: { result: 'present' } };
  });
}

/** Checks that every message carries one signature per expected algorithm, for `domain`, each passing. */
export async function checkSignatures(messages: Buffer[], expected: string[], domain: string, keys: BenchKey[]): Promise<SignatureCheck> {
  const verify = await loadVerifier();
  const problems: string[] = [];
  let good = 0;
  let sample = '';
  for (const [index, message] of messages.entries()) {
    let signatures: Verified[];
    try {
      signatures = verify ? await verify(message, keys) : signatureFields(message);
    } catch (error) {
      problems.push(`message ${index + 1}: verifier failed: ${(error as Error).message}`);
      continue;
    }
    const describe = signatures.map((s) => `${s.algo ?? '?'} d=${s.signingDomain} s=${s.selector ?? '?'} ${s.status.result}${s.status.comment ? ` (${s.status.comment})` : ''}`).join(', ') || 'no DKIM-Signature';
    if (index === 0) sample = describe;
    const algorithms = signatures.map((s) => s.algo ?? '').sort();
    const ok =
      algorithms.join(',') === [...expected].sort().join(',') &&
      signatures.every((s) => s.signingDomain === domain && (verify ? s.status.result === 'pass' : true));
    if (ok) good += 1;
    else if (problems.length < 3) problems.push(`message ${index + 1}: expected ${expected.length ? expected.join(' + ') : 'no signature'} by ${domain}, found ${describe}`);
  }
  return { checked: messages.length, good, method: verify ? 'verified' : 'present', sample, problems };
}

export function describeCheck(check: SignatureCheck): string {
  if (check.sample === 'no DKIM-Signature' && check.good === check.checked) return `${check.good}/${check.checked} carry no DKIM-Signature, as expected`;
  const what = check.method === 'verified' ? 'verified by mailauth' : 'DKIM-Signature present (mailauth not found: not verified)';
  return `${check.good}/${check.checked} ${what}${check.sample ? `: ${check.sample}` : ''}`;
}
