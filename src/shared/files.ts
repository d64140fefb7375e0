import { unlink } from 'node:fs/promises';

/** Unlinks a file that may already be gone (another process, or an earlier attempt, removed it first). */
export async function removeIfPresent(filePath: string): Promise<void> {
  try {
    await unlink(filePath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
