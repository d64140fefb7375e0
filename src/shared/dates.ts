/** RFC 5322 §3.3 date-time in UTC, as Received:, Date: and DSN Arrival-Date need it. */
export function formatRfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}

/** Epoch ms as ISO 8601 UTC to the second, `2026-12-10T12:00:00Z`; `-` for none. */
export function isoTime(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** 93784000 → `1d 2h 3m`; seconds only under a minute. */
export function formatAge(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const parts: [number, string][] = [
    [Math.floor(seconds / 86_400), 'd'],
    [Math.floor((seconds % 86_400) / 3600), 'h'],
    [Math.floor((seconds % 3600) / 60), 'm'],
  ];
  return parts.filter(([value]) => value > 0).map(([value, unit]) => `${value}${unit}`).join(' ');
}
