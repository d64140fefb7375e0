import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import type { ProcessTable } from '../spool/claim-lease.js';

/**
 * This process and the others, as Linux's /proc shows them: what a claim lease needs to tell a live owner from a
 * dead one whose pid was reused. Elsewhere (no /proc) every field but the pid is empty and leases fall back to age.
 */
export function procProcessTable(): ProcessTable {
  return {
    self: {
      pid: process.pid,
      bootId: readOr('/proc/sys/kernel/random/boot_id', '').trim(),
      pidNamespace: linkOr('/proc/self/ns/pid', ''),
      startTime: startTimeOf(process.pid) ?? '',
    },
    startTimeOf,
  };
}

/** A fresh token for this process's claim directory name. */
export function newLeaseToken(): string {
  return randomBytes(5).toString('hex');
}

function startTimeOf(pid: number): string | null {
  const stat = readOr(`/proc/${pid}/stat`, null);
  if (stat === null) return null;
  // Field 2 (the command) is in parentheses and may hold spaces or parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null; // field 22 of the line, 20th after the command
}

function readOr<T>(file: string, fallback: T): string | T {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

function linkOr(file: string, fallback: string): string {
  try {
    return readlinkSync(file);
  } catch {
    return fallback;
  }
}
