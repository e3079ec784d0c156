// The amplification guard (src/gateway/udp/guard.ts): what may go back to one UDP source.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AmplificationGuard as GuardConfig } from '../../src/config/types.js';
import { AmplificationGuard } from '../../src/gateway/udp/guard.js';

const DEFAULTS: GuardConfig = {
  enabled: true,
  ratio: 1,
  allowance: 512,
  bytesPerSecond: 16384,
  packetsPerSecond: 20,
  unanswered: 4,
};
const ip = '198.51.100.7';

test('bytes back never exceed bytes received x ratio (allowance 0)', () => {
  const g = new AmplificationGuard({ ...DEFAULTS, allowance: 0 });
  g.received(ip, 60, 0);
  assert.equal(g.allow(ip, 3000, 0), 'ratio', 'a 50x DNS answer to a 60-byte query');
  assert.equal(g.allow(ip, 60, 0), null, 'an answer as large as the query');
  assert.equal(g.allow(ip, 1, 0), 'ratio', 'not one byte more');
  const two = new AmplificationGuard({ ...DEFAULTS, ratio: 2, allowance: 0 });
  two.received(ip, 100, 0);
  assert.equal(two.allow(ip, 200, 0), null);
  assert.equal(two.allow('203.0.113.1', 1, 0), 'ratio', 'a source that sent nothing gets nothing');
});

// Issue 18: with a bare ratio of 1 the default cut every honest DNS answer (dnsmasq answered
// a 54-byte query with 58 bytes: the answer repeats the question and adds its records).
test('each datagram allows at least `allowance` bytes back; more only by the ratio', () => {
  const g = new AmplificationGuard(DEFAULTS);
  g.received(ip, 54, 0);
  assert.equal(g.allow(ip, 58, 0), null, "dnsmasq's answer to dig");
  g.received(ip, 54, 0);
  assert.equal(g.allow(ip, 512, 0), null, 'an answer of the allowance');
  g.received(ip, 60, 0);
  assert.equal(g.allow(ip, 3000, 0), 'ratio', 'a 50x answer to a 60-byte query');
  assert.equal(g.allow('203.0.113.1', 1, 0), 'ratio', 'a source that sent nothing gets nothing');
  // The allowance is a floor per datagram, not a sum: 100 tiny datagrams, then a large answer.
  const h = new AmplificationGuard({ ...DEFAULTS, unanswered: 1000, packetsPerSecond: 1000 });
  for (let i = 0; i < 100; i++) h.received(ip, 10, 0);
  assert.equal(h.allow(ip, 1600, 0), 'ratio', '100 x 10 bytes + 512 do not allow 1600');
  assert.equal(h.allow(ip, 1500, 0), null, 'but 1500 bytes: 100 x 10 banked + the floor');
});

test('replies outnumber the datagrams by at most `unanswered`', () => {
  const g = new AmplificationGuard({ ...DEFAULTS, unanswered: 3 });
  g.received(ip, 10_000, 0);
  for (let i = 0; i < 4; i++) assert.equal(g.allow(ip, 10, 0), null, 'one for the datagram, 3 more');
  assert.equal(g.allow(ip, 10, 0), 'unanswered');
  g.received(ip, 10, 0);
  assert.equal(g.allow(ip, 10, 0), null, 'a new datagram from it allows more');
  assert.equal(g.allow(ip, 10, 0), 'unanswered');
});

// Found by test/e2e/udp.test.ts: a source sent 50 queries at once, honeygate read them in
// one batch, and the honeypot's 50 answers came after: only 4 went, the rest were held as
// `unanswered` although every one answered a query.
test('a source that sends many datagrams at once gets as many answers', () => {
  const g = new AmplificationGuard({ ...DEFAULTS, packetsPerSecond: 100, unanswered: 4 });
  for (let i = 0; i < 20; i++) g.received(ip, 40, 0);
  for (let i = 0; i < 24; i++) assert.equal(g.allow(ip, 30, 0), null, `answer ${i}`);
  assert.equal(g.allow(ip, 30, 0), 'unanswered');
  const capped = new AmplificationGuard({ ...DEFAULTS, packetsPerSecond: 1000, unanswered: 4 });
  for (let i = 0; i < 5000; i++) capped.received(ip, 40, 0);
  for (let i = 0; i < 1004; i++) assert.equal(capped.allow(ip, 30, i * 10), null, `answer ${i}`);
  assert.equal(
    capped.allow(ip, 30, 20_000),
    'unanswered',
    'unused replies are kept for packetsPerSecond datagrams',
  );
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
