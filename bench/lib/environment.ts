import { execFile } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { percentile } from './stats.js';

export interface Environment {
  date: string;
  node: string;
  cpus: number;
  cpuModel: string;
  kernel: string;
  memoryGb: number;
  loadAverage: number[];
  commit: string;
  /** Median time of one 4 KB write + fdatasync in the temp dir the spools live in. */
  fdatasyncMs: number;
  tmpdir: string;
}

export async function describeEnvironment(repoRoot: string): Promise<Environment> {
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    kernel: `${os.type()} ${os.release()}`,
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    loadAverage: os.loadavg().map((value) => Math.round(value * 100) / 100),
    commit: await gitCommit(repoRoot),
    fdatasyncMs: await probeFdatasync(os.tmpdir(), 200),
    tmpdir: os.tmpdir(),
  };
}

async function gitCommit(repoRoot: string): Promise<string> {
  const run = promisify(execFile);
  try {
    const head = (await run('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot })).stdout.trim();
    const dirty = (await run('git', ['status', '--porcelain', '--untracked-files=no', 'src'], { cwd: repoRoot })).stdout.trim();
    return dirty ? `${head} (+ uncommitted changes in src/)` : head;
  } catch {
    return 'unknown';
  }
}

/** What one durable write costs on this disk: the floor under any per-message fsync design. */
async function probeFdatasync(dir: string, count: number): Promise<number> {
  const probeDir = await mkdtemp(path.join(dir, 'mta-bench-fsync-'));
  const handle = await open(path.join(probeDir, 'probe'), 'w');
  const block = Buffer.alloc(4096, 'x');
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i += 1) {
      const started = performance.now();
      await handle.write(block, 0, block.length, (i % 16) * block.length);
      await handle.datasync();
      times.push(performance.now() - started);
    }
  } finally {
    await handle.close();
    await rm(probeDir, { recursive: true, force: true });
  }
  return Math.round(percentile(times, 50) * 1000) / 1000;
}
