import { RelayError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { BACKOFF_RECORD_BYTES, normalizeBackoffRecord, parseBackoffFile, serializeBackoffFile, type BackoffRecord } from './backoff-record.js';
import type { SpoolLayout } from './layout.js';
import { StateFile } from './state-file.js';

export type { BackoffRecord } from './backoff-record.js';

/**
 * The back-offs in force (docs/spool.md, "Back-offs"): `state/backoffs.json`, shared by every mta-queue process on
 * the spool and the admin commands, so a suspension survives a restart and `policy resume` reaches the daemon.
 * Each change reads the file, merges, and replaces it atomically (tmp, fdatasync, rename, fsync); changes through
 * one store run one at a time. Two processes changing it at the same moment can lose one of the two changes: a
 * lost back-off is recorded again by the next matching reply, and a lost resume shows in `policy show`.
 */

export const BACKOFF_FILE = 'backoffs.json';
/** Records kept at most: past it a new (site, source) is refused, so hostile replies cannot grow the file unbounded. */
export const MAX_BACKOFFS = 10_000;
// Every record at its largest: anything bigger is not a file we wrote, and is not read into memory.
const MAX_FILE_BYTES = MAX_BACKOFFS * BACKOFF_RECORD_BYTES + 1024;

/**
 * The file did not parse; it has been moved to `corrupt/` (movedTo) and the call did nothing else. The next call
 * finds no file, i.e. no back-off: the caller logs this (`event: 'corrupt'`) and calls again.
 */
export class BackoffFileCorruptError extends RelayError {
  readonly code = 'EBACKOFFSCORRUPT';
  constructor(readonly movedTo: string, readonly problem: string) {
    super(`${BACKOFF_FILE}: ${problem}; moved to ${movedTo}`);
  }
}

/** MAX_BACKOFFS are in force already: a back-off for a new (site, source) is not kept. */
export class BackoffLimitError extends RelayError {
  readonly code = 'EBACKOFFLIMIT';
}

const inForce = (now: number) => (record: BackoffRecord) => record.until > now;

export class BackoffStore {
  private readonly state: StateFile;

  constructor(layout: SpoolLayout) {
    this.state = new StateFile(layout, BACKOFF_FILE, MAX_FILE_BYTES);
  }

  get file(): string {
    return this.state.file;
  }

  /** The records in force at `now`; none without a file. Throws BackoffFileCorruptError (see there). */
  read(now: number): Promise<BackoffRecord[]> {
    return this.state.exclusive(async () => (await this.load(now)).filter(inForce(now)));
  }

  /** Adds or replaces the record of (record.site, record.source), keeping what other writers put meanwhile. */
  async put(record: BackoffRecord, now: number): Promise<void> {
    const kept = normalizeBackoffRecord(record);
    await this.state.exclusive(async () => {
      const others = (await this.load(now)).filter((old) => inForce(now)(old) && !(old.site === kept.site && old.source === kept.source));
      if (others.length >= MAX_BACKOFFS) throw new BackoffLimitError(`${MAX_BACKOFFS} back-offs in force already: not kept for ${kept.site.slice(0, 200)} (${kept.source})`);
      await this.state.write(serializeBackoffFile([...others, kept].filter(inForce(now))));
    });
  }

  /** Removes the records of `site` (only `source`'s when given); returns them. Writes nothing when there are none. */
  remove(site: string, source: string | undefined, now: number): Promise<BackoffRecord[]> {
    return this.state.exclusive(async () => {
      const all = (await this.load(now)).filter(inForce(now));
      const lifted = all.filter((record) => record.site === site && (source === undefined || record.source === source));
      if (lifted.length > 0) await this.state.write(serializeBackoffFile(all.filter((record) => !lifted.includes(record))));
      return lifted;
    });
  }

  /** Has the file changed since this store last read or wrote it? */
  changed(): Promise<boolean> {
    return this.state.changed();
  }

  /** Every record on disk, ended ones included. */
  private async load(now: number): Promise<BackoffRecord[]> {
    const read = await this.state.read();
    if (read === null) return [];
    const parsed = 'text' in read ? parseBackoffFile(read.text) : read;
    if ('records' in parsed) return parsed.records;
    throw new BackoffFileCorruptError(await this.state.setAside(now), parsed.problem);
  }
}

/**
 * Runs `work` on the store; when it finds the file corrupt (set aside by the store), logs one `corrupt` line and
 * answers `none` instead: what the commands and pages that show or lift back-offs do.
 */
export async function treatingCorruptAsNone<T>(work: () => Promise<T>, none: T, logger: Pick<Logger, 'warn'>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (!(error instanceof BackoffFileCorruptError)) throw error;
    logger.warn({ event: 'corrupt', file: `state/${BACKOFF_FILE}`, movedTo: error.movedTo, problem: error.problem }, 'back-off file unreadable: set aside, no back-off in force');
    return none;
  }
}

/** The records in force now; none when the spool (or its state/) does not exist, or the file was corrupt. */
export function readBackoffsInForce(layout: SpoolLayout, now: number, logger: Pick<Logger, 'warn'>): Promise<BackoffRecord[]> {
  return treatingCorruptAsNone(() => new BackoffStore(layout).read(now), [], logger);
}

/** `stats --json` and GET /api/stats: the count and each (site, source) with its end, epoch ms like the rest. */
export function backoffSummary(records: readonly BackoffRecord[]) {
  return { count: records.length, sites: records.map(({ site, source, action, until }) => ({ site, source, action, until })) };
}
