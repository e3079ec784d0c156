// The web dashboard on the admin server: the page at `/` (bundled at build time into
// dist/web/ by scripts/build-web.mjs), its login, and the JSON API under /api/ it reads.
//
//   GET  /login, POST /login   the token for an HttpOnly, SameSite=Strict session cookie
//   POST /logout               ends the session
//   GET  /assets/*             the bundled script and style (no secrets: no login needed)
//   GET  /api/events           search, the filters of `honeygate events`; JSON, JSON lines or CSV
//   GET  /api/events/ID        one flow: its final event and its updates
//   GET  /api/live             Server-Sent Events: new events as they are recorded (?sensor=NAME)
//   GET  /api/stats/VIEW       aggregates: overview, timeline, sources, ports, heatmap, protocols, refusals
//   GET  /api/backends         backends, their servers and health, live counters (a gateway's only)
//
// With admin.token set, everything but /login and /assets needs the session cookie or
// `Authorization: Bearer TOKEN`. Only /login and /logout change state, both by POST: /login
// needs the token itself, /logout a session (or the token) and a same-origin request.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { fileURLToPath } from 'node:url';
import type pino from 'pino';
import { type EventsOptions, toQuery } from '../cli/events.js';
import { HoneygateError } from '../errors.js';
import type { FlowEvent } from '../events/event.js';
import { escapeBytes } from '../events/format.js';
import { followEvents, queryEvents } from '../events/query.js';
import { type EventRow, rowToEvent } from '../events/row.js';
import type { GatewayStats } from '../gateway/gateway.js';
import * as stats from './dashboard-stats.js';
import { createViewRunner, ViewError } from './dashboard-worker.js';

export interface DashboardOptions {
  token: string | null;
  /** The SQLite event store the views read (events.sqlite), or null when none is configured. */
  store: () => string | null;
  /** The gateway whose backends /api/backends shows; none on a collector (no /api/backends). */
  gateway?: { stats(): GatewayStats };
  refresh?: () => Promise<void>;
  /** True when the request carries the right `Authorization: Bearer` header. */
  bearer: (req: http.IncomingMessage) => boolean;
  log: pino.Logger;
  now?: () => number;
}

export interface Dashboard {
  /** True when `req` may read: no token configured, the bearer token, or a live session. */
  authorized(req: http.IncomingMessage): boolean;
  /** Answers `path` when it is one of the dashboard's; false (nothing sent) otherwise. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<boolean>;
  /** Ends the live streams. */
  close(): void;
}

export const SESSION_COOKIE = 'hg_session';
const SESSION_MS = 12 * 3600_000;
const MAX_SESSIONS = 1000;
// Failed logins: at most LOGIN_FAILURES per source address in LOGIN_WINDOW_MS, then 429
// (the token is not even compared) until the window ends.
export const LOGIN_FAILURES = 5;
const LOGIN_WINDOW_MS = 60_000;
const MAX_TRACKED = 10_000;
const MAX_STREAMS = 32;
const LIVE_POLL_MS = 250;
const WARM_AT_START_MS = 10_000; // after the start's own work
const MAX_LIMIT = 100_000;
const BODY_MAX = 4096;

/** Every dashboard response carries these: nothing inline runs, nothing frames the page. */
export const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Permissions-Policy': 'camera=(), microphone=(), geolocation=()',
};

const ASSETS: Record<string, string> = {
  '/assets/app.js': 'text/javascript; charset=utf-8',
  '/assets/app.css': 'text/css; charset=utf-8',
  '/assets/icon.svg': 'image/svg+xml',
};
const WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url)); // dist/web/ beside dist/src/

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<void> | void;

