// The admin HTTP API: four routes on node:http, no framework.
//   GET /metrics     Prometheus text
//   GET /healthz     "ok", never asks for a token (liveness probes)
//   GET /api/status  JSON: gateway stats, recorder stats, uptime
//   the dashboard:   /, /login, /logout, /assets/*, /api/events, /api/live, /api/stats/*,
//                    /api/backends (dashboard.ts)
// With a token configured every route but /healthz, /login and /assets/* needs
// `Authorization: Bearer TOKEN` or the dashboard's session cookie.
//
// `honeygate collect` serves the same module over its central store (startCollectorAdmin):
// the collector's metrics, its stats in /api/status, and the dashboard's read-only views;
// no /api/backends (a collector has none).
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import type pino from 'pino';
import type { AdminConfig } from '../config/types.js';
import { ERRORS, HoneygateError } from '../errors.js';
import type { RecorderStats } from '../events/recorder.js';
import type { CollectorStats } from '../fleet/collector.js';
import type { GatewayStats } from '../gateway/gateway.js';
import { formatEndpoint } from '../net/address.js';
import { createCollectorMetrics } from './collector-metrics.js';
import { createDashboard, type DashboardOptions } from './dashboard.js';
import { createMetrics, type Metrics } from './metrics.js';

export interface AdminDeps {
  gateway: { stats(): GatewayStats };
  recorder: { stats(): RecorderStats };
  /** With worker processes: how many run, how often one was started again. */
  workers?: { running(): number; restarts(): number };
  /** Runs before /metrics and /api/status read the stats (the primary asks its workers). */
  refresh?: () => Promise<void>;
  /** More top-level fields of /api/status. */
  status?: () => Record<string, unknown>;
  /** The SQLite event store the dashboard reads (events.sqlite), null when none. */
  store?: () => string | null;
  log: pino.Logger;
}

/** What `honeygate collect` serves: its stats, and its central store. */
export interface CollectorAdminDeps {
  collector: { stats(): CollectorStats };
  store: string;
  log: pino.Logger;
}

export interface AdminServer {
  address: string; // "ip:port" actually bound (the kernel's pick when the config said port 0)
  close(): Promise<void>;
}

type Route = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> | void;

const ROUTES = ['/metrics', '/healthz', '/api/status'] as const;
const PUBLIC = new Set<string>(['/healthz']);
const METHODS = 'GET, HEAD';
const CLIENT_ERROR_STATUS: Record<string, string> = {
  HPE_HEADER_OVERFLOW: '431 Request Header Fields Too Large',
  ERR_HTTP_REQUEST_TIMEOUT: '408 Request Timeout',
};

/** Starts the admin API; rejects with HG_ERR_LISTEN when the address cannot be bound. */
export function startAdmin(cfg: AdminConfig, deps: AdminDeps): Promise<AdminServer> {
  return serve(cfg, {
    metrics: createMetrics(deps),
    status: () => ({
      gateway: deps.gateway.stats(),
      recorder: deps.recorder.stats(),
      ...deps.status?.(),
    }),
    dashboard: { store: deps.store ?? (() => null), gateway: deps.gateway, refresh: deps.refresh },
    refresh: deps.refresh,
    log: deps.log,
  });
}

/**
 * Starts the admin API of `honeygate collect` (the same token rules as a gateway's): its
 * metrics, its stats, the dashboard over its central store. Rejects with HG_ERR_LISTEN.
 */
export function startCollectorAdmin(cfg: AdminConfig, deps: CollectorAdminDeps): Promise<AdminServer> {
  return serve(cfg, {
    metrics: createCollectorMetrics(deps.collector),
    status: () => ({ collector: deps.collector.stats(), store: deps.store }),
    dashboard: { store: () => deps.store },
    log: deps.log,
  });
}

interface Served {
  metrics: Metrics;
  /** The fields of /api/status beside uptimeSeconds. */
  status: () => Record<string, unknown>;
  dashboard: Pick<DashboardOptions, 'store' | 'gateway' | 'refresh'>;
  /** Runs before /metrics and /api/status read the stats. */
  refresh?: () => Promise<void>;
  log: pino.Logger;
}

