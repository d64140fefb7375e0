/**
 * What every benchmark's main needs around it: cleanups (temp dirs, processes) run once, newest first, at the end
 * or on Ctrl-C; after Ctrl-C nothing new starts; exit status 130 when interrupted, 2 for a usage error found only
 * once running (a flag this build lacks, a --policy file it refuses), as for a bad flag, 1 on failure.
 */
export class Interrupted extends Error {}

export class BenchRun {
  readonly cleanups = new Set<() => Promise<unknown>>();
  private interrupted = false;
  private cleaning: Promise<void> | undefined;

  constructor(private readonly progress: (text: string) => void) {}

  /** Throws Interrupted after Ctrl-C: the measurement in progress ends (its processes are being stopped). */
  readonly checkInterrupted = (): void => {
    if (this.interrupted) throw new Interrupted('interrupted');
  };

  /** Runs every cleanup once, newest first; a second caller (signal and normal end together) waits for the first. */
  cleanUp(): Promise<void> {
    this.cleaning ??= (async () => {
      for (const cleanup of [...this.cleanups].reverse()) {
        this.cleanups.delete(cleanup);
        await cleanup().catch((error: Error) => this.progress(`cleanup: ${error.message}`));
      }
    })();
    return this.cleaning;
  }

  /** `main` with the signal handlers in place; `stopping` names what Ctrl-C stops, for the progress line. */
  async run(name: string, stopping: string, isUsageError: (error: unknown) => boolean, main: () => Promise<void>): Promise<void> {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.on(signal, () => {
        if (this.interrupted) return;
        this.interrupted = true;
        this.progress(`${signal}: stopping ${stopping}, removing temp files…`);
        void this.cleanUp().finally(() => process.exit(130));
      });
    }
    try {
      await main();
    } catch (error) {
      const usage = isUsageError(error);
      process.exitCode = error instanceof Interrupted ? 130 : usage ? 2 : 1;
      if (usage) this.progress(`${name}: ${(error as Error).message}`);
      else if (!(error instanceof Interrupted)) this.progress(`${name} failed: ${(error as Error).stack ?? String(error)}`);
    } finally {
      await this.cleanUp();
    }
  }
}
