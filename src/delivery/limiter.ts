import { Fifo } from '../shared/fifo.js';

/** Counts slots per key (connections per destination); waiters are served in arrival order. */
export class KeyedLimiter {
  private readonly active = new Map<string, number>();
  private readonly waiting = new Map<string, Fifo<() => void>>();

  constructor(private readonly limit: number) {}

  async acquire(key: string): Promise<() => void> {
    const count = this.active.get(key) ?? 0;
    if (count < this.limit) this.active.set(key, count + 1);
    else
      await new Promise<void>((resolve) => {
        let queue = this.waiting.get(key);
        if (!queue) this.waiting.set(key, (queue = new Fifo()));
        queue.push(resolve);
      });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const queue = this.waiting.get(key);
      const next = queue?.shift();
      if (queue?.length === 0) this.waiting.delete(key);
      if (next) return next(); // the slot passes straight to the next waiter
      const left = (this.active.get(key) ?? 1) - 1;
      if (left > 0) this.active.set(key, left);
      else this.active.delete(key);
    };
  }
}

/**
 * What a transaction needs before it may start: a connection slot at its destination, then one of the
 * `--concurrency` slots shared by all. In that order, so a message waiting for a busy (or hostile) destination
 * holds no shared slot, and mail for every other destination goes on (Postfix: a delivery agent is taken only
 * when the destination's concurrency allows).
 */
export class DeliverySlots {
  private readonly destinations: KeyedLimiter;
  private readonly shared: KeyedLimiter;

  constructor(concurrency: number, perDestination: number) {
    this.destinations = new KeyedLimiter(perDestination);
    this.shared = new KeyedLimiter(concurrency);
  }

  async acquire(destination: string): Promise<() => void> {
    const releaseDestination = await this.destinations.acquire(destination);
    const releaseShared = await this.shared.acquire('');
    return () => {
      releaseShared();
      releaseDestination();
    };
  }
}