async function serve(cfg: AdminConfig, served: Served): Promise<AdminServer> {
  const { log, metrics } = served;
  const configured = formatEndpoint(cfg.listen);
  if (!cfg.token && !isLoopback(cfg.listen.host)) {
    log.warn(
      { address: configured },
      'admin API listens on a non-loopback address without a token: anyone who can reach it can read it (set admin.token)',
    );
  }

  const check = cfg.token ? tokenChecker(cfg.token) : null;
  const dashboard = createDashboard({
    ...served.dashboard,
    token: cfg.token || null,
    bearer: (req) => check?.(req.headers.authorization) ?? true,
    log,
  });
  const routes: Record<(typeof ROUTES)[number], Route> = {
    '/metrics': async (_req, res) => {
      await served.refresh?.();
      const text = await metrics.registry.metrics();
      send(res, 200, metrics.registry.contentType, text);
    },
    '/healthz': (_req, res) => send(res, 200, 'text/plain; charset=utf-8', 'ok\n'),
    '/api/status': async (_req, res) => {
      await served.refresh?.();
      sendJson(res, 200, { ...served.status(), uptimeSeconds: Math.round(process.uptime()) });
    },
  };

  const server = http.createServer(async (req, res) => {
    try {
      const path = (req.url ?? '/').split('?', 1)[0]!;
      if (await dashboard.handle(req, res, path)) return;
      if (!PUBLIC.has(path) && check && !check(req.headers.authorization) && !dashboard.authorized(req)) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="honeygate"');
        return sendJson(res, 401, {
          error: 'HG_ERR_ADMIN_AUTH',
          message: `${ERRORS.HG_ERR_ADMIN_AUTH}: send "Authorization: Bearer TOKEN" with admin.token`,
        });
      }
      const route = Object.hasOwn(routes, path) ? (routes as Record<string, Route>)[path] : undefined;
      if (!route) {
        return sendJson(res, 404, {
          error: 'not-found',
          message: `no route ${path} (known: ${ROUTES.join(', ')})`,
        });
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('Allow', METHODS);
        return sendJson(res, 405, {
          error: 'method-not-allowed',
          message: `${req.method} ${path}: use ${METHODS}`,
        });
      }
      await route(req, res);
    } catch (err) {
      log.warn({ err, url: req.url }, 'admin request failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: String(err) });
      else res.destroy();
    }
  });
  // A slow or stuck client must not hold a socket for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  // A malformed request gets its status, as Node's default handler would send, and the socket
  // is closed: a client with too large headers learns why (431) instead of seeing a reset.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') return socket.destroy();
    const status = CLIENT_ERROR_STATUS[err.code ?? ''] ?? '400 Bad Request';
    socket.setTimeout(5_000, () => socket.destroy());
    socket.resume(); // read and discard the rest: unread bytes at close() would send a reset
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });

  try {
    await listen(server, cfg.listen.host, cfg.listen.port);
  } catch (err) {
    metrics.close();
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new HoneygateError('HG_ERR_LISTEN', `admin: ${configured}: ${reason}`, { cause: err });
  }
  const bound = server.address() as AddressInfo;
  const address = formatEndpoint({ host: bound.address, port: bound.port });
  log.info({ address }, 'admin listening');

  let closing: Promise<void> | null = null;
  return {
    address,
    close() {
      closing ??= new Promise<void>((resolve) => {
        dashboard.close();
        server.close(() => resolve());
        server.closeAllConnections(); // keep-alive sockets would hold close() open
        metrics.close();
      });
      return closing;
    },
  };
}

function listen(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      server.on('error', () => {}); // after listen, errors belong to single connections
      resolve();
    });
  });
}

/**
 * Returns a check of an Authorization header against `token`. Both sides are hashed first
 * so timingSafeEqual always compares equal lengths and the token's length does not leak.
 */
function tokenChecker(token: string): (header: string | undefined) => boolean {
  const want = createHash('sha256').update(token).digest();
  return (header) => {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
    if (!m) return false;
    return timingSafeEqual(createHash('sha256').update(m[1]!).digest(), want);
  };
}

function isLoopback(host: string): boolean {
  try {
    let addr = ipaddr.parse(host);
    if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
      addr = (addr as ipaddr.IPv6).toIPv4Address();
    }
    return addr.range() === 'loopback';
  } catch {
    return false;
  }
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(body)}\n`);
}
