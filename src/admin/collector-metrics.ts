// Prometheus metrics of `honeygate collect`, read from the collector's stats() at scrape time,
// in a registry of its own. Served by `collect --metrics` and by the collector's admin API.
import prom from 'prom-client';
import type { CollectorStats } from '../fleet/collector.js';
import type { Metrics } from './metrics.js';

const PREFIX = 'honeygate_collector_';

/** The collector's counters and its lag, as gauges of the running totals (names kept from the first release). */
const GAUGES: readonly [name: string, help: string, read: (s: CollectorStats) => number][] = [
  [
    'received_total',
    'Messages fetched from the stream, each of one or more events (redeliveries count again).',
    (s) => s.received,
  ],
  ['stored_total', 'Events written to the central store.', (s) => s.stored],
  ['duplicates_total', 'Events whose id the store already had.', (s) => s.duplicates],
  ['malformed_total', 'Messages that were not honeygate events: skipped.', (s) => s.malformed],
  ['lag', 'Messages in the stream not yet acknowledged by the consumer.', (s) => s.lag],
  [
    'pruned_total',
    "Message ids deleted from the store's fleet_received, older than events.nats.maxAge.",
    (s) => s.pruned,
  ],
  [
    'recovered_total',
    'Messages the consumer passed without delivering them, fetched from the stream by sequence.',
    (s) => s.recovered,
  ],
];

export function createCollectorMetrics(collector: { stats(): CollectorStats }): Metrics {
  const registry = new prom.Registry();
  for (const [name, help, read] of GAUGES) {
    new prom.Gauge({
      name: `${PREFIX}${name}`,
      help,
      registers: [registry],
      collect() {
        this.set(read(collector.stats()));
      },
    });
  }
  return { registry, close() {} };
}
