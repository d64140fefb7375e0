/** Time comes in through this seam so policies (lockouts, retries) can be tested without waiting. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
