import { mkdir, chmod } from 'node:fs/promises';
import path from 'node:path';

/** Directory names inside the spool; docs/spool.md describes what lives in each. */
export const SPOOL_DIRS = ['tmp', 'data', 'incoming', 'deferred', 'held', 'active', 'corrupt'] as const;
export type SpoolDir = (typeof SPOOL_DIRS)[number];

export interface SpoolLayout {
  root: string;
  dir(name: SpoolDir): string;
  messagePath(id: string): string;
}

export function spoolLayout(root: string): SpoolLayout {
  const resolved = path.resolve(root);
  return {
    root: resolved,
    dir: (name) => path.join(resolved, name),
    messagePath: (id) => path.join(resolved, 'data', `${id}.eml`),
  };
}

/** Creates the spool tree 0700: mail is readable by the service user only. */
export async function ensureSpool(layout: SpoolLayout): Promise<void> {
  await mkdir(layout.root, { recursive: true, mode: 0o700 });
  await chmod(layout.root, 0o700);
  for (const name of SPOOL_DIRS) await mkdir(layout.dir(name), { recursive: true, mode: 0o700 });
}
