/** RFC 5322 §3.3 date-time in UTC, as Received:, Date: and DSN Arrival-Date need it. */
export function formatRfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}
