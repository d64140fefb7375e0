import { pino, type Logger, type DestinationStream } from 'pino';

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
