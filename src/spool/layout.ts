import path from 'node:path';
import { nodeSpoolFs, type SpoolFs } from './spool-fs.js';

/** Directory names inside the spool; docs/spool.md describes what lives in each. */
export const SPOOL_DIRS = ['tmp', 'data', 'incoming', 'deferred', 'held', 'active', 'corrupt', 'deleted', 'state'] as const;
export type SpoolDir = (typeof SPOOL_DIRS)[number];

/** Where the spool is, and the file system every spool call goes through (a test double, or node's). */
export interface SpoolLayout {
  root: string;
  fs: SpoolFs;
  dir(name: SpoolDir): string;
  messagePath(id: string): string;
}

export function spoolLayout(root: string, fs: SpoolFs = nodeSpoolFs): SpoolLayout {
  const resolved = path.resolve(root);
  return {
    root: resolved,
    fs,
    dir: (name) => path.join(resolved, name),
    messagePath: (id) => path.join(resolved, 'data', `${id}.eml`),
  };
}

/** Creates the spool tree 0700: mail is readable by the service user only. */
export async function ensureSpool(layout: SpoolLayout): Promise<void> {
  await layout.fs.mkdir(layout.root);
  await layout.fs.chmod(layout.root, 0o700);
  for (const name of SPOOL_DIRS) await layout.fs.mkdir(layout.dir(name));
}
