import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/shared/logger.js';

export type LogLine = Record<string, unknown> & { event?: string; msg?: string; level: number };

/** A real pino logger whose JSON lines the test can read back (what an operator would grep). */
export class LogCapture {
  readonly raw: string[] = [];
  readonly logger: Logger;

  constructor(level = 'debug') {
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        this.raw.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    this.logger = createLogger({ level, destination: sink });
  }

  lines(): LogLine[] {
    return this.raw.map((line) => JSON.parse(line) as LogLine);
  }

  events(event: string): LogLine[] {
    return this.lines().filter((line) => line.event === event);
  }

  text(): string {
    return this.raw.join('\n');
  }
}
