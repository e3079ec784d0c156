// The fleet on a three-node JetStream cluster, each node in a namespace of its own with routes
// between them over a bridge, and two gateways and a collector in a fourth. What an operator
// running a fleet checks: with a node SIGKILLed and restarted while the gateways publish, and
// with the whole cluster away for 60 s under load, the central store holds exactly the events
// the gateways recorded locally, counted by id: none lost, none twice.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { natsSchema } from '../../src/fleet/config.js';
import { Topology } from '../../src/netns/topology.js';
import { BIN } from '../helpers/honeygate.js';
import { outboxLength, storeIds } from '../helpers/nats.js';
import { needsRoot } from '../helpers/netns.js';
import { needs } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

const skip = needsRoot() || needs('nats-server');

// Documentation addresses only (PRODUCT.md): the cluster's LAN.
const NODES = ['198.51.100.11', '198.51.100.12', '198.51.100.13'];
const GW = '198.51.100.20';
const urls = NODES.map((ip) => `nats://${ip}:4222`);

interface Proc {
  child: ChildProcess;
  output(): string;
}

/** Starts argv in `ns`, resolving once its output contains `ready` (or rejecting if it exits). */
async function start(
  topology: Topology,
  ns: string,
  argv: string[],
  ready: string,
  ms = 20_000,
): Promise<Proc> {
  const child = topology.spawn(ns, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  await waitFor(
    `${path.basename(argv[1] ?? argv[0]!)} in ${ns}: ${ready}`,
    () => {
      if (child.exitCode !== null) throw new Error(`${argv.join(' ')} exited ${child.exitCode}: ${out}`);
      return out.includes(ready);
    },
    ms,
    20,
  );
  return { child, output: () => out };
}

/** A nats-server's warnings and errors, the last 20. */
function warnings(out: string): string {
  const lines = out.split('\n').filter((l) => /\[(WRN|ERR)\]/.test(l));
  return lines.length === 0 ? 'no warnings' : lines.slice(-20).join('\n');
}

async function stop(p: Proc, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill(signal);
  await exited;
}

// Connects to each port in turn, sends a line and closes, until stdin ends; prints the count.
const LOAD = `
const net = require('node:net');
const ports = process.argv.slice(1).map(Number);
let stop = false, n = 0;
process.stdin.on('data', () => {});
process.stdin.on('end', () => { stop = true; });
(async () => {
  while (!stop) {
    for (const port of ports) {
      await new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port });
        s.on('connect', () => s.end('hello'));
        s.on('error', resolve);
        s.on('close', resolve);
        s.resume();
      });
      n++;
    }
  }
  console.log('attempted ' + n);
})();
`;

// Where missing events went, asked of the cluster: the stream's state (its `lost` count
// included), the collectors' consumer, and the stream messages (decoded as the collector
// decodes them) that hold any of the ids. A
// loss seen once in CI (28 events, one message, after the whole cluster's restart) could not
// be told apart from outside: in the stream and skipped by the consumer, or never kept.
const EXPLAIN = `
const [core, js, codec, servers, stream, consumer] = process.argv.slice(1);
let ids = '';
for await (const chunk of process.stdin) ids += chunk;
const { connect } = await import(core);
const { jetstreamManager } = await import(js);
const { decodeMessage } = await import(codec);
const nc = await connect({ servers: JSON.parse(servers), timeout: 5000 });
const jsm = await jetstreamManager(nc);
const si = await jsm.streams.info(stream);
const ci = await jsm.consumers.info(stream, consumer);
const missing = new Set(JSON.parse(ids));
const found = [];
for (let seq = si.state.first_seq; seq <= si.state.last_seq; seq++) {
  const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
  const d = m ? decodeMessage(m.data) : { ok: false };
  const hits = d.ok ? d.events.filter((e) => missing.has(e.id)).length : 0;
  if (hits > 0) found.push({ seq, subject: m.subject, msgId: m.header?.get('Nats-Msg-Id'), hits });
}
const { delivered, ack_floor, num_pending, num_ack_pending, num_redelivered } = ci;
console.log(JSON.stringify({ stream: si.state, consumer: { delivered, ack_floor, num_pending, num_ack_pending, num_redelivered }, found }));
await nc.close();
`;

describe('fleet on a three-node JetStream cluster in namespaces', { skip, timeout: 600_000 }, () => {
  const topology = new Topology('hgf');
  const removeHooks = topology.destroyOnExit();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-fleet-cluster-'));
  const nodes: (Proc | null)[] = [null, null, null];
  let gwNs: string;
  const nodeNs: string[] = [];
  const fleetConfig = path.join(dir, 'fleet.yaml');
  const central = path.join(dir, 'central.db');
  let collector: Proc;

  const startNode = async (i: number) => {
    const name = `n${i + 1}`;
    const conf = path.join(dir, `${name}.conf`);
    const routes = NODES.filter((_, j) => j !== i).map((ip) => `nats://${ip}:6222`);
    fs.writeFileSync(
      conf,
      `server_name: ${name}
listen: "${NODES[i]}:4222"
jetstream { store_dir: "${path.join(dir, name)}" }
cluster { name: hgf, listen: "${NODES[i]}:6222", routes: [${routes.map((r) => `"${r}"`).join(', ')}] }
`,
    );
    nodes[i] = await start(topology, nodeNs[i]!, ['nats-server', '-c', conf], 'Server is ready');
  };

  const gatewayConfig = (sensor: string, port: number) => `
listeners:
  - name: pot
    bind: "127.0.0.1:${port}"
routes:
  - drop: {}
limits: { perSourceRate: 100000/s, perSource: 10000, grace: 1s }
events:
  sensor: ${sensor}
  sqlite: ${dir}/${sensor}.db
  batch: 50ms
  nats:
    servers: ${JSON.stringify(urls)}
    outbox: ${dir}/${sensor}-outbox.db
    ackTimeout: 2s
`;

  const gateway = async (sensor: string, port: number): Promise<Proc> => {
    const conf = path.join(dir, `${sensor}.yaml`);
    fs.writeFileSync(conf, gatewayConfig(sensor, port));
    return start(topology, gwNs, [process.execPath, BIN, 'run', '-c', conf], '"msg":"ready"');
  };

  /** Load on the gateways' ports until the returned function is called; it resolves to the flows attempted. */
  const load = (ports: number[]): (() => Promise<number>) => {
    const child = topology.spawn(gwNs, [process.execPath, '-e', LOAD, ...ports.map(String)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
    });
    return async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin!.end();
      await exited;
      return Number(/attempted (\d+)/.exec(out)?.[1] ?? Number.NaN);
    };
  };

  /** Waits until the central store holds each sensor's local ids exactly once; returns the counts. */
  const allArrived = async (sensors: string[], gateways: Proc[], ms: number): Promise<number[]> => {
    const counts: number[] = [];
    for (const [i, sensor] of sensors.entries()) {
      // Both stores are read again on each look: the gateways still run, and a batch reaches
      // the outbox before the local store, so the central one may be a batch ahead for a moment.
      const localDb = path.join(dir, `${sensor}.db`);
      const { local, got } = await waitFor(
        `the central store holds the events of ${sensor}`,
        async () => {
          const local = await storeIds(localDb);
          const got = await storeIds(central, sensor);
          const have = new Set(got);
          return have.size === new Set(local).size && local.every((id) => have.has(id)) && { local, got };
        },
        ms,
        250,
      ).catch(async (err: Error) => {
        const outbox = path.join(dir, `${sensor}-outbox.db`);
        const got = new Set(await storeIds(central, sensor));
        const local = await storeIds(localDb);
        const missing = local.filter((id) => !got.has(id));
        const nodeLogs = nodes.map((n, j) => `n${j + 1}: ${warnings(n?.output() ?? '')}`).join('\n');
        throw new Error(
          `${err.message}: central has ${got.size}, local ${local.length}, outbox ${outboxLength(outbox)}\n` +
            `missing (first 5 of ${missing.length}): ${missing.slice(0, 5).join(' ')}\n` +
            `the cluster says: ${await explain(missing)}\n${nodeLogs}\n` +
            `${sensor}:\n${gateways[i]!.output().slice(-3000)}\ncollector:\n${collector.output().slice(-3000)}`,
        );
      });
      assert.equal(new Set(local).size, local.length, `no id twice in ${sensor}'s store`);
      assert.equal(new Set(got).size, got.length, 'no id twice in the central store');
      assert.deepEqual([...got].sort(), [...local].sort(), `the central store holds what ${sensor} recorded`);
      counts.push(local.length);
    }
    return counts;
  };

  // The stream and consumer fleet.yaml leaves at their defaults.
  const nats = natsSchema.parse({ servers: urls });
  const explain = async (missing: string[]): Promise<string> => {
    const argv = [
      process.execPath,
      '--input-type=module',
      '-e',
      EXPLAIN,
      import.meta.resolve('@nats-io/transport-node'),
      import.meta.resolve('@nats-io/jetstream'),
      new URL('../../src/fleet/codec.js', import.meta.url).href,
      JSON.stringify(urls),
      nats.stream,
      nats.consumer,
    ];
    // The ids on stdin: all of a sensor's would not fit in one argument.
    const r = await topology
      .exec(gwNs, argv, { input: JSON.stringify(missing), timeoutMs: 120_000 })
      .catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
    return r.code === 0 ? r.stdout.trim() : `(could not ask: ${r.stderr.slice(-500)})`;
  };

  before(async () => {
    const lan = await topology.namespace('lan');
    await topology.ip(lan, ['link', 'add', 'br0', 'type', 'bridge']);
    await topology.ip(lan, ['link', 'set', 'br0', 'up']);
    const attach = async (role: string, ip: string) => {
      const ns = await topology.namespace(role);
      await topology.veth({ ns: lan, dev: `v-${role}` }, { ns, dev: 'eth0' });
      await topology.ip(lan, ['link', 'set', `v-${role}`, 'master', 'br0']);
      await topology.address(ns, 'eth0', `${ip}/24`);
      return ns;
    };
    for (let i = 0; i < 3; i++) nodeNs.push(await attach(`n${i + 1}`, NODES[i]!));
    gwNs = await attach('gw', GW);
    await Promise.all([0, 1, 2].map((i) => startNode(i)));
    fs.writeFileSync(
      fleetConfig,
      `events:\n  sqlite: false\n  nats:\n    servers: ${JSON.stringify(urls)}\n    replicas: 3\n    duplicateWindow: 10m\n`,
    );
    // A new cluster elects its meta leader first: until then stream creation fails.
    await waitFor(
      'fleet init on the cluster',
      async () => {
        const r = await topology.exec(gwNs, [process.execPath, BIN, 'fleet', 'init', '-c', fleetConfig]);
        return r.code === 0 && /replicas 3|created|updated/.test(r.stdout);
      },
      60_000,
      1000,
    );
    collector = await start(
      topology,
      gwNs,
      [process.execPath, BIN, 'collect', '-c', fleetConfig, '--db', central],
      '"collecting"',
    );
  });

  after(async () => {
    topology.destroySync();
    removeHooks();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('two gateways publish while a node is SIGKILLed and restarted: 0 lost, 0 twice', async () => {
    const a = await gateway('sensor-a', 7001);
    const b = await gateway('sensor-b', 7002);
    const done = load([7001, 7002]);
    await waitFor(
      'events recorded under load',
      async () => (await storeIds(path.join(dir, 'sensor-a.db'))).length >= 200,
      30_000,
      200,
    );
    // Kill the node a gateway is most likely connected to (the first it tries), mid-load.
    await stop(nodes[0]!, 'SIGKILL');
    await waitFor(
      'more events after the kill',
      async () => (await storeIds(path.join(dir, 'sensor-b.db'))).length >= 600,
      30_000,
      200,
    );
    await startNode(0);
    await waitFor(
      'more events after the restart',
      async () => (await storeIds(path.join(dir, 'sensor-a.db'))).length >= 800,
      30_000,
      200,
    );
    const attempted = await done();
    // The gateways drain their outboxes while they run: what is left at a stop waits for the next start.
    const [na, nb] = await allArrived(['sensor-a', 'sensor-b'], [a, b], 90_000);
    for (const g of [a, b]) await stop(g);
    process.stdout.write(
      `# node kill: ${attempted} flows attempted, ${na} + ${nb} recorded, all collected once\n`,
    );
  });

  test('the whole cluster away for 60 s under load: the outboxes hold the events, all arrive', async () => {
    const a = await gateway('sensor-c', 7003);
    const b = await gateway('sensor-d', 7004);
    const done = load([7003, 7004]);
    await waitFor(
      'events recorded under load',
      async () => (await storeIds(path.join(dir, 'sensor-c.db'))).length >= 100,
      30_000,
      200,
    );
    const cut = Date.now();
    await Promise.all(nodes.map((n) => stop(n!)));
    // 60 s of load with no broker anywhere.
    const before = (await storeIds(path.join(dir, 'sensor-c.db'))).length;
    await waitFor('60 s of outage', () => Date.now() - cut >= 60_000, 65_000, 1000);
    const during = (await storeIds(path.join(dir, 'sensor-c.db'))).length - before;
    assert.ok(during > 100, `the gateway kept recording while the broker was away (${during})`);
    await Promise.all([0, 1, 2].map((i) => startNode(i)));
    const attempted = await done();
    // The gateways and the collector reconnect on their own and drain the outboxes.
    const [nc, nd] = await allArrived(['sensor-c', 'sensor-d'], [a, b], 120_000);
    for (const g of [a, b]) await stop(g);
    await stop(collector);
    process.stdout.write(
      `# 60 s outage: ${attempted} flows attempted, ${nc} + ${nd} recorded, ${during} of sensor-c's during it, all collected once\n`,
    );
  });
});
