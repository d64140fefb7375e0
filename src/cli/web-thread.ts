import { getPriority, setPriority } from 'node:os';

/**
 * The entry of the web UI's thread (web-thread-server.ts). Under CPU contention delivery comes first: Linux keeps
 * a nice value per thread, and this lowers only this thread's, before anything is loaded, so the UI's start
 * (fastify, the templates: a few hundred ms of CPU) yields too. Elsewhere, or where it is refused, the UI runs at
 * the daemon's priority and works the same.
 */
const UI_THREAD_NICENESS = 10;
try {
  setPriority(0, Math.min(19, getPriority(0) + UI_THREAD_NICENESS));
} catch {
  // Not ours to insist on.
}
await import('./web-thread-server.js');
