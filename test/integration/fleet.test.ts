// The fleet: gateways publish their events to a real nats-server (JetStream, its own store
// directory on loopback) through the nats sink's outbox, and `honeygate collect` writes them
// into one central store. What a fleet operator checks: every event a gateway recorded
// locally arrives once (counted by id), also across a broker outage and a SIGKILL of the
// gateway; a message on the subject that is not an event is counted and skipped.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import { overview, rawViews, toRange, withStore } from '../../src/admin/dashboard-stats.js';
import { newEventId } from '../../src/events/recorder.js';
import { decodeMessage, encodeEvents } from '../../src/fleet/codec.js';
import { Outbox } from '../../src/fleet/outbox.js';
import { connect } from '../helpers/client.js';
import { sampleEvent } from '../helpers/events.js';
import { type Honeygate, runCli, startHoneygate } from '../helpers/honeygate.js';
import {
  type CollectProcess,
  type NatsServer,
  natsServer,
  outboxLength,
  startCollect,
  storeIds,
} from '../helpers/nats.js';
import { makeCa } from '../helpers/openssl-pki.js';
import { needs } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

const skip = needs('nats-server');

/** `n` flows, one after the other: connect, send, close. */
async function flows(port: number, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const s = await connect(port);
    s.end('hello');
    await new Promise((r) => s.once('close', r));
  }
}

