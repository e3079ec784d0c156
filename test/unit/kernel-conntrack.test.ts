// conntrack -E lines as captured on Linux 6.18 / conntrack-tools 1.4.7, and the map update a
// health change sends to nft.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isOverrun, parseCtLine } from '../../src/kernel/conntrack.js';
import { mapUpdate } from '../../src/kernel/maps.js';

const NEW =
  '[1796506269.172092]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=198.51.100.10 dst=192.0.2.74 sport=58872 dport=80 [UNREPLIED] src=192.0.2.100 dst=198.51.100.10 sport=2222 dport=58872 mark=8192 id=960215248';
const DESTROY =
  '[1796506314.395090]\t[DESTROY] ipv4     2 tcp      6 TIME_WAIT src=198.51.100.10 dst=192.0.2.74 sport=58216 dport=80 packets=5 bytes=268 src=192.0.2.100 dst=198.51.100.10 sport=2222 dport=58216 packets=4 bytes=235 [ASSURED] mark=8192 delta-time=5 id=4094397473';

test('a NEW line: open time, both directions, mark and id', () => {
  const e = parseCtLine(NEW)!;
  assert.equal(e.kind, 'NEW');
  assert.equal(e.at, 1796506269172);
  assert.equal(e.state, 'SYN_SENT');
  assert.deepEqual(
    [e.orig.src, e.orig.dst, e.orig.sport, e.orig.dport],
    ['198.51.100.10', '192.0.2.74', 58872, 80],
  );
  assert.deepEqual([e.reply.src, e.reply.sport], ['192.0.2.100', 2222]);
  assert.equal(e.mark, 0x2000);
  assert.equal(e.id, '960215248');
});

test('a DESTROY line: counters each way, the state it died in, delta-time', () => {
  const e = parseCtLine(DESTROY)!;
  assert.equal(e.kind, 'DESTROY');
  assert.equal(e.state, 'TIME_WAIT');
  assert.deepEqual([e.orig.packets, e.orig.bytes, e.reply.packets, e.reply.bytes], [5, 268, 4, 235]);
  assert.equal(e.deltaS, 5);
});

test('every truncation of a line is refused or parsed, never thrown', () => {
  for (const line of [NEW, DESTROY]) for (let i = 0; i < line.length; i++) parseCtLine(line.slice(0, i));
  assert.equal(parseCtLine('conntrack v1.4.7 (conntrack-tools): 0 flow events have been shown.'), null);
  assert.ok(isOverrun('WARNING: We have hit ENOBUFS! We are losing events.'));
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
