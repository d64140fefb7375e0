import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import dnsPacket, { type Answer, type DecodedPacket, type OptAnswer, type Packet } from 'dns-packet';

/**
 * An authoritative DNS server on a loopback port (UDP and TCP on the same port), answering from a zone table
 * given in code, for a `dns.promises.Resolver` pointed at it with `setServers([server.address])`.
 *
 * What node's resolver (c-ares 1.34, Node 20) makes of each answer, as `err.code` (the constants in `node:dns`);
 * the delivery code branches on these, infra.test.ts pins them:
 *   NXDOMAIN (name absent, or rcode 'NXDOMAIN')  -> 'ENOTFOUND'
 *   SERVFAIL (rcode 'SERVFAIL')                   -> 'ESERVFAIL'
 *   REFUSED  (rcode 'REFUSED')                    -> 'EREFUSED'
 *   NODATA   (name present, asked type missing)   -> 'ENODATA'
 *   no answer at all (drop: true)                 -> 'ETIMEOUT'; c-ares doubles the timeout on each try, so
 *                                                    `new Resolver({ timeout: t, tries: n })` gives up after t·(2^n − 1) ms
 * A null MX (`MX 0 .`, RFC 7505) resolves to `[{ exchange: '', priority: 0 }]`: the root name comes back empty.
 * A CNAME chain that ends without a record of the asked type (a loop, a → b → a, included) resolves to `[]`, not
 * ENODATA: c-ares sees answers, none of the type; `resolveCname` gives the name's own CNAME target.
 * Node's resolver keeps no cache, so `setZone` applies to the very next query whatever the TTL.
 */

export interface MxRecord {
  preference: number;
  /** A host name, or '.' for a null MX. */
  exchange: string;
}

export interface DnsRecords {
  mx?: MxRecord[];
  a?: string[];
  aaaa?: string[];
  /**
   * TXT records, each one string or the list of character-strings it is made of (at most 255 bytes each,
   * RFC 1035 §3.3.14); a resolver hands each record back as that list.
   */
  txt?: (string | string[])[];
  /**
   * An alias (RFC 1034 §3.6.2): the name has no other records, and a query for any other type follows it within
   * the zone, the CNAMEs first in the answer, as an authoritative server does (RFC 1034 §4.3.2), up to a loop.
   */
  cname?: string;
  /** Answer every query for the name with this error instead of records. */
  rcode?: 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED';
  /** Never answer queries for the name, so the client times out. */
  drop?: boolean;
}

/** Owner name (case-insensitive, trailing dot optional) to its records. */
export type DnsZone = Record<string, DnsRecords>;

export interface DnsQuery {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
}

export interface DnsServer {
  /** `host:port` (IPv6 as `[::1]:port`), the form `Resolver#setServers` takes. */
  address: string;
  host: string;
  port: number;
  /** Every question received, in order, dropped ones included. */
  queries: DnsQuery[];
  /** Replaces the records of one name; `undefined` removes the name (NXDOMAIN from then on). */
  setZone(name: string, records: DnsRecords | undefined): void;
  close(): Promise<void>;
}

export interface DnsServerOptions {
  /** Loopback address to listen on; default 127.0.0.1. */
  host?: string;
  /** TTL of every answer and of the SOA that negative answers carry (RFC 2308); default 300 s. */
  ttl?: number;
}

const RCODES = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;
// RFC 1035 section 4.2.1: without EDNS a UDP reply may not exceed 512 bytes, a longer one is truncated and the
// client asks again over TCP.
const CLASSIC_UDP_LIMIT = 512;
// A free port for UDP can be taken for TCP; a few tries make the pair reliable without looping forever.
const BIND_ATTEMPTS = 5;

/**
 * The SOA a negative answer carries (RFC 2308 section 3), whose minimum tells a cache how long to remember the
 * absence. The table has no zone cuts, so the parent of the asked name stands in for the zone apex.
 */
function negativeAnswerSoa(name: string, ttl: number): Answer {
  const apex = name.split('.').slice(1).join('.') || '.';
  return { type: 'SOA', name: apex, ttl, class: 'IN', data: { mname: `ns.${apex}`, rname: `hostmaster.${apex}`, serial: 1, refresh: ttl, retry: ttl, expire: ttl, minimum: ttl } };
}

function ednsOf(query: DecodedPacket): OptAnswer | undefined {
  return query.additionals?.find((record): record is OptAnswer => record.type === 'OPT');
}

/** A character-string over 255 bytes cannot be encoded; refused where the zone is given, not at the first query. */
function checkRecords(name: string, records: DnsRecords): DnsRecords {
  for (const txt of records.txt ?? []) {
    for (const text of typeof txt === 'string' ? [txt] : txt) {
      if (Buffer.byteLength(text) > 255) throw new RangeError(`${name}: a TXT character-string of ${Buffer.byteLength(text)} bytes (at most 255; give the record as a list of strings)`);
    }
  }
  return records;
}

function canonicalName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function recordsToAnswers(name: string, type: string, records: DnsRecords, ttl: number): Answer[] {
  switch (type) {
    case 'MX':
      return (records.mx ?? []).map((mx) => ({ type: 'MX', name, ttl, class: 'IN', data: { preference: mx.preference, exchange: mx.exchange } }));
    case 'A':
      return (records.a ?? []).map((ip) => ({ type: 'A', name, ttl, class: 'IN', data: ip }));
    case 'AAAA':
      return (records.aaaa ?? []).map((ip) => ({ type: 'AAAA', name, ttl, class: 'IN', data: ip }));
    case 'TXT':
      return (records.txt ?? []).map((txt) => ({ type: 'TXT', name, ttl, class: 'IN', data: typeof txt === 'string' ? [txt] : txt }));
    case 'CNAME':
      return records.cname ? [{ type: 'CNAME', name, ttl, class: 'IN', data: records.cname }] : [];
    default:
      return [];
  }
}

