// `honeygate collect -c FILE --db STORE`: runs the fleet's collector (src/fleet/collector.ts)
// until SIGTERM or SIGINT, optionally serving its Prometheus metrics.
import { createServer } from 'node:http';
import type { Command } from 'commander';
import prom from 'prom-client';
import { Collector } from '../fleet/collector.js';
import { createLogger, logFatal } from '../log.js';
import { parseEndpoint } from '../net/address.js';
import { loadNats } from './fleet.js';

const STATS_INTERVAL_MS = 60_000;

export function register(program: Command): void {
  program
    .command('collect')
    .description("write every sensor's events from NATS JetStream (events.nats) into one SQLite store")
    .requiredOption('-c, --config <file>', 'configuration file with an events.nats section')
    .requiredOption('--db <file>', 'the central SQLite event store (created if missing)')
    .option('--metrics <host:port>', 'serve GET /metrics (Prometheus) here')
    .action(async (opts: { config: string; db: string; metrics?: string }) => {
      process.exitCode = await collect(opts);
    });
}

async function collect(opts: { config: string; db: string; metrics?: string }): Promise<number> {
  const cfg = loadNats('collect', opts.config);
  if (!cfg) return 2;
  const log = createLogger('info');
  let collector: Collector;
  try {
    collector = new Collector(cfg, opts.db, log);
  } catch (err) {
    logFatal(log, err);
    return 1;
  }
  const server = opts.metrics ? metricsServer(collector, opts.metrics) : null;
  if (server) {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const ep = parseEndpoint(opts.metrics!);
      server.listen(ep.port, ep.host, () => resolve());
    }).catch((err) => {
      logFatal(log, err);
      collector.close();
      process.exit(1);
    });
    const a = server.address() as { address: string; port: number };
    log.info({ metrics: `${a.address}:${a.port}` }, 'metrics listening');
  }
  const stop = () => {
    log.info('stopping');
    collector.stop();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  const timer = setInterval(
    () => log.info({ collector: collector.stats() }, 'collect stats'),
    STATS_INTERVAL_MS,
  );
  timer.unref();
  let code = 0;
  try {
    await collector.run();
  } catch (err) {
    logFatal(log, err);
    code = 1;
  }
  clearInterval(timer);
  server?.close();
  collector.close();
  log.info({ collector: collector.stats() }, 'stopped');
  return code;
}

function metricsServer(collector: Collector, _listen: string) {
  const registry = new prom.Registry();
  const gauge = (name: string, help: string, read: () => number) =>
    new prom.Gauge({
      name: `honeygate_collector_${name}`,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  gauge(
    'received_total',
    'Messages fetched from the stream (redeliveries count again).',
    () => collector.stats().received,
  );
  gauge('stored_total', 'Events written to the central store.', () => collector.stats().stored);
  gauge('duplicates_total', 'Messages whose id the store already had.', () => collector.stats().duplicates);
  gauge(
    'malformed_total',
    'Messages that were not honeygate events: skipped.',
    () => collector.stats().malformed,
  );
  gauge('lag', 'Messages in the stream not yet acknowledged by the consumer.', () => collector.stats().lag);
  gauge(
    'pruned_total',
    "Message ids deleted from the store's fleet_received, older than events.nats.maxAge.",
    () => collector.stats().pruned,
  );
  return createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    void registry.metrics().then((text) => {
      res.writeHead(200, { 'content-type': registry.contentType }).end(text);
    });
  });
}
