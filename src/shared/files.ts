import { constants } from 'node:fs';
import { open, unlink } from 'node:fs/promises';

/** Unlinks a file that may already be gone (another process, or an earlier attempt, removed it first). */
export async function removeIfPresent(filePath: string, remove: (filePath: string) => Promise<void> = unlink): Promise<void> {
  try {
    await remove(filePath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** fsync of a directory: what makes the renames, links and unlinks in it durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