export function createDashboard(opts: DashboardOptions): Dashboard {
  const now = opts.now ?? Date.now;
  const sessions = new Map<string, number>(); // sha256(cookie value) -> expiry
  const failures = new Map<string, { count: number; resetAt: number }>();
  const streams = new Set<AbortController>();
  const files = new Map<string, Buffer>();

  const sessionOf = (req: http.IncomingMessage): string | null => {
    const value = cookie(req.headers.cookie, SESSION_COOKIE);
    if (!value) return null;
    const key = createHash('sha256').update(value).digest('hex');
    const expires = sessions.get(key);
    if (expires === undefined) return null;
    if (expires <= now()) {
      sessions.delete(key);
      return null;
    }
    return key;
  };
  const authorized = (req: http.IncomingMessage) =>
    !opts.token || opts.bearer(req) || sessionOf(req) !== null;

  const asset = (name: string): Buffer | null => {
    let body = files.get(name);
    if (!body) {
      try {
        body = readFileSync(`${WEB_DIR}${name}`);
      } catch {
        return null;
      }
      files.set(name, body);
    }
    return body;
  };

  const withStore = <T>(res: http.ServerResponse, fn: (dbPath: string) => T): T | undefined => {
    const dbPath = opts.store();
    if (!dbPath) {
      sendJson(res, 404, {
        error: 'no-store',
        message: 'events.sqlite is not set: the dashboard reads the SQLite event store',
      });
      return undefined;
    }
    try {
      return fn(dbPath);
    } catch (err) {
      if (err instanceof HoneygateError) {
        sendJson(res, 400, { error: err.code, message: err.message });
        return undefined;
      }
      throw err;
    }
  };

  // The aggregates run on a worker thread: a slow view must not stall the gateway's flows.
  const views = createViewRunner();
  // A week's top sources take seconds to read the first time: read them ahead soon after
  // the start, so the first visit finds them kept (the worker's CPU, once; a failed read
  // is read again by the view that needs it).
  const warmAtStart = setTimeout(() => {
    const dbPath = opts.store();
    if (dbPath) views.warm(dbPath, now());
  }, WARM_AT_START_MS);
  warmAtStart.unref();
  const statsView =
    (view: stats.View) => async (_req: http.IncomingMessage, res: http.ServerResponse, url: URL) => {
      const dbPath = opts.store();
      if (!dbPath) return withStore(res, () => undefined);
      const p = url.searchParams;
      try {
        sendJson(
          res,
          200,
          await views.run(dbPath, { view, range: p.get('range'), by: p.get('by'), now: now() }),
        );
      } catch (err) {
        if (!(err instanceof ViewError)) throw err;
        sendJson(res, err.status, {
          error: err.status === 400 ? 'HG_ERR_EVENTS_QUERY' : 'busy',
          message: err.message,
        });
      }
    };

  const gateway = opts.gateway;
  const api: Record<string, Handler> = {
    '/api/events': (_req, res, url) => searchEvents(res, url, withStore, now()),
    '/api/live': (req, res, url) => live(req, res, url),
    ...Object.fromEntries(stats.VIEWS.map((v) => [`/api/stats/${v}`, statsView(v)])),
  };
  if (gateway) {
    api['/api/backends'] = async (_req, res) => {
      await opts.refresh?.();
      const s = gateway.stats();
      sendJson(res, 200, {
        backends: s.backends,
        listeners: s.listeners,
        openFlows: s.openFlows,
        refused: s.refused,
        refusedBy: s.refusedBy ?? {},
        uptimeSeconds: Math.round(process.uptime()),
      });
    };
  } else {
    api['/api/backends'] = (_req, res) =>
      sendJson(res, 404, {
        error: 'not-served',
        message: "a collector has no backends: /api/backends is a gateway's",
      });
  }

  const live = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => {
    if (req.method === 'HEAD') {
      res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8' });
      res.end();
      return;
    }
    if (streams.size >= MAX_STREAMS) {
      return sendJson(res, 503, { error: 'busy', message: `at most ${MAX_STREAMS} live streams at once` });
    }
    withStore(res, (dbPath) => {
      const backlog = Math.min(Number(url.searchParams.get('backlog') ?? 50) || 0, 500);
      const sensor = url.searchParams.get('sensor') || undefined; // one gateway's, in a central store
      const ac = new AbortController();
      streams.add(ac);
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-store',
        'X-Accel-Buffering': 'no',
      });
      res.write('retry: 2000\n\n');
      const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
      const end = () => ac.abort();
      req.on('close', end);
      res.on('error', end);
      followEvents(
        dbPath,
        sensor === undefined ? {} : { sensor },
        (events) => res.write(`event: events\ndata: ${JSON.stringify(events.map(eventJson))}\n\n`),
        ac.signal,
        { intervalMs: LIVE_POLL_MS, backlog },
      )
        .catch((err: Error) => {
          res.write(`event: failure\ndata: ${JSON.stringify({ message: err.message })}\n\n`);
        })
        .finally(() => {
          clearInterval(ping);
          streams.delete(ac);
          res.end();
        });
    });
  };

  const page = async (req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> => {
    if (path === '/login') return login(req, res);
    if (path === '/logout') return logout(req, res);
    if (Object.hasOwn(ASSETS, path)) {
      const body = asset(path.slice('/assets/'.length));
      if (!body) return notBuilt(res);
      return send(res, 200, ASSETS[path]!, body, 'no-cache');
    }
    // '/'
    if (!authorized(req)) return redirect(res, '/login');
    const body = asset('index.html');
    if (!body) return notBuilt(res);
    send(res, 200, 'text/html; charset=utf-8', body);
  };

  const login = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    if (!opts.token) return redirect(res, '/');
    if (req.method !== 'POST') return send(res, 200, 'text/html; charset=utf-8', loginPage(null));
    const ip = req.socket.remoteAddress ?? 'unknown';
    const t = now();
    let f = failures.get(ip);
    if (f && f.resetAt <= t) {
      failures.delete(ip);
      f = undefined;
    }
    if (f && f.count >= LOGIN_FAILURES) {
      res.setHeader('Retry-After', String(Math.ceil((f.resetAt - t) / 1000)));
      return send(res, 429, 'text/html; charset=utf-8', loginPage('Too many failed logins: wait a minute.'));
    }
    let body: string;
    try {
      body = await readBody(req);
    } catch {
      return send(res, 413, 'text/html; charset=utf-8', loginPage('The form was too large.'));
    }
    const form = new URLSearchParams(body);
    const token = form.get('token') ?? '';
    if (!sameToken(token, opts.token)) {
      if (!f) {
        if (failures.size >= MAX_TRACKED) prune(failures, t);
        f = { count: 0, resetAt: t + LOGIN_WINDOW_MS };
        // Past the cap every address shares one counter: a flood of addresses cannot buy tries.
        failures.set(failures.size >= MAX_TRACKED ? '*' : ip, f);
      }
      f.count++;
      opts.log.warn({ remote: ip, failures: f.count }, 'dashboard login failed');
      return send(res, 401, 'text/html; charset=utf-8', loginPage('Wrong token.'));
    }
    failures.delete(ip);
    if (sessions.size >= MAX_SESSIONS) {
      for (const [k, exp] of sessions) if (exp <= t || sessions.size >= MAX_SESSIONS) sessions.delete(k);
    }
    const value = randomBytes(32).toString('base64url');
    sessions.set(createHash('sha256').update(value).digest('hex'), t + SESSION_MS);
    res.setHeader(
      'Set-Cookie',
      `${SESSION_COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_MS / 1000}`,
    );
    redirect(res, '/');
  };

  const logout = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return sendJson(res, 405, { error: 'method-not-allowed', message: 'POST /logout' });
    }
    if (!sameOrigin(req))
      return sendJson(res, 403, { error: 'cross-origin', message: 'cross-origin request refused' });
    const key = sessionOf(req);
    if (key) sessions.delete(key);
    res.setHeader('Set-Cookie', `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
    redirect(res, opts.token ? '/login' : '/');
  };

  return {
    authorized,
    async handle(req, res, path) {
      const isPage = path === '/' || path === '/login' || path === '/logout' || Object.hasOwn(ASSETS, path);
      const detail = /^\/api\/events\/([0-9a-f]{1,64})$/i.exec(path);
      const handler = Object.hasOwn(api, path) ? api[path] : undefined;
      if (!isPage && !handler && !detail) return false;

      const post = path === '/login' || path === '/logout';
      const allowed = post ? ['GET', 'HEAD', 'POST'] : ['GET', 'HEAD'];
      if (!allowed.includes(req.method ?? '')) {
        res.setHeader('Allow', allowed.join(', '));
        sendJson(res, 405, {
          error: 'method-not-allowed',
          message: `${req.method} ${path}: use ${allowed.join(', ')}`,
        });
        return true;
      }
      if (isPage) {
        await page(req, res, path);
        return true;
      }
      if (!authorized(req)) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="honeygate"');
        sendJson(res, 401, {
          error: 'HG_ERR_ADMIN_AUTH',
          message:
            'admin API: missing or wrong bearer token: log in at /login or send "Authorization: Bearer TOKEN"',
        });
        return true;
      }
      const url = new URL(req.url ?? '/', 'http://admin');
      if (detail) flowDetail(res, detail[1]!.toLowerCase(), withStore);
      else await handler!(req, res, url);
      return true;
    },
    close() {
      for (const ac of streams) ac.abort();
      clearTimeout(warmAtStart);
      views.close();
    },
  };
}

type WithStore = <T>(res: http.ServerResponse, fn: (dbPath: string) => T) => T | undefined;

const CSV_COLUMNS = [
  'id',
  'type',
  'openedAt',
  'closedAt',
  'sensor',
  'listener',
  'srcIp',
  'srcPort',
  'dstIp',
  'dstPort',
  'route',
  'action',
  'backend',
  'server',
  'sourceMode',
  'bytesIn',
  'bytesOut',
  'durationMs',
  'closeReason',
  'protocol',
  'count',
  'firstBytes',
  'detail',
] as const;

/** GET /api/events: `honeygate events` filters as query parameters; format json (default), jsonl or csv. */
function searchEvents(res: http.ServerResponse, url: URL, withStore: WithStore, now: number): void {
  const p = url.searchParams;
  const format = p.get('format') ?? 'json';
  if (!['json', 'jsonl', 'csv'].includes(format)) {
    return sendJson(res, 400, {
      error: 'HG_ERR_EVENTS_QUERY',
      message: `format: "${format}" is not one of json, jsonl, csv`,
    });
  }
  const o: EventsOptions = {};
  const get = (name: string) => p.get(name) || undefined; // an empty form field is no filter
  o.since = get('since');
  o.until = get('until');
  o.src = get('src');
  o.dstPort = get('dstPort') ?? get('dst-port');
  o.route = get('route');
  o.action = get('action');
  o.type = get('type');
  o.sensor = get('sensor'); // the gateway that recorded it: a collector's store holds many
  o.limit = get('limit');
  let query: ReturnType<typeof toQuery>;
  try {
    for (const k of Object.keys(o) as (keyof EventsOptions)[]) if (o[k] === undefined) delete o[k];
    query = toQuery(o, now);
  } catch (err) {
    return sendJson(res, 400, { error: 'HG_ERR_EVENTS_QUERY', message: (err as Error).message });
  }
  if ((query.limit ?? 0) > MAX_LIMIT) {
    return sendJson(res, 400, { error: 'HG_ERR_EVENTS_QUERY', message: `limit: at most ${MAX_LIMIT}` });
  }
  const events = withStore(res, (dbPath) => queryEvents(dbPath, query));
  if (!events) return;
  const stamp = new Date(now).toISOString().replace(/[:.]/g, '-');
  if (format === 'json') return sendJson(res, 200, { events: events.map(eventJson) });
  if (format === 'jsonl') {
    res.setHeader('Content-Disposition', `attachment; filename="honeygate-events-${stamp}.jsonl"`);
    return send(
      res,
      200,
      'application/x-ndjson; charset=utf-8',
      events.map((e) => `${JSON.stringify(eventJson(e))}\n`).join(''),
    );
  }
  res.setHeader('Content-Disposition', `attachment; filename="honeygate-events-${stamp}.csv"`);
  const lines = [CSV_COLUMNS.join(',')];
  for (const e of events) lines.push(csvRow(e).join(','));
  send(res, 200, 'text/csv; charset=utf-8', `${lines.join('\r\n')}\r\n`);
}

function csvRow(e: FlowEvent): string[] {
  const iso = (ms: number | null) => (ms === null ? '' : new Date(ms).toISOString());
  const values: Record<(typeof CSV_COLUMNS)[number], string | number | null> = {
    id: e.id,
    type: e.type,
    openedAt: iso(e.openedAt),
    closedAt: iso(e.closedAt),
    sensor: e.sensor,
    listener: e.listener,
    srcIp: e.src.ip,
    srcPort: e.src.port,
    dstIp: e.dst.ip,
    dstPort: e.dst.port,
    route: e.route,
    action: e.action,
    backend: e.backend,
    server: e.server,
    sourceMode: e.sourceMode,
    bytesIn: e.bytesIn,
    bytesOut: e.bytesOut,
    durationMs: e.durationMs,
    closeReason: e.closeReason,
    protocol: e.protocol,
    count: e.count,
    firstBytes: escapeBytes(e.firstBytes),
    detail: e.detail,
  };
  return CSV_COLUMNS.map((c) => csvCell(values[c]));
}

/**
 * One CSV field (RFC 4180 quoting). Text that a spreadsheet would read as a formula (the
 * attacker chose these bytes) gets a leading apostrophe.
 */
export function csvCell(v: string | number | null): string {
  if (v === null) return '';
  if (typeof v === 'number') return String(v);
  const text = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** GET /api/events/ID: every row of one flow (updates, then the final event), oldest first. */
function flowDetail(res: http.ServerResponse, id: string, withStore: WithStore): void {
  const events = withStore(res, (dbPath) =>
    stats.withStore(dbPath, (db) =>
      (
        [
          ...db.prepare('SELECT * FROM events WHERE id = @id ORDER BY seq').iterate({ id }),
        ] as unknown as EventRow[]
      ).map(rowToEvent),
    ),
  );
  if (!events) return;
  if (events.length === 0)
    return sendJson(res, 404, { error: 'not-found', message: `no event with id ${id}` });
  sendJson(res, 200, {
    id,
    events: events.map((e) => ({
      ...eventJson(e),
      firstBytesHex: e.firstBytes.toString('hex'),
      firstBytesText: escapeBytes(e.firstBytes),
    })),
  });
}

/** An event as the API sends it: the `honeygate events --json` object (firstBytes in base64). */
export function eventJson(e: FlowEvent): Record<string, unknown> {
  return { ...e, firstBytes: e.firstBytes.toString('base64') };
}

function sameToken(given: string, token: string): boolean {
  const a = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, createHash('sha256').update(token).digest());
}

/** A state change must come from the page itself: the browser says so in Sec-Fetch-Site or Origin. */
function sameOrigin(req: http.IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined) return site === 'same-origin' || site === 'none';
  const origin = req.headers.origin;
  return origin === undefined || origin === `http://${req.headers.host}`;
}

