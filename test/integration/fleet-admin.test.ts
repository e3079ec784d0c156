// The collector's admin API (issue 16: "`honeygate events` and the admin API query it across
// sensors, with a --sensor filter"). `honeygate collect` with an admin: section serves the
// events API, the dashboard's views and its own metrics over the central store, under the
// same token rules as a gateway's. What an operator checks: ?sensor= returns that sensor's
// events and no other's, the token is required, /metrics shows the collector's counters,
// and a collector has no backends to show.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import { newEventId } from '../../src/events/recorder.js';
import { encodeEvents } from '../../src/fleet/codec.js';
import { sampleEvent } from '../helpers/events.js';
import { runCli } from '../helpers/honeygate.js';
import { type CollectProcess, type NatsServer, natsServer, startCollect } from '../helpers/nats.js';
import { needs } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

const skip = needs('nats-server');
const TOKEN = 's2-collector-token';

describe('fleet: the admin API of a collector', { skip, timeout: 120_000 }, () => {
  let dir: string;
  let nats: NatsServer;
  let collect: CollectProcess;
  let admin: string; // http://127.0.0.1:PORT
  let config: string;
  const sent: Record<string, string[]> = {};
  const cleanup: (() => unknown)[] = [];

  /** Publishes `n` events of `sensor` straight to the stream, as its gateway would; their ids. */
  async function publish(sensor: string, n: number): Promise<string[]> {
    const nc = await natsConnect({ servers: nats.url });
    try {
      const js = jetstream(nc);
      const now = Date.now();
      const events = Array.from({ length: n }, (_, i) =>
        sampleEvent({ id: newEventId(), sensor, openedAt: now - 1000 - i, closedAt: now - i }),
      );
      await Promise.all(
        encodeEvents(events, sensor).map((m) =>
          js.publish(`honeygate.events.${sensor}`, m.data, { msgID: m.msgId }),
        ),
      );
      return events.map((e) => e.id);
    } finally {
      await nc.close();
    }
  }

  const get = (p: string, token: string | null = TOKEN) =>
    fetch(`${admin}${p}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-fleet-admin-'));
    cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    nats = natsServer(await freePort(), path.join(dir, 'jetstream'));
    await nats.start();
    cleanup.push(() => nats.stop());
    const adminPort = await freePort();
    admin = `http://127.0.0.1:${adminPort}`;
    // The token comes from the environment, as in a gateway's config.
    process.env.HG_S2_COLLECT_TOKEN = TOKEN;
    cleanup.push(() => delete process.env.HG_S2_COLLECT_TOKEN);
    config = path.join(dir, 'fleet.yaml');
    fs.writeFileSync(
      config,
      `events:\n  sqlite: false\n  nats:\n    servers: ["${nats.url}"]\n` +
        `admin:\n  listen: "127.0.0.1:${adminPort}"\n  token: "\${HG_S2_COLLECT_TOKEN}"\n`,
    );
    const init = await runCli(['fleet', 'init', '-c', config]);
    assert.equal(init.code, 0, init.stderr);
    collect = await startCollect(config, path.join(dir, 'central.db'), await freePort());
    cleanup.push(() => collect.stop());
    assert.match(collect.output(), /"admin listening"/);
    sent['sensor-a'] = await publish('sensor-a', 30);
    sent['sensor-b'] = await publish('sensor-b', 20);
    await waitFor(
      'the collector stored 50 events',
      async () => (await collect.metrics()).honeygate_collector_stored_total === 50,
      30_000,
      100,
    );
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('the events API without the token is refused; /healthz needs none', async () => {
    const r = await get('/api/events?sensor=sensor-a', null);
    assert.equal(r.status, 401);
    assert.equal(((await r.json()) as { error: string }).error, 'HG_ERR_ADMIN_AUTH');
    assert.equal((await get('/api/events', 'wrong-token')).status, 401);
    assert.equal((await get('/metrics', null)).status, 401);
    assert.equal((await get('/api/stats/overview', null)).status, 401);
    const health = await get('/healthz', null);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), 'ok\n');
  });

  test("?sensor= returns that sensor's events, and no other's", async () => {
    for (const sensor of ['sensor-a', 'sensor-b']) {
      const r = await get(`/api/events?sensor=${sensor}&limit=1000`);
      assert.equal(r.status, 200);
      const { events } = (await r.json()) as { events: { id: string; sensor: string }[] };
      assert.deepEqual(
        events.map((e) => e.id).sort(),
        [...sent[sensor]!].sort(),
        `every event of ${sensor}, once`,
      );
      assert.ok(events.every((e) => e.sensor === sensor));
    }
    const all = (await (await get('/api/events?limit=1000')).json()) as { events: unknown[] };
    assert.equal(all.events.length, 50, 'without the filter: every sensor');
    const none = (await (await get('/api/events?sensor=sensor-z')).json()) as { events: unknown[] };
    assert.equal(none.events.length, 0);
    // The CSV export filters the same way.
    const csv = await (await get('/api/events?sensor=sensor-b&format=csv&limit=1000')).text();
    assert.equal(csv.trim().split('\r\n').length, 1 + 20);
    // One flow's detail, by id.
    const id = sent['sensor-b']![0]!;
    const detail = (await (await get(`/api/events/${id}`)).json()) as { events: { sensor: string }[] };
    assert.equal(detail.events[0]!.sensor, 'sensor-b');
  });

  test('the live stream filters by sensor', async () => {
    const r = await get('/api/live?sensor=sensor-b&backlog=100');
    assert.equal(r.status, 200);
    const reader = r.body!.getReader();
    let text = '';
    try {
      await waitFor(
        'the backlog of sensor-b',
        async () => {
          const { value, done } = await reader.read();
          if (done) throw new Error(`the stream ended: ${text}`);
          text += Buffer.from(value).toString();
          return text.includes('event: events\n');
        },
        10_000,
        0,
      );
    } finally {
      await reader.cancel();
    }
    const data = /event: events\ndata: (.*)\n/.exec(text)![1]!;
    const events = JSON.parse(data) as { sensor: string }[];
    assert.equal(events.length, 20);
    assert.ok(events.every((e) => e.sensor === 'sensor-b'));
  });

  test("/metrics are the collector's; /api/status names the store; no backends", async () => {
    const text = await (await get('/metrics')).text();
    for (const [name, value] of [
      ['honeygate_collector_received_total', 2], // one message per sensor's batch
      ['honeygate_collector_stored_total', 50],
      ['honeygate_collector_duplicates_total', 0],
      ['honeygate_collector_malformed_total', 0],
    ] as const) {
      assert.match(text, new RegExp(`^${name} ${value}$`, 'm'), name);
    }
    assert.match(text, /^honeygate_collector_lag \d+$/m);
    const status = (await (await get('/api/status')).json()) as {
      collector: { stored: number };
      store: string;
    };
    assert.equal(status.collector.stored, 50);
    assert.equal(status.store, path.join(dir, 'central.db'));
    const backends = await get('/api/backends');
    assert.equal(backends.status, 404);
    assert.equal(((await backends.json()) as { error: string }).error, 'not-served');
  });

  test('--admin serves it on another address, with admin.token still required', async () => {
    const port = await freePort();
    const second = await startCollect(config, path.join(dir, 'central.db'), await freePort(), [
      '--admin',
      `127.0.0.1:${port}`,
    ]);
    try {
      await waitFor('the second admin API', () => second.output().includes('"admin listening"'), 10_000);
      const url = `http://127.0.0.1:${port}/api/events?sensor=sensor-b&limit=1000`;
      assert.equal((await fetch(url)).status, 401);
      const r = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(((await r.json()) as { events: unknown[] }).events.length, 20);
    } finally {
      await second.stop();
    }
  });

  test('the dashboard overview lists both sensors', async () => {
    const r = await get('/api/stats/overview?range=1h');
    assert.equal(r.status, 200);
    const o = (await r.json()) as { sensors: { sensor: string; flows: number }[] };
    assert.deepEqual(
      o.sensors.map((s) => [s.sensor, s.flows]),
      [
        ['sensor-a', 30],
        ['sensor-b', 20],
      ],
    );
  });
});
