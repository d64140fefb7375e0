/**
 * The local test inbox as the web UI sees it: the inbox (src/inbox) provides it, the web UI (src/web) shows it, and
 * neither imports the other.
 */

export interface InboxSummary {
  /** The file name without `.eml`. */
  id: string;
  /** Milliseconds since the epoch. */
  receivedAt: number;
  /** MAIL FROM, '' for the null sender (a bounce). */
  from: string;
  /** RCPT TO, in the order given. */
  to: string[];
  /** RFC 2047 encoded words decoded; not escaped for HTML. '' when there is none. */
  subject: string;
  /** Bytes of the stored message. */
  size: number;
}

export interface InboxMessage extends InboxSummary {
  /** The header block as text: every header line ends with CRLF, the blank line after it is left out; at most HEAD_LIMIT bytes, cut at a line end. */
  headers: string;
}

export interface InboxView {
  /** Newest first. */
  list(limit: number): Promise<{ messages: InboxSummary[]; total: number }>;
  /** null for an unknown or malformed id. */
  get(id: string): Promise<InboxMessage | null>;
  raw(id: string): Promise<Buffer | null>;
  /** Deletes every message; how many. */
  clear(): Promise<number>;
}
