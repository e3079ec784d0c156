import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BackendConfig, Balance } from '../../src/config/types.js';
import { Pool, type Server } from '../../src/gateway/pool.js';

function backend(balance: Balance, count = 4): BackendConfig {
  return {
    name: 'cowrie',
    servers: Array.from({ length: count }, (_, i) => ({ host: `192.0.2.${10 + i}`, port: 2222 })),
    source: 'none',
    balance,
    health: null,
    fallback: null,
    connectTimeoutMs: 1000,
    retries: 1,
  };
}

function randomIps(n: number, seed = 7): string[] {
  let s = seed;
  const next = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s >>> 24;
  };
  return Array.from({ length: n }, () => `${next()}.${next()}.${next()}.${next()}`);
}

function counts(picks: (string | undefined)[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const k of picks) if (k) m.set(k, (m.get(k) ?? 0) + 1);
  return m;
}

describe('Pool', () => {
  it('names servers ip:port and [v6]:port', () => {
    const b = backend('roundrobin', 1);
    b.servers.push({ host: '2001:db8::5', port: 80 });
    assert.deepEqual(
      new Pool(b).servers.map((s) => s.key),
      ['192.0.2.10:2222', '[2001:db8::5]:80'],
    );
  });

  it('roundrobin spreads flows evenly over up servers', () => {
    const pool = new Pool(backend('roundrobin'));
    const picks = Array.from({ length: 400 }, () => pool.pick('198.51.100.1')?.key);
    assert.deepEqual([...counts(picks).values()], [100, 100, 100, 100]);
    pool.setUp('192.0.2.11:2222', false);
    const after = counts(Array.from({ length: 300 }, () => pool.pick('198.51.100.1')?.key));
    assert.equal(after.get('192.0.2.11:2222'), undefined);
    assert.deepEqual([...after.values()], [100, 100, 100]);
  });

  it('leastconn prefers idle servers and rotates among equals', () => {
    const pool = new Pool(backend('leastconn', 3));
    const [a, b, c] = pool.servers as [Server, Server, Server];
    pool.acquire(a);
    pool.acquire(a);
    pool.acquire(b);
    assert.equal(pool.pick('198.51.100.1'), c);
    pool.acquire(c);
    assert.equal(pool.pick('198.51.100.1'), b); // b and c have one flow each; b is next in turn
    assert.equal(pool.pick('198.51.100.1'), c);
    pool.release(a);
    pool.release(a);
    pool.release(a); // never below zero
    assert.equal(a.active, 0);
    assert.equal(pool.pick('198.51.100.1'), a);
    // Idle servers take turns when every flow is short-lived.
    const fresh = new Pool(backend('leastconn', 3));
    const spread = counts(Array.from({ length: 30 }, () => fresh.pick('198.51.100.1')?.key));
    assert.deepEqual([...spread.values()], [10, 10, 10]);
  });

  it('source-hash keeps an attacker on one server and spreads attackers', () => {
    const pool = new Pool(backend('source-hash'));
    const ips = randomIps(1000);
    const first = ips.map((ip) => pool.pick(ip)?.key);
    for (let round = 0; round < 3; round++)
      assert.deepEqual(
        ips.map((ip) => pool.pick(ip)?.key),
        first,
      );
    for (const n of counts(first).values()) assert.ok(n > 180 && n < 320, `uneven spread: ${n} of 1000`);
    // The same answer from a fresh pool: nothing depends on history.
    assert.deepEqual(
      ips.map((ip) => new Pool(backend('source-hash')).pick(ip)?.key),
      first,
    );
  });

  it('source-hash moves only the attackers of a server that goes down, and moves them back', () => {
    const pool = new Pool(backend('source-hash'));
    const ips = randomIps(1000, 99);
    const before = ips.map((ip) => pool.pick(ip)!.key);
    const down = '192.0.2.12:2222';
    pool.setUp(down, false);
    const during = ips.map((ip) => pool.pick(ip)!.key);
    for (let i = 0; i < ips.length; i++) {
      if (before[i] === down) assert.notEqual(during[i], down);
      else assert.equal(during[i], before[i], `${ips[i]} moved off a healthy server`);
    }
    // The orphans spread over the rest rather than piling onto one.
    const moved = counts(during.filter((_, i) => before[i] === down));
    assert.equal(moved.size, 3);
    pool.setUp(down, true);
    assert.deepEqual(
      ips.map((ip) => pool.pick(ip)!.key),
      before,
    );
  });

  it('exclude skips servers already tried, in every mode', () => {
    for (const mode of ['roundrobin', 'leastconn', 'source-hash'] as Balance[]) {
      const pool = new Pool(backend(mode, 3));
      const tried = new Set<string>();
      for (let i = 0; i < 3; i++) {
        const s = pool.pick('203.0.113.9', tried);
        assert.ok(s, `${mode}: attempt ${i + 1} found no server`);
        assert.ok(!tried.has(s.key), `${mode}: ${s.key} picked twice`);
        tried.add(s.key);
      }
      assert.equal(pool.pick('203.0.113.9', tried), null, mode);
    }
  });

  it('all down: allDown() and pick() returns null', () => {
    for (const mode of ['roundrobin', 'leastconn', 'source-hash'] as Balance[]) {
      const pool = new Pool(backend(mode, 2));
      assert.equal(pool.allDown(), false);
      for (const s of pool.servers) pool.setUp(s.key, false);
      assert.equal(pool.allDown(), true);
      assert.equal(pool.pick('203.0.113.9'), null, mode);
    }
    assert.equal(new Pool(backend('roundrobin', 0)).pick('203.0.113.9'), null);
  });

  it('setUp with an unknown key changes nothing and says so', () => {
    const pool = new Pool(backend('roundrobin', 1));
    assert.equal(pool.setUp('192.0.2.99:1', false), false);
    assert.equal(pool.allDown(), false);
  });

  it('adopt carries health and active counts over by server key', () => {
    const old = new Pool(backend('leastconn', 3));
    old.setUp('192.0.2.11:2222', false);
    old.acquire(old.servers[0]!);
    old.acquire(old.servers[0]!);
    const changed = backend('leastconn', 2);
    changed.servers.push({ host: '192.0.2.50', port: 2222 }); // new server; 192.0.2.12 removed
    const pool = new Pool(changed);
    pool.adopt(old);
    assert.deepEqual(
      pool.servers.map((s) => [s.key, s.up, s.active]),
      [
        ['192.0.2.10:2222', true, 2],
        ['192.0.2.11:2222', false, 0],
        ['192.0.2.50:2222', true, 0],
      ],
    );
    assert.equal(pool.pick('198.51.100.1')?.key, '192.0.2.50:2222');
  });
});