/** The CNAMEs from `name` on within the zone, then the records of `type` where the chain ends; a loop ends it. */
function followAliases(zone: ReadonlyMap<string, DnsRecords>, name: string, type: string, records: DnsRecords, ttl: number): Answer[] {
  const answers: Answer[] = [];
  const seen = new Set<string>();
  let owner = name;
  let current: DnsRecords | undefined = records;
  while (current?.cname && type !== 'CNAME' && !seen.has(canonicalName(owner))) {
    seen.add(canonicalName(owner));
    answers.push(...recordsToAnswers(owner, 'CNAME', current, ttl));
    owner = current.cname;
    current = zone.get(canonicalName(owner));
  }
  return current && !seen.has(canonicalName(owner)) ? [...answers, ...recordsToAnswers(owner, type, current, ttl)] : answers;
}

/** The reply to one query, or null when the name is to stay silent. Pure: the zone is read, not changed. */
function answerQuery(zone: ReadonlyMap<string, DnsRecords>, query: DecodedPacket, ttl: number): Packet | null {
  const question = query.questions?.[0];
  const records = question && zone.get(canonicalName(question.name));
  if (records?.drop) return null;
  const rcode = !question ? RCODES.FORMERR : records ? RCODES[records.rcode ?? 'NOERROR'] : RCODES.NXDOMAIN;
  const answers = question && records && rcode === RCODES.NOERROR ? followAliases(zone, question.name, question.type, records, ttl) : [];
  const negative = rcode === RCODES.NXDOMAIN || (rcode === RCODES.NOERROR && answers.length === 0);
  return {
    type: 'response',
    id: query.id,
    // The header carries the rcode in its low 4 bits; RD is echoed (RFC 1035 section 4.1.1), RA is not set
    // because this server does not recurse.
    flags: dnsPacket.AUTHORITATIVE_ANSWER | ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | rcode,
    questions: query.questions ?? [],
    answers,
    authorities: question && negative ? [negativeAnswerSoa(question.name, ttl)] : [],
    // RFC 6891 section 7: an EDNS query gets an OPT back; without it c-ares retries a SERVFAIL without EDNS.
    additionals: ednsOf(query) ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] : [],
  };
}

/** A UDP reply within the size the client can take, else the header and question only, with TC set. */
function encodeForUdp(query: DecodedPacket, response: Packet): Buffer {
  const encoded = dnsPacket.encode(response);
  if (encoded.length <= Math.max(CLASSIC_UDP_LIMIT, ednsOf(query)?.udpPayloadSize ?? 0)) return encoded;
  return dnsPacket.encode({ ...response, flags: (response.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [] });
}

async function bindPair(host: string): Promise<{ udp: dgram.Socket; tcp: net.Server }> {
  for (let attempt = 1; ; attempt++) {
    const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    udp.bind(0, host);
    await once(udp, 'listening');
    const tcp = net.createServer();
    try {
      tcp.listen(udp.address().port, host);
      await once(tcp, 'listening');
      return { udp, tcp };
    } catch (error) {
      udp.close();
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= BIND_ATTEMPTS) throw error;
    }
  }
}

export async function startDnsServer(zone: DnsZone, options: DnsServerOptions = {}): Promise<DnsServer> {
  const host = options.host ?? '127.0.0.1';
  const ttl = options.ttl ?? 300;
  const table = new Map(Object.entries(zone).map(([name, records]) => [canonicalName(name), checkRecords(name, records)]));
  const queries: DnsQuery[] = [];
  const { udp, tcp } = await bindPair(host);
  const port = udp.address().port;
  const connections = new Set<net.Socket>();

  /** Decodes one query, records it and builds the reply; junk that does not decode is ignored. */
  const handle = (message: Buffer, transport: DnsQuery['transport']): { query: DecodedPacket; response: Packet | null } | null => {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return null;
    }
    for (const question of query.questions ?? []) queries.push({ name: question.name, type: question.type, transport });
    return { query, response: answerQuery(table, query, ttl) };
  };

  udp.on('message', (message, peer) => {
    const handled = handle(message, 'udp');
    if (handled?.response) udp.send(encodeForUdp(handled.query, handled.response), peer.port, peer.address);
  });

  // RFC 7766: over TCP each message is preceded by its 2-byte length, and one connection may carry several.
  tcp.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => socket.destroy());
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const message = pending.subarray(2, 2 + pending.readUInt16BE(0));
        pending = pending.subarray(2 + message.length);
        const handled = handle(message, 'tcp');
        if (handled?.response) socket.write(dnsPacket.streamEncode(handled.response));
      }
    });
  });

  return {
    address: net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`,
    host,
    port,
    queries,
    setZone(name, records) {
      if (records) table.set(canonicalName(name), checkRecords(name, records));
      else table.delete(canonicalName(name));
    },
    async close() {
      // Connections held open by a dropped query would keep tcp.close() waiting forever.
      for (const socket of connections) socket.destroy();
      await Promise.all([new Promise<void>((resolve) => udp.close(() => resolve())), new Promise<void>((resolve) => tcp.close(() => resolve()))]);
    },
  };
}
