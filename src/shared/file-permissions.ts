import { stat } from 'node:fs/promises';
import type { Logger } from './logger.js';

/** A secret (password file, private key) that group or others can read: one `warn` line each, at start. */
export async function warnIfReadableByOthers(files: readonly (readonly [what: string, file: string])[], logger: Logger): Promise<void> {
  for (const [what, file] of files) {
    const mode = await stat(file).then((info) => info.mode & 0o777, () => null);
    if (mode !== null && (mode & 0o044) !== 0) {
      logger.warn({ event: 'file-readable-by-others', what, file, mode: mode.toString(8).padStart(4, '0') }, `${file} is readable by group or others; chmod 600 it`);
    }
  }
}
