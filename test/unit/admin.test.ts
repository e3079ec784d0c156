// The admin API on a real loopback port: metrics reflect the stats snapshots and the
// flow events published on the flowEnd channel; the token guards everything but /healthz.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { createMetrics } from '../../src/admin/metrics.js';
import { startAdmin } from '../../src/admin/server.js';
import type { AdminConfig } from '../../src/config/types.js';
import { HoneygateError } from '../../src/errors.js';
import type { RecorderStats } from '../../src/events/recorder.js';
import { flowEnd } from '../../src/gateway/flow.js';
import type { GatewayStats } from '../../src/gateway/gateway.js';
import { sampleEvent } from '../helpers/events.js';
import { waitFor, withTimeout } from '../helpers/wait.js';

const TOKEN = 's3cret-token';

function fakes() {
  const gw: GatewayStats = {
    openFlows: 3,
    refused: 7,
    refusedBy: { 'limit-rate': 4, 'limit-global': 2, 'fd-exhausted': 1 },
    listeners: [{ listener: 'all-ports', address: '127.0.0.1:15001' }],
    backends: [
      {
        backend: 'cowrie',
        servers: [
          { server: '192.0.2.10:2222', up: true, active: 2 },
          { server: '192.0.2.11:2222', up: false, active: 0 },
        ],
      },
    ],
  };
  const rec: RecorderStats = { queued: 4, written: 100, dropped: 5, sinkErrors: 1 };
  return { gw, rec, gateway: { stats: () => gw }, recorder: { stats: () => rec } };
}

/** A pino logger whose lines land in `lines`. */
function captureLog() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(
  address: string,
  path: string,
  opts: { method?: string; token?: string; agent?: http.Agent } = {},
) {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ];
  return withTimeout(
    new Promise<Reply>((resolve, reject) => {
      const req = http.request(
        {
          host,
          port,
          path,
          method: opts.method ?? 'GET',
          agent: opts.agent ?? false,
          headers: opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString(),
            }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    }),
    5000,
    `${opts.method ?? 'GET'} ${path}`,
  );
}

/** The value of one series in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

/** Live sockets and servers on `port` (either end), from Node's list of active handles. */
function handlesOn(port: number): number {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((h) => {
    if (h instanceof net.Server) return (h.address() as net.AddressInfo | null)?.port === port;
    if (h instanceof net.Socket) return !h.destroyed && (h.localPort === port || h.remotePort === port);
    return false;
  }).length;
}

const cfg = (token: string | null, port = 0): AdminConfig => ({ listen: { host: '127.0.0.1', port }, token });

