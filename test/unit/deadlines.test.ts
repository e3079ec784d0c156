// The deadline sweep as an instance: the gateway owns one and hands it to every Runtime, so
// flows of an old runtime (after a reload) and of the new one are swept alike.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CloseReason, FlowEvent } from '../../src/events/event.js';
import { Deadlines, type Watched } from '../../src/gateway/deadlines.js';
import { waitFor } from '../helpers/wait.js';

/** A flow as the sweep sees it, under a runtime with these limits. */
function fakeFlow(limits: { idleTimeoutMs: number; maxDurationMs: number; updateIntervalMs: number }) {
  const updates: string[] = [];
  const flow = {
    closed: false,
    bytesIn: 0,
    bytesOut: 0,
    reason: null as CloseReason | null,
    updates,
    runtime: {
      config: {
        limits: { idleTimeoutMs: limits.idleTimeoutMs, maxDurationMs: limits.maxDurationMs },
        events: { updateIntervalMs: limits.updateIntervalMs },
      },
      recorder: { record: (e: FlowEvent) => updates.push(e.type) },
    },
    syncCounters() {},
    finish(reason: CloseReason) {
      if (flow.closed) return;
      flow.closed = true;
      flow.reason = reason;
      release();
    },
    toEvent: (type: 'update') => ({ type }) as FlowEvent,
  };
  let release = () => {};
  return {
    flow,
    watchIn(d: Deadlines) {
      release = d.watch(flow as unknown as Watched);
    },
  };
}

test('one sweep ends the idle flow of an old runtime and keeps the active flow of a new one', async () => {
  const sweep = new Deadlines();
  const old = fakeFlow({ idleTimeoutMs: 100, maxDurationMs: 60_000, updateIntervalMs: 60_000 });
  const next = fakeFlow({ idleTimeoutMs: 300, maxDurationMs: 60_000, updateIntervalMs: 60_000 });
  old.watchIn(sweep);
  next.watchIn(sweep);
  const feed = setInterval(() => next.flow.bytesIn++, 20);
  try {
    await waitFor('the idle flow to end', () => old.flow.closed, 5000, 10);
    assert.equal(old.flow.reason, 'idle-timeout');
    assert.equal(next.flow.closed, false, 'the active flow goes on');
  } finally {
    clearInterval(feed);
  }
  await waitFor('the other flow to end once idle', () => next.flow.closed, 5000, 10);
  assert.equal(next.flow.reason, 'idle-timeout');
});

test('the maximum duration ends an active flow; update events come in between', async () => {
  const sweep = new Deadlines();
  const f = fakeFlow({ idleTimeoutMs: 60_000, maxDurationMs: 400, updateIntervalMs: 100 });
  f.watchIn(sweep);
  await waitFor('the flow to end', () => f.flow.closed, 5000, 10);
  assert.equal(f.flow.reason, 'max-duration');
  assert.ok(f.flow.updates.length >= 2, `${f.flow.updates.length} update events`);
  assert.ok(f.flow.updates.every((t) => t === 'update'));
});

test('two sweeps are independent: releasing every flow of one leaves the other running', async () => {
  const a = new Deadlines();
  const b = new Deadlines();
  const fa = fakeFlow({ idleTimeoutMs: 60_000, maxDurationMs: 60_000, updateIntervalMs: 60_000 });
  const fb = fakeFlow({ idleTimeoutMs: 100, maxDurationMs: 60_000, updateIntervalMs: 60_000 });
  fa.watchIn(a);
  fb.watchIn(b);
  fa.flow.finish('client-closed'); // a now watches nothing and stops its timer
  await waitFor("b's flow to end", () => fb.flow.closed, 5000, 10);
  assert.equal(fb.flow.reason, 'idle-timeout');
});
