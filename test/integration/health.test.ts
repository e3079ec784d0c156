// Health checks and fallback: a stopped server stops getting flows; with every server
// down the flow is captured instead (and the event still names the backend); a failed
// connect is retried on the other server.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { exchange } from '../helpers/client.js';
import { type Honeygate, type LogRecord, startHoneygate } from '../helpers/honeygate.js';
import { startBannerServer, type TcpServer } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';

describe('health checks and fallback', { timeout: 60_000 }, () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  /** A health line (UP/DOWN) for one server, written after log index `from`. */
  const healthLine = (hg: Honeygate, port: number, state: 'UP' | 'DOWN', from = 0) =>
    hg.waitForLine(
      (r: LogRecord) =>
        typeof r.msg === 'string' && r.msg.includes(`is ${state}`) && r.raw.includes(`:${port}`),
      10_000,
      from,
    );

  test('a stopped server gets no flows; with both stopped the flow falls back to capture', async () => {
    const a: TcpServer = await startBannerServer('A');
    const b: TcpServer = await startBannerServer('B');
    cleanup.push(
      () => a.stop(),
      () => b.stop(),
    );
    const hg = await startHoneygate(`
listeners:
  - name: web
    bind: "127.0.0.1:0"
routes:
  - forward: pots
backends:
  pots:
    servers: ["127.0.0.1:${a.port}", "127.0.0.1:${b.port}"]
    balance: roundrobin
    health: { interval: 100ms, timeout: 500ms, rise: 1, fall: 1 }
    fallback: capture
limits: { perSourceRate: 10000/s }
`);
    cleanup.push(() => hg.close());
    const port = hg.port('web');

    const first: string[] = [];
    for (let i = 0; i < 4; i++) first.push((await exchange(port, 'hi')).data.toString());
    assert.deepEqual([...new Set(first)].sort(), ['A', 'B'], `answers: ${first.join(',')}`);

    const mark = hg.lines.length;
    await a.stop();
    await healthLine(hg, a.port, 'DOWN', mark);
    const later: string[] = [];
    for (let i = 0; i < 6; i++) later.push((await exchange(port, 'hi')).data.toString());
    assert.deepEqual(later, Array(6).fill('B'));

    const mark2 = hg.lines.length;
    await b.stop();
    await healthLine(hg, b.port, 'DOWN', mark2);
    const captured = await exchange(port, 'hello');
    assert.equal(captured.data.length, 0, 'capture answers nothing');
    const evs = await hg.waitForEvents((all) => all.some((e) => e.src.port === captured.localPort));
    const flow = evs.find((e) => e.src.port === captured.localPort)!;
    assert.equal(flow.action, 'capture');
    assert.equal(flow.backend, 'pots');
    assert.equal(flow.firstBytes.toString(), 'hello');
  });

  test('a refused connect is retried on the other server', async () => {
    const dead = await freePort(); // nothing listens here: connect is refused
    const b = await startBannerServer('B');
    cleanup.push(() => b.stop());
    const hg = await startHoneygate(`
listeners:
  - name: web
    bind: "127.0.0.1:0"
routes:
  - forward: pots
backends:
  pots:
    servers: ["127.0.0.1:${dead}", "127.0.0.1:${b.port}"]
    balance: roundrobin
    retries: 1
limits: { perSourceRate: 10000/s }
`);
    cleanup.push(() => hg.close());
    const port = hg.port('web');
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push((await exchange(port, 'hi')).data.toString());
    assert.deepEqual(got, ['B', 'B', 'B', 'B']);
    const evs = await hg.waitForEvents((all) => all.filter((e) => e.type === 'flow').length >= 4);
    for (const e of evs.filter((x) => x.type === 'flow')) {
      assert.equal(e.server, `127.0.0.1:${b.port}`);
      assert.equal(e.action, 'forward');
    }
  });
});
