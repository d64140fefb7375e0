import { closeSync, fstatSync, openSync, readdirSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { pino, type Logger, type DestinationStream } from 'pino';
import { systemClock, type Clock } from './clock.js';
import { ConfigError } from './errors.js';

export type { Logger };

export interface LoggerOptions {
  level: string;
  /** Human-readable output (pino-pretty) instead of JSON lines. */
  pretty?: boolean;
  /** Where JSON lines go; stdout when absent. Tests pass a stream to read the lines back. */
  destination?: DestinationStream;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function createLogger(options: LoggerOptions): Logger {
  const base = {
    level: options.level,
    // Belt and braces: no code path logs these, and if one ever does they never reach disk.
    redact: { paths: ['password', '*.password', 'pass', '*.pass', 'auth.password'], censor: '[redacted]' },
  };
  if (options.pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:standard', ignore: 'pid,hostname' } } });
  }
  return options.destination ? pino(base, options.destination) : pino(base);
}

/** `--log-file` and its rotation: a file, rotated by size and/or at local midnight, with old files pruned. */
export interface LogFileOptions {
  path: string;
  /** Rotate before a line would take the file past this many bytes (a file only exceeds it by holding one longer line); null: no limit. */
  maxSize: number | null;
  /** Rotate at the first line after local midnight; rotated files are named by the day of their lines. */
  daily: boolean;
  /** Rotated files kept besides the one being written. */
  keep: number;
}

export interface LogFile {
  /** What createLogger's `destination` takes. Writes after close() are dropped rather than thrown. */
  stream: DestinationStream;
  /** The file being written: always the path given, whatever was rotated. */
  readonly path: string;
  /** Closes the file and opens (creating) the path again: after logrotate or an operator moved it away (SIGUSR1). */
  reopen(): void;
  /** Closes the file; every line written so far is in it. */
  close(): Promise<void>;
}

/**
 * Opens `--log-file PATH` for appending. PATH is always the file being written, so `tail -F PATH` follows the log.
 * Rotated files sit beside it:
 * - `--log-rotate size`: `PATH.1` (the newest rotated), `PATH.2`, …: each rotation shifts them up by one
 *   (logrotate's and Python's RotatingFileHandler's naming), dropping those past `keep`.
 * - `daily` or `both`: `PATH.2025-01-31` for the day the lines were written, then `PATH.2025-01-31.1`, `.2`, … for
 *   further size rotations on that day, in the order they were written; the oldest past `keep` are deleted.
 *
 * Writes are synchronous on the calling thread, as pino's default stdout is, and each write is whole lines: a
 * rotation happens only between two writes (rename PATH, open a new PATH), so no line is lost or split across
 * files. pino-roll cannot do this: it always writes a numbered name (`mta-server.1.log`) and never PATH itself; a
 * pino transport would hand lines to a worker through a ring buffer that can cut a line in two.
 * A missing directory or an unwritable path: ConfigError. Later failures (disk full, directory gone) go to
 * `onError` and drop the line: logging must never stop mail.
 */
export async function openLogFile(options: LogFileOptions, onError: (error: Error) => void, clock: Clock = systemClock): Promise<LogFile> {
  const file = new RotatingLogFile(options, onError, clock);
  try {
    file.open();
  } catch (error) {
    throw new ConfigError(`--log-file ${options.path}: ${(error as Error).message}`);
  }
  file.prune();
  return {
    stream: { write: (line: string) => file.write(line) },
    path: options.path,
    reopen: () => file.reopen(),
    close: () => Promise.resolve(file.close()),
  };
}

/** `PATH.3` is { day: null, number: 3 }; `PATH.2025-01-31` is { day: '2025-01-31', number: 0 }, `.2` after it number 2. */
interface RotatedFile {
  name: string;
  day: string | null;
  number: number;
}

class RotatingLogFile {
  private readonly file: string;
  private readonly dir: string;
  private readonly base: string;
  private fd: number | null = null;
  private size = 0;
  /** Local date (YYYY-MM-DD) of the lines in the current file, and the local midnight that ends it. */
  private day = '';
  private dayEnds = Infinity;
  private closed = false;

  constructor(
    private readonly options: LogFileOptions,
    private readonly onError: (error: Error) => void,
    private readonly clock: Clock,
  ) {
    this.file = path.resolve(options.path);
    this.dir = path.dirname(this.file);
    this.base = path.basename(this.file);
  }

  /** Opens PATH for appending; a file that already holds lines keeps the day it was last written (a restart). */
  open(): void {
    const fd = openSync(this.file, 'a', 0o640);
    const { size, mtimeMs } = fstatSync(fd);
    this.fd = fd;
    this.size = size;
    this.setDay(size > 0 ? mtimeMs : this.clock.now());
  }

  write(line: string): void {
    if (this.closed) return;
    const bytes = Buffer.from(line, 'utf8');
    if (this.clock.now() >= this.dayEnds || (this.options.maxSize !== null && this.size > 0 && this.size + bytes.length > this.options.maxSize)) this.rotate();
    if (this.fd === null && !this.tryOpen()) return;
    try {
      for (let offset = 0; offset < bytes.length; ) {
        const written = writeSync(this.fd!, bytes, offset);
        if (written <= 0) throw new Error(`${this.options.path}: write made no progress`);
        offset += written;
      }
      this.size += bytes.length;
    } catch (error) {
      this.onError(error as Error);
    }
  }

  reopen(): void {
    if (this.closed) return;
    this.closeFd();
    this.tryOpen();
  }

  close(): void {
    this.closed = true;
    this.closeFd();
  }

  private rotate(): void {
    const target = this.options.daily ? this.datedName() : this.shiftNumbered();
    try {
      renameSync(this.file, target);
    } catch (error) {
      // ENOENT: PATH was moved away (logrotate before its SIGUSR1): its lines are safe there; start a new PATH.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.onError(error as Error);
        // Go on in the same file; try again after another --log-max-size or day, not at every line.
        this.size = 0;
        this.setDay(this.clock.now());
        return;
      }
    }
    this.closeFd();
    this.tryOpen();
    this.prune();
  }

  /** `PATH.<day>`, or `PATH.<day>.<n>` one past the highest n of that day when a file of that day was rotated already. */
  private datedName(): string {
    const ofDay = this.rotated().filter((entry) => entry.day === this.day);
    if (ofDay.length === 0) return `${this.file}.${this.day}`;
    return `${this.file}.${this.day}.${Math.max(...ofDay.map((entry) => entry.number)) + 1}`;
  }

  /** Moves `PATH.n` to `PATH.<n+1>` (deleting those that would pass `keep`) so that PATH can become `PATH.1`. */
  private shiftNumbered(): string {
    const numbered = this.rotated()
      .filter((entry) => entry.day === null)
      .sort((a, b) => b.number - a.number);
    for (const entry of numbered) {
      const from = path.join(this.dir, entry.name);
      this.housekeeping(() => (entry.number >= this.options.keep ? unlinkSync(from) : renameSync(from, `${this.file}.${entry.number + 1}`)));
    }
    return `${this.file}.1`;
  }

  /** Deletes rotated files beyond `keep`: numbered ones past `PATH.<keep>`, dated ones oldest first. */
  prune(): void {
    const rotated = this.rotated();
    const numbered = rotated.filter((entry) => entry.day === null && entry.number > this.options.keep);
    const dated = rotated.filter((entry) => entry.day !== null).sort((a, b) => (a.day === b.day ? a.number - b.number : a.day! < b.day! ? -1 : 1));
    for (const entry of [...numbered, ...dated.slice(0, Math.max(0, dated.length - this.options.keep))]) this.housekeeping(() => unlinkSync(path.join(this.dir, entry.name)));
  }

  /** This log's rotated files (`PATH.3`, `PATH.2025-01-31`, `PATH.2025-01-31.2`); other files in the directory are not ours. */
  private rotated(): RotatedFile[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    return names.flatMap((name): RotatedFile[] => {
      if (!name.startsWith(`${this.base}.`)) return [];
      const match = /^(?:(\d+)|(\d{4}-\d{2}-\d{2})(?:\.(\d+))?)$/.exec(name.slice(this.base.length + 1));
      if (!match) return [];
      return match[1] !== undefined ? [{ name, day: null, number: Number(match[1]) }] : [{ name, day: match[2]!, number: Number(match[3] ?? 0) }];
    });
  }

  private tryOpen(): boolean {
    try {
      this.open();
      return true;
    } catch (error) {
      this.onError(error as Error);
      return false;
    }
  }

  private closeFd(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    this.housekeeping(() => closeSync(fd));
  }

  private setDay(ms: number): void {
    const date = new Date(ms);
    this.day = localDay(date);
    this.dayEnds = this.options.daily ? new Date(date.getFullYear(), date.getMonth(), date.getDate() + 1).getTime() : Infinity;
  }

  /** Pruning and renaming older files is housekeeping: a file someone else removed must not stop logging. */
  private housekeeping(step: () => void): void {
    try {
      step();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.onError(error as Error);
    }
  }
}

function localDay(date: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}`;
}
