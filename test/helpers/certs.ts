import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import selfsigned from 'selfsigned';

export interface TestCertificate {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

/** A certificate authority made now, to sign certificates with (`makeCertificate`'s `ca`); its cert.pem is what a client trusts. */
export type TestCa = TestCertificate;

/** A CA certificate and key made now, written as ca-cert.pem / ca-key.pem (after `prefix`) into `dir`. */
export async function makeTestCa(dir: string, prefix = ''): Promise<TestCa> {
  const pems = await selfsigned.generate([{ name: 'commonName', value: `mta-relay test CA ${prefix}`.trim() }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  return writePems(dir, `${prefix}ca-`, pems);
}

/**
 * A certificate made now for `hostname` (an IP literal gets an IP SAN), self-signed or signed by `options.ca`,
 * with `options.alsoFor` as further names or addresses; written as cert.pem / key.pem (after `prefix`) into `dir`.
 */
export async function makeCertificate(dir: string, hostname = 'localhost', prefix = '', options: { ca?: TestCa; alsoFor?: string[] } = {}): Promise<TestCertificate> {
  const altNames = [hostname, ...(options.alsoFor ?? [])].map((name) => (net.isIP(name) ? { type: 7 as const, ip: name } : { type: 2 as const, value: name }));
  const pems = await selfsigned.generate([{ name: 'commonName', value: hostname }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames }],
    ...(options.ca && { ca: { cert: options.ca.cert, key: options.ca.key } }),
  });
  return writePems(dir, prefix, pems);
}

async function writePems(dir: string, prefix: string, pems: { cert: string; private: string }): Promise<TestCertificate> {
  const certFile = path.join(dir, `${prefix}cert.pem`);
  const keyFile = path.join(dir, `${prefix}key.pem`);
  await writeFile(certFile, pems.cert);
  await writeFile(keyFile, pems.private, { mode: 0o600 });
  return { certFile, keyFile, cert: pems.cert, key: pems.private };
}
