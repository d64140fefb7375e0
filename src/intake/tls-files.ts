import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { ConfigError } from '../shared/errors.js';
import { describeFsError } from '../config/users-file.js';

export interface TlsFiles {
  key: Buffer;
  cert: Buffer;
}

/** Reads and test-loads the key pair, so a bad file is a one-line error at start or a logged refusal on SIGHUP. */
export async function loadTlsFiles(certFile: string, keyFile: string): Promise<TlsFiles> {
  const read = (file: string, what: string) =>
    readFile(file).catch((error: unknown) => {
      throw new ConfigError(`TLS ${what} ${file}: ${describeFsError(error)}`, { cause: error });
    });
  const [cert, key] = await Promise.all([read(certFile, 'certificate'), read(keyFile, 'key')]);
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigError(`TLS certificate ${certFile} and key ${keyFile} do not load: ${(error as Error).message}`, { cause: error });
  }
  return { key, cert };
}
