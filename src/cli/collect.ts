// `honeygate collect -c FILE --db STORE`: runs the fleet's collector (src/fleet/collector.ts)
// until SIGTERM or SIGINT. With an `admin:` section in FILE (or --admin) it serves the admin
// API over the central store: the events API with ?sensor=, the dashboard's read-only views,
// /metrics (the collector's), /api/status and /healthz, under admin.token's rules.
// --metrics serves /metrics alone, without a token.
import { createServer } from 'node:http';
import type { Command } from 'commander';
import { createCollectorMetrics } from '../admin/collector-metrics.js';
import { type AdminServer, startCollectorAdmin } from '../admin/server.js';
import { loadAdminFile } from '../config/load.js';
import type { AdminConfig } from '../config/types.js';
import { Collector } from '../fleet/collector.js';
import { createLogger, logFatal } from '../log.js';
import { parseEndpoint } from '../net/address.js';
import { loadNats } from './fleet.js';

const STATS_INTERVAL_MS = 60_000;

interface CollectOptions {
  config: string;
  db: string;
  metrics?: string;
  admin?: string;
}

export function register(program: Command): void {
  program
    .command('collect')
    .description("write every sensor's events from NATS JetStream (events.nats) into one SQLite store")
    .requiredOption('-c, --config <file>', 'configuration file with an events.nats section')
    .requiredOption('--db <file>', 'the central SQLite event store (created if missing)')
    .option(
      '--admin <host:port>',
      "serve the admin API over the store here (instead of admin.listen; admin.token's rules)",
    )
    .option('--metrics <host:port>', 'serve GET /metrics (Prometheus) here, without a token')
    .action(async (opts: CollectOptions) => {
      process.exitCode = await collect(opts);
    });
}

/** The admin API to serve: the file's admin section, its listen replaced by --admin. Null: none. */
function adminConfig(opts: CollectOptions): AdminConfig | null | 'invalid' {
  const loaded = loadAdminFile(opts.config);
  if (!loaded.ok) {
    for (const e of loaded.errors) process.stderr.write(`${e}\n`);
    process.stderr.write(`honeygate collect: ${loaded.errors.length} problem(s) in ${opts.config}\n`);
    return 'invalid';
  }
  if (opts.admin === undefined) return loaded.admin;
  try {
    return { listen: parseEndpoint(opts.admin), token: loaded.admin?.token ?? null };
  } catch (err) {
    process.stderr.write(`honeygate collect: --admin: ${(err as Error).message}\n`);
    return 'invalid';
  }
}

async function collect(opts: CollectOptions): Promise<number> {
  const cfg = loadNats('collect', opts.config);
  if (!cfg) return 2;
  const adminCfg = adminConfig(opts);
  if (adminCfg === 'invalid') return 2;
  const log = createLogger('info');
  let collector: Collector;
  try {
    collector = new Collector(cfg, opts.db, log);
  } catch (err) {
    logFatal(log, err);
    return 1;
  }
  const server = opts.metrics ? metricsServer(collector) : null;
  let admin: AdminServer | null = null;
  try {
    if (server) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const ep = parseEndpoint(opts.metrics!);
        server.listen(ep.port, ep.host, () => resolve());
      });
      const a = server.address() as { address: string; port: number };
      log.info({ metrics: `${a.address}:${a.port}` }, 'metrics listening');
    }
    if (adminCfg) admin = await startCollectorAdmin(adminCfg, { collector, store: opts.db, log });
  } catch (err) {
    logFatal(log, err);
    server?.close();
    collector.close();
    return 1;
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
  await admin?.close();
  collector.close();
  log.info({ collector: collector.stats() }, 'stopped');
  return code;
}

function metricsServer(collector: Collector) {
  const { registry } = createCollectorMetrics(collector);
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
