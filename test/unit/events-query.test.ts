import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FlowEvent } from '../../src/events/event.js';
import { queryEvents } from '../../src/events/query.js';
import { SqliteSink } from '../../src/events/sqlite.js';
import { sampleEvent, tempDir } from '../helpers/events.js';

const T0 = Date.UTC(2024, 4, 1, 0, 0, 0);
const MIN = 60_000;

describe('queryEvents', () => {
  const tmp = tempDir();
  const path = join(tmp.dir, 'q.db');
  let sink: SqliteSink;
  let all: FlowEvent[];

  before(() => {
    // Ten minutes of flows, one a minute, from a mix of sources; the sink stays open so
    // queries run next to a live writer, as `honeygate events` does next to `run`.
    const srcs = ['198.51.100.7', '198.51.100.200', '203.0.113.5', '2001:db8::5', '2001:db8:ff::1'];
    all = Array.from({ length: 10 }, (_, i) =>
      sampleEvent({
        openedAt: T0 + i * MIN,
        closedAt: T0 + i * MIN + 1000,
        src: { ip: srcs[i % srcs.length]!, port: 40000 + i },
        dst: { ip: '192.0.2.1', port: i % 2 === 0 ? 22 : 80 },
        route: i % 2 === 0 ? 'ssh' : 'web',
        action: i % 3 === 0 ? 'capture' : 'forward',
        type: i === 9 ? 'update' : 'flow',
      }),
    );
    sink = new SqliteSink(path);
    sink.write(all);
  });
  after(() => {
    sink.close();
    tmp.cleanup();
  });

  const ids = (events: FlowEvent[]) => events.map((e) => e.openedAt - T0).map((ms) => ms / MIN);

  it('returns everything newest first', () => {
    assert.deepEqual(ids(queryEvents(path, {})), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
  });

  it('filters by since and until (inclusive)', () => {
    assert.deepEqual(ids(queryEvents(path, { since: T0 + 7 * MIN })), [9, 8, 7]);
    assert.deepEqual(ids(queryEvents(path, { until: T0 + 2 * MIN })), [2, 1, 0]);
    assert.deepEqual(ids(queryEvents(path, { since: T0 + 3 * MIN, until: T0 + 4 * MIN })), [4, 3]);
  });

  it('filters by source address and CIDR block, IPv4 and IPv6', () => {
    assert.deepEqual(ids(queryEvents(path, { src: '198.51.100.7' })), [5, 0]);
    assert.deepEqual(ids(queryEvents(path, { src: '198.51.100.0/24' })), [6, 5, 1, 0]);
    assert.deepEqual(ids(queryEvents(path, { src: '198.51.100.128/25' })), [6, 1]);
    assert.deepEqual(ids(queryEvents(path, { src: '0.0.0.0/0' })), [7, 6, 5, 2, 1, 0]);
    assert.deepEqual(ids(queryEvents(path, { src: '2001:db8::/32' })), [9, 8, 4, 3]);
    assert.deepEqual(ids(queryEvents(path, { src: '2001:db8::5' })), [8, 3]);
    assert.deepEqual(queryEvents(path, { src: '192.0.2.0/24' }), []);
  });

  it('filters by destination port, route, action and type', () => {
    assert.deepEqual(ids(queryEvents(path, { dstPort: 80 })), [9, 7, 5, 3, 1]);
    assert.deepEqual(ids(queryEvents(path, { route: 'ssh' })), [8, 6, 4, 2, 0]);
    assert.deepEqual(ids(queryEvents(path, { action: 'capture' })), [9, 6, 3, 0]);
    assert.deepEqual(ids(queryEvents(path, { type: 'update' })), [9]);
    assert.deepEqual(ids(queryEvents(path, { route: 'ssh', action: 'capture' })), [6, 0]);
  });

  it('applies the limit, also after CIDR filtering', () => {
    assert.deepEqual(ids(queryEvents(path, { limit: 3 })), [9, 8, 7]);
    assert.deepEqual(ids(queryEvents(path, { src: '2001:db8::/32', limit: 2 })), [9, 8]);
    assert.equal(queryEvents(path, { limit: 0 }).length, 0);
  });

  it('defaults to 100 events', () => {
    const bigPath = join(tmp.dir, 'big.db');
    const big = new SqliteSink(bigPath);
    big.write(Array.from({ length: 150 }, () => sampleEvent()));
    big.close();
    assert.equal(queryEvents(bigPath, {}).length, 100);
  });

  it('says there is no event store for a missing or foreign file', () => {
    assert.throws(() => queryEvents(join(tmp.dir, 'missing.db'), {}), {
      code: 'HG_ERR_EVENTS_QUERY',
      message: /no event store at .*missing\.db/,
    });
    const text = join(tmp.dir, 'text.db');
    writeFileSync(text, 'hello, not a database '.repeat(100));
    assert.throws(() => queryEvents(text, {}), { code: 'HG_ERR_EVENTS_QUERY', message: /no event store at/ });
  });

  it('rejects a bad src with the query error', () => {
    assert.throws(() => queryEvents(path, { src: '10.0.0.0/33' }), {
      code: 'HG_ERR_EVENTS_QUERY',
      message: /prefix length/,
    });
  });
});
