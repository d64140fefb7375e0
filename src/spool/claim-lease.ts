import path from 'node:path';
import type { SpoolFs } from './spool-fs.js';

/**
 * Who owns a claim directory `active/<lease>/` (docs/spool.md, "Claim ownership"). A pid alone is no owner: it is
 * reused after the process dies, and two processes in different pid namespaces can have the same one. A lease
 * names its process by boot id, pid namespace, pid and start time, which no other process ever shares, and its
 * file's mtime is refreshed while the process lives, for the processes that cannot look it up in /proc.
 */
export interface ProcessIdentity {
  pid: number;
  /** /proc/sys/kernel/random/boot_id: changes at every boot. */
  bootId: string;
  /** The pid namespace (readlink /proc/self/ns/pid): pids mean something only inside one. */
  pidNamespace: string;
  /** Field 22 of /proc/<pid>/stat, clock ticks after boot: a reused pid has another. */
  startTime: string;
}

/** What a process knows of the others; the composition root reads /proc. */
export interface ProcessTable {
  self: ProcessIdentity;
  /** The start time of `pid` in our namespace, or null when no such process runs. */
  startTimeOf(pid: number): string | null;
}

/** The file inside a claim directory that says whose it is; a dot name, so no queue listing takes it for an entry. */
export const LEASE_FILE = '.lease';

/**
 * A lease that cannot be checked in /proc (another namespace or machine) is abandoned once its mtime is this old.
 * Its owner refreshes it every poll (1 s by default); a process stopped this long gives its claims up, which
 * repeats their deliveries (duplicates over loss).
 */
export const LEASE_TIMEOUT_MS = 60_000;

export function leaseName(self: ProcessIdentity, token: string): string {
  return `${self.pid}-${token}`;
}

/** The pid a claim directory's name starts with (`<pid>-<token>`, or a bare `<pid>` of older versions). */
export function leasePid(dirName: string): number | undefined {
  const match = /^(\d+)(?:-[0-9a-z]+)?$/.exec(dirName);
  return match ? Number(match[1]) : undefined;
}

export type LeaseRecord = ProcessIdentity;

/**
 * Whether the owner of a claim directory is gone, so its claims go back to the queue. Pure: the file's content
 * and mtime, and the process table, are read by the caller.
 */
export function isLeaseAbandoned(input: {
  dirName: string;
  /** The lease file's content, or null when there is none (a directory of a version before leases) or it does not parse. */
  lease: LeaseRecord | null;
  leaseModifiedAt: number | null;
  processes: ProcessTable;
  now: number;
  /** At start a directory under our own pid without a lease was left by an earlier process that had it. */
  atStart: boolean;
}): boolean {
  const { lease, processes, now } = input;
  const self = processes.self;
  if (!lease && input.leaseModifiedAt !== null) return now - input.leaseModifiedAt > LEASE_TIMEOUT_MS; // unreadable: by age
  if (!lease) {
    const pid = leasePid(input.dirName);
    if (pid === undefined) return false;
    return pid === self.pid ? input.atStart : processes.startTimeOf(pid) === null;
  }
  if (lease.bootId === self.bootId && lease.pidNamespace === self.pidNamespace) {
    if (lease.pid === self.pid && lease.startTime === self.startTime) return false;
    return processes.startTimeOf(lease.pid) !== lease.startTime;
  }
  return input.leaseModifiedAt === null || now - input.leaseModifiedAt > LEASE_TIMEOUT_MS;
}

export function parseLease(text: string): LeaseRecord | null {
  try {
    const value = JSON.parse(text) as Partial<LeaseRecord>;
    if (typeof value.pid !== 'number' || typeof value.bootId !== 'string' || typeof value.pidNamespace !== 'string' || typeof value.startTime !== 'string') return null;
    return { pid: value.pid, bootId: value.bootId, pidNamespace: value.pidNamespace, startTime: value.startTime };
  } catch {
    return null;
  }
}

/** The lease of a claim directory as the caller needs it for `isLeaseAbandoned`. */
export async function readLease(fs: SpoolFs, dir: string): Promise<{ lease: LeaseRecord | null; modifiedAt: number | null }> {
  const file = path.join(dir, LEASE_FILE);
  try {
    const [text, modifiedAt] = await Promise.all([fs.readFile(file), fs.modifiedAt(file)]);
    // A lease file that does not parse (a crash while it was first written) still shows its age.
    return { lease: parseLease(text.toString('utf8')), modifiedAt };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { lease: null, modifiedAt: null };
    throw error;
  }
}
