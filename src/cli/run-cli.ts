import { Command, CommanderError, Option } from 'commander';
import { ConfigError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';

/** Exit statuses of shared/design/cli.md. */
export const EXIT = { ok: 0, runtime: 1, usage: 2 } as const;

/** A flag that also reads its MTA_* variable (`--max-size` → MTA_MAX_SIZE); the command line wins. */
export function envOption(flags: string, description: string): Option {
  const long = /--([a-z0-9-]+)/.exec(flags)![1]!;
  return new Option(flags, description).env(`MTA_${long.toUpperCase().replace(/-/g, '_')}`);
}

/**
 * Runs a commander program so that every usage or configuration problem is one line on stderr and exit 2,
 * and anything else that escapes is one line and exit 1: operators never see a stack trace.
 */
export async function runCli(program: Command, argv: string[]): Promise<void> {
  const name = program.name();
  program.exitOverride();
  program.configureOutput({ outputError: (text, write) => write(text.split('\n')[0]!.replace(/^error: /, `${name}: `) + '\n') });
  for (const sub of program.commands) {
    sub.exitOverride();
    sub.configureOutput({ outputError: (text, write) => write(text.split('\n')[0]!.replace(/^error: /, `${name}: `) + '\n') });
  }
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exit(['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code) ? EXIT.ok : EXIT.usage);
    }
    const usage = error instanceof ConfigError;
    process.stderr.write(`${name}: ${(error as Error).message}\n`);
    process.exit(usage ? EXIT.usage : EXIT.runtime);
  }
}

/** SIGTERM/SIGINT close the daemon once and exit 0 (1 if closing failed); SIGHUP calls `reload` when there is one. */
export function stopOnSignals(logger: Logger, daemon: { close(): Promise<void>; reload?(): Promise<void> }): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ event: 'signal', signal }, `${signal}: shutting down`);
    daemon.close().then(
      () => process.exit(EXIT.ok),
      () => process.exit(EXIT.runtime),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const reload = daemon.reload?.bind(daemon);
  if (reload) process.on('SIGHUP', () => void reload());
}
