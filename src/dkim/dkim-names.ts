import { ConfigError } from '../shared/errors.js';

/**
 * Domains and selectors as the key directory and DNS spell them. Both become file names under `--dkim-dir`, so
 * only the DNS syntax is accepted: labels of letters, digits and hyphens, not starting or ending with a hyphen
 * (RFC 6376 §3.1: `selector = sub-domain *( "." sub-domain )`, sub-domain from RFC 5321 §4.1.2). That leaves no
 * way to spell `..`, `/`, a leading `.` or an empty name, so nothing can reach outside the directory. Names are
 * lower-cased (DNS compares them case-insensitively, and `S1` and `s1` would otherwise be two keys under one TXT
 * record); internationalized domains are given in their A-label form (`xn--…`).
 */

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** RFC 1035 §2.3.4: a name is at most 255 octets on the wire, 253 characters written out without the final dot. */
const MAX_NAME = 253;
const DOMAINKEY = '._domainkey.';

function isDnsName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME && name.split('.').every((label) => LABEL.test(label));
}

/** The domain a key signs for (`d=`), lower-case, without a final dot; a ConfigError names the flag or argument. */
export function parseDkimDomain(text: string, what = 'DOMAIN'): string {
  const domain = text.trim().toLowerCase().replace(/\.$/, '');
  if (!isDnsName(domain) || !domain.includes('.')) throw new ConfigError(`${what}: "${text}" is not a domain name (letters, digits, hyphens and dots; A-label form for IDNs)`);
  return domain;
}

/** A selector (`s=`), lower-case; it may have dots (`2026-01.mail`), never `_domainkey` itself. */
export function parseDkimSelector(text: string, what = 'SELECTOR'): string {
  const selector = text.trim().toLowerCase();
  if (!isDnsName(selector)) throw new ConfigError(`${what}: "${text}" is not a DKIM selector (RFC 6376 §3.1: letters, digits, hyphens, dot-separated labels)`);
  return selector;
}

export function isDkimDomain(name: string): boolean {
  return isDnsName(name) && name.includes('.') && name === name.toLowerCase();
}

export function isDkimSelector(name: string): boolean {
  return isDnsName(name) && name === name.toLowerCase();
}

/** `SEL._domainkey.DOMAIN`, the owner name of the key's TXT record (RFC 6376 §3.6.2.1); a ConfigError when too long. */
export function dkimRecordName(selector: string, domain: string): string {
  const name = `${selector}${DOMAINKEY}${domain}`;
  if (name.length > MAX_NAME) throw new ConfigError(`${name}: longer than ${MAX_NAME} characters, not a DNS name`);
  return name;
}
