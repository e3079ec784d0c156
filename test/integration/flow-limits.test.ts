// Per-flow limits of the pump, and what a PROXY v2 honeypot receives: the original
// addresses and a UNIQUE_ID equal to the event id, so its logs join honeygate's events.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { parseProxyHeader } from '../../src/net/proxy-protocol.js';
import { connect, exchange, readAll, readUntil } from '../helpers/client.js';
import { startHoneygate } from '../helpers/honeygate.js';
import { needs, startEchoServer, startNginxProxyProtocol, startTcpServer } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
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

// Regression: the fd budget ignored the process's real limit. Under `ulimit -n` far below
// 2 x maxConnections, flows ran into EMFILE; now new flows are refused at accept once the
// limit (less a reserve) is reached, open flows keep working, and /healthz still answers.
describe('the open-file limit', { timeout: 60_000 }, () => {
  test('caps concurrent flows below RLIMIT_NOFILE and keeps /healthz answering', async () => {
    const adminPort = await freePort();
    const hg = await startHoneygate(
      `
listeners:
  - name: c
    bind: "127.0.0.1:0"
routes:
  - capture: { timeout: 30s }
limits: { perSource: 1000, perSourceRate: 10000/s, rejectLogInterval: 200ms }
admin: { listen: "127.0.0.1:${adminPort}" }
`,
      { openFiles: 200 },
    );
    const held: net.Socket[] = [];
    try {
      const warn = await hg.waitForLine((r) => r.openFileLimit === 200);
      const flows = warn.flows as number; // (200 - 1 listener - 64 reserve) / 2
      assert.equal(flows, 67);
      for (let i = 0; i < flows; i++) {
        const s = await connect(hg.port('c'));
        s.write(`flow ${i}\n`);
        held.push(s);
      }
      // Each held flow is open (its first bytes were read) before the one over the cap comes.
      await waitFor('every held flow admitted', async () => {
        const res = await fetch(`http://127.0.0.1:${adminPort}/api/status`);
        return ((await res.json()) as { gateway: { openFlows: number } }).gateway.openFlows === flows;
      });
      // Refused with a reset: during the handshake's completion or on the first read.
      const refused = await connect(hg.port('c')).then(
        async (over) => {
          const reply = await readAll(over);
          return reply.error !== null && reply.data.length === 0;
        },
        (err: NodeJS.ErrnoException) => err.code === 'ECONNRESET',
      );
      assert.ok(refused, 'the flow over the cap is refused');
      const health = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
      assert.equal(health.status, 200);
      const events = await hg.waitForEvents((all) => all.some((e) => e.closeReason === 'limit-global'));
      assert.equal(events.find((e) => e.closeReason === 'limit-global')!.type, 'rejected');
    } finally {
      for (const s of held) s.destroy();
      await hg.close();
    }
  });
});

// Regression: when descriptors ran out anyway (the limit lowered under a running gateway,
// or the host's table full: ENFILE), a forwarded flow blamed the honeypot
// (server-unavailable ... EMFILE) and the listener waited on a full queue. Now the flow
// ends as fd-exhausted, new flows are shed (refused as fd-exhausted) while open ones keep
// their descriptors, /healthz answers once some close, and new flows are served again.
describe('running out of file descriptors', { timeout: 60_000 }, () => {
  test('sheds new flows as fd-exhausted, never blames the honeypot, and recovers', async (t) => {
    const echo = await startEchoServer();
    const adminPort = await freePort();
    const hg = await startHoneygate(`
listeners:
  - name: f
    bind: "127.0.0.1:0"
routes:
  - name: echo
    forward: echo
backends:
  echo: { servers: ["127.0.0.1:${echo.port}"] }
limits: { perSource: 100000, perSourceRate: 100000/s, rejectLogInterval: 200ms }
admin: { listen: "127.0.0.1:${adminPort}" }
`);
    const held: net.Socket[] = [];
    t.after(async () => {
      for (const s of held) s.destroy();
      await hg.close();
      await echo.stop();
    });
    const pid = hg.proc.pid!;
    // Room for 25 forwarded flows (two descriptors each) and 10 descriptors more.
    const base = fs.readdirSync(`/proc/${pid}/fd`).length;
    const limit = base + 60;
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${limit}:${limit}`]);
    const echoed = async (s: net.Socket, text: string) => {
      s.write(text);
      return (await readUntil(s, (d) => d.toString() === text, 3000).then(
        () => true,
        () => false,
      )) as boolean;
    };
    for (let i = 0; i < 25; i++) {
      const s = await connect(hg.port('f'));
      held.push(s);
      assert.ok(await echoed(s, `held ${i}`), `held flow ${i} is served`);
    }
    // A burst past what is left: some served, the rest shed, none hanging in the queue. A shed
    // flow's reset may reach the client before its connect completes (seen in CI): shed too.
    const burst = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const s = await connect(hg.port('f')).catch((err: NodeJS.ErrnoException) => err.code ?? err.message);
        if (typeof s === 'string') return s === 'ECONNRESET' ? 'shed' : `refused (${s})`;
        const ok = await echoed(s, `burst ${i}`);
        s.destroy();
        return ok ? 'served' : 'shed';
      }),
    );
    assert.ok(burst.includes('shed'), `some of the burst were shed: ${burst.join(' ')}`);
    for (const [i, s] of held.entries())
      assert.ok(await echoed(s, `still ${i}`), `held flow ${i} still works`);
    for (const s of held) s.destroy();
    // Descriptors free again: the admin API answers and new flows are served.
    await waitFor(
      '/healthz to answer',
      async () => (await fetch(`http://127.0.0.1:${adminPort}/healthz`)).ok,
      10_000,
    );
    await waitFor(
      'a new flow served again',
      async () => {
        const s = await connect(hg.port('f'));
        try {
          return await echoed(s, 'again');
        } finally {
          s.destroy();
        }
      },
      10_000,
    );
    // Without the relay, libuv may shed the whole burst at accept, unseen (docs/architecture.md,
    // Known limits): an fd-exhausted record is certain only when the relay accepts.
    const relayed = process.env.HONEYGATE_RELAY !== 'off';
    const events = await hg.waitForEvents(
      (all) => !relayed || all.some((e) => e.closeReason === 'fd-exhausted'),
      10_000,
    );
    const blamed = events.filter(
      (e) =>
        e.closeReason === 'server-unavailable' ||
        (/E[MN]FILE/.test(e.detail ?? '') && e.closeReason !== 'fd-exhausted'),
    );
    assert.deepEqual(blamed, [], 'no flow blames the honeypot for our descriptors');
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const refusedFd = /^honeygate_refused_flows_total\{reason="fd-exhausted"\} (\d+)/m.exec(metrics);
    const flowsFd = /^honeygate_flows_total\{[^}]*close_reason="fd-exhausted"\} (\d+)/m.exec(metrics);
    if (relayed) assert.ok(Number(refusedFd?.[1] ?? 0) + Number(flowsFd?.[1] ?? 0) > 0, metrics);
    // #13: flows carry their route and detected protocol; refusals their reason.
    assert.match(
      metrics,
      /^honeygate_flows_total\{listener="f",route="echo",action="forward",protocol="none",close_reason="client-closed"\} \d+/m,
    );
    assert.match(metrics, /^honeygate_refused_flows_total\{reason="limit-rate"\} 0$/m);
  });
});
