// Attacker behaviour the gateway must take in stride: half-closed connections (also during
// the header and peek stages), floods from one source beyond perSource, and silent
// connections left idle.
import assert from 'node:assert/strict';
import type net from 'node:net';
import { after, describe, test } from 'node:test';
import { connect, exchange, readAll } from '../helpers/client.js';
import { type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { startReplyOnEndServer, startTcpServer } from '../helpers/peers.js';
import { proxyV1 } from '../helpers/proxy-header.js';
import { waitFor } from '../helpers/wait.js';

describe('robustness', { timeout: 60_000 }, () => {
  const cleanup: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  const forwardTo = (serverPort: number, limits: string) =>
    startHoneygate(`
listeners:
  - name: pot
    bind: "127.0.0.1:0"
routes:
  - forward: pot
backends:
  pot:
    servers: ["127.0.0.1:${serverPort}"]
limits: ${limits}
events: { sqlite: "{{dir}}/events.db", batch: 50ms }
`);

  test('half-open: the client shuts its write side and still reads the whole reply', async () => {
    const big = 'x'.repeat(256 * 1024);
    const server = await startReplyOnEndServer((data) => `got ${data.length} bytes: ${data}\n${big}`);
    cleanup.push(() => server.stop());
    const hg: Honeygate = await forwardTo(server.port, '{ perSourceRate: 10000/s }');
    cleanup.push(() => hg.close());

    const reply = await exchange(hg.port('pot'), 'hello');
    const text = reply.data.toString();
    assert.equal(reply.error, null);
    assert.ok(text.startsWith('got 5 bytes: hello\n'), text.slice(0, 80));
    assert.equal(reply.data.length, `got 5 bytes: hello\n`.length + big.length, 'the reply arrives whole');

    const evs = await hg.waitForEvents((all) => all.some((e) => e.src.port === reply.localPort));
    const flow = evs.find((e) => e.src.port === reply.localPort)!;
    assert.equal(flow.bytesIn, 5);
    assert.equal(flow.bytesOut, reply.data.length);
    assert.equal(flow.closeReason, 'client-closed');
  });

  test('a flood beyond perSource: at most 5 flows at once, the rest counted in few rejected events', async () => {
    let open = 0;
    let maxOpen = 0;
    // A honeypot that holds every connection open until the client leaves.
    const server = await startTcpServer((socket) => {
      open++;
      maxOpen = Math.max(maxOpen, open);
      socket.once('close', () => open--);
      socket.on('end', () => socket.end());
    });
    cleanup.push(() => server.stop());
    const hg = await forwardTo(
      server.port,
      '{ perSource: 5, perSourceRate: 10000/s, rejectLogInterval: 300ms }',
    );
    cleanup.push(() => hg.close());
    const port = hg.port('pot');

    const TOTAL = 50;
    const sockets: net.Socket[] = [];
    cleanup.push(() => {
      for (const s of sockets) s.destroy();
    });
    const connected = await Promise.allSettled(Array.from({ length: TOTAL }, () => connect(port)));
    for (const c of connected) if (c.status === 'fulfilled') sockets.push(c.value);
    let closedByGateway = 0;
    const replies = sockets.map((s) =>
      readAll(s, 20_000).then(() => {
        closedByGateway++;
      }),
    );
    const refused = TOTAL - sockets.length;
    await waitFor(
      'the gateway to close all but 5 flows and forward those 5',
      () => closedByGateway + refused >= TOTAL - 5 && server.accepted >= 5,
      10_000,
    );
    assert.equal(closedByGateway + refused, TOTAL - 5, 'flows refused at admission');
    assert.ok(maxOpen <= 5, `at most 5 flows reached the honeypot at once, saw ${maxOpen}`);
    assert.equal(server.accepted, 5, 'the 5 admitted flows were forwarded');

    for (const s of sockets) s.end();
    await Promise.allSettled(replies);
    const evs = await hg.waitForEvents(
      (all) => all.filter((e) => e.type === 'rejected').reduce((n, e) => n + e.count, 0) >= TOTAL - 5,
      5000,
    );
    const rejected = evs.filter((e) => e.type === 'rejected');
    assert.equal(
      rejected.reduce((n, e) => n + e.count, 0),
      TOTAL - 5,
    );
    assert.ok(rejected.length <= 5, `rejections are aggregated: ${rejected.length} rejected events`);
    for (const r of rejected) {
      assert.equal(r.src.ip, '127.0.0.1');
      assert.equal(r.closeReason, 'limit-per-source');
    }
  });

  test('a silent flow is closed after the idle timeout', async () => {
    const server = await startTcpServer(() => {}); // accepts and never says a word
    cleanup.push(() => server.stop());
    const hg = await forwardTo(server.port, '{ idleTimeout: 300ms, perSourceRate: 10000/s }');
    cleanup.push(() => hg.close());

    const socket = await connect(hg.port('pot'));
    const localPort = socket.localPort!;
    socket.write('hi');
    const started = Date.now();
    await readAll(socket, 5000);
    assert.ok(Date.now() - started >= 250, 'not closed before the idle timeout');
    const evs = await hg.waitForEvents((all) => all.some((e) => e.src.port === localPort));
    assert.equal(evs.find((e) => e.src.port === localPort)!.closeReason, 'idle-timeout');
  });

  // Bug: a FIN read by the PROXY-header or peek stage was lost ('end' fires once), so the
  // honeypot never saw the half-close and the flow hung until the idle timeout.
  test('a half-close during the header or peek stage reaches the honeypot', async () => {
    const pot = await startReplyOnEndServer((d) => `got ${d.length}`);
    cleanup.push(() => pot.stop());
    const hg = await startHoneygate(`
listeners:
  - name: lb
    bind: "127.0.0.1:0"
    acceptProxy: { from: ["127.0.0.1"] }
  - name: peek
    bind: "127.0.0.1:0"
routes:
  - match: { listeners: [lb] }
    forward: pot
  - match: { protocol: [http] }
    forward: pot
  - capture: { timeout: 30s }
backends:
  pot: { servers: ["127.0.0.1:${pot.port}"] }
limits: { idleTimeout: 30s, perSourceRate: 10000/s }
`);
    cleanup.push(() => hg.close());
    const lb = hg.port('lb');
    const viaHeader = await exchange(lb, `${proxyV1('203.0.113.4', '127.0.0.1', 42000, lb)}hello`);
    assert.equal(viaHeader.data.toString(), 'got 5');
    const viaPeek = await exchange(hg.port('peek'), 'GET / HTTP/1.0\r\n\r\n');
    assert.equal(viaPeek.data.toString(), 'got 18');
    const silentThenEnd = await exchange(hg.port('peek'), 'x', { replyTimeoutMs: 10_000 });
    assert.equal(silentThenEnd.error, null);
    const events = await hg.waitForEvents((all) => all.filter((e) => e.type === 'flow').length >= 3);
    const reasons = events.map((e) => e.closeReason).sort();
    assert.deepEqual(reasons, ['capture-done', 'client-closed', 'client-closed']);
  });
});
