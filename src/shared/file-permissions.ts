import { stat } from 'node:fs/promises';
import type { Logger } from './logger.js';

/** A secret (password file, private key, or a directory of them) that group or others can read: one `warn` line each. */
export async function warnIfReadableByOthers(files: readonly (readonly [what: string, file: string])[], logger: Logger): Promise<void> {
  for (const [what, file] of files) {
    const info = await stat(file).catch(() => null);
    const mode = info ? info.mode & 0o777 : 0;
    if ((mode & 0o044) !== 0) {
      const fix = info!.isDirectory() ? 'chmod 700' : 'chmod 600';
      logger.warn({ event: 'file-readable-by-others', what, file, mode: mode.toString(8).padStart(4, '0') }, `${file} is readable by group or others; ${fix} it`);
    }
  }
}
