import net from 'node:net';

// RFC 5321 §4.1.2 Mailbox, with RFC 6531's UTF-8 allowed in atoms and labels.
const ATOM = String.raw`[A-Za-z0-9!#$%&'*+/=?^_\`{|}~\u0080-\uffff-]+`;
const DOT_ATOM = new RegExp(`^${ATOM}(?:\\.${ATOM})*$`);
const QUOTED_STRING = /^"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\uffff]|\\[\x20-\x7e])*"$/;
const LABEL = /^(?:[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\u0080-\uffff-]{0,61}[A-Za-z0-9\u0080-\uffff])?)$/;

/** `local@domain` as RFC 5321 allows it in MAIL FROM and RCPT TO (lengths from §4.5.3.1). */
export function isValidMailbox(address: string): boolean {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1 || address.length > 254) return false;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length > 64 || !(DOT_ATOM.test(local) || QUOTED_STRING.test(local))) return false;
  return isValidDomain(domain);
}

function isValidDomain(domain: string): boolean {
  if (domain.startsWith('[') && domain.endsWith(']')) {
    const literal = domain.slice(1, -1);
    return literal.toLowerCase().startsWith('ipv6:') ? net.isIPv6(literal.slice(5)) : net.isIPv4(literal);
  }
  return domain.length <= 253 && domain.split('.').every((label) => LABEL.test(label));
}
