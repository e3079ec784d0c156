// Per-flow limits of the pump, and what a PROXY v2 honeypot receives: the original
// addresses and a UNIQUE_ID equal to the event id, so its logs join honeygate's events.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { parseProxyHeader } from '../../src/net/proxy-protocol.js';
import { connect, exchange, readAll } from '../helpers/client.js';
import { startHoneygate } from '../helpers/honeygate.js';
import { needs, startEchoServer, startNginxProxyProtocol, startTcpServer } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

describe('flow limits and PROXY v2 identity', { timeout: 60_000 }, () => {
  const cleanup: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('byte caps and the maximum duration end a forwarded flow with their reason', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const cfg = (limits: string) => `
listeners:
  - name: f
    bind: "127.0.0.1:0"
routes:
  - forward: e
backends:
  e: { servers: ["127.0.0.1:${echo.port}"] }
limits: { perSourceRate: 10000/s, ${limits} }
`;
    const capped = await startHoneygate(cfg('maxBytesIn: 1KiB'));
    cleanup.push(() => capped.close());
    const big = await exchange(capped.port('f'), Buffer.alloc(64 * 1024, 'A'), { end: false });
    const [flow] = await capped.waitForEvents((all) => all.some((e) => e.src.port === big.localPort));
    assert.equal(flow!.closeReason, 'byte-cap');
    assert.equal(flow!.firstBytes.length, 4096, 'the first bytes are still kept');

    const short = await startHoneygate(cfg('maxDuration: 500ms'));
    cleanup.push(() => short.close());
    const s = await connect(short.port('f'));
    s.write('still here');
    const started = Date.now();
    await readAll(s, 5000);
    assert.ok(Date.now() - started < 3000);
    const [long] = await short.waitForEvents((all) => all.some((e) => e.type === 'flow'));
    assert.equal(long!.closeReason, 'max-duration');
  });

  test('a PROXY v2 honeypot receives the client address and the event id', async () => {
    const headers: Buffer[] = [];
    const pot = await startTcpServer((socket) => {
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => {
        headers.push(Buffer.concat(chunks));
        socket.end('ok');
      });
    });
    cleanup.push(() => pot.stop());
    const hg = await startHoneygate(`
listeners:
  - name: f
    bind: "127.0.0.1:0"
routes:
  - forward: pot
backends:
  pot: { servers: ["127.0.0.1:${pot.port}"], source: proxy-v2 }
`);
    cleanup.push(() => hg.close());
    const reply = await exchange(hg.port('f'), 'hi');
    assert.equal(reply.data.toString(), 'ok');
    const [event] = await hg.waitForEvents((all) => all.some((e) => e.type === 'flow'));
    const r = parseProxyHeader(headers[0]!, { v1: false, v2: true });
    assert.equal(r.status, 'done');
    if (r.status !== 'done') return;
    assert.deepEqual(r.header.src, { ip: '127.0.0.1', port: reply.localPort });
    assert.deepEqual(r.header.dst, { ip: '127.0.0.1', port: hg.port('f') });
    assert.equal(r.header.uniqueId?.toString('ascii'), event!.id);
    assert.equal(headers[0]!.subarray(r.consumed).toString(), 'hi');
  });
});

// Health checks used to be bare connects: nginx with proxy_protocol logged a "broken
// header" every interval, and a honeypot would count the gateway as an attacker.
test('health checks of a PROXY v2 backend send a LOCAL header that nginx accepts', {
  skip: needs('nginx'),
}, async (t) => {
  const nginx = await startNginxProxyProtocol();
  t.after(() => nginx.stop());
  const hg = await startHoneygate(`
listeners:
  - name: f
    bind: "127.0.0.1:0"
routes:
  - forward: pot
backends:
  pot:
    servers: ["127.0.0.1:${nginx.port}"]
    source: proxy-v2
    health: { interval: 100ms, timeout: 1s, rise: 1, fall: 1 }
`);
  t.after(() => hg.close());
  const errorLog = path.join(nginx.dir, 'error.log');
  await waitFor(
    'a few health checks to reach nginx',
    () => (fs.readFileSync(errorLog, 'utf8').match(/client .* connected to/g) ?? []).length >= 3,
    10_000,
  );
  assert.doesNotMatch(fs.readFileSync(errorLog, 'utf8'), /broken header/);
  const reply = await exchange(hg.port('f'), '');
  assert.equal(reply.data.toString(), `127.0.0.1:${reply.localPort}\n`);
});
