import type { RelayError } from '../shared/errors.js';
import { TooManyConnectionsError } from './refusals.js';

export interface ConnectionLimits {
  perAddress: number;
  total: number;
}

/**
 * Who holds a session slot. Only admitted connections are counted, and a slot is taken at the moment a connection
 * is admitted: counting every accepted socket and checking later refused a whole burst of 51 simultaneous
 * connections, the first 50 included, when a sending platform started its workers together.
 */
export class ConnectionSlots {
  private readonly perAddress = new Map<string, number>();
  private admitted = 0;

  constructor(
    private readonly limits: ConnectionLimits,
    /** Implicit-TLS sockets still in their handshake: not sessions yet, but counted against the total. */
    private readonly handshakes: () => number,
  ) {}

  /** Takes a slot for `address`, or returns the refusal (421 4.7.0) when its address or the server is full. */
  admit(address: string): RelayError | undefined {
    if (this.admitted + this.handshakes() >= this.limits.total) return new TooManyConnectionsError('Too many connections, try again later');
    const held = this.perAddress.get(address) ?? 0;
    if (held >= this.limits.perAddress) return new TooManyConnectionsError('Too many connections from your address, try again later');
    this.perAddress.set(address, held + 1);
    this.admitted++;
    return undefined;
  }

  release(address: string): void {
    const held = this.perAddress.get(address);
    if (held === undefined) return;
    this.admitted--;
    if (held > 1) this.perAddress.set(address, held - 1);
    else this.perAddress.delete(address);
  }

  mayStartHandshake(): boolean {
    return this.admitted + this.handshakes() < this.limits.total;
  }
}
