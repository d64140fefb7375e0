import net from 'node:net';
import { checkServerIdentity, TLSSocket, type ConnectionOptions, type SecureContext } from 'node:tls';

/** How one session's STARTTLS is done and what it gave: the TLS side of remote-session.ts. */

export interface TlsDetails {
  version: string;
  cipher: string;
  /** Chain and name checked out. Opportunistic TLS (Postfix `may`) delivers either way; this is for the log. */
  verified: boolean;
}

/**
 * `--relay-tls verify`: a handshake whose chain (against `trust`, else Node's store) or name does not check out is
 * aborted, so nothing is sent.
 */
export interface TlsVerification {
  trust: SecureContext | null;
}

/** A verified handshake aborted because the certificate did not check out (classify.ts NETWORK_ERRORS: 4.7.5). */
export class UntrustedCertificateError extends Error {
  readonly code = 'ECERTUNTRUSTED';

  /** `reason`: Node's, e.g. "self-signed certificate" or "Hostname/IP does not match certificate's altnames: …". */
  constructor(
    readonly reason: string,
    options: { cause: unknown },
  ) {
    super(`certificate not trusted: ${reason}`, options);
  }
}

/**
 * SNI is the host name; an IP literal sends none (RFC 6066 §3) and Node checks the certificate's IP SANs against
 * the address. Opportunistic TLS (an MX) takes any certificate: refusing it would only push the mail to clear text.
 */
export function tlsOptions(host: string, verification: TlsVerification | undefined): ConnectionOptions {
  const servername = net.isIP(host) ? undefined : host;
  if (!verification) return { servername, rejectUnauthorized: false };
  return { servername, rejectUnauthorized: true, ...(verification.trust && { secureContext: verification.trust }) };
}

/** Node's reason a verified handshake was aborted (set before it destroys the socket), or undefined. */
export function certificateRejection(socket: unknown): string | undefined {
  return socket instanceof TLSSocket && socket.authorizationError ? String(socket.authorizationError) : undefined;
}

export function tlsDetails(socket: unknown, host: string): TlsDetails | null {
  if (!(socket instanceof TLSSocket)) return null;
  const cipher = socket.getCipher();
  const nameMatches = checkServerIdentity(host, socket.getPeerCertificate()) === undefined;
  return { version: socket.getProtocol() ?? cipher.version, cipher: cipher.name, verified: socket.authorized && nameMatches };
}