describe('admin API', () => {
  const closers: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of closers.reverse()) await c();
  });

  async function start(token: string | null) {
    const f = fakes();
    const { log, lines } = captureLog();
    const admin = await startAdmin(cfg(token), { gateway: f.gateway, recorder: f.recorder, log });
    closers.push(() => admin.close());
    return { ...f, admin, lines };
  }

  it('serves the gateway and recorder stats as Prometheus metrics', async () => {
    const { admin, gw } = await start(null);
    const res = await request(admin.address, '/metrics');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const t = res.body;
    assert.equal(sample(t, 'honeygate_open_flows'), 3);
    // #13: refusals carry their reason; every reason is present from the first scrape.
    assert.equal(sample(t, 'honeygate_refused_flows_total{reason="limit-rate"}'), 4);
    assert.equal(sample(t, 'honeygate_refused_flows_total{reason="limit-global"}'), 2);
    assert.equal(sample(t, 'honeygate_refused_flows_total{reason="fd-exhausted"}'), 1);
    assert.equal(sample(t, 'honeygate_refused_flows_total{reason="limit-per-source"}'), 0);
    assert.match(t, /# TYPE honeygate_refused_flows_total counter/);
    assert.equal(sample(t, 'honeygate_server_up{backend="cowrie",server="192.0.2.10:2222"}'), 1);
    assert.equal(sample(t, 'honeygate_server_up{backend="cowrie",server="192.0.2.11:2222"}'), 0);
    assert.equal(sample(t, 'honeygate_server_active_flows{backend="cowrie",server="192.0.2.10:2222"}'), 2);
    assert.equal(sample(t, 'honeygate_events_written_total'), 100);
    assert.equal(sample(t, 'honeygate_events_dropped_total'), 5);
    assert.equal(sample(t, 'honeygate_events_queued'), 4);
    assert.equal(sample(t, 'honeygate_sink_errors_total'), 1);
    assert.equal(sample(t, 'honeygate_flow_bytes_total{direction="in"}'), 0);
    assert.ok(sample(t, 'honeygate_process_cpu_user_seconds_total') !== undefined, 'default process metrics');

    // A reload that drops a server and a busier gateway: the next scrape shows both.
    gw.openFlows = 9;
    gw.backends[0]!.servers.pop();
    const t2 = (await request(admin.address, '/metrics')).body;
    assert.equal(sample(t2, 'honeygate_open_flows'), 9);
    assert.equal(sample(t2, 'honeygate_server_up{backend="cowrie",server="192.0.2.11:2222"}'), undefined);
  });

  it('counts flows published on the flowEnd channel, without attacker addresses as labels', async () => {
    const { admin } = await start(null);
    const before = (await request(admin.address, '/metrics')).body;
    const series =
      'honeygate_flows_total{listener="all-ports",route="ssh",action="forward",protocol="ssh",close_reason="client-closed"}';
    const base = sample(before, series) ?? 0;
    const baseIn = sample(before, 'honeygate_flow_bytes_total{direction="in"}') ?? 0;
    flowEnd.publish(sampleEvent());
    flowEnd.publish(sampleEvent());
    flowEnd.publish(
      sampleEvent({
        action: null,
        closeReason: 'limit-global',
        listener: 'ssh',
        route: null,
        protocol: null,
        bytesIn: 0,
        bytesOut: 0,
      }),
    );
    // An unknown protocol name (not one of the classifiers') is counted as "other".
    flowEnd.publish(sampleEvent({ protocol: 'made-up', route: 'web' }));
    const t = (await request(admin.address, '/metrics')).body;
    assert.equal(sample(t, series), base + 2);
    assert.equal(
      sample(
        t,
        'honeygate_flows_total{listener="ssh",route="none",action="none",protocol="none",close_reason="limit-global"}',
      ),
      1,
    );
    assert.equal(
      sample(
        t,
        'honeygate_flows_total{listener="all-ports",route="web",action="forward",protocol="other",close_reason="client-closed"}',
      ),
      1,
    );
    assert.equal(sample(t, 'honeygate_flow_bytes_total{direction="in"}'), baseIn + 369);
    assert.ok(!t.includes('198.51.100.7'), 'no source address in any label');
    // Garbage on the channel is ignored, not a crash.
    flowEnd.publish(null);
    flowEnd.publish({ type: 'flow' });
  });

  it('serves /api/status as JSON', async () => {
    const { admin } = await start(null);
    const res = await request(admin.address, '/api/status');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const body = JSON.parse(res.body);
    assert.equal(body.gateway.openFlows, 3);
    assert.equal(body.gateway.backends[0].servers[0].server, '192.0.2.10:2222');
    assert.deepEqual(body.recorder, { queued: 4, written: 100, dropped: 5, sinkErrors: 1 });
    assert.equal(typeof body.uptimeSeconds, 'number');
  });

  it('with a token: 401 without or with a wrong one, 200 with the right one, /healthz open', async () => {
    const { admin } = await start(TOKEN);
    for (const path of ['/metrics', '/api/status', '/nope']) {
      for (const token of [undefined, 'wrong', `${TOKEN}x`, '']) {
        const res = await request(admin.address, path, token === undefined ? {} : { token });
        assert.equal(res.status, 401, `${path} with token ${JSON.stringify(token)}`);
        const body = JSON.parse(res.body);
        assert.equal(body.error, 'HG_ERR_ADMIN_AUTH');
        assert.equal(typeof body.message, 'string');
        assert.doesNotMatch(res.body, new RegExp(TOKEN));
      }
    }
    assert.equal((await request(admin.address, '/metrics', { token: TOKEN })).status, 200);
    assert.equal((await request(admin.address, '/api/status', { token: TOKEN })).status, 200);
    const health = await request(admin.address, '/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.body.trim(), 'ok');
  });

  it('answers 404 for unknown paths and 405 for other methods', async () => {
    const { admin } = await start(null);
    const missing = await request(admin.address, '/admin/../etc/passwd');
    assert.equal(missing.status, 404);
    assert.match(JSON.parse(missing.body).message, /known: \/metrics/);
    const post = await request(admin.address, '/metrics', { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    assert.equal((await request(admin.address, '/healthz', { method: 'DELETE' })).status, 405);
    assert.equal((await request(admin.address, '/healthz?probe=1')).status, 200);
    const head = await request(admin.address, '/healthz', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  it('logs the address it listens on', async () => {
    const { admin, lines } = await start(null);
    assert.match(admin.address, /^127\.0\.0\.1:\d+$/);
    assert.ok(
      lines.some((l) => l.msg === 'admin listening' && l.address === admin.address && l.level === 30),
    );
    assert.ok(!lines.some((l) => l.level === 40), 'no warning on loopback');
  });

  it('rejects with HG_ERR_LISTEN when the port is taken', async () => {
    const { admin } = await start(null);
    const port = Number(admin.address.split(':')[1]);
    const { log } = captureLog();
    const f = fakes();
    await assert.rejects(startAdmin(cfg(null, port), { ...f, log }), (err: unknown) => {
      assert.ok(err instanceof HoneygateError);
      assert.equal(err.code, 'HG_ERR_LISTEN');
      assert.match(err.message, new RegExp(`admin: 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
      return true;
    });
  });

  it('warns (and still tries) on a non-loopback address without a token', async () => {
    const { log, lines } = captureLog();
    const f = fakes();
    const subscribedBefore = flowEnd.hasSubscribers;
    // 192.0.2.1 is a documentation address, not on this host: the bind fails, nothing is exposed.
    await assert.rejects(
      startAdmin({ listen: { host: '192.0.2.1', port: 0 }, token: null }, { ...f, log }),
      (err: unknown) =>
        err instanceof HoneygateError && err.code === 'HG_ERR_LISTEN' && /192\.0\.2\.1:0/.test(err.message),
    );
    assert.ok(lines.some((l) => l.level === 40 && /without a token/.test(String(l.msg))));
    assert.equal(flowEnd.hasSubscribers, subscribedBefore, 'a failed start leaves no subscriber behind');
  });

  // Regression: a request with 100 KB of headers had its connection dropped without an answer.
  it('answers 431 to headers over the limit, and keeps serving', async () => {
    const { admin } = await start(TOKEN);
    const [host, port] = [admin.address.split(':')[0]!, Number(admin.address.split(':')[1])];
    const reply = await withTimeout(
      new Promise<string>((resolve, reject) => {
        const sock = net.connect(port, host);
        let got = '';
        sock.on('error', reject);
        sock.on('data', (d) => {
          got += d.toString('latin1');
        });
        sock.on('close', () => resolve(got));
        sock.write(`GET /api/status HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`);
      }),
      5000,
      'the answer to a request with 100 KB of headers',
    );
    assert.match(reply, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.equal((await request(admin.address, '/healthz')).status, 200);
  });

  it('close() ends keep-alive connections and leaves no handles or subscribers', async () => {
    const subscribedBefore = flowEnd.hasSubscribers;
    const f = fakes();
    const { log } = captureLog();
    const admin = await startAdmin(cfg(TOKEN), { ...f, log });
    const port = Number(admin.address.split(':')[1]);
    const agent = new http.Agent({ keepAlive: true });
    try {
      assert.equal((await request(admin.address, '/metrics', { token: TOKEN, agent })).status, 200);
      // The server and its end of the kept-alive connection (the agent unrefs its idle end).
      assert.ok(handlesOn(port) >= 2, 'server and kept-alive connection are open');
      await withTimeout(admin.close(), 2000, 'admin.close() with a keep-alive connection open');
      await admin.close(); // idempotent
      await waitFor('every handle on the admin port released', () => handlesOn(port) === 0);
      assert.equal(flowEnd.hasSubscribers, subscribedBefore);
    } finally {
      agent.destroy();
      await admin.close();
    }
  });
});

describe('createMetrics', () => {
  it('stops counting flow events after close()', async () => {
    const f = fakes();
    const m = createMetrics(f);
    const series =
      'honeygate_flows_total{listener="closed-test",route="ssh",action="forward",protocol="ssh",close_reason="client-closed"}';
    flowEnd.publish(sampleEvent({ listener: 'closed-test' }));
    m.close();
    flowEnd.publish(sampleEvent({ listener: 'closed-test' }));
    assert.equal(sample(await m.registry.metrics(), series), 1);
  });

  it('keeps its own registry: two instances count independently', async () => {
    const a = createMetrics(fakes());
    const b = createMetrics(fakes());
    try {
      flowEnd.publish(sampleEvent({ listener: 'only-a' }));
      b.close();
      flowEnd.publish(sampleEvent({ listener: 'only-a' }));
      const series =
        'honeygate_flows_total{listener="only-a",route="ssh",action="forward",protocol="ssh",close_reason="client-closed"}';
      assert.equal(sample(await a.registry.metrics(), series), 2);
      assert.equal(sample(await b.registry.metrics(), series), 1);
    } finally {
      a.close();
      b.close();
    }
  });
});
