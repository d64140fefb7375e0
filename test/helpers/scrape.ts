/** One scrape of a Prometheus text endpoint, read the way Prometheus would. */
export interface Scrape {
  /** The sample's value; undefined when the series is absent. Labels in any order. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Every series of a metric name, by its label text (`{kind="transient"}`, or '' for none). */
  series(name: string): Map<string, number>;
  text: string;
}

function labelKey(labels: Record<string, string>): string {
  const keys = Object.keys(labels).sort();
  return keys.length ? `{${keys.map((key) => `${key}="${labels[key]}"`).join(',')}}` : '';
}

export function parseScrape(text: string): Scrape {
  const samples = new Map<string, Map<string, number>>();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((pair) => [pair[1]!, pair[2]!]));
    const byLabels = samples.get(match[1]!) ?? new Map<string, number>();
    byLabels.set(labelKey(labels), Number(match[3]));
    samples.set(match[1]!, byLabels);
  }
  return {
    text,
    value: (name, labels = {}) => samples.get(name)?.get(labelKey(labels)),
    series: (name) => samples.get(name) ?? new Map(),
  };
}

export async function scrape(address: string): Promise<Scrape> {
  const response = await fetch(`http://${address}/metrics`);
  if (response.status !== 200) throw new Error(`GET /metrics: ${response.status}`);
  if (!/^text\/plain; version=0\.0\.4/.test(response.headers.get('content-type') ?? '')) throw new Error(`content-type ${response.headers.get('content-type')}`);
  return parseScrape(await response.text());
}

export async function healthz(address: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://${address}/healthz`);
  return { status: response.status, body: await response.text() };
}
