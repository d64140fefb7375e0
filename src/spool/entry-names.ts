import { isQueueId } from './queue-id.js';

/** How queue entries are named in the spool's directories (docs/spool.md): the names alone say what is due. */

export interface DeferredEntry {
  id: string;
  due: number;
  name: string;
}

/** Where a candidate for delivery sits before it is claimed. */
export type Candidate = { dir: 'incoming'; name: string; id: string } | { dir: 'deferred'; name: string; id: string };

const DUE_DIGITS = 9;

/** `deferred/<due in base 36>-<id>.json`: due times sort as names and are known without opening a file. */
export function deferredName(id: string, due: number): string {
  return `${Math.max(0, Math.round(due)).toString(36).padStart(DUE_DIGITS, '0')}-${id}.json`;
}

export function parseDeferredName(name: string): DeferredEntry | undefined {
  const match = /^([0-9a-z]{9})-([0-9a-z]{20})\.json$/.exec(name);
  return match ? { due: parseInt(match[1]!, 36), id: match[2]!, name } : undefined;
}

/**
 * A batch file mta-queue put back after its claimer died. Only such a batch can hold messages already detached
 * into entries of their own, so only its messages are looked up before delivery.
 */
export const RECOVERED_BATCH = '.recovered.batch';
const ENTRY_SUFFIXES = ['.json', '.batch', RECOVERED_BATCH];

/** Every name an entry for `id` can have in incoming/, held/, active/<pid>/ or corrupt/. */
export function entryNames(id: string): string[] {
  return ENTRY_SUFFIXES.map((suffix) => `${id}${suffix}`);
}

/** The id in `<id>.json` (an envelope) or `<id>.batch`, `<id>.recovered.batch` (a batch named after its first message). */
export function parseIncomingName(name: string): string | undefined {
  const dot = name.indexOf('.');
  const id = name.slice(0, dot);
  return dot > 0 && ENTRY_SUFFIXES.includes(name.slice(dot)) && isQueueId(id) ? id : undefined;
}

export function isBatchName(name: string): boolean {
  return name.endsWith('.batch');
}
