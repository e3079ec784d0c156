// The collections of live flows (src/gateway/live.ts): what a Set and a Map gave, without
// their tables.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IdTable, Slots } from '../../src/gateway/live.js';

describe('Slots', () => {
  it('adds, removes by slot, reuses freed slots and counts', () => {
    const s = new Slots<string>();
    const a = s.add('a');
    const b = s.add('b');
    assert.equal(s.size, 2);
    s.remove(a, 'a');
    assert.deepEqual(s.values(), ['b']);
    const c = s.add('c');
    assert.equal(c, a, 'a freed slot is reused');
    assert.deepEqual(s.values().sort(), ['b', 'c']);
    assert.equal(s.size, 2);
    s.remove(b, 'b');
    s.remove(c, 'c');
    assert.equal(s.size, 0);
    assert.deepEqual(s.values(), []);
  });

  it('ignores a second removal, even once the slot holds another item', () => {
    const s = new Slots<object>();
    const first = {};
    const slot = s.add(first);
    s.remove(slot, first);
    const second = {};
    assert.equal(s.add(second), slot);
    s.remove(slot, first); // a stale release
    assert.equal(s.size, 1);
    assert.deepEqual(s.values(), [second]);
  });

  it('lets a caller remove items while it goes through values()', () => {
    const s = new Slots<{ slot: number }>();
    const items = Array.from({ length: 5 }, () => ({ slot: -1 }));
    for (const item of items) item.slot = s.add(item);
    for (const item of s.values()) s.remove(item.slot, item);
    assert.equal(s.size, 0);
  });
});

describe('IdTable', () => {
  const item = (id: number) => ({ id });

  it('finds items by id and forgets deleted ones', () => {
    const t = new IdTable<{ id: number }>();
    for (let id = 1; id <= 10; id++) t.add(item(id));
    assert.equal(t.size, 10);
    assert.equal(t.get(7)?.id, 7);
    t.delete(7);
    assert.equal(t.get(7), undefined);
    t.delete(7);
    assert.equal(t.size, 9);
    assert.equal(t.get(11), undefined);
  });

  it('keeps an item whose place a longer-lived one holds, and grows when half full', () => {
    const t = new IdTable<{ id: number }>();
    const old = item(5);
    t.add(old);
    // Ids 1024 and 2048 apart land on the long-lived item's place at the first size.
    t.add(item(5 + 1024));
    t.add(item(5 + 2048));
    assert.equal(t.get(5), old);
    assert.equal(t.get(5 + 1024)?.id, 5 + 1024);
    assert.equal(t.get(5 + 2048)?.id, 5 + 2048);
    t.delete(5 + 1024);
    assert.equal(t.get(5 + 1024), undefined);
    assert.equal(t.get(5 + 2048)?.id, 5 + 2048);
    // Past half full the table doubles; every item is still found.
    for (let id = 10_000; id < 12_000; id++) t.add(item(id));
    assert.equal(t.size, 2002);
    for (const id of [5, 5 + 2048, 10_000, 11_999]) assert.equal(t.get(id)?.id, id);
    assert.equal(t.values().length, 2002);
  });

  it('takes ids up to 2^32 - 1, as the relay hands them out', () => {
    const t = new IdTable<{ id: number }>();
    const ids = [2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 1];
    for (const id of ids) t.add(item(id));
    for (const id of ids) assert.equal(t.get(id)?.id, id);
    t.delete(2 ** 32 - 1);
    assert.equal(t.get(2 ** 32 - 1), undefined);
    assert.equal(t.get(2 ** 31)?.id, 2 ** 31);
  });
});
