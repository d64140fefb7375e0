import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../shared/errors.js';
import { warnIfReadableByOthers } from '../shared/file-permissions.js';
import type { Logger } from '../shared/logger.js';
import { activeKeysByDomain } from './key-choice.js';
import { dkimKeyPaths, loadDkimKeys, type DkimKey } from './key-store.js';

/**
 * The keys a running mta-queue signs with: loaded (each PEM parsed once) at start, on SIGHUP, and when a look at
 * the directory every `pollInterval` sees a file change (`mta-queue dkim activate` in another process). A load
 * replaces the whole set at once; a signature under way keeps the keys it started with. A load that fails keeps
 * the keys there were: no delivery waits for, or is dropped by, a reload.
 */
export class DkimKeyring {
  private active = new Map<string, DkimKey[]>();
  private fingerprint: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private loading: Promise<void> | undefined;

  constructor(
    private readonly dir: string,
    private readonly logger: Logger,
    /** How often the directory is looked at (a stat per file, no read unless something changed). */
    private readonly pollInterval = 2000,
  ) {}

  /** The active keys by domain, what key-choice.ts chooses from. */
  activeKeys(): ReadonlyMap<string, DkimKey[]> {
    return this.active;
  }

  /** Loads the keys now (start, SIGHUP); concurrent calls share one load. Rejects only at start (ConfigError). */
  load(reason: 'start' | 'sighup' | 'changed'): Promise<void> {
    this.loading ??= this.loadOnce(reason).finally(() => (this.loading = undefined));
    return this.loading;
  }

  /** Starts looking for changes; close() stops. */
  watch(): void {
    this.timer = setInterval(() => void this.reloadIfChanged(), this.pollInterval);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async reloadIfChanged(): Promise<void> {
    if (this.loading) return;
    const now = await directoryFingerprint(this.dir).catch(() => undefined);
    if (now !== undefined && now !== this.fingerprint) await this.load('changed');
  }

  private async loadOnce(reason: 'start' | 'sighup' | 'changed'): Promise<void> {
    const log = this.logger;
    try {
      // Taken before the read: a change made during it shows as another change at the next look.
      const fingerprint = await directoryFingerprint(this.dir);
      const skipped: { file: string; reason: string }[] = [];
      const keys = await loadDkimKeys(this.dir, (entry) => skipped.push(entry));
      this.active = activeKeysByDomain(keys);
      this.fingerprint = fingerprint;
      for (const entry of skipped) log.warn({ event: 'dkim-key-skipped', file: entry.file, reason: entry.reason }, 'DKIM key file left out');
      await warnIfReadableByOthers(privateFiles(this.dir, keys), log);
      const active = [...this.active.values()].flat();
      const line = {
        event: 'dkim-keys-loaded',
        reason,
        dir: this.dir,
        keys: keys.length,
        active: active.length,
        domains: this.active.size,
        skipped: skipped.length,
        signing: active.map((key) => `${key.domain}/${key.selector}/${key.type}`),
      };
      if (fingerprint === MISSING) log.info({ ...line, missing: true }, `no DKIM key directory ${this.dir}: mail is delivered unsigned`);
      else if (active.length === 0) log.info(line, 'no active DKIM key: mail is delivered unsigned');
      else log.info(line, 'DKIM keys loaded');
    } catch (error) {
      // At start there are no keys to go on with: an unreadable directory is a configuration error (exit 2).
      if (reason === 'start') throw new ConfigError(`--dkim-dir ${this.dir}: ${(error as Error).message}`);
      log.error({ event: 'dkim-keys-error', reason, dir: this.dir, err: error }, 'could not read the DKIM keys; signing goes on with the keys loaded before');
    }
  }
}

const MISSING = 'missing';

/** The directory, each domain's and every private key: a leaked key of any state signs for as long as its record is published. */
function privateFiles(dir: string, keys: readonly DkimKey[]): (readonly [string, string])[] {
  const paths = keys.map((key) => dkimKeyPaths(dir, key.domain, key.selector));
  const dirs = [dir, ...new Set(paths.map((entry) => entry.domainDir))];
  const pems = paths.map((entry) => entry.pem);
  return [...dirs.map((name) => ['dkim-dir', name] as const), ...pems.map((pem) => ['dkim-key', pem] as const)];
}

/** Names, sizes and change times of everything under `dir` (two levels): cheap to take, different after any write. */
async function directoryFingerprint(dir: string): Promise<string> {
  let domains;
  try {
    domains = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return MISSING;
    throw error;
  }
  const parts: string[] = [];
  for (const domain of domains.filter((entry) => entry.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
    const domainDir = path.join(dir, domain.name);
    const files = (await readdir(domainDir).catch(() => [] as string[])).filter((name) => !name.startsWith('.')).sort();
    for (const name of files) {
      const info = await stat(path.join(domainDir, name)).catch(() => null);
      parts.push(`${domain.name}/${name}:${info?.size}:${info?.mtimeMs}:${info?.ino}`);
    }
  }
  return parts.join('\n');
}
