import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import type { BackendConfig, HealthCheck } from '../../src/config/types.js';
import { HealthChecker } from '../../src/gateway/health.js';
import { Pool, type Server } from '../../src/gateway/pool.js';

const CHECK: HealthCheck = { intervalMs: 20, timeoutMs: 1000, rise: 2, fall: 3 };

function backend(ports: number[]): BackendConfig {
  return {
    name: 'cowrie',
    servers: ports.map((port) => ({ host: '127.0.0.1', port })),
    source: 'none',
    balance: 'roundrobin',
    health: CHECK,
    fallback: null,
    connectTimeoutMs: 1000,
    retries: 0,
  };
}

/** A pino logger whose lines land in `lines`, parsed. */
function memoryLog(): { log: pino.Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines };
}

async function listen(port = 0): Promise<net.Server> {
  const server = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}

async function close(server: net.Server): Promise<void> {
  if (server.listening) await new Promise((resolve) => server.close(resolve));
}

/** Resolves when `cond()` holds; fails after `ms`. */
async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('HealthChecker', () => {
  const cleanup: (() => unknown)[] = [];
  after(async () => {
    for (const fn of cleanup.reverse()) await fn();
  });

  it('marks a closed port DOWN after `fall` failures and UP after `rise` successes once it listens again', async () => {
    // Reserve a port, then free it: connecting to it is refused.
    const reserved = await listen();
    const port = (reserved.address() as net.AddressInfo).port;
    await close(reserved);

    const pool = new Pool(backend([port]));
    const changes: { key: string; up: boolean; reason: string }[] = [];
    const { log, lines } = memoryLog();
    const checker = new HealthChecker(pool, CHECK, {
      log,
      onChange: (s: Server, up, reason) => changes.push({ key: s.key, up, reason }),
    });
    cleanup.push(() => checker.stop());
    assert.equal(pool.allDown(), false, 'servers start up');
    checker.start();

    await waitFor('DOWN', () => changes.length >= 1);
    assert.deepEqual(changes[0], {
      key: `127.0.0.1:${port}`,
      up: false,
      reason: 'connect ECONNREFUSED (3 failures)',
    });
    assert.equal(pool.allDown(), true);
    assert.equal(pool.pick('198.51.100.1'), null);
    const warn = lines.find((l) => l.level === 40);
    assert.equal(
      warn?.msg,
      `server 127.0.0.1:${port} of backend cowrie is DOWN: connect ECONNREFUSED (3 failures)`,
    );

    const server = await listen(port);
    cleanup.push(() => close(server));
    await waitFor('UP', () => changes.length >= 2);
    assert.deepEqual(changes[1], { key: `127.0.0.1:${port}`, up: true, reason: 'connected (2 successes)' });
    assert.equal(pool.pick('198.51.100.1')?.key, `127.0.0.1:${port}`);
    const info = lines.find((l) => l.level === 30);
    assert.equal(info?.msg, `server 127.0.0.1:${port} of backend cowrie is UP: connected (2 successes)`);
    assert.equal(changes.length, 2, 'no flapping');
    checker.stop();
  });

  it('a healthy server stays up and is never reported', async () => {
    const server = await listen();
    cleanup.push(() => close(server));
    let probes = 0;
    server.on('connection', () => probes++);
    const pool = new Pool(backend([(server.address() as net.AddressInfo).port]));
    const changes: boolean[] = [];
    const checker = new HealthChecker(pool, CHECK, {
      log: memoryLog().log,
      onChange: (_, up) => changes.push(up),
    });
    checker.start();
    cleanup.push(() => checker.stop());
    await waitFor('five probes', () => probes >= 5);
    checker.stop();
    assert.deepEqual(changes, []);
    assert.equal(pool.allDown(), false);
  });

  it('stop() cancels the timer and in-flight probes', async () => {
    const watched = await listen();
    const clock = await listen(); // a second checker's probes measure time without sleeping
    cleanup.push(
      () => close(watched),
      () => close(clock),
    );
    let watchedProbes = 0;
    let clockProbes = 0;
    watched.on('connection', () => watchedProbes++);
    clock.on('connection', () => clockProbes++);
    const port = (s: net.Server): number => (s.address() as net.AddressInfo).port;

    const checker = new HealthChecker(new Pool(backend([port(watched), port(watched)])), CHECK, {
      log: memoryLog().log,
    });
    checker.start();
    assert.equal(checker.probing, 1, 'the first check starts at once (one server: duplicates fold)');
    checker.stop();
    assert.equal(checker.probing, 0);
    const seen = watchedProbes;

    const ticker = new HealthChecker(new Pool(backend([port(clock)])), CHECK, { log: memoryLog().log });
    ticker.start();
    cleanup.push(() => ticker.stop());
    await waitFor('five intervals', () => clockProbes >= 5);
    ticker.stop();
    assert.ok(watchedProbes <= seen + 1, `stopped checker kept probing (${watchedProbes - seen} more)`);
    checker.start(); // restartable after stop
    await waitFor('restarted probe', () => watchedProbes > seen);
    checker.stop();
  });
});

describe('HealthChecker: unusable server address', () => {
  it('counts a connect() that throws (port 70000) as a failed check instead of crashing', async () => {
    const pool = new Pool(backend([70000]));
    const reasons: string[] = [];
    const checker = new HealthChecker(
      pool,
      { ...CHECK, fall: 1 },
      {
        log: memoryLog().log,
        onChange: (_, __, reason) => reasons.push(reason),
      },
    );
    try {
      checker.start();
      await waitFor('DOWN', () => reasons.length > 0);
      assert.match(reasons[0]!, /^connect .*port.* \(1 failure\)$/i);
    } finally {
      checker.stop();
    }
  });
});
