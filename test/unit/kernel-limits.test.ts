// Limits on kernel routes: the nft rules they render to (ct count and limit rate in dynamic
// sets, a refusal set per reason counting source . destination . port), and the reading of
// those counters (`nft -j list set`, captured from nft 1.0.6) back into refusals.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';
import { refusedElements, tableHandle } from '../../src/kernel/refusals.js';
import { nftRate, refusedSet, renderKernel } from '../../src/kernel/render.js';

const CONFIG = `
listeners:
  - name: decoys
    tproxy: { port: 15001 }
    divert: { interface: eth0, ports: "80" }
routes:
  - name: web
    forward: hp
backends:
  hp: { servers: ["192.0.2.100:2222"], engine: kernel }
limits: { perSource: 3, perSourceRate: 600/m }
`;

test('perSourceRate as nft limit rate: the bucket holds the count, as user space', () => {
  assert.equal(nftRate({ count: 50, perMs: 1000 }), '50/second burst 50 packets');
  assert.equal(nftRate({ count: 600, perMs: 60_000 }), '600/minute burst 600 packets');
  assert.equal(nftRate({ count: 1000, perMs: 3_600_000 }), '1000/hour burst 1000 packets');
});

test('each DNAT rule is preceded by its limits, same match, jumping to a counting reset', () => {
  const loaded = loadConfigText(CONFIG, { env: {}, baseDir: '/tmp', fileName: 'c.yaml' });
  assert.ok(loaded.ok, JSON.stringify(!loaded.ok && loaded.errors));
  const sets = {
    listener: loaded.config.listeners[0]!,
    ports: 'decoys_ports',
    addresses: {},
    families: [4] as (4 | 6)[],
  };
  const part = renderKernel(loaded.config, [sets]);
  const text = part.text.join('\n');
  const rules = text.split('\n').filter((l) => l.includes('tcp dport @decoys_ports'));
  assert.equal(rules.length, 3);
  assert.match(
    rules[0]!,
    /add @kernel_sources_v4 \{ ip saddr ct count over 3 \} jump refuse_source_v4 comment "honeygate: limits.perSource 3 for route #0 web/,
  );
  assert.match(
    rules[1]!,
    /update @kernel_rates_v4 \{ ip saddr limit rate over 600\/minute burst 600 packets \} jump refuse_rate_v4 comment "honeygate: limits.perSourceRate 600\/m/,
  );
  assert.match(rules[2]!, /dnat ip to/);
  assert.match(
    text,
    /chain refuse_rate_v4 \{\n\t\t#[^\n]*\n\t\tupdate @kernel_refused_rate_v4 \{ ip saddr \. ip daddr \. tcp dport \}\n\t\treject with tcp reset/,
  );
  assert.doesNotMatch(
    text,
    /kernel_(sources|rates|refused_\w+)_v6/,
    'only the families the divert rules cover',
  );
  assert.deepEqual(part.chain?.rules.slice(0, 2), [
    'honeygate: limits.perSource 3 for route #0 web in the kernel (listener decoys, IPv4)',
    'honeygate: limits.perSourceRate 600/m for route #0 web in the kernel (listener decoys, IPv4)',
  ]);
  assert.equal(refusedSet('limit-per-source', 6), 'kernel_refused_source_v6');
});

test('a refusal set read back: source, destination, port and its packet count', () => {
  const json =
    '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, ' +
    '{"set": {"family": "inet", "name": "kernel_refused_rate_v4", "table": "honeygate", "type": ["ipv4_addr", "ipv4_addr", "inet_service"], ' +
    '"handle": 12, "size": 65536, "flags": ["timeout"], "timeout": 3600, "elem": [' +
    '{"elem": {"val": {"concat": ["203.0.113.10", "192.0.2.74", 80]}, "expires": 3599, "counter": {"packets": 7, "bytes": 420}}}, ' +
    '{"elem": {"val": {"concat": ["2001:db8:b::10", "2001:db8:d::74", 81]}, "expires": 3599, "counter": {"packets": 1, "bytes": 80}}}, ' +
    '{"elem": {"val": {"concat": ["203.0.113.11", "192.0.2.74", 80]}, "expires": 3599}}' +
    '], "stmt": [{"counter": null}]}}]}';
  assert.deepEqual(refusedElements(json), [
    { src: '203.0.113.10', dst: { ip: '192.0.2.74', port: 80 }, packets: 7 },
    { src: '2001:db8:b::10', dst: { ip: '2001:db8:d::74', port: 81 }, packets: 1 },
  ]);
  assert.deepEqual(refusedElements('Error: No such file or directory'), []);
});

test("the table's handle, which a re-applied table changes", () => {
  const json =
    '{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "nat", "handle": 3}}, ' +
    '{"table": {"family": "inet", "name": "honeygate", "handle": 9}}]}';
  assert.equal(tableHandle(json), 9);
  assert.equal(tableHandle('{"nftables": []}'), null);
  assert.equal(tableHandle('not json'), null);
});
