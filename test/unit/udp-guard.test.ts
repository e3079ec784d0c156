// The amplification guard (src/gateway/udp/guard.ts): what may go back to one UDP source.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AmplificationGuard as GuardConfig } from '../../src/config/types.js';
import { AmplificationGuard } from '../../src/gateway/udp/guard.js';

const DEFAULTS: GuardConfig = {
  enabled: true,
  ratio: 1,
  bytesPerSecond: 16384,
  packetsPerSecond: 20,
  unanswered: 4,
};
const ip = '198.51.100.7';

test('bytes back never exceed bytes received x ratio', () => {
  const g = new AmplificationGuard(DEFAULTS);
  g.received(ip, 60, 0);
  assert.equal(g.allow(ip, 3000, 0), 'ratio', 'a 50x DNS answer to a 60-byte query');
  assert.equal(g.allow(ip, 60, 0), null, 'an answer as large as the query');
  assert.equal(g.allow(ip, 1, 0), 'ratio', 'not one byte more');
  const two = new AmplificationGuard({ ...DEFAULTS, ratio: 2 });
  two.received(ip, 100, 0);
  assert.equal(two.allow(ip, 200, 0), null);
  assert.equal(two.allow('203.0.113.1', 1, 0), 'ratio', 'a source that sent nothing gets nothing');
});

test('at most `unanswered` replies since the source last spoke', () => {
  const g = new AmplificationGuard({ ...DEFAULTS, unanswered: 3 });
  g.received(ip, 10_000, 0);
  for (let i = 0; i < 3; i++) assert.equal(g.allow(ip, 10, 0), null);
  assert.equal(g.allow(ip, 10, 0), 'unanswered');
  g.received(ip, 10, 0);
  assert.equal(g.allow(ip, 10, 0), null, 'a new datagram from it allows more');
});

test('per-second caps in packets and bytes, refilled over time', () => {
  const g = new AmplificationGuard({
    ...DEFAULTS,
    packetsPerSecond: 5,
    bytesPerSecond: 1000,
    unanswered: 1000,
  });
  g.received(ip, 1_000_000, 0);
  for (let i = 0; i < 5; i++) assert.equal(g.allow(ip, 10, 0), null);
  assert.equal(g.allow(ip, 10, 0), 'packets-per-second');
  assert.equal(g.allow(ip, 10, 1000), null, 'a second later: refilled');
  const b = new AmplificationGuard({
    ...DEFAULTS,
    packetsPerSecond: 1000,
    bytesPerSecond: 1000,
    unanswered: 1000,
  });
  b.received(ip, 1_000_000, 0);
  assert.equal(b.allow(ip, 900, 0), null);
  assert.equal(b.allow(ip, 200, 0), 'bytes-per-second');
  assert.equal(b.allow(ip, 200, 200), null, '200 ms refill 200 bytes');
});

test('counts are per source address, across its flows; disabled lets everything through', () => {
  const g = new AmplificationGuard(DEFAULTS);
  g.received(ip, 100, 0);
  assert.equal(g.allow('198.51.100.8', 50, 0), 'ratio');
  assert.equal(g.allow(ip, 100, 0), null);
  const off = new AmplificationGuard({ ...DEFAULTS, enabled: false });
  assert.equal(off.allow(ip, 1_000_000, 0), null);
});

test('sweep forgets idle sources; their counts restart from zero (stricter, never looser)', () => {
  const g = new AmplificationGuard(DEFAULTS);
  g.received(ip, 100, 0);
  g.received('198.51.100.8', 100, 50_000);
  g.sweep(60_000, 70_000);
  assert.equal(g.size, 1);
  assert.equal(g.allow(ip, 1, 70_000), 'ratio');
});
