import { Command, CommanderError, Option } from 'commander';
import { ConfigError } from '../shared/errors.js';
import { createLogger, openLogFile, type LogFile, type LogFileOptions, type Logger } from '../shared/logger.js';

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
  // Every level (`mta-queue dkim keygen` is two deep): commander would otherwise exit 1 on a usage error itself.
  const oneLineErrors = (command: Command) => {
    command.exitOverride();
    command.configureOutput({ outputError: (text, write) => write(text.split('\n')[0]!.replace(/^error: /, `${name}: `) + '\n') });
    command.commands.forEach(oneLineErrors);
  };
  oneLineErrors(program);
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // `--help`, `help` and `--version` exit 0; help shown because a subcommand is missing (`mta-queue dkim`) is usage.
      process.exit(['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code) && error.exitCode === 0 ? EXIT.ok : EXIT.usage);
    }
    const usage = error instanceof ConfigError;
    process.stderr.write(`${name}: ${(error as Error).message}\n`);
    process.exit(usage ? EXIT.usage : EXIT.runtime);
  }
}

/** Minimum gap between two stderr reports of a failing log file (a full disk fails every line). */
const LOG_ERROR_REPORT_MS = 60_000;

/** The `--log-file` behind each daemon logger, for runUntilSignalled's SIGUSR1. */
const logFiles = new WeakMap<Logger, LogFile>();

/**
 * The daemon's logger: JSON lines (or pino-pretty) on stdout, or the rotated `--log-file`. A log file that stops
 * being writable does not stop mail: the error goes to stderr (journald), at most once a minute.
 */
export async function openDaemonLogger(name: string, config: { logLevel: string; logFormat: 'json' | 'pretty'; logFile: LogFileOptions | null }): Promise<Logger> {
  let reported = 0;
  const reportError = (error: Error) => {
    if (Date.now() - reported < LOG_ERROR_REPORT_MS) return;
    reported = Date.now();
    process.stderr.write(`${name}: log file: ${error.message}\n`);
  };
  const file = config.logFile ? await openLogFile(config.logFile, reportError) : null;
  const logger = createLogger({ level: config.logLevel, pretty: config.logFormat === 'pretty', destination: file?.stream });
  if (file) logFiles.set(logger, file);
  return logger;
}

interface Daemon {
  close(): Promise<void>;
  reload?(): Promise<void>;
}

/**
 * Starts a daemon with its signal handlers already in place: SIGTERM/SIGINT close it once and exit 0 (1 if
 * closing failed), also when they arrive while it is still starting; SIGHUP calls `reload` when there is one;
 * SIGUSR1 reopens the `--log-file` (logrotate moves the file, then signals). Without a listener of ours SIGUSR1
 * would end the daemon (Node 20 here dies of it) or, where Node's own handler is armed, open an inspector port.
 */
export async function runUntilSignalled(logger: Logger, start: () => Promise<Daemon>): Promise<void> {
  let daemon: Daemon | undefined;
  let requested: NodeJS.Signals | undefined;
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (!daemon) return void (requested ??= signal);
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
  process.on('SIGHUP', () => void daemon?.reload?.());
  process.on('SIGUSR1', () => {
    const file = logFiles.get(logger);
    if (!file) return void logger.info({ event: 'signal', signal: 'SIGUSR1' }, 'SIGUSR1: no --log-file to reopen');
    file.reopen();
    logger.info({ event: 'log-reopened', file: file.path }, 'SIGUSR1: log file reopened');
  });
  daemon = await start();
  if (requested) stop(requested);
}
