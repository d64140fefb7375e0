import type { MxRecord } from './mx-order.js';
import type { DnsResolver } from './resolve-mx.js';

/**
 * Remembers answers for a short while, so a queue full of mail to one domain costs one MX and one address
 * look-up per `ttl`, not three queries per message (Postfix leans on a local caching resolver for the same).
 * Authoritative "no such name" and "no records of this type" answers are kept too (RFC 2308 negative caching): an
 * MX host without AAAA records was otherwise asked for them at every message. Failures are never kept: a SERVFAIL
 * or a time-out is asked again on the next attempt. Concurrent look-ups of one name share a query.
 */
/** node's codes for NXDOMAIN and NODATA: answers about the zone, not failures to get one. */
const NEGATIVE_ANSWERS: ReadonlySet<string> = new Set(['ENOTFOUND', 'ENODATA']);

export class CachingResolver implements DnsResolver {
  private readonly entries = new Map<string, { expires: number; value: Promise<unknown> }>();

  constructor(
    private readonly resolver: DnsResolver,
    private readonly ttl: number,
    private readonly now: () => number,
    private readonly maxEntries = 10_000,
  ) {}

  resolveMx(domain: string): Promise<MxRecord[]> {
    return this.cached(`mx:${domain}`, () => this.resolver.resolveMx(domain));
  }

  resolve4(host: string): Promise<string[]> {
    return this.cached(`a:${host}`, () => this.resolver.resolve4(host));
  }

  resolve6(host: string): Promise<string[]> {
    return this.cached(`aaaa:${host}`, () => this.resolver.resolve6(host));
  }

  resolveCname(name: string): Promise<string[]> {
    return this.cached(`cname:${name}`, () => this.resolver.resolveCname(name));
  }

  private cached<T>(key: string, lookup: () => Promise<T>): Promise<T> {
    const now = this.now();
    const hit = this.entries.get(key);
    if (hit && hit.expires > now) return hit.value as Promise<T>;
    if (this.entries.size >= this.maxEntries) this.evictExpired(now);
    const value = lookup();
    this.entries.set(key, { expires: now + this.ttl, value });
    value.catch((error: NodeJS.ErrnoException) => {
      if (NEGATIVE_ANSWERS.has(error.code ?? '')) return;
      if (this.entries.get(key)?.value === value) this.entries.delete(key);
    });
    return value;
  }

  private evictExpired(now: number): void {
    for (const [key, entry] of this.entries) if (entry.expires <= now) this.entries.delete(key);
    // Still full of live entries (a spray of domains): start over rather than grow without bound.
    if (this.entries.size >= this.maxEntries) this.entries.clear();
  }
}
