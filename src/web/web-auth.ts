import { createHmac, randomBytes } from 'node:crypto';
import type { AuthThrottle } from '../shared/auth-throttle.js';
import type { Clock } from '../shared/clock.js';
import type { UserStore } from '../config/user-store.js';

/**
 * Who is asking: a browser session (a random id in an HttpOnly, SameSite=Strict cookie, kept in memory, so a
 * restart of mta-queue logs everyone out) or a script with HTTP Basic. Both check the password against the web
 * users file through the same per-address throttle AUTH uses, so the login form is no faster a guessing oracle
 * than port 587.
 */

export const SESSION_COOKIE = 'mta_session';
export const SESSION_IDLE_MS = 12 * 60 * 60_000;
/** Sessions kept at most: a flood of logins cannot grow memory without end (the oldest idle one goes). */
const MAX_SESSIONS = 10_000;
/**
 * How long HTTP Basic credentials that passed stay known. A script polling the API sends them with every request,
 * and each check is one scrypt (tens of ms of CPU in the delivery daemon); Apache's mod_authn_socache does the same.
 */
export const BASIC_CACHE_MS = 60_000;
const MAX_BASIC_CACHED = 1000;

export interface WebSession {
  id: string;
  user: string;
  lastSeen: number;
}

export type Credentials = { user: string; password: string };

export type LoginResult = { kind: 'ok'; user: string } | { kind: 'wrong' } | { kind: 'blocked' };

export class WebAuth {
  private readonly sessions = new Map<string, WebSession>();
  /** HMAC of user and password (never the password itself) → when it stops being trusted. */
  private readonly basicPassed = new Map<string, number>();
  private readonly basicKey = randomBytes(32);

  constructor(
    private readonly users: UserStore,
    private readonly throttle: AuthThrottle,
    private readonly clock: Clock,
    private readonly idleMs = SESSION_IDLE_MS,
  ) {}

  /** One password check, counted against the client's address. */
  async checkPassword(address: string, { user, password }: Credentials): Promise<LoginResult> {
    const attempt = await this.throttle.begin(address);
    if (!attempt) return { kind: 'blocked' };
    let matches: boolean;
    try {
      matches = await this.users.verify(user, password);
    } catch (error) {
      attempt.failed();
      throw error;
    }
    if (matches) {
      attempt.succeeded();
      return { kind: 'ok', user };
    }
    return attempt.failed() ? { kind: 'blocked' } : { kind: 'wrong' };
  }

  /** checkPassword for HTTP Basic, answered from memory when the same credentials passed within BASIC_CACHE_MS. */
  async checkBasic(address: string, credentials: Credentials): Promise<LoginResult> {
    const key = createHmac('sha256', this.basicKey).update(credentials.user).update('\0').update(credentials.password).digest('base64');
    const now = this.clock.now();
    const until = this.basicPassed.get(key);
    if (until !== undefined && until > now && !this.throttle.isBlocked(address)) return { kind: 'ok', user: credentials.user };
    this.basicPassed.delete(key);
    const result = await this.checkPassword(address, credentials);
    if (result.kind === 'ok') {
      if (this.basicPassed.size >= MAX_BASIC_CACHED) this.basicPassed.clear();
      this.basicPassed.set(key, now + BASIC_CACHE_MS);
    }
    return result;
  }

  /** The users file was reloaded (SIGHUP): credentials must pass again, and a removed user's sessions end. */
  usersReloaded(): void {
    this.basicPassed.clear();
    for (const session of this.sessions.values()) if (!this.users.has(session.user)) this.sessions.delete(session.id);
  }

  startSession(user: string): WebSession {
    if (this.sessions.size >= MAX_SESSIONS) this.sweep(true);
    const session = { id: randomBytes(32).toString('base64url'), user, lastSeen: this.clock.now() };
    this.sessions.set(session.id, session);
    return session;
  }

  /** The live session with this id, its idle clock restarted; undefined when unknown or idle too long. */
  session(id: string | undefined): WebSession | undefined {
    if (id === undefined) return undefined;
    const session = this.sessions.get(id);
    if (!session) return undefined;
    const now = this.clock.now();
    if (now - session.lastSeen > this.idleMs) {
      this.sessions.delete(id);
      return undefined;
    }
    session.lastSeen = now;
    return session;
  }

  endSession(id: string | undefined): void {
    if (id !== undefined) this.sessions.delete(id);
  }

  private sweep(evictOldest: boolean): void {
    const now = this.clock.now();
    let oldest: WebSession | undefined;
    for (const session of this.sessions.values()) {
      if (now - session.lastSeen > this.idleMs) this.sessions.delete(session.id);
      else if (!oldest || session.lastSeen < oldest.lastSeen) oldest = session;
    }
    if (evictOldest && this.sessions.size >= MAX_SESSIONS && oldest) this.sessions.delete(oldest.id);
  }
}

/** `Authorization: Basic …` (RFC 7617); undefined when the header is absent or not Basic. */
export function parseBasicAuth(header: string | undefined): Credentials | undefined {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header?.trim() ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
