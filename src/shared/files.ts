import { unlink } from 'node:fs/promises';

/** Unlinks a file that may already be gone (another process, or an earlier attempt, removed it first). */
export async function removeIfPresent(filePath: string, remove: (filePath: string) => Promise<void> = unlink): Promise<void> {
  try {
    await remove(filePath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
