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

/** Password-guessing brake per client address, like Postfix's anvil or fail2ban in-process. */
export class AuthThrottle {
  private readonly failures = new Map<string, number[]>();
  private readonly blockedUntil = new Map<string, number>();

  constructor(
    private readonly policy: AuthThrottlePolicy,
    private readonly clock: Clock,
  ) {}

  isBlocked(address: string): boolean {
    const until = this.blockedUntil.get(address);
    if (until === undefined) return false;
    if (until > this.clock.now()) return true;
    this.blockedUntil.delete(address);
    return false;
  }

  /** Records a failure; true when this one got the address blocked. */
  recordFailure(address: string): boolean {
    const now = this.clock.now();
    const recent = (this.failures.get(address) ?? []).filter((at) => at > now - this.policy.window);
    recent.push(now);
    if (recent.length >= this.policy.maxFailures) {
      this.failures.delete(address);
      this.blockedUntil.set(address, now + this.policy.blockFor);
      return true;
    }
    this.failures.set(address, recent);
    if (this.failures.size > SWEEP_THRESHOLD) this.sweep(now);
    return false;
  }

  recordSuccess(address: string): void {
    this.failures.delete(address);
  }

  private sweep(now: number): void {
    for (const [address, times] of this.failures) if (times.every((at) => at <= now - this.policy.window)) this.failures.delete(address);
    for (const [address, until] of this.blockedUntil) if (until <= now) this.blockedUntil.delete(address);
  }
}
