// The conntrack reader's batches as native/conntrack_reader.cc lays them out, the flow record
// made of one, and the map update a health change sends to nft. (The ctnetlink parser itself
// has its C++ test: native/test/conntrack_test.cc, run by native-core.test.ts.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';
import { decodeBatch, flowEvent } from '../../src/kernel/conntrack.js';
import { mapUpdate } from '../../src/kernel/maps.js';
import { CONNTRACK_FIELDS } from '../../src/net/native.js';

// A DESTROY of 198.51.100.10:58216 -> 192.0.2.74:80, DNATed to 192.0.2.100:2222, then an overrun.
function batch(): { numbers: Float64Array; hosts: string[] } {
  const numbers = new Float64Array(CONNTRACK_FIELDS * 2);
  numbers.set([0, 4, 6, 7, 4094397473, 0x2000, 0x18e, 58216, 80, 2222, 58216, 5, 268, 4, 235]);
  numbers.set([1796506269172.092, 1796506274395.09, 1796506275000.5], 15);
  numbers.set([1, 3], CONNTRACK_FIELDS);
  const hosts = ['198.51.100.10', '192.0.2.74', '192.0.2.100', '198.51.100.10', '', '', '', ''];
  return { numbers, hosts };
}

test('a batch: a DESTROY with both tuples, counters, times and state; an overrun total', () => {
  const { numbers, hosts } = batch();
  const [flow, overrun] = decodeBatch(numbers, hosts);
  assert.deepEqual(overrun, { kind: 'overrun', total: 3 });
  assert.equal(flow?.kind, 'flow');
  const e = flow.kind === 'flow' ? flow.event : assert.fail('not a flow');
  assert.equal(e.state, 'TIME_WAIT');
  assert.equal(e.id, '4094397473');
  assert.equal(e.mark, 0x2000);
  assert.deepEqual(e.orig, {
    src: '198.51.100.10',
    dst: '192.0.2.74',
    sport: 58216,
    dport: 80,
    packets: 5,
    bytes: 268,
  });
  assert.deepEqual(e.reply, {
    src: '192.0.2.100',
    dst: '198.51.100.10',
    sport: 2222,
    dport: 58216,
    packets: 4,
    bytes: 235,
  });
  assert.deepEqual([e.start, e.stop], [1796506269172, 1796506274395]);
  // a truncated batch decodes its whole records only
  assert.equal(decodeBatch(numbers.subarray(0, CONNTRACK_FIELDS + 3), hosts).length, 1);
});

test('the flow record: open and close from the timestamps, listener, route, server', () => {
  const loaded = loadConfigText(
    `
listeners:
  - name: decoys
    tproxy: { port: 15001 }
    divert: { interface: eth0, ports: "80" }
routes:
  - name: web
    forward: hp
backends:
  hp: { servers: ["192.0.2.100:2222"], engine: kernel }
`,
    { env: {}, baseDir: '/tmp', fileName: 'c.yaml' },
  );
  const config = loaded.ok ? loaded.config : assert.fail(loaded.errors.join('\n'));
  const { numbers, hosts } = batch();
  const [flow] = decodeBatch(numbers, hosts);
  const e = flow?.kind === 'flow' ? flow.event : assert.fail('not a flow');
  const ev = flowEvent(config, e);
  assert.deepEqual([ev.openedAt, ev.closedAt], [1796506269172, 1796506274395]);
  assert.deepEqual(
    [ev.listener, ev.route, ev.backend, ev.server],
    ['decoys', 'web', 'hp', '192.0.2.100:2222'],
  );
  assert.deepEqual([ev.bytesIn, ev.bytesOut, ev.action, ev.engine], [268, 235, 'forward', 'kernel']);
  assert.match(
    ev.detail ?? '',
    /^kernel \(nftables DNAT\): conntrack id 4094397473, 5 packets in, 4 out, ended in TIME_WAIT/,
  );
  // without nf_conntrack_timestamp: both ends are the time the event was read
  const bare = flowEvent(config, { ...e, start: null, stop: null });
  assert.deepEqual([bare.openedAt, bare.closedAt], [e.at, e.at]);
});

test('a health change flushes and refills the map in one input; all down leaves it empty', () => {
  const backend = {
    name: 'web',
    servers: [
      { host: '192.0.2.20', port: 80 },
      { host: '192.0.2.21', port: 80 },
    ],
    source: 'transparent' as const,
    balance: 'roundrobin' as const,
    health: null,
    fallback: null,
    connectTimeoutMs: 1000,
    retries: 1,
    engine: 'kernel' as const,
  };
  const text = mapUpdate(backend, (s) => s.host !== '192.0.2.21');
  const lines = text.trim().split('\n');
  assert.equal(lines[0], 'flush map inet honeygate kernel_web_v4');
  assert.match(
    lines[1]!,
    /^add element inet honeygate kernel_web_v4 \{ 0 : 192\.0\.2\.20 \. 80, 1 : 192\.0\.2\.20 \. 80,/,
  );
  assert.doesNotMatch(text, /192\.0\.2\.21/);
  assert.equal(
    mapUpdate(backend, () => false),
    'flush map inet honeygate kernel_web_v4\n',
  );
});
