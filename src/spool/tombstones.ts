import path from 'node:path';
import { replaceFileDurably, DirectorySync } from './durable.js';
import { RECOVERED_BATCH } from './entry-names.js';
import type { SpoolLayout } from './layout.js';
import { removeIfPresent } from './spool-fs.js';

/**
 * `deleted/<id>` (docs/spool.md): the operator deleted message `id`, which is or was inside batch file `<batch
 * id>` (the file's content). Were that batch recovered after a crash, the message would otherwise come back from
 * it. A recovered batch skips tombstoned messages; a tombstone goes once no batch of that id exists any more.
 */
export async function writeTombstone(layout: SpoolLayout, id: string, batchId: string): Promise<void> {
  const dir = layout.dir('deleted');
  await layout.fs.mkdir(dir); // spools made before tombstones have no deleted/
  await replaceFileDurably(layout.fs, path.join(layout.dir('tmp'), `${id}.tombstone`), path.join(dir, id), batchId, new DirectorySync(layout.fs, dir));
}

export function isTombstoned(layout: SpoolLayout, id: string): Promise<boolean> {
  return layout.fs.access(path.join(layout.dir('deleted'), id)).then(
    () => true,
    () => false,
  );
}

/** Removes the tombstones whose batch is gone from incoming/ and every claim directory; returns how many. */
export async function pruneTombstones(layout: SpoolLayout): Promise<number> {
  const fs = layout.fs;
  const names = await fs.readdir(layout.dir('deleted')).catch(() => []);
  if (names.length === 0) return 0;
  const present = new Set(await fs.readdir(layout.dir('incoming')));
  for (const owner of await fs.readdir(layout.dir('active'))) for (const name of await fs.readdir(path.join(layout.dir('active'), owner)).catch(() => [])) present.add(name);
  let pruned = 0;
  for (const name of names) {
    const file = path.join(layout.dir('deleted'), name);
    const batchId = (await fs.readFile(file).catch(() => Buffer.alloc(0))).toString('latin1');
    if (present.has(`${batchId}.batch`) || present.has(`${batchId}${RECOVERED_BATCH}`)) continue;
    await removeIfPresent(fs, file);
    pruned++;
  }
  return pruned;
}
