import type { Server } from 'node:http';
import net from 'node:net';
import type { FastifyRequest } from 'fastify';
import { hostOf } from '../config/queue-config.js';
import type { Clock } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';

/**
 * What the web UI checks before any route: which `Host` it answers, who the client is behind a proxy, whether a
 * browser request comes from another site, and how many connections it keeps. Everything here is decided by what
 * a stranger sends, so every refusal it logs is rate-limited.
 */

/** Time between two lines of one rate-limited warning. */
export const REFUSAL_LOG_INTERVAL_MS = 60_000;

/**
 * A warning any client can cause as often as it likes: the first is logged, then at most one line per interval,
 * with `unlogged`, how many were not logged in between.
 */
export function rateLimitedWarning(logger: Logger, clock: Clock, event: string): (fields: Record<string, unknown>, message: string) => void {
  let loggedAt = -Infinity;
  let unlogged = 0;
  return (fields, message) => {
    const now = clock.now();
    if (now - loggedAt < REFUSAL_LOG_INTERVAL_MS) return void unlogged++;
    loggedAt = now;
    logger.warn({ event, ...fields, ...(unlogged > 0 ? { unlogged } : {}) }, message);
    unlogged = 0;
  };
}

/** fastify's trustProxy: a peer in the list may name the client in X-Forwarded-For (and the scheme in X-Forwarded-Proto). */
export function trustedPeers(list: net.BlockList): (address: string) => boolean {
  return (address) => {
    const family = net.isIP(address);
    return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  };
}

/**
 * The client's address: the peer, or behind a trusted proxy the address it forwarded. A trusted peer that forwards
 * something that is no address (its own client wrote it) is taken for the client itself.
 */
export function clientAddress(request: FastifyRequest): string {
  return net.isIP(request.ip) ? request.ip : (request.socket.remoteAddress ?? '');
}

/**
 * Why the `Host` of a request is not one the UI answers, or null when it is. A page of another name that the
 * attacker's DNS points at 127.0.0.1 (DNS rebinding) reaches the UI as same-origin for the browser; only its
 * `Host` tells. The raw header, not X-Forwarded-Host: a proxy passes that one on from the client unless told not to.
 */
export function hostRefusal(request: FastifyRequest, hostnames: ReadonlySet<string>): { status: number; message: string } | null {
  const host = request.headers.host;
  if (host === undefined || host === '') return { status: 400, message: 'no Host header' };
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d*$/, '');
  return hostnames.has(hostOf(name)) ? null : { status: 421, message: 'this server does not answer for that host name' };
}

/**
 * Why a request is one a browser sent from a page of another site, or null when it is not. Sec-Fetch-Site decides
 * where the browser sends it: our pages' `Referrer-Policy: no-referrer` makes Chromium send `Origin: null` even on
 * our own form posts. Otherwise Origin must be ours. Scripts (curl) send neither header.
 */
export function crossSiteReason(request: FastifyRequest): string | null {
  const fetchSite = request.headers['sec-fetch-site'];
  const origin = request.headers.origin;
  const ownOrigin = `${request.protocol}://${request.headers.host ?? ''}`;
  if (fetchSite === undefined ? origin === undefined || origin === ownOrigin : fetchSite === 'same-origin' || fetchSite === 'none') return null;
  return `Origin ${String(origin ?? '-').slice(0, 100)}, Sec-Fetch-Site ${String(fetchSite ?? '-').slice(0, 20)}`;
}

/**
 * Each connection is a file descriptor of the process that also delivers mail: beyond `max`, Node closes new ones
 * as they are accepted, so idle sockets cannot use up the descriptors the spool and the MX connections need.
 */
export function capConnections(server: Server, max: number, warn: ReturnType<typeof rateLimitedWarning>): void {
  server.maxConnections = max;
  server.on('drop', (dropped?: { remoteAddress?: string }) => warn({ client: dropped?.remoteAddress, max }, `web UI connection closed: ${max} open already`));
}
