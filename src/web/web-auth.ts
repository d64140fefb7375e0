import { createHmac, randomBytes } from 'node:crypto';
import type { AuthThrottle } from '../shared/auth-throttle.js';
import type { Clock } from '../shared/clock.js';
import type { UserStore } from '../config/user-store.js';

/**
 * Who is asking: a browser session (a random id in an HttpOnly, SameSite=Strict cookie, kept in memory, so a
 * restart of mta-queue logs everyone out) or a script with HTTP Basic. Both check the password against the web
 * users file through the throttle AUTH uses, so the login form is no faster a guessing oracle than port 587; but
 * counted per account and address, so guesses from elsewhere never lock the operator out of the UI.
 */

export const SESSION_COOKIE = 'mta_session';
export const SESSION_IDLE_MS = 12 * 60 * 60_000;
/** However busy a session, it ends after this: a stolen cookie is not good for ever. */
export const SESSION_MAX_MS = 7 * 24 * 60 * 60_000;
/**
 * Password checks waiting or running at once. Each is one scrypt, two at a time (shared/password-hash.ts): beyond
 * this, a flood of guesses from many addresses would queue the right password behind seconds of them, so the
 * excess is refused at once (429) instead.
 */
export const MAX_PENDING_CHECKS = 20;
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
  startedAt: number;
  lastSeen: number;
  /** UserStore.passwordVersion at login: the session ends when the user's password changes. */
  passwordVersion: object | undefined;
}

export type Credentials = { user: string; password: string };

/**
 * `wrong`: checked and refused (`blocked`: this failure started a block); `blocked`: not checked, the account is
 * blocked at this address; `busy`: not checked, MAX_PENDING_CHECKS are waiting already.
 */
export type LoginResult = { kind: 'ok'; user: string } | { kind: 'wrong'; blocked: boolean } | { kind: 'blocked' } | { kind: 'busy' };

export class WebAuth {
  private readonly sessions = new Map<string, WebSession>();
  /** HMAC of user and password (never the password itself) → when it stops being trusted. */
  private readonly basicPassed = new Map<string, number>();
  private readonly basicKey = randomBytes(32);
  private pendingChecks = 0;

  constructor(
    private readonly users: UserStore,
    private readonly throttle: AuthThrottle,
    private readonly clock: Clock,
    private readonly idleMs = SESSION_IDLE_MS,
  ) {}

  /** One password check, counted against the account at the client's address. */
  async checkPassword(address: string, credentials: Credentials): Promise<LoginResult> {
    if (this.pendingChecks >= MAX_PENDING_CHECKS) return { kind: 'busy' };
    this.pendingChecks++;
    try {
      return await this.checkThrottled(address, credentials);
    } finally {
      this.pendingChecks--;
    }
  }

  private async checkThrottled(address: string, { user, password }: Credentials): Promise<LoginResult> {
    const attempt = await this.throttle.begin(address, this.budgetOf(user));
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
    return { kind: 'wrong', blocked: attempt.failed() };
  }

  /** Names not in the users file share one budget per address: made-up names cannot grow the throttle's tables. */
  private budgetOf(user: string): string {
    return this.users.has(user) ? user : '';
  }

  /** checkPassword for HTTP Basic, answered from memory when the same credentials passed within BASIC_CACHE_MS. */
  async checkBasic(address: string, credentials: Credentials): Promise<LoginResult> {
    const key = createHmac('sha256', this.basicKey).update(credentials.user).update('\0').update(credentials.password).digest('base64');
    const now = this.clock.now();
    const until = this.basicPassed.get(key);
    if (until !== undefined && until > now && !this.throttle.isBlocked(address, this.budgetOf(credentials.user))) return { kind: 'ok', user: credentials.user };
    this.basicPassed.delete(key);
    const result = await this.checkPassword(address, credentials);
    if (result.kind === 'ok') {
      if (this.basicPassed.size >= MAX_BASIC_CACHED) this.basicPassed.clear();
      this.basicPassed.set(key, now + BASIC_CACHE_MS);
    }
    return result;
  }

  /** The users file was reloaded (SIGHUP): credentials must pass again; a removed user's sessions end, as do those opened with a password since changed. */
  usersReloaded(): void {
    this.basicPassed.clear();
    for (const session of this.sessions.values()) if (!this.live(session, this.clock.now())) this.sessions.delete(session.id);
  }

  startSession(user: string): WebSession {
    if (this.sessions.size >= MAX_SESSIONS) this.sweep(true);
    const now = this.clock.now();
    const session = { id: randomBytes(32).toString('base64url'), user, startedAt: now, lastSeen: now, passwordVersion: this.users.passwordVersion(user) };
    this.sessions.set(session.id, session);
    return session;
  }

  /** The live session with this id, its idle clock restarted; undefined when unknown, idle too long, too old or its password changed. */
  session(id: string | undefined): WebSession | undefined {
    if (id === undefined) return undefined;
    const session = this.sessions.get(id);
    if (!session) return undefined;
    const now = this.clock.now();
    if (!this.live(session, now)) {
      this.sessions.delete(id);
      return undefined;
    }
    session.lastSeen = now;
    return session;
  }

  private live(session: WebSession, now: number): boolean {
    return now - session.lastSeen <= this.idleMs && now - session.startedAt <= SESSION_MAX_MS && this.users.passwordVersion(session.user) === session.passwordVersion;
  }

  endSession(id: string | undefined): void {
    if (id !== undefined) this.sessions.delete(id);
  }

  private sweep(evictOldest: boolean): void {
    const now = this.clock.now();
    let oldest: WebSession | undefined;
    for (const session of this.sessions.values()) {
      if (!this.live(session, now)) this.sessions.delete(session.id);
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
