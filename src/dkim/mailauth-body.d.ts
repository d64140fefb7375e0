/**
 * mailauth 4.13.3's streaming body canonicalizer (lib/dkim/body), which its own signer and verifier use. The
 * package declares types for its top-level API only; this is the part of lib/ we call (package.json pins the
 * exact version, so the path cannot move under us).
 */
declare module 'mailauth/lib/dkim/body/index.js' {
  export interface DkimBodyHasher {
    /** Body bytes in any chunking; CR, LF and whitespace runs across chunk boundaries are handled. */
    update(chunk: Buffer): void;
    digest(encoding: 'base64'): string;
  }
  export function dkimBody(canonicalization: 'relaxed' | 'simple', algorithm: 'sha256', maxBodyLength?: number | false): DkimBodyHasher;
}
