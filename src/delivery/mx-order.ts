export interface MxRecord {
  priority: number;
  exchange: string;
}

export type MxPlan = { kind: 'hosts'; hosts: string[] } | { kind: 'null-mx' } | { kind: 'implicit' };

/**
 * What the MX records of a domain tell us to do (RFC 5321 §5.1, RFC 7505): no records → the domain itself is
 * the implicit MX; a null MX (`0 .`, which node reports as an empty exchange) → the domain accepts no mail;
 * otherwise hosts by ascending preference, with equal preferences shuffled so load spreads as the domain's
 * owner intended. `random` is a seam for tests.
 */
export function planMxHosts(records: MxRecord[], random: () => number = Math.random): MxPlan {
  if (records.length === 0) return { kind: 'implicit' };
  if (records.some((record) => record.exchange === '' || record.exchange === '.')) return { kind: 'null-mx' };
  const byPriority = new Map<number, string[]>();
  for (const record of records) {
    const host = record.exchange.toLowerCase().replace(/\.$/, '');
    const group = byPriority.get(record.priority) ?? [];
    if (!group.includes(host)) group.push(host);
    byPriority.set(record.priority, group);
  }
  const hosts = [...byPriority.entries()].sort(([a], [b]) => a - b).flatMap(([, group]) => shuffle(group, random));
  return { kind: 'hosts', hosts: hosts.filter((host, index) => hosts.indexOf(host) === index) };
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/**
 * How far one delivery walks a domain's MX list (Postfix smtp_mx_address_limit and smtp_mx_session_limit): a
 * domain with dozens of dead or refusing MXes must not hold a delivery slot for dozens of connection timeouts.
 */
export interface MxLimits {
  /** MX addresses tried in all, whatever became of them. */
  addresses: number;
  /** Sessions that got an SMTP greeting (a 421 banner included) and still did not take the mail. */
  sessions: number;
}

export const MX_LIMITS: MxLimits = { addresses: 5, sessions: 2 };

export interface MxWalk {
  addressesTried: number;
  sessionsGreeted: number;
}

/** Whether the walk may try one more MX address. */
export function mayTryAnotherAddress(walk: MxWalk, limits: MxLimits = MX_LIMITS): boolean {
  return walk.addressesTried < limits.addresses && walk.sessionsGreeted < limits.sessions;
}
