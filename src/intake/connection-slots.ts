import type { RelayError } from '../shared/errors.js';
import { throttleKey } from '../shared/auth-throttle.js';
import { TooManyConnectionsError, TooManyHandshakesError } from './refusals.js';

export interface ConnectionLimits {
  perAddress: number;
  total: number;
  /** Implicit-TLS handshakes in progress from one client (IPv6: one /64). */
  handshakesPerAddress: number;
}

/** How many places each key holds; a key at zero is forgotten, so the map only grows with open connections. */
class PlacesByKey {
  private readonly held = new Map<string, number>();
  total = 0;

  take(key: string, max: number): boolean {
    const held = this.held.get(key) ?? 0;
    if (held >= max) return false;
    this.held.set(key, held + 1);
    this.total++;
    return true;
  }

  give(key: string): void {
    const held = this.held.get(key);
    if (held === undefined) return;
    this.total--;
    if (held > 1) this.held.set(key, held - 1);
    else this.held.delete(key);
  }
}

/**
 * Who holds a connection slot: admitted sessions, and implicit-TLS sockets still in their handshake (not sessions
 * yet, but each holds a descriptor and CPU, so the total counts them). A session slot is taken at the moment a
 * connection is admitted: counting every accepted socket and checking later refused a whole burst of 51
 * simultaneous connections, the first 50 included, when a sending platform started its workers together.
 */
export class ConnectionSlots {
  private readonly sessions = new PlacesByKey();
  private readonly handshakes = new PlacesByKey();

  constructor(private readonly limits: ConnectionLimits) {}

  /** Takes a slot for `address`, or returns the refusal (421 4.7.0) when its address or the server is full. */
  admit(address: string): RelayError | undefined {
    if (this.isFull()) return new TooManyConnectionsError('Too many connections, try again later');
    if (!this.sessions.take(address, this.limits.perAddress)) return new TooManyConnectionsError('Too many connections from your address, try again later');
    return undefined;
  }

  release(address: string): void {
    this.sessions.give(address);
  }

  /**
   * A place for one implicit-TLS handshake, or why not. Counted per client, not only in the total: otherwise one
   * address opening sockets that never send a ClientHello held every slot, and everyone else got 421.
   */
  startHandshake(address: string): RelayError | undefined {
    if (this.isFull()) return new TooManyConnectionsError('Too many connections, TLS handshake refused');
    if (!this.handshakes.take(throttleKey(address), this.limits.handshakesPerAddress)) return new TooManyHandshakesError('Too many TLS handshakes in progress from one address');
    return undefined;
  }

  endHandshake(address: string): void {
    this.handshakes.give(throttleKey(address));
  }

  private isFull(): boolean {
    return this.sessions.total + this.handshakes.total >= this.limits.total;
  }
}
