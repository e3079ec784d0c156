import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Limits } from '../../src/config/types.js';
import { Admission } from '../../src/gateway/admit.js';

const limits = (over: Partial<Limits> = {}): Limits => ({
  maxConnections: 3,
  perSource: 2,
  perSourceRate: { count: 5, perMs: 1000 },
  idleTimeoutMs: 1000,
  maxDurationMs: 1000,
  maxBytesIn: 0,
  maxBytesOut: 0,
  firstBytes: 16,
  rejectLogIntervalMs: 1000,
  graceMs: 0,
  ...over,
});
const dst = { ip: '192.0.2.1', port: 22 };
let ids = 0;
const newId = () => String(++ids);

test('global and per-source concurrency; releases are idempotent and counts return to zero', () => {
  const a = new Admission(limits());
  const held = [a.hold(), a.hold(), a.hold()];
  assert.equal(a.checkGlobal(), 'limit-global');
  held[0]!();
  held[0]!();
  assert.equal(a.active, 2);
  assert.equal(a.checkGlobal(), null);
  const s1 = a.holdSource('198.51.100.1');
  a.holdSource('198.51.100.1');
  assert.equal(a.checkSource('198.51.100.1'), 'limit-per-source');
  assert.equal(a.checkSource('198.51.100.2'), null, 'another source is not affected');
  s1();
  assert.equal(a.checkSource('198.51.100.1'), null);
});

test('the per-source rate is a token bucket', (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
  const a = new Admission(limits({ perSource: 100 }));
  const results = Array.from({ length: 7 }, () => a.checkSource('203.0.113.5'));
  assert.deepEqual(results.filter((r) => r === null).length, 5);
  assert.equal(results.at(-1), 'limit-rate');
  t.mock.timers.tick(400); // 2 tokens back at 5/s
  assert.equal(a.checkSource('203.0.113.5'), null);
  assert.equal(a.checkSource('203.0.113.5'), null);
  assert.equal(a.checkSource('203.0.113.5'), 'limit-rate');
});

test('refusals become one rejected event per source and reason per interval', () => {
  const a = new Admission(limits());
  for (let i = 0; i < 1000; i++) a.refused('203.0.113.5', 'limit-rate', 'ssh', dst);
  for (let i = 0; i < 3; i++) a.refused('203.0.113.6', 'limit-per-source', 'ssh', dst);
  const events = a.drain('gw', newId);
  assert.equal(events.length, 2);
  const flood = events.find((e) => e.src.ip === '203.0.113.5')!;
  assert.equal(flood.type, 'rejected');
  assert.equal(flood.count, 1000);
  assert.equal(flood.closeReason, 'limit-rate');
  assert.deepEqual(flood.dst, dst);
  assert.equal(a.drain('gw', newId).length, 0, 'a drained interval starts empty');
  assert.equal(a.refusedTotal, 1003);
});

test('a flood from more distinct sources than the tally holds still counts every refusal', () => {
  const a = new Admission(limits());
  const n = 12_000;
  for (let i = 0; i < n; i++) a.refused(`2001:db8::${i.toString(16)}`, 'limit-global', 'l', dst);
  const events = a.drain('gw', newId);
  assert.ok(events.length <= 10_001, `bounded: ${events.length}`);
  assert.equal(
    events.reduce((sum, e) => sum + e.count, 0),
    n,
  );
  assert.ok(events.some((e) => e.src.ip === '*'));
});

test('draining the tallies keeps what a source still holds: its open flows and its spent tokens', (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: 2_000_000 });
  const a = new Admission(limits({ perSource: 2, perSourceRate: { count: 3, perMs: 1000 } }));
  for (let i = 0; i < 2; i++) {
    assert.equal(a.checkSource('198.51.100.7'), null);
    a.holdSource('198.51.100.7');
  }
  a.drain('gw', newId);
  assert.equal(a.checkSource('198.51.100.7'), 'limit-per-source', 'open flows survive a drain');
  const release = a.holdSource('198.51.100.9');
  assert.equal(a.checkSource('198.51.100.9'), null);
  assert.equal(a.checkSource('198.51.100.9'), null);
  assert.equal(a.checkSource('198.51.100.9'), null);
  release();
  a.drain('gw', newId);
  assert.equal(a.checkSource('198.51.100.9'), 'limit-rate', 'a spent bucket survives a drain');
  t.mock.timers.tick(1000);
  a.drain('gw', newId);
  assert.equal(a.checkSource('198.51.100.9'), null, 'a refilled, idle source starts again');
});
