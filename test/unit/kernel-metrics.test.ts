// Issue 19: the kernel path's refusals (limits reset by nftables, read from its per-source
// counters) and the conntrack reader's overruns are counted in /metrics, as user space's
// refusals are in honeygate_refused_flows_total. A fake `nft` stands in for the kernel's sets.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { createMetrics } from '../../src/admin/metrics.js';
import { loadConfigText } from '../../src/config/load.js';
import type { FlowEvent } from '../../src/events/event.js';
import type { Recorder } from '../../src/events/recorder.js';
import type { GatewayStats } from '../../src/gateway/gateway.js';
import { ConntrackRecorder } from '../../src/kernel/conntrack.js';
import { KernelRefusals, type NftRunner } from '../../src/kernel/refusals.js';

const CONFIG = `
listeners:
  - name: decoys
    tproxy: { port: 15001 }
    divert: { interface: eth0, addresses: ["192.0.2.74/32"], ports: "80" }
routes:
  - name: web
    forward: hp
backends:
  hp: { servers: ["192.0.2.100:2222"], engine: kernel }
limits: { perSource: 3, perSourceRate: 5/m }
`;

function setup() {
  const loaded = loadConfigText(CONFIG, { env: {}, baseDir: '/tmp', fileName: 'c.yaml' });
  assert.ok(loaded.ok, JSON.stringify(!loaded.ok && loaded.errors));
  const events: FlowEvent[] = [];
  const recorder = { record: (e: FlowEvent) => events.push(e) } as unknown as Recorder;
  const gw: GatewayStats = { openFlows: 0, refused: 0, listeners: [], backends: [] };
  const metrics = createMetrics({
    gateway: { stats: () => gw },
    recorder: { stats: () => ({ queued: 0, written: 0, dropped: 0, sinkErrors: 0 }) },
  });
  const sample = async (series: string): Promise<number> => {
    const line = (await metrics.registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
    assert.ok(line, `${series} in /metrics`);
    return Number(line.slice(series.length + 1));
  };
  return { config: loaded.config, events, recorder, metrics, sample, log: pino({ level: 'silent' }) };
}

/** `nft -j list set` of a refusal set holding one source's counter. */
function setJson(name: string, packets: number): string {
  return JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      {
        set: {
          family: 'inet',
          name,
          table: 'honeygate',
          type: ['ipv4_addr', 'ipv4_addr', 'inet_service'],
          elem: [
            {
              elem: {
                val: { concat: ['203.0.113.10', '192.0.2.74', 80] },
                counter: { packets, bytes: 60 * packets },
              },
            },
          ],
        },
      },
    ],
  });
}

test('kernel refusals: honeygate_kernel_refused_flows_total{reason} grows by what the counters grew', async () => {
  const { config, events, recorder, metrics, sample, log } = setup();
  const rate = 'honeygate_kernel_refused_flows_total{reason="limit-rate"}';
  const perSource = 'honeygate_kernel_refused_flows_total{reason="limit-per-source"}';
  // present from the first scrape; the totals are the process's, so compare against the start
  const [rate0, perSource0] = [await sample(rate), await sample(perSource)];
  let packets = 7;
  const nft: NftRunner = async (args) => {
    if (args.join(' ') === '-j list tables')
      return {
        code: 0,
        stdout: '{"nftables": [{"table": {"family": "inet", "name": "honeygate", "handle": 9}}]}',
      };
    if (args.at(-1) === 'kernel_refused_rate_v4')
      return { code: 0, stdout: setJson('kernel_refused_rate_v4', packets) };
    return { code: 1, stdout: '' }; // no IPv6 sets, nothing refused for perSource
  };
  const refusals = new KernelRefusals(config, log, recorder, nft);
  await refusals.settle();
  assert.equal((await sample(rate)) - rate0, 7);
  assert.equal((await sample(perSource)) - perSource0, 0);
  // the same counters read again add nothing; one more refusal adds one
  await refusals.settle();
  assert.equal((await sample(rate)) - rate0, 7);
  packets = 8;
  await refusals.settle();
  assert.equal((await sample(rate)) - rate0, 8);
  assert.equal(
    events.filter((e) => e.type === 'rejected').reduce((n, e) => n + (e.count ?? 1), 0),
    8,
    'the rejected events tally the same refusals',
  );
  assert.match(await metrics.registry.metrics(), /# TYPE honeygate_kernel_refused_flows_total counter/);
  await refusals.stop();
  metrics.close();
});

test('conntrack overruns: honeygate_conntrack_overruns_total counts ENOBUFS, with a firewall event', async () => {
  const { config, events, recorder, metrics, sample, log } = setup();
  const series = 'honeygate_conntrack_overruns_total';
  const before = await sample(series);
  const reader = new ConntrackRecorder(config, log, recorder);
  // the reader reports running totals: 2 overruns, then 3 in all
  reader.onBatch([{ kind: 'overrun', total: 2 }]);
  reader.onBatch([{ kind: 'overrun', total: 3 }]);
  assert.equal((await sample(series)) - before, 3);
  assert.equal(reader.stats.overruns, 3);
  const notes = events.filter((e) => e.type === 'firewall');
  assert.equal(notes.length, 2);
  assert.match(notes[1]!.detail ?? '', /receive buffer overran \(ENOBUFS, 3 so far\)/);
  const lost = 'honeygate_conntrack_lost_total';
  const lost0 = await sample(lost);
  reader.onBatch([{ kind: 'dropped', total: 4 }]);
  assert.equal((await sample(lost)) - lost0, 4);
  metrics.close();
});
