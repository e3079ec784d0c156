import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import type { FlowEvent, Sink } from '../../src/events/event.js';
import { newEventId, Recorder } from '../../src/events/recorder.js';
import { sampleEvent } from '../helpers/events.js';

/** A pino logger whose lines land in `lines`. */
function captureLog() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  return { log: pino({ level: 'warn' }, stream), lines };
}

class MemorySink implements Sink {
  readonly events: FlowEvent[] = [];
  batches = 0;
  closed = false;
  reopened = 0;
  constructor(readonly name = 'memory') {}
  write(events: FlowEvent[]) {
    this.batches++;
    this.events.push(...events);
  }
  reopen() {
    this.reopened++;
  }
  close() {
    this.closed = true;
  }
}

class FailingSink implements Sink {
  readonly name = 'broken';
  calls = 0;
  constructor(private readonly async = false) {}
  write(): void | Promise<void> {
    this.calls++;
    if (this.async) return Promise.reject(new Error('disk on fire'));
    throw new Error('disk on fire');
  }
  reopen() {
    throw new Error('cannot reopen');
  }
  close() {
    throw new Error('cannot close');
  }
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('Recorder', () => {
  it('newEventId gives 32 lowercase hex characters, different each time', () => {
    const a = newEventId();
    assert.match(a, /^[0-9a-f]{32}$/);
    assert.notEqual(a, newEventId());
  });

  it('newEventId starts with the time in ms, so later ids sort after earlier ones', () => {
    const before = Date.now();
    const ids = Array.from({ length: 300 }, () => newEventId()); // more than one refill of the pool
    const after = Date.now();
    for (const id of ids) {
      const ms = Number.parseInt(id.slice(0, 12), 16);
      assert.ok(ms >= before && ms <= after, `${id} carries ${ms}, outside ${before}..${after}`);
    }
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual(
      [...ids].sort((x, y) => x.slice(0, 12).localeCompare(y.slice(0, 12))).map((x) => x.slice(0, 12)),
      ids.map((x) => x.slice(0, 12)),
    );
  });

  it('drops and counts events beyond the queue, warning once per interval', async () => {
    const { log, lines } = captureLog();
    const sink = new MemorySink();
    const rec = new Recorder([sink], { queueSize: 3, batchMs: 60_000, log });
    for (let i = 0; i < 10; i++) rec.record(sampleEvent());
    assert.deepEqual(rec.stats(), { queued: 3, writing: 0, written: 0, dropped: 7, sinkErrors: 0 });
    const warns = lines.filter((l) => /dropped/.test(String(l.msg)));
    assert.equal(warns.length, 1, 'one warning for a burst of drops');
    assert.equal(warns[0]!.dropped, 1);
    await rec.close();
    assert.equal(sink.events.length, 3);
    assert.deepEqual(rec.stats(), { queued: 0, writing: 0, written: 3, dropped: 7, sinkErrors: 0 });
  });

  it('counts a batch the sinks are still writing as writing, not as written', async () => {
    // A store writing in slices (or on its thread) answers later: until then its events are
    // neither queued nor stored, and a caller waiting for "all stored" must see them.
    let finish = () => {};
    const slow: Sink = {
      name: 'slow',
      write: () => new Promise<void>((resolve) => (finish = resolve)),
      reopen: () => {},
      close: async () => {},
    };
    const rec = new Recorder([slow], { queueSize: 10, batchMs: 60_000, log: pino({ level: 'silent' }) });
    for (let i = 0; i < 4; i++) rec.record(sampleEvent());
    const flushed = rec.flush();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual([rec.stats().queued, rec.stats().writing, rec.stats().written], [0, 4, 0]);
    finish();
    await flushed;
    assert.deepEqual([rec.stats().queued, rec.stats().writing, rec.stats().written], [0, 0, 4]);
    await rec.close();
  });

  it('hands batches to the sinks on its timer', async () => {
    const { log } = captureLog();
    const sink = new MemorySink();
    const rec = new Recorder([sink], { queueSize: 100, batchMs: 10, log });
    try {
      rec.record(sampleEvent());
      rec.record(sampleEvent());
      await until(() => sink.events.length === 2);
      assert.equal(rec.stats().written, 2);
    } finally {
      await rec.close();
    }
  });

  it('never throws on a failing sink, counts and logs it, and still feeds the other sinks', async () => {
    const { log, lines } = captureLog();
    const good = new MemorySink('good');
    const bad = new FailingSink();
    const badAsync = new FailingSink(true);
    const rec = new Recorder([bad, good, badAsync], { queueSize: 100, batchMs: 60_000, log });
    rec.record(sampleEvent());
    await rec.flush();
    rec.record(sampleEvent());
    await rec.flush();
    assert.equal(good.events.length, 2);
    assert.equal(bad.calls, 2);
    assert.equal(badAsync.calls, 2);
    assert.equal(rec.stats().sinkErrors, 4);
    const warn = lines.find((l) => l.sink === 'broken');
    assert.ok(warn, 'a warning names the failing sink');
    assert.equal(warn.level, 40);
    rec.reopen(); // a throwing reopen is counted, not thrown
    assert.equal(rec.stats().sinkErrors, 6);
    assert.equal(good.reopened, 1);
    await rec.close(); // a throwing close is counted too
    assert.equal(good.closed, true);
  });

  it('close() flushes what is queued, closes the sinks, and drops what comes after', async () => {
    const { log } = captureLog();
    const sink = new MemorySink();
    const rec = new Recorder([sink], { queueSize: 100, batchMs: 60_000, log });
    const events = [sampleEvent(), sampleEvent(), sampleEvent()];
    for (const e of events) rec.record(e);
    await rec.close();
    assert.deepEqual(
      sink.events.map((e) => e.id),
      events.map((e) => e.id),
    );
    assert.equal(sink.closed, true);
    rec.record(sampleEvent());
    assert.equal(rec.stats().dropped, 1);
    await rec.close(); // idempotent
  });

  it('does not stack batches behind a slow sink', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const { log } = captureLog();
    let release!: () => void;
    let calls = 0;
    const slow: Sink = {
      name: 'slow',
      write: () => {
        calls++;
        return new Promise<void>((r) => {
          release = r;
        });
      },
      reopen() {},
      close() {},
    };
    const rec = new Recorder([slow], { queueSize: 100, batchMs: 5, log });
    rec.record(sampleEvent());
    t.mock.timers.tick(5);
    await until(() => calls === 1);
    rec.record(sampleEvent());
    t.mock.timers.tick(50); // ten ticks while the first batch hangs
    await new Promise(setImmediate);
    assert.equal(calls, 1);
    assert.equal(rec.stats().queued, 1);
    release();
    await until(() => rec.stats().written === 1);
    t.mock.timers.tick(5);
    await until(() => calls === 2);
    release();
    await rec.close();
    assert.equal(rec.stats().written, 2);
  });
});
