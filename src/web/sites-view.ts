import { formatAge } from '../shared/dates.js';
import type { SitesReport } from '../shared/site-status.js';
import { isoTime } from './views.js';

/** Longest site name or reply printed in a cell: an MX set or a reply can be long, and the page refreshes every 2 s. */
const CELL_LIMIT = 300;
const clip = (text: string) => (text.length > CELL_LIMIT ? `${text.slice(0, CELL_LIMIT)}…` : text);

/** The overview's Sites table and back-off count, worded; the template escapes every value (MX names and replies are remote data). */
export function sitesView(report: SitesReport, now: number) {
  const { count, suspend, throttle } = report.backoffs;
  return {
    backoffs: count === 0 ? 'none' : `${count} (${suspend} suspend, ${throttle} throttle)`,
    more: report.total > report.sites.length ? `${report.sites.length} of ${report.total} shown, busiest first` : null,
    rows: report.sites.map((site) => ({
      site: clip(site.site),
      source: site.source,
      provider: site.provider ?? '-',
      connections: `${site.connections} / ${site.connectionLimit ?? 'no limit'}`,
      rate: site.messageRate ?? '-',
      waiting: site.waiting,
      backoff: site.backoff && {
        action: site.backoff.action,
        rule: site.backoff.rule,
        until: `${isoTime(site.backoff.until)} (in ${formatAge(site.backoff.until - now)})`,
        reply: clip(site.backoff.reply) || '-',
      },
    })),
  };
}
