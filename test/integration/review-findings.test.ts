// Regressions from the data-path review: each test opens with the bug it guards.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, describe, test } from 'node:test';
import { connect, exchange, readAll } from '../helpers/client.js';
import { startHoneygate } from '../helpers/honeygate.js';
import { startEchoServer, startReplyOnEndServer } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { proxyV1 } from '../helpers/proxy-header.js';
import { waitFor } from '../helpers/wait.js';

describe('review findings', { timeout: 90_000 }, () => {
  const cleanup: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  // A FIN read by the PROXY-header or peek stage was lost ('end' fires once), so the
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

  // Untrusted peers of an acceptProxy listener escaped the per-source limits while they
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
    cleanup.push(() => hg.close());
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
  });

  // drop closed with unread bytes in the kernel, which sends a reset instead of the FIN
  // it promises (and a reset is a fingerprint).
  test('drop answers with a FIN even when the attacker sent bytes', async () => {
    const hg = await startHoneygate(`
listeners:
  - name: d
    bind: "127.0.0.1:0"
routes:
  - drop: {}
`);
    cleanup.push(() => hg.close());
    const s = await connect(hg.port('d'));
    s.write('hello there');
    const reply = await readAll(s);
    assert.equal(reply.error, null, 'no reset');
    assert.equal(reply.data.length, 0);
  });

  // A reload that renamed a listener re-bound its address while the old socket held it:
  // EADDRINUSE, reload rejected.
  test('a reload may rename the listener that owns an address', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const port = await freePort();
    const cfg = (name: string) => `
listeners:
  - name: ${name}
    bind: "127.0.0.1:${port}"
routes:
  - capture: { timeout: 1s }
`;
    const hg = await startHoneygate(cfg('before'));
    cleanup.push(() => hg.close());
    hg.rewriteConfig(cfg('after'));
    const mark = hg.lines.length;
    hg.signal('SIGHUP');
    const r = await hg.waitForLine(
      (l) => l.msg === 'config reloaded' || l.msg === 'reload rejected',
      5000,
      mark,
    );
    assert.equal(r.msg, 'config reloaded', JSON.stringify(r));
    const flow = await exchange(port, 'hi');
    await hg.waitForEvents((all) => all.some((e) => e.src.port === flow.localPort && e.listener === 'after'));
  });

  // SIGHUP or SIGUSR1 during the grace period took their default action and killed the
  // process before the events were flushed.
  test('signals during the grace period neither kill honeygate nor lose events', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const hg = await startHoneygate(`
listeners:
  - name: f
    bind: "127.0.0.1:0"
routes:
  - forward: e
backends:
  e: { servers: ["127.0.0.1:${echo.port}"] }
limits: { grace: 2s }
`);
    cleanup.push(() => hg.close());
    const open = await connect(hg.port('f'));
    cleanup.push(() => open.destroy());
    await waitFor('the flow to reach the honeypot', () => echo.open === 1);
    const mark = hg.lines.length;
    hg.signal('SIGTERM');
    await hg.waitForLine((l) => l.msg === 'stopping', 5000, mark);
    hg.signal('SIGHUP');
    hg.signal('SIGUSR1');
    assert.equal(await hg.stop(), 0);
    const events = await hg.events();
    assert.equal(events.filter((e) => e.type === 'flow').length, 1);
    assert.equal(events[0]!.closeReason, 'shutdown');
  });

  // Bytes read by the peek stage were lost from the event when the attacker reset there.
  test('an attacker who resets during the peek keeps its bytes in the event', async () => {
    const hg = await startHoneygate(`
listeners:
  - name: p
    bind: "127.0.0.1:0"
routes:
  - match: { protocol: [ssh] }
    capture: {}
  - capture: {}
`);
    cleanup.push(() => hg.close());
    const s = await connect(hg.port('p'));
    const localPort = s.localPort;
    await new Promise<void>((resolve) => s.write('GET /secret-exploit', () => resolve()));
    // Reset only once honeygate has read the bytes (its receive queue is empty again):
    // unread bytes would be dropped by the kernel, which is not what this test is about.
    await waitFor('honeygate to read the bytes', () => receiveQueue(hg.port('p'), localPort!) === 0);
    s.resetAndDestroy();
    const events = await hg.waitForEvents((all) => all.some((e) => e.src.port === localPort));
    const flow = events.find((e) => e.src.port === localPort)!;
    assert.equal(flow.closeReason, 'client-reset');
    assert.equal(flow.firstBytes.toString(), 'GET /secret-exploit');
    assert.equal(flow.bytesIn, 19);
  });
});

/** Bytes waiting in the receive queue of the local socket on `port` connected to `peerPort` (from /proc/net/tcp). */
function receiveQueue(port: number, peerPort: number): number | undefined {
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hex(port)}`) && f[2]?.endsWith(`:${hex(peerPort)}`))
      return Number.parseInt(f[4]!.split(':')[1]!, 16);
  }
  return undefined;
}
