// Inbound PROXY protocol: behind a real HAProxy (send-proxy / send-proxy-v2) the event's
// src is the client HAProxy saw and its peer is HAProxy; a header from an untrusted
// address is a spoof attempt; garbage and silence are recorded as such; per-source limits
// hold for the untrusted peers of such a listener.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, exchange, readAll } from '../helpers/client.js';
import { type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { needs, startHaproxySendingProxy } from '../helpers/peers.js';
import { proxyV1 } from '../helpers/proxy-header.js';

describe('inbound PROXY protocol', { timeout: 60_000 }, () => {
  let hg: Honeygate;

  before(async () => {
    // HAProxy connects from 127.0.0.2 (see startHaproxySendingProxy); clients from 127.0.0.1/.3.
    hg = await startHoneygate(`
listeners:
  - name: behind-lb
    bind: "127.0.0.1:0"
    acceptProxy: { versions: [v1, v2], from: ["127.0.0.2", "127.0.0.1"], timeout: 500ms }
  - name: untrusted
    bind: "127.0.0.1:0"
    acceptProxy: { from: ["192.0.2.0/24"] }
routes:
  - capture: { timeout: 5s }
limits: { perSourceRate: 10000/s }
`);
  });
  after(() => hg?.close());

  const flowFrom = async (ip: string, port: number) => {
    const evs = await hg.waitForEvents((all) => all.some((e) => e.src.ip === ip && e.src.port === port));
    return evs.find((e) => e.src.ip === ip && e.src.port === port)!;
  };

  for (const version of ['v2', 'v1'] as const) {
    test(`behind HAProxy send-proxy${version === 'v2' ? '-v2' : ''}: src is the client, peer is HAProxy`, {
      skip: needs('haproxy'),
    }, async () => {
      const lb = await startHaproxySendingProxy({
        target: hg.port('behind-lb'),
        version,
        sourceAddress: '127.0.0.2',
      });
      try {
        const reply = await exchange(lb.port, 'hello', { localAddress: '127.0.0.3' });
        const flow = await flowFrom('127.0.0.3', reply.localPort);
        assert.equal(flow.listener, 'behind-lb');
        assert.equal(flow.proxyHeader, version);
        assert.equal(flow.peer?.ip, '127.0.0.2', `peer: ${JSON.stringify(flow.peer)}`);
        assert.deepEqual(
          flow.dst,
          { ip: '127.0.0.1', port: lb.port },
          'dst is where the client connected: HAProxy',
        );
        assert.equal(flow.firstBytes.toString(), 'hello', 'the header is not part of the first bytes');
        assert.equal(flow.action, 'capture');
      } finally {
        await lb.stop();
      }
    });
  }

  test('a hand-sent v1 header from a trusted address sets src', async () => {
    const port = hg.port('behind-lb');
    const reply = await exchange(port, `${proxyV1('203.0.113.7', '127.0.0.1', 40000, port)}hello`);
    const flow = await flowFrom('203.0.113.7', 40000);
    assert.equal(flow.proxyHeader, 'v1');
    assert.deepEqual(flow.peer, { ip: '127.0.0.1', port: reply.localPort });
    assert.equal(flow.firstBytes.toString(), 'hello');
  });

  test('a header from an untrusted address is closed as a spoof attempt', async () => {
    const port = hg.port('untrusted');
    const reply = await exchange(port, `${proxyV1('203.0.113.7', '127.0.0.1', 40000, port)}hello`);
    assert.equal(reply.data.length, 0);
    const flow = await flowFrom('127.0.0.1', reply.localPort);
    assert.equal(flow.closeReason, 'spoof-attempt');
    assert.equal(flow.listener, 'untrusted');
    const spoofed = (await hg.events()).filter((e) => e.src.ip === '203.0.113.7' && e.src.port === 40000);
    assert.ok(
      spoofed.every((e) => e.listener !== 'untrusted'),
      'the forged address is never taken as src',
    );
  });

  test('a garbage header is closed as bad-proxy-header', async () => {
    const reply = await exchange(hg.port('behind-lb'), 'PROXY GARBAGE\r\nhello');
    const flow = await flowFrom('127.0.0.1', reply.localPort);
    assert.equal(flow.closeReason, 'bad-proxy-header');
  });

  test('no header within the timeout is closed as proxy-header-timeout', async () => {
    const socket = await connect(hg.port('behind-lb'));
    const localPort = socket.localPort!;
    const reply = await readAll(socket, 5000); // honeygate closes it after 500 ms
    assert.equal(reply.data.length, 0);
    const flow = await flowFrom('127.0.0.1', localPort);
    assert.equal(flow.closeReason, 'proxy-header-timeout');
  });
});

describe('inbound PROXY protocol: limits', { timeout: 60_000 }, () => {
  // Bug: untrusted peers of an acceptProxy listener escaped the per-source limits while they
  // waited in the header stage, so one address could take every connection slot.
  test('per-source limits hold for untrusted peers of an acceptProxy listener', async () => {
    const hg = await startHoneygate(`
listeners:
  - name: lb
    bind: "127.0.0.1:0"
    acceptProxy: { from: ["192.0.2.0/24"], timeout: 1s }
routes:
  - capture: { timeout: 1s }
limits: { perSource: 3, perSourceRate: 10000/s }
`);
    try {
      // A reset may beat the client's own connect callback (a loaded machine): the same refusal.
      const attempt = async () => {
        try {
          return await readAll(await connect(hg.port('lb')), 10_000);
        } catch (err) {
          return { error: (err as NodeJS.ErrnoException).code ?? String(err) };
        }
      };
      const replies = await Promise.all(Array.from({ length: 10 }, attempt));
      assert.equal(replies.filter((r) => r.error === 'ECONNRESET').length, 7, 'all but perSource are reset');
      const events = await hg.waitForEvents((all) => all.some((e) => e.type === 'rejected'), 15_000);
      const refused = events.filter((e) => e.type === 'rejected').reduce((n, e) => n + e.count, 0);
      assert.equal(refused, 7);
    } finally {
      await hg.close();
    }
  });
});