function prune(failures: Map<string, { resetAt: number }>, t: number): void {
  for (const [k, f] of failures) if (f.resetAt <= t) failures.delete(k);
}

function cookie(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > BODY_MAX) {
        req.removeAllListeners('data');
        req.resume(); // read and drop the rest, so the 413 reaches the client
        reject(new Error('login form too large'));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function loginPage(error: string | null): string {
  const message = error ? `<p class="login-error" role="alert">${escapeHtml(error)}</p>` : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>honeygate: log in</title>
<link rel="icon" href="/assets/icon.svg">
<link rel="stylesheet" href="/assets/app.css">
</head>
<body class="login">
<form class="login-form" method="post" action="/login">
<h1>honeygate</h1>
<p>The admin token (<code>admin.token</code>) opens the dashboard.</p>
${message}
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button>
</form>
</body>
</html>
`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function notBuilt(res: http.ServerResponse): void {
  send(
    res,
    503,
    'text/plain; charset=utf-8',
    'the dashboard is not built: run `npm run build` (it bundles web/ into dist/web/)\n',
  );
}

function redirect(res: http.ServerResponse, to: string): void {
  res.writeHead(303, { ...SECURITY_HEADERS, Location: to, 'Cache-Control': 'no-store', 'Content-Length': 0 });
  res.end();
}

function send(
  res: http.ServerResponse,
  status: number,
  type: string,
  body: string | Buffer,
  cache = 'no-store',
): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': cache,
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(body)}\n`);
}