describe('fleet: nats sink, outbox, collect', { skip, timeout: 180_000 }, () => {
  let dir: string;
  let nats: NatsServer;
  let fleetConfig: string;
  let central: string;
  let collect: CollectProcess;
  const cleanup: (() => unknown)[] = [];

  const gatewayConfig = (port: number, sensor: string, admin?: number) => `
${admin ? `admin: { listen: "127.0.0.1:${admin}" }` : ''}
listeners:
  - name: pot
    bind: "127.0.0.1:${port}"
routes:
  - drop: {}
limits: { perSourceRate: 100000/s, grace: 1s }
events:
  sensor: ${sensor}
  sqlite: ${dir}/${sensor}.db
  batch: 50ms
  nats:
    servers: ["${nats.url}"]
    outbox: ${dir}/${sensor}-outbox.db
    ackTimeout: 2s
`;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-fleet-'));
    cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    nats = natsServer(await freePort(), path.join(dir, 'jetstream'));
    await nats.start();
    cleanup.push(() => nats.stop());
    fleetConfig = path.join(dir, 'fleet.yaml');
    fs.writeFileSync(
      fleetConfig,
      `events:\n  sqlite: false\n  nats:\n    servers: ["${nats.url}"]\n    duplicateWindow: 10m\n`,
    );
    const init = await runCli(['fleet', 'init', '-c', fleetConfig]);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /stream HONEYGATE_EVENTS created: subjects honeygate\.events\.>/);
    const again = await runCli(['fleet', 'init', '-c', fleetConfig]);
    assert.match(again.stdout, /stream HONEYGATE_EVENTS updated/);
    central = path.join(dir, 'central.db');
    collect = await startCollect(fleetConfig, central, await freePort());
    cleanup.push(() => collect.stop());
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  const started: Honeygate[] = [];
  after(async () => {
    for (const hg of started) await hg.close();
  });

  async function gateway(
    sensor: string,
    port?: number,
    admin?: number,
  ): Promise<{ hg: Honeygate; port: number }> {
    const p = port ?? (await freePort());
    const hg = await startHoneygate(gatewayConfig(p, sensor, admin));
    started.push(hg);
    return { hg, port: p };
  }

  /** Publishes `n` sample events of `sensor` straight to the stream, as gateways would; their ids. */
  async function publishBulk(sensor: string, n: number): Promise<string[]> {
    const nc = await natsConnect({ servers: nats.url });
    const sent: string[] = [];
    try {
      const js = jetstream(nc);
      for (let i = 0; i < n; i += 500) {
        const batch = Array.from({ length: 500 }, () => sampleEvent({ id: newEventId(), sensor }));
        sent.push(...batch.map((e) => e.id));
        await Promise.all(
          encodeEvents(batch, sensor).map((m) =>
            js.publish(`honeygate.events.${sensor}`, m.data, { msgID: m.msgId }),
          ),
        );
      }
    } finally {
      await nc.close();
    }
    return sent;
  }

  /** Waits until the central store holds at least n events of sensor; their ids. */
  function centralIds(sensor: string, n: number, timeoutMs: number, what: string): Promise<string[]> {
    return waitFor(
      what,
      async () => {
        const ids = await storeIds(central, sensor);
        return ids.length >= n && ids;
      },
      timeoutMs,
      100,
    );
  }

  /** Waits until the central store holds exactly the sensor's local flow ids, each once. */
  async function arrivedOnce(sensor: string, expected: number): Promise<string[]> {
    const local = await waitFor(
      `${expected} local events`,
      async () => {
        const ids = await storeIds(path.join(dir, `${sensor}.db`));
        return ids.length >= expected && ids;
      },
      30_000,
      100,
    );
    const got = await centralIds(
      sensor,
      local.length,
      60_000,
      `central store has ${local.length} events of ${sensor}`,
    );
    assert.equal(new Set(got).size, got.length, 'no id twice in the central store');
    assert.deepEqual([...got].sort(), [...local].sort(), 'the central store holds what the gateway recorded');
    return got;
  }

  test('events from two running gateways arrive exactly once, by sensor', async () => {
    const a = await gateway('sensor-a');
    const b = await gateway('sensor-b');
    // The ready line names the nats sink beside the others: subject, servers, outbox.
    const ready = a.hg.logs().find((r) => r.msg === 'ready')!;
    assert.deepEqual(ready.events, {
      sqlite: path.join(dir, 'sensor-a.db'),
      nats: `honeygate.events.sensor-a -> ${nats.url} (outbox ${path.join(dir, 'sensor-a-outbox.db')})`,
    });
    await Promise.all([flows(a.port, 40), flows(b.port, 25)]);
    await arrivedOnce('sensor-a', 40);
    await arrivedOnce('sensor-b', 25);
    const all = await storeIds(central);
    assert.equal(all.length, 65);
    // The collector keeps the central store's rollup: `stats` (which reads only the rollup)
    // counts every flow, and the dashboard's sensors view agrees with the events table.
    const { stdout } = await runCli(['stats', '--db', central, '--json', '--since', '2d']);
    const days = stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { flows: number });
    assert.equal(
      days.reduce((n, d) => n + d.flows, 0),
      65,
      stdout,
    );
    const week = toRange('7d', Date.now());
    const seen = withStore(central, (db) => overview(db, week));
    const sensors = (o: typeof seen) => Object.fromEntries(o.sensors.map((x) => [x.sensor, x.flows]));
    assert.deepEqual(sensors(seen), { 'sensor-a': 40, 'sensor-b': 25 });
    assert.deepEqual(
      JSON.parse(JSON.stringify(seen)),
      JSON.parse(JSON.stringify(withStore(central, (db) => overview(rawViews(db), week)))),
    );
    const m = await collect.metrics();
    assert.equal(m.honeygate_collector_stored_total, 65);
    await waitFor(
      'collector lag 0',
      async () => (await collect.metrics()).honeygate_collector_lag === 0,
      10_000,
    );
    for (const g of [a, b]) await g.hg.stop();
  });

  test('broker down, then back: the outbox holds the events and drains, none lost or doubled', async () => {
    const adminPort = await freePort();
    const a = await gateway('sensor-c', undefined, adminPort);
    const metrics = async () => {
      const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
      return Object.fromEntries(
        [...text.matchAll(/^(honeygate_nats_\w+) ([0-9.e+-]+)$/gm)].map((m) => [m[1]!, Number(m[2])]),
      );
    };
    await flows(a.port, 10);
    await arrivedOnce('sensor-c', 10);
    await nats.stop();
    await flows(a.port, 30);
    const outbox = path.join(dir, 'sensor-c-outbox.db');
    await waitFor('30 events in the outbox', () => outboxLength(outbox) === 30, 20_000);
    await a.hg.waitForLine((r) => /broker unreachable/.test(String(r.msg)), 20_000);
    const away = await metrics();
    assert.equal(away.honeygate_nats_outbox_events, 30);
    assert.ok(away.honeygate_nats_outbox_oldest_age_seconds! > 0, 'the oldest waiting event has an age');
    assert.equal(away.honeygate_nats_connected, 0);
    await nats.start();
    await arrivedOnce('sensor-c', 40);
    await waitFor('the outbox is empty', () => outboxLength(outbox) === 0, 30_000);
    const back = await waitFor('metrics: outbox drained', async () => {
      const m = await metrics();
      return m.honeygate_nats_outbox_events === 0 && m;
    });
    assert.equal(back.honeygate_nats_acknowledged_total, 40);
    assert.equal(back.honeygate_nats_outbox_oldest_age_seconds, 0);
    assert.equal(back.honeygate_nats_outbox_overflowed_total, 0);
    await a.hg.stop();
  });

  test("a sensor's and its hub's records of one flow (one id) both arrive", {
    skip: needs('openssl'),
  }, async () => {
    // A sensor forwarding over the tunnel to a hub, each with its nats sink: the two events
    // of a flow share the id (by design), and the message id names the recording gateway.
    const pki = path.join(dir, 'pki');
    const ca = makeCa(pki, 'farm-ca');
    ca.issue('hub-f');
    ca.issue('sensor-f');
    const hubPort = await freePort();
    const front = await freePort();
    const natsEvents = (gw: string) => `
  nats:
    servers: ["${nats.url}"]
    outbox: ${dir}/${gw}-outbox.db
    ackTimeout: 2s`;
    const hub = await startHoneygate(`
listeners:
  - name: sensors
    tunnel:
      listen: "127.0.0.1:${hubPort}"
      ca: ${ca.ca}
      cert: ${pki}/hub-f.pem
      key: ${pki}/hub-f-key.pem
      sensors: [sensor-f]
routes:
  - capture: { timeout: 2s }
events:
  sensor: hub-f
  sqlite: ${dir}/hub-f.db
  batch: 50ms${natsEvents('hub-f')}
`);
    started.push(hub);
    const sensor = await startHoneygate(`
listeners:
  - name: front
    bind: "127.0.0.1:${front}"
routes:
  - forward: farm
backends:
  farm:
    tunnel:
      hub: "127.0.0.1:${hubPort}"
      serverName: hub-f
      ca: ${ca.ca}
      cert: ${pki}/sensor-f.pem
      key: ${pki}/sensor-f-key.pem
events:
  sensor: sensor-f
  sqlite: ${dir}/sensor-f.db
  batch: 50ms${natsEvents('sensor-f')}
`);
    started.push(sensor);
    await sensor.waitForLine((r) => r.msg === 'tunnel up', 10_000);
    await flows(front, 3);
    const local = await waitFor(
      'both gateways recorded the 3 flows',
      async () => {
        const s = await storeIds(path.join(dir, 'sensor-f.db'));
        const h = await storeIds(path.join(dir, 'hub-f.db'));
        return s.length === 3 && h.length === 3 && { s, h };
      },
      20_000,
      100,
    );
    assert.deepEqual([...local.h].sort(), [...local.s].sort(), 'the hub keeps the sensor ids');
    // Both ends' records, by the sensor's name (the hub's event carries it).
    const got = await centralIds('sensor-f', 6, 30_000, 'the central store has both records of each flow');
    assert.equal(got.length, 6, 'each record once');
    assert.deepEqual([...got].sort(), [...local.s, ...local.s].sort());
    const rows = await runCli([
      'events',
      '--db',
      central,
      '--json',
      '--sensor',
      'sensor-f',
      '--limit',
      '100',
    ]);
    const byId = new Map<string, { listener: string; sourceMode: string | null }[]>();
    for (const line of rows.stdout.split('\n').filter((l) => l.trim() !== '')) {
      const e = JSON.parse(line) as { id: string; listener: string; sourceMode: string | null };
      byId.set(e.id, [...(byId.get(e.id) ?? []), e]);
    }
    for (const id of local.s) {
      const listeners = byId
        .get(id)!
        .map((e) => e.listener)
        .sort();
      assert.deepEqual(listeners, ['front', 'sensors'], `flow ${id}: the sensor's record and the hub's`);
    }
    await sensor.stop();
    await hub.stop();
  });

  test('an outbox of v1 messages (bare event ids) drains', async () => {
    // Rows queued by a version before batching keep their body and msgId: they are published
    // as they are, and the collector keeps their events under the bare ids, as it did.
    const outboxFile = path.join(dir, 'sensor-o-outbox.db');
    const old = new Outbox(outboxFile, 1_000_000);
    const events = Array.from({ length: 5 }, () => sampleEvent({ id: newEventId(), sensor: 'sensor-o' }));
    // The previous version's rows: one event each, a v1 body, the bare event id as message id.
    const v1 = (e: (typeof events)[number]) => {
      const { rows } = JSON.parse(Buffer.from(encodeEvents([e], 'x')[0]!.data).toString()) as {
        rows: unknown[];
      };
      return Buffer.from(JSON.stringify({ v: 1, row: rows[0] }));
    };
    old.append(events.map((e) => ({ msgId: e.id, data: v1(e), n: 1 })));
    old.close();
    const a = await gateway('sensor-o');
    await flows(a.port, 2);
    const got = await centralIds(
      'sensor-o',
      7,
      30_000,
      'the old rows and the new flows in the central store',
    );
    assert.equal(got.length, 7);
    for (const e of events) assert.ok(got.includes(e.id), `old row ${e.id} arrived`);
    await waitFor('the outbox is empty', () => outboxLength(outboxFile) === 0, 20_000);
    await a.hg.stop();
  });

  test('a message that is not an event is counted and skipped by the collector', async () => {
    const before = await storeIds(central);
    const base = (await collect.metrics()).honeygate_collector_malformed_total ?? 0;
    const nc = await natsConnect({ servers: nats.url });
    try {
      nc.publish('honeygate.events.evil', 'not json');
      nc.publish('honeygate.events.evil', JSON.stringify({ v: 1, row: ['x'] }));
      nc.publish('honeygate.events.evil', JSON.stringify({ hello: 'world' }));
      await nc.flush();
    } finally {
      await nc.close();
    }
    await waitFor(
      '3 malformed messages counted',
      async () => {
        return (await collect.metrics()).honeygate_collector_malformed_total === base + 3;
      },
      15_000,
    );
    assert.equal(collect.proc.exitCode, null, 'the collector still runs');
    assert.deepEqual((await storeIds(central)).sort(), before.sort(), 'nothing stored');
    assert.deepEqual(await storeIds(central, 'evil'), []);
  });

  test('SIGKILL of the gateway under load, then restart: the outbox drains, nothing doubled', async () => {
    const a = await gateway('sensor-k');
    let stop = false;
    const load = (async () => {
      let n = 0;
      while (!stop) {
        await flows(a.port, 1).catch(() => {
          stop = true;
        });
        n++;
      }
      return n;
    })();
    await waitFor(
      'events recorded under load',
      async () => (await storeIds(path.join(dir, 'sensor-k.db'))).length >= 100,
      30_000,
      100,
    );
    // The broker away too, so the outbox is holding events when the gateway dies.
    await nats.stop();
    await waitFor(
      'events wait in the outbox',
      () => outboxLength(path.join(dir, 'sensor-k-outbox.db')) > 20,
      20_000,
    );
    a.hg.proc.kill('SIGKILL');
    await new Promise((r) => a.hg.proc.once('exit', r));
    stop = true;
    const attempted = await load;
    const waiting = outboxLength(path.join(dir, 'sensor-k-outbox.db'));
    assert.ok(waiting > 0);
    await nats.start();
    const restarted = await gateway('sensor-k', a.port);
    const local = await storeIds(path.join(dir, 'sensor-k.db'));
    // A flow recorded just before the kill is also in the start journal: recovered, not doubled.
    assert.equal(new Set(local).size, local.length, 'no id twice in the sensor store');
    const got = await arrivedOnce('sensor-k', local.length);
    process.stdout.write(
      `# SIGKILL: ${attempted} flows attempted, ${local.length} recorded locally, ${got.length} collected, ${waiting} were in the outbox\n`,
    );
    await restarted.hg.stop();
  });

  // What a JetStream cluster restarted whole once did (nats-server 2.9.10, CI): the consumer's
  // ack floor passed a message that no collector received. Here a client acknowledges one
  // message in the collectors' place; the collector finds the gap and reads it from the stream.
  test('a message the consumer passed without delivering it is fetched from the stream', async () => {
    await collect.stop();
    const N = 1500;
    const sent = await publishBulk('skipped', N);
    const nc = await natsConnect({ servers: nats.url });
    let taken = 0;
    try {
      const consumer = await jetstream(nc).consumers.get('HONEYGATE_EVENTS', 'honeygate-collector');
      const m = await consumer.next({ expires: 5000 });
      assert.ok(m, 'a message waits for the collectors');
      const d = decodeMessage(m.data);
      assert.ok(d.ok);
      taken = d.events.length;
      await m.ackAck();
    } finally {
      await nc.close();
    }
    collect = await startCollect(fleetConfig, central, await freePort());
    cleanup.push(() => collect.stop());
    // About 30 s: the stopped collector's last pull request got some of these messages, which
    // come again after the consumer's 30 s ack wait; the floor passes the taken one after them.
    const got = await centralIds('skipped', N, 90_000, `${N} skipped events in the central store`);
    assert.deepEqual([...got].sort(), [...sent].sort(), `the ${taken} events of the taken message too, once`);
    assert.equal((await collect.metrics()).honeygate_collector_recovered_total, 1);
  });

  test('a collector SIGKILLed mid-backlog, restarted: no gaps, no duplicates', async () => {
    const N = 5000;
    await collect.stop();
    const sent = await publishBulk('bulk', N);
    const metricsPort = await freePort();
    const first = await startCollect(fleetConfig, central, metricsPort);
    await waitFor(
      'the collector stored part of the backlog',
      async () => {
        const m = await first.metrics().catch(() => ({}) as Record<string, number>);
        return (m.honeygate_collector_stored_total ?? 0) > 0;
      },
      30_000,
      10,
    );
    first.proc.kill('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));
    const partial = (await storeIds(central, 'bulk')).length;
    collect = await startCollect(fleetConfig, central, await freePort());
    cleanup.push(() => collect.stop());
    const got = await centralIds('bulk', N, 60_000, `${N} bulk events in the central store`);
    assert.equal(got.length, N, 'no duplicates');
    assert.deepEqual([...got].sort(), [...sent].sort(), 'no gaps');
    process.stdout.write(
      `# collector SIGKILL: ${partial} of ${N} stored before the kill, ${N} after the restart\n`,
    );
  });

  test('two collectors on one consumer and one store: no gaps, no duplicates', async () => {
    const N = 5000;
    const second = await startCollect(fleetConfig, central, await freePort());
    cleanup.push(() => second.stop());
    const sent = await publishBulk('shared', N);
    const got = await centralIds('shared', N, 60_000, `${N} shared events in the central store`);
    assert.equal(got.length, N, 'no duplicates');
    assert.deepEqual([...got].sort(), [...sent].sort(), 'no gaps');
    const stored = await Promise.all(
      [collect, second].map(async (c) => (await c.metrics()).honeygate_collector_stored_total ?? 0),
    );
    process.stdout.write(
      `# two collectors: stored ${stored.join(' + ')} of ${N} (each counts earlier tests' events too)\n`,
    );
  });
});
