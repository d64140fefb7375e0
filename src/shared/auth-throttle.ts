import net from 'node:net';
import type { Clock } from '../shared/clock.js';

export interface AuthThrottlePolicy {
  /** Failed AUTH attempts from one address within `window` that get it blocked. */
  maxFailures: number;
  window: number;
  /** How long a blocked address is refused (421 4.7.0 at connect and on AUTH). */
  blockFor: number;
}

export const DEFAULT_AUTH_THROTTLE: AuthThrottlePolicy = { maxFailures: 5, window: 10 * 60_000, blockFor: 15 * 60_000 };

/** Above this many tracked addresses, stale entries are swept so a spray of addresses cannot grow memory without end. */
const SWEEP_THRESHOLD = 10_000;

/** One AUTH check in flight: it holds a place in its address's budget until it ends one way or the other. */
export interface AuthAttempt {
  /**
   * The password matched. No block can have come meanwhile: failures plus attempts in flight never exceed the
   * limit, so while this one was in flight the others could not reach it.
   */
  succeeded(): void;
  /** The password did not match; true when this failure got the address blocked. */
  failed(): boolean;
}

interface AddressState {
  failures: number[];
  inFlight: number;
  waiting: (() => void)[];
}

/**
 * Password-guessing brake per client address, like Postfix's anvil or fail2ban in-process. Three bypasses are
 * closed by construction: a success never clears failures (one valid account must not buy endless guesses at
 * others); an attempt counts from the moment it starts, so parallel AUTHs wait for a place instead of racing past
 * the limit; and IPv6 clients are counted per /64, since one host can use any address of its prefix.
 */
export class AuthThrottle {
  private readonly addresses = new Map<string, AddressState>();
  private readonly blockedUntil = new Map<string, number>();

  constructor(
    private readonly policy: AuthThrottlePolicy,
    private readonly clock: Clock,
  ) {}

  /** `account`: counted per account and address instead of per address (see begin). */
  isBlocked(address: string, account?: string): boolean {
    return this.blockedKey(budgetKey(address, account));
  }

  /**
   * Resolves once the address may check one more password (failures in the window plus attempts in flight stay
   * under the limit), or to null when it is blocked, also when it got blocked while this attempt waited.
   * With `account`, the budget is that account's at that address: guesses at one account, or from another address,
   * then never block the right password from where its owner is.
   */
  async begin(address: string, account?: string): Promise<AuthAttempt | null> {
    const key = budgetKey(address, account);
    for (;;) {
      if (this.blockedKey(key)) return null;
      const state = this.stateOf(key);
      if (this.recentFailures(state).length + state.inFlight < this.policy.maxFailures) {
        state.inFlight++;
        return this.attempt(key, state);
      }
      // inFlight > 0 here: a full budget without one in flight means maxFailures failures, which block.
      await new Promise<void>((resolve) => state.waiting.push(resolve));
    }
  }

  private attempt(key: string, state: AddressState): AuthAttempt {
    let ended = false;
    const end = (failure: boolean): boolean => {
      if (ended) throw new Error('AUTH attempt ended twice');
      ended = true;
      state.inFlight--;
      let blocked = false;
      if (failure) {
        const now = this.clock.now();
        const recent = this.recentFailures(state);
        recent.push(now);
        state.failures = recent;
        if (recent.length >= this.policy.maxFailures) {
          state.failures = [];
          this.blockedUntil.set(key, now + this.policy.blockFor);
          blocked = true;
        }
      }
      for (const wake of state.waiting.splice(0)) wake();
      if (state.inFlight === 0 && state.failures.length === 0 && state.waiting.length === 0) this.addresses.delete(key);
      return blocked;
    };
    return {
      succeeded: () => void end(false),
      failed: () => end(true),
    };
  }

  private stateOf(key: string): AddressState {
    let state = this.addresses.get(key);
    if (!state) {
      if (this.addresses.size > SWEEP_THRESHOLD) this.sweep();
      this.addresses.set(key, (state = { failures: [], inFlight: 0, waiting: [] }));
    }
    return state;
  }

  private recentFailures(state: AddressState): number[] {
    const since = this.clock.now() - this.policy.window;
    return state.failures.filter((at) => at > since);
  }

  private blockedKey(key: string): boolean {
    const until = this.blockedUntil.get(key);
    if (until === undefined) return false;
    if (until > this.clock.now()) return true;
    this.blockedUntil.delete(key);
    return false;
  }

  private sweep(): void {
    const now = this.clock.now();
    for (const [key, state] of this.addresses) {
      if (state.inFlight === 0 && state.waiting.length === 0 && this.recentFailures(state).length === 0) this.addresses.delete(key);
    }
    for (const [key, until] of this.blockedUntil) if (until <= now) this.blockedUntil.delete(key);
  }
}

function budgetKey(address: string, account: string | undefined): string {
  return account === undefined ? throttleKey(address) : `${throttleKey(address)} ${JSON.stringify(account)}`;
}

/** The unit a client is counted by: its IPv4 address, or the /64 of its IPv6 address (RFC 4291 §2.5.4 interface ids). */
export function throttleKey(address: string): string {
  const plain = address.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(plain);
  if (mapped) return mapped[1]!;
  if (!net.isIPv6(plain)) return plain;
  return `${expandIPv6(plain).slice(0, 4).join(':')}::/64`;
}

function expandIPv6(address: string): string[] {
  let text = address.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = text.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((group) => group.replace(/^0+(?=.)/, ''));
}
