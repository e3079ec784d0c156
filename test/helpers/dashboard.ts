// A seeded event store and a running gateway with its dashboard, for the dashboard's API
// and browser tests. The seed is known exactly, so tests can check the numbers the views show.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { FlowEvent } from '../../src/events/event.js';
import { SqliteSink } from '../../src/events/sqlite.js';
import { sampleEvent } from './events.js';
import { type Honeygate, startHoneygate } from './honeygate.js';
import { freePort } from './ports.js';

export const TOKEN = 'dash-test-token';
const MIN = 60_000;

/** What seed() wrote, as the views should count it over the last hour. */
export interface Seed {
  events: FlowEvent[];
  flows: number; // 'flow' rows in the last hour
  refused: number; // sum of the 'rejected' counts in the last hour
  bySource: Map<string, number>;
  byPort: Map<number, number>;
  byProtocol: Map<string, number>;
  formulaId: string; // a flow whose first bytes start with "=": the CSV must defuse them
  updatedId: string; // a flow with an update row before its final row
}

/** Writes a store at `path` with flows of the last hour (and one a month old, out of every range). */
export function seed(path: string, now = Date.now()): Seed {
  mkdirSync(dirname(path), { recursive: true });
  const events: FlowEvent[] = [];
  const sources = ['198.51.100.7', '198.51.100.23', '203.0.113.5', '2001:db8::66'];
  const ports: [number, string | null, string, string][] = [
    [22, 'ssh', 'ssh', 'SSH-2.0-libssh_0.9.6\r\n'],
    [80, 'http', 'web', 'GET /admin HTTP/1.1\r\nHost: x\r\n\r\n'],
    [443, 'tls', 'web', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'],
    [23, null, 'catch-all', '\xff\xfb\x01admin\r\n'],
    [3389, null, 'catch-all', '\x03\x00\x00\x13\x0e\xe0'],
  ];
  let i = 0;
  for (let m = 55; m >= 1; m -= 2) {
    for (let s = 0; s < sources.length; s++) {
      // Busier sources send more: 198.51.100.7 the most, the IPv6 one the least.
      if ((m + s) % (s + 1) !== 0) continue;
      const [port, protocol, route, first] = ports[i++ % ports.length]!;
      const opened = now - m * MIN + s * 1000;
      events.push(
        sampleEvent({
          openedAt: opened,
          closedAt: opened + 1500,
          src: { ip: sources[s]!, port: 40000 + i },
          dst: { ip: '192.0.2.1', port },
          route,
          action: route === 'catch-all' ? 'capture' : 'forward',
          backend: route === 'catch-all' ? null : route === 'ssh' ? 'cowrie' : 'web',
          server: route === 'catch-all' ? null : '192.0.2.10:2222',
          closeReason:
            route === 'catch-all' ? 'capture-done' : i % 7 === 0 ? 'idle-timeout' : 'client-closed',
          protocol,
          protocolFields: protocol === 'ssh' ? { clientVersion: 'SSH-2.0-libssh_0.9.6' } : null,
          firstBytes: Buffer.from(first, 'latin1'),
        }),
      );
    }
  }
  // A flow whose bytes a spreadsheet would run as a formula.
  const formula = sampleEvent({
    openedAt: now - 3 * MIN,
    closedAt: now - 3 * MIN + 10,
    src: { ip: '203.0.113.99', port: 5555 },
    dst: { ip: '192.0.2.1', port: 8080 },
    route: 'catch-all',
    action: 'capture',
    backend: null,
    server: null,
    protocol: null,
    protocolFields: null,
    closeReason: 'capture-done',
    firstBytes: Buffer.from('=cmd|" /c calc"!A0\r\n'),
  });
  events.push(formula);
  // A long flow: an update, then its final event under the same id.
  const long = sampleEvent({ openedAt: now - 10 * MIN, closedAt: now - 2 * MIN, durationMs: 8 * MIN });
  events.push({ ...long, type: 'update', closedAt: null, bytesIn: 10 });
  events.push(long);
  // Refusals: two tallies in range, one outside.
  events.push(
    sampleEvent({
      type: 'rejected',
      openedAt: now - 20 * MIN,
      closedAt: now - 19 * MIN,
      src: { ip: '198.51.100.200', port: 0 },
      dst: { ip: '', port: 0 },
      route: null,
      action: 'close',
      backend: null,
      server: null,
      protocol: null,
      protocolFields: null,
      closeReason: 'limit-rate',
      firstBytes: Buffer.alloc(0),
      count: 40,
    }),
    sampleEvent({
      type: 'rejected',
      openedAt: now - 5 * MIN,
      closedAt: now - 4 * MIN,
      src: { ip: '198.51.100.201', port: 0 },
      dst: { ip: '', port: 0 },
      route: null,
      action: 'close',
      backend: null,
      server: null,
      protocol: null,
      protocolFields: null,
      closeReason: 'limit-per-source',
      firstBytes: Buffer.alloc(0),
      count: 7,
    }),
    sampleEvent({ openedAt: now - 30 * 86_400_000, closedAt: now - 30 * 86_400_000 + 5 }),
  );
  const sink = new SqliteSink(path);
  sink.write(events);
  sink.close();

  const hour = events.filter((e) => e.openedAt >= now - 60 * MIN);
  const flows = hour.filter((e) => e.type === 'flow');
  const tally = <K>(key: (e: FlowEvent) => K) => {
    const m = new Map<K, number>();
    for (const e of flows) m.set(key(e), (m.get(key(e)) ?? 0) + 1);
    return m;
  };
  return {
    events,
    flows: flows.length,
    refused: hour.filter((e) => e.type === 'rejected').reduce((n, e) => n + e.count, 0),
    bySource: tally((e) => e.src.ip),
    byPort: tally((e) => e.dst.port),
    byProtocol: tally((e) => e.protocol ?? 'unknown'),
    formulaId: formula.id,
    updatedId: long.id,
  };
}

export interface DashboardGateway {
  hg: Honeygate;
  seed: Seed;
  base: string; // http://127.0.0.1:PORT
  listenerPort: number; // a capture listener: connect to it to make a live flow
  close(): Promise<void>;
}

/**
 * Seeds a store, then runs honeygate on it with the admin API (token TOKEN), one capture
 * listener and one backend whose only server does not answer (so it shows as down).
 */
export async function startDashboardGateway(): Promise<DashboardGateway> {
  const storeDir = mkdtempSync(join(tmpdir(), 'hg-dash-'));
  const dbPath = join(storeDir, 'events.db');
  const seeded = seed(dbPath);
  const adminPort = await freePort();
  const deadPort = await freePort();
  let hg: Honeygate;
  try {
    hg = await startHoneygate(
      `
listeners:
  - name: trap
    bind: "127.0.0.1:0"
routes:
  - match: { dstPorts: ["1"] }
    forward: cowrie
  - capture: { timeout: 300ms }
backends:
  cowrie: { servers: ["127.0.0.1:${deadPort}"], source: none, health: { interval: 1s } }
events:
  sensor: dash-sensor
  sqlite: "${dbPath}"
  batch: 50ms
admin:
  listen: "127.0.0.1:${adminPort}"
  token: "\${DASH_TOKEN}"
`,
      { env: { DASH_TOKEN: TOKEN } },
    );
  } catch (err) {
    rmSync(storeDir, { recursive: true, force: true });
    throw err;
  }
  return {
    hg,
    seed: seeded,
    base: `http://127.0.0.1:${adminPort}`,
    listenerPort: hg.port('trap'),
    async close() {
      await hg.close();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
