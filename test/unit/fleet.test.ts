// The fleet's pure parts: the event <-> message codec (what the collector accepts and
// refuses), message ids, subjects, and the outbox's order, bound and persistence.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodeEvent, encodeEvent, messageId } from '../../src/fleet/codec.js';
import { sensorSubject } from '../../src/fleet/config.js';
import { Outbox } from '../../src/fleet/outbox.js';
import { sampleEvent, tempDir } from '../helpers/events.js';

test('an event survives the codec field for field, first bytes included', () => {
  const e = sampleEvent({
    firstBytes: Buffer.from([0, 1, 2, 255, 13, 10]),
    peer: { ip: '10.0.0.1', port: 9 },
  });
  const d = decodeEvent(encodeEvent(e));
  assert.ok(d.ok);
  assert.deepEqual(d.event, e);
});

test('the collector refuses what is not a honeygate event, with a reason', () => {
  const good = JSON.parse(Buffer.from(encodeEvent(sampleEvent())).toString()) as {
    v: number;
    row: unknown[];
  };
  const cases: [string, string][] = [
    ['not json', 'not JSON'],
    ['{"hello":"world"}', 'not a honeygate event (v1)'],
    [JSON.stringify({ v: 2, row: good.row }), 'not a honeygate event (v1)'],
    [JSON.stringify({ v: 1, row: ['x'] }), 'row has the wrong shape'],
    [JSON.stringify({ v: 1, row: ['zz', ...good.row.slice(1)] }), 'id is not hex'],
    [JSON.stringify({ v: 1, row: [good.row[0], 'bogus', ...good.row.slice(2)] }), 'unknown type "bogus"'],
    [
      JSON.stringify({ v: 1, row: [...good.row.slice(0, 2), 'x', ...good.row.slice(3)] }),
      'opened_at is not a number',
    ],
    ['', 'not JSON'],
  ];
  for (const [text, reason] of cases) {
    const d = decodeEvent(Buffer.from(text));
    assert.equal(d.ok, false, text);
    assert.equal((d as { reason: string }).reason, reason, text);
  }
});

test('message ids: the event id; an update adds its duration (it shares the flow id)', () => {
  const e = sampleEvent();
  assert.equal(messageId(e), e.id);
  assert.equal(messageId({ ...e, type: 'update', durationMs: 60000 }), `${e.id}.u60000`);
});

test('a sensor publishes on PREFIX.<sensor>, its name made one subject token', () => {
  assert.equal(sensorSubject({ subject: 'honeygate.events' }, 'fra-1'), 'honeygate.events.fra-1');
  assert.equal(sensorSubject({ subject: 'hg' }, 'gw1.example.net'), 'hg.gw1_example_net');
  assert.equal(sensorSubject({ subject: 'hg' }, 'a b*>'), 'hg.a_b__');
});

test('the outbox keeps order across reopening, and drops the oldest beyond its bound', () => {
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'outbox.db');
    let box = new Outbox(path, 1000);
    const rows = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({ msgId: `m${from + i}`, data: Buffer.from(`d${from + i}`) }));
    assert.equal(box.append(rows(0, 600)), 0);
    assert.equal(box.append(rows(600, 600)), 200, 'the 200 oldest dropped');
    assert.equal(box.length, 1000);
    assert.equal(box.overflowed, 200);
    const first = box.peek(3);
    assert.deepEqual(
      first.map((r) => r.msgId),
      ['m200', 'm201', 'm202'],
    );
    box.remove(first.map((r) => r.seq));
    assert.equal(box.length, 997);
    box.close();
    box = new Outbox(path, 1000);
    assert.equal(box.length, 997, 'what waited is there after a restart');
    assert.deepEqual(
      box.peek(1).map((r) => [r.msgId, Buffer.from(r.data).toString()]),
      [['m203', 'd203']],
    );
    assert.ok(box.oldestQueuedAt! <= Date.now());
    box.remove(box.peek(2000).map((r) => r.seq));
    assert.equal(box.length, 0);
    assert.equal(box.oldestQueuedAt, null);
    box.close();
  } finally {
    cleanup();
  }
});
