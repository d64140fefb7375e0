import { readdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { pino, type Logger, type DestinationStream } from 'pino';
import pinoRoll, { type RollingStream } from 'pino-roll';
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
  /** A new file once the current one reaches this many bytes (a soft limit: checked after each write); null: no limit. */
  maxSize: number | null;
  /** A new file at local midnight, the date in its name. */
  daily: boolean;
  /** Rotated files kept besides the one being written. */
  keep: number;
}

export interface LogFile {
  /** What createLogger's `destination` takes. Writes after close() are dropped rather than thrown. */
  stream: DestinationStream;
  /** The file being written now. */
  current(): string;
  /** Flushes to disk and closes; lines written so far are all in the files when this resolves. */
  close(): Promise<void>;
}

/**
 * Opens the log file through pino-roll (`mta-server.log` is written as `mta-server.1.log`, `mta-server.2.log`, …, or
 * `mta-server.2025-01-31.1.log` when daily). Writes are synchronous on the calling thread, as pino's default stdout
 * is: every write is whole lines and a rotation happens only between writes, so no line is lost or split across
 * files. (A pino transport would hand lines to a worker through a ring buffer that can cut a line in two, and
 * pino-roll may rotate between the two halves.) Unusable path or directory: ConfigError.
 */
export async function openLogFile(options: LogFileOptions, onError: (error: Error) => void): Promise<LogFile> {
  const extension = path.extname(options.path) || '.log';
  const base = path.basename(options.path, path.extname(options.path));
  const dir = path.dirname(path.resolve(options.path));
  let sonic: RollingStream;
  try {
    // pino-roll takes the extension from the last dot of the whole path, so the path always ends in one.
    sonic = await pinoRoll({
      file: path.join(dir, base + extension),
      ...(options.maxSize !== null && { size: `${options.maxSize}b` }),
      ...(options.daily && { frequency: 'daily', dateFormat: 'yyyy-MM-dd' }),
      // Synchronous: the file is open (or this threw) when pino-roll resolves.
      sync: true,
      mode: 0o640,
    });
  } catch (error) {
    throw new ConfigError(`--log-file ${options.path}: ${(error as Error).message}`);
  }
  const prune = () => pruneLogFiles(dir, base, extension, options.keep, sonic.file);
  prune();
  sonic.on('ready', prune);
  sonic.on('error', onError);
  let closed = false;
  return {
    stream: {
      write(line: string) {
        if (!closed) sonic.write(line);
      },
    },
    current: () => sonic.file,
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise((resolve) => {
        sonic.once('close', () => resolve());
        sonic.end();
      });
    },
  };
}

/**
 * Deletes this log's oldest files beyond `keep` rotated ones, by date then number in the name, never the current
 * one. Other files in the directory (the other daemon's log) are not touched. Once per rotation, so synchronous.
 */
function pruneLogFiles(dir: string, base: string, extension: string, keep: number, current: string | null): void {
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^${escape(base)}\\.(?:(\\d{4}-\\d{2}-\\d{2})\\.)?(\\d+)${escape(extension)}$`);
  try {
    const files = readdirSync(dir)
      .flatMap((name) => {
        const match = pattern.exec(name);
        return match ? [{ name, date: match[1] ?? '', number: Number(match[2]) }] : [];
      })
      .filter((file) => path.join(dir, file.name) !== current)
      .sort((a, b) => (a.date === b.date ? a.number - b.number : a.date < b.date ? -1 : 1));
    for (const file of files.slice(0, Math.max(0, files.length - keep))) unlinkSync(path.join(dir, file.name));
  } catch {
    // Pruning is housekeeping: a file removed by someone else, or a directory listing that failed, must not stop logging.
  }
}
