// The dashboard's JSON API and login on a running gateway over a seeded store (issue #17):
// the numbers each view answers, search with the `events` filters and its exports, one
// flow's detail, the live stream, the session cookie, and what is refused.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type DashboardGateway, startDashboardGateway, TOKEN } from '../helpers/dashboard.js';
import { waitFor } from '../helpers/wait.js';

const AUTH = { Authorization: `Bearer ${TOKEN}` };

describe('dashboard API', { timeout: 60_000 }, () => {
  let g: DashboardGateway;
  before(async () => {
    g = await startDashboardGateway();
  });
  after(async () => {
    await g?.close();
  });

  const json = async (path: string, headers: Record<string, string> = AUTH) => {
    const res = await fetch(g.base + path, { headers });
    // biome-ignore lint/suspicious/noExplicitAny: the test reads the API's JSON as it comes
    return { res, body: (await res.json()) as Record<string, any> };
  };

  test('every API route needs the token; the page sends the login page its way', async () => {
    for (const path of [
      '/api/events',
      '/api/events/00',
      '/api/live',
      '/api/backends',
      '/api/stats/overview',
    ]) {
      const res = await fetch(g.base + path);
      assert.equal(res.status, 401, path);
      const wrong = await fetch(g.base + path, { headers: { Authorization: 'Bearer nope' } });
      assert.equal(wrong.status, 401, path);
    }
    const page = await fetch(`${g.base}/`, { redirect: 'manual' });
    assert.equal(page.status, 303);
    assert.equal(page.headers.get('location'), '/login');
    // The bundled assets need no login (no secrets in them) and carry the strict headers.
    const js = await fetch(`${g.base}/assets/app.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type')!, /javascript/);
    const csp = js.headers.get('content-security-policy')!;
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal(js.headers.get('x-frame-options'), 'DENY');
    assert.equal(js.headers.get('x-content-type-options'), 'nosniff');
    // Nothing under /api/ changes state: other methods are refused.
    const post = await fetch(`${g.base}/api/events`, { method: 'POST', headers: AUTH });
    assert.equal(post.status, 405);
  });

  test('the aggregates count the seeded store', async () => {
    const { seed } = g;
    const o = (await json('/api/stats/overview?range=1h')).body;
    assert.equal(o.flows, seed.flows);
    assert.equal(o.refused, seed.refused);
    assert.equal(o.sources, seed.bySource.size);
    assert.deepEqual(
      o.sensors.map((s: { sensor: string }) => s.sensor),
      ['gw-test'],
    );

    const t = (await json('/api/stats/timeline?range=1h&by=action')).body;
    assert.equal(t.times.length, t.series[0].counts.length);
    const total = (name: string) =>
      t.series
        .find((s: { name: string }) => s.name === name)
        .counts.reduce((a: number, b: number) => a + b, 0);
    const byAction = new Map<string, number>();
    for (const e of seed.events) {
      if (e.type === 'flow' && e.openedAt >= t.since)
        byAction.set(e.action!, (byAction.get(e.action!) ?? 0) + 1);
    }
    for (const [action, n] of byAction) assert.equal(total(action), n, action);
    assert.equal(total('refused'), seed.refused);
    const byRoute = (await json('/api/stats/timeline?range=1h&by=route')).body;
    assert.ok(byRoute.series.some((s: { name: string }) => s.name === 'ssh'));

    const sources = (await json('/api/stats/sources?range=1h')).body.sources;
    const busiest = [...seed.bySource].sort((a, b) => b[1] - a[1])[0]!;
    assert.equal(sources[0].ip, busiest[0]);
    assert.equal(sources[0].flows, busiest[1]);
    assert.ok(sources[0].first <= sources[0].last);
    assert.deepEqual(sources[0].ports, [22, 23, 80, 443, 3389]);

    const ports = (await json('/api/stats/ports?range=1h')).body.ports;
    for (const p of ports) assert.equal(p.flows, seed.byPort.get(p.port), `port ${p.port}`);

    const heat = (await json('/api/stats/heatmap?range=1h')).body;
    assert.equal(heat.ports.length, seed.byPort.size);
    for (const [i, port] of heat.ports.entries()) {
      const sum = heat.counts[i].reduce((a: number, b: number) => a + b, 0);
      assert.equal(sum, seed.byPort.get(port), `heat map row of port ${port}`);
    }

    const protocols = (await json('/api/stats/protocols?range=1h')).body.protocols;
    assert.deepEqual(
      new Map(protocols.map((p: { protocol: string; flows: number }) => [p.protocol, p.flows])),
      seed.byProtocol,
    );

    const r = (await json('/api/stats/refusals?range=1h')).body;
    assert.deepEqual(r.byReason, [
      { reason: 'limit-rate', flows: 40 },
      { reason: 'limit-per-source', flows: 7 },
    ]);
    assert.equal(r.topSources[0].ip, '198.51.100.200');

    // A month-old flow is in no range; the week counts the same as the hour here.
    assert.equal((await json('/api/stats/overview?range=7d')).body.flows, seed.flows);

    const bad = await json('/api/stats/timeline?range=2y');
    assert.equal(bad.res.status, 400);
    assert.match(bad.body.message, /range: "2y" is not one of 1h, 24h, 7d/);
    assert.equal((await json('/api/stats/timeline?by=sensor')).res.status, 400);

    const b = (await json('/api/backends')).body;
    assert.equal(b.backends[0].backend, 'cowrie');
    assert.equal(b.listeners[0].listener, 'trap');
  });

  test('search takes the filters of `honeygate events` and exports JSON lines and CSV', async () => {
    const { body } = await json(
      '/api/events?src=198.51.100.0/24&dstPort=22,80&action=forward&since=2h&limit=1000',
    );
    assert.ok(body.events.length > 0);
    for (const e of body.events) {
      assert.match(e.src.ip, /^198\.51\.100\./);
      assert.ok([22, 80].includes(e.dst.port));
      assert.equal(e.action, 'forward');
    }
    const want = g.seed.events.filter(
      (e) =>
        e.src.ip.startsWith('198.51.100.') &&
        [22, 80].includes(e.dst.port) &&
        e.action === 'forward' &&
        e.openedAt > Date.now() - 7_200_000,
    );
    assert.equal(body.events.length, want.length);
    // Newest first, as the CLI.
    assert.ok(body.events[0].openedAt >= body.events.at(-1).openedAt);
    assert.equal((await json('/api/events?limit=3')).body.events.length, 3);
    // An empty form field is no filter.
    assert.equal((await json('/api/events?src=&route=&limit=5')).body.events.length, 5);

    for (const [q, message] of [
      ['src=not-an-ip', /--src/],
      ['dstPort=99999', /--dst-port/],
      ['action=explode', /--action: "explode" is not one of/],
      ['since=yesterday', /--since/],
      ['limit=0', /--limit/],
      ['format=xml', /format: "xml"/],
    ] as const) {
      const r = await json(`/api/events?${q}`);
      assert.equal(r.res.status, 400, q);
      assert.match(r.body.message, message, q);
    }

    const jsonl = await fetch(`${g.base}/api/events?route=ssh&format=jsonl&limit=1000`, { headers: AUTH });
    assert.equal(jsonl.status, 200);
    assert.match(
      jsonl.headers.get('content-disposition')!,
      /attachment; filename="honeygate-events-.*\.jsonl"/,
    );
    const lines = (await jsonl.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(lines.length > 0);
    for (const l of lines) assert.equal(l.route, 'ssh');
    assert.match(Buffer.from(lines[0].firstBytes, 'base64').toString(), /^SSH-2\.0-/);

    const csv = await fetch(`${g.base}/api/events?src=203.0.113.99&format=csv`, { headers: AUTH });
    assert.match(csv.headers.get('content-type')!, /text\/csv/);
    const rows = (await csv.text()).trim().split('\r\n');
    assert.equal(rows[0]!.split(',')[0], 'id');
    assert.equal(rows.length, 2);
    // The attacker's "=cmd|..." would run as a formula in a spreadsheet: defused, quoted.
    assert.ok(rows[1]!.includes(`"'=cmd|"" /c calc""!A0\\r\\n"`), rows[1]);
  });

  test('one flow in detail: every row of its id, first bytes as hex and text', async () => {
    const { res, body } = await json(`/api/events/${g.seed.updatedId}`);
    assert.equal(res.status, 200);
    assert.deepEqual(
      body.events.map((e: { type: string }) => e.type),
      ['update', 'flow'],
    );
    const flow = body.events[1];
    assert.equal(flow.firstBytesText, 'SSH-2.0-Go\\r\\n');
    assert.equal(flow.firstBytesHex, Buffer.from('SSH-2.0-Go\r\n').toString('hex'));
    assert.equal(flow.closeReason, 'client-closed');
    assert.equal(flow.backend, 'cowrie');
    assert.deepEqual(flow.protocolFields, { clientVersion: 'SSH-2.0-Go' });
    const missing = await json(`/api/events/${'f'.repeat(32)}`);
    assert.equal(missing.res.status, 404);
  });

  test('a new connection reaches the live stream within 2 s', async () => {
    const ac = new AbortController();
    const res = await fetch(`${g.base}/api/live?backlog=0`, { headers: AUTH, signal: ac.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /text\/event-stream/);
    let text = '';
    const reader = res.body!.getReader();
    const pump = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          text += Buffer.from(value).toString();
        }
      } catch {
        // aborted
      }
    })();
    try {
      await waitFor('the stream to open', () => text.includes('retry:'));
      const s = net.connect(g.listenerPort, '127.0.0.1');
      s.on('error', () => {});
      const localPort = await new Promise<number>((resolve) =>
        s.once('connect', () => resolve(s.localPort!)),
      );
      const t0 = Date.now();
      s.end('hello dashboard\r\n');
      // The capture closes after its 300 ms timeout; the event then reaches the stream.
      const event = await waitFor(
        'the flow in the live stream',
        () => {
          for (const block of text.split('\n\n')) {
            if (!block.startsWith('event: events')) continue;
            const events = JSON.parse(block.slice(block.indexOf('data: ') + 6)) as {
              src: { port: number };
              firstBytes: string;
            }[];
            const hit = events.find((e) => e.src.port === localPort);
            if (hit) return hit;
          }
          return undefined;
        },
        5000,
        20,
      );
      assert.ok(Date.now() - t0 < 2000, `arrived after ${Date.now() - t0} ms`);
      assert.equal(Buffer.from(event.firstBytes, 'base64').toString(), 'hello dashboard\r\n');
    } finally {
      ac.abort();
      await pump;
    }
  });

  test('login sets an HttpOnly, SameSite=Strict session; logout ends it; failures are rate-limited', async () => {
    const loginPage = await fetch(`${g.base}/login`);
    assert.equal(loginPage.status, 200);
    const html = await loginPage.text();
    assert.match(html, /<form class="login-form" method="post" action="\/login">/);
    assert.doesNotMatch(html, /<script/, 'no script on the login page');

    const ok = await fetch(`${g.base}/login`, {
      method: 'POST',
      body: new URLSearchParams({ token: TOKEN }),
      redirect: 'manual',
    });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get('location'), '/');
    const setCookie = ok.headers.get('set-cookie')!;
    assert.match(setCookie, /^hg_session=[\w-]{40,};/);
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    const cookie = setCookie.split(';')[0]!;

    const page = await fetch(`${g.base}/`, { headers: { cookie } });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<script type="module" src="\/assets\/app.js"><\/script>/);
    assert.equal((await json('/api/stats/overview?range=1h', { cookie })).res.status, 200);
    // The session also opens the older admin routes.
    assert.equal((await fetch(`${g.base}/api/status`, { headers: { cookie } })).status, 200);

    // Logout must come from the page itself.
    const forged = await fetch(`${g.base}/logout`, {
      method: 'POST',
      headers: { cookie, origin: 'http://evil.example' },
      redirect: 'manual',
    });
    assert.equal(forged.status, 403);
    assert.equal((await json('/api/stats/overview', { cookie })).res.status, 200, 'still logged in');
    const out = await fetch(`${g.base}/logout`, {
      method: 'POST',
      headers: { cookie, origin: g.base },
      redirect: 'manual',
    });
    assert.equal(out.status, 303);
    assert.match(out.headers.get('set-cookie')!, /Max-Age=0/);
    assert.equal((await json('/api/stats/overview', { cookie })).res.status, 401, 'the session is gone');

    // Five wrong tokens, then even the right one waits.
    for (let i = 0; i < 5; i++) {
      const bad = await fetch(`${g.base}/login`, {
        method: 'POST',
        body: new URLSearchParams({ token: `guess${i}` }),
      });
      assert.equal(bad.status, 401);
      assert.match(await bad.text(), /Wrong token/);
    }
    const limited = await fetch(`${g.base}/login`, {
      method: 'POST',
      body: new URLSearchParams({ token: TOKEN }),
      redirect: 'manual',
    });
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get('retry-after')) > 0);
    assert.equal(limited.headers.get('set-cookie'), null);
    assert.ok(g.hg.logs().some((l) => l.msg === 'dashboard login failed'));
  });
});
