import { access } from 'node:fs/promises';
import { constants } from 'node:fs';
import { BENCH_RECIPIENT, BENCH_SENDER } from './message.js';
import { runCommand } from './proc.js';

export const SMTP_SOURCE = '/usr/sbin/smtp-source';

export async function hasSmtpSource(): Promise<boolean> {
  try {
    await access(SMTP_SOURCE, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface SmtpSourceResult {
  elapsedMs: number;
  ok: boolean;
  error: string | null;
}

/**
 * Postfix's load generator exactly as shared/design/peers.md runs it: `-c -d -s S -m M -l SIZE -f … -t …`
 * (-m is the total over all sessions, -d keeps each connection open). Wall time from spawn to exit; the
 * counter `-c` prints goes nowhere. Killed (by PID) if it outlives `timeoutMs`.
 */
export async function runSmtpSource(port: number, sessions: number, messages: number, size: number, timeoutMs: number): Promise<SmtpSourceResult> {
  const args = ['-c', '-d', '-s', String(sessions), '-m', String(messages), '-l', String(size), '-f', BENCH_SENDER, '-t', BENCH_RECIPIENT, `127.0.0.1:${port}`];
  const result = await runCommand(SMTP_SOURCE, args, { timeoutMs, ignoreStdout: true });
  const ok = result.code === 0 && !result.timedOut;
  const error = ok ? null : result.timedOut ? `smtp-source killed after ${timeoutMs} ms` : `smtp-source exited ${result.code ?? result.signal}: ${result.stderr.trim().split('\n').slice(-2).join(' | ')}`;
  return { elapsedMs: result.elapsedMs, ok, error };
}
