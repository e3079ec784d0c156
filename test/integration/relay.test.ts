// Forwarded flows as a user checks them, on both data paths: the native relay
// (native/relay.cc, which copies a flow JS never needs to read) and Node
// (HONEYGATE_RELAY=off). The same cases run on each, and each asserts what the attacker and
// the honeypot saw and what the event store recorded.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { nativeAvailable } from '../../src/net/native.js';
import { parseProxyHeader } from '../../src/net/proxy-protocol.js';
import { connect, exchange, readAll } from '../helpers/client.js';
import { type EventRecord, type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { startReplyOnEndServer, startTcpServer, type TcpServer } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { waitFor, withTimeout } from '../helpers/wait.js';

const native = nativeAvailable();
const PATHS = [
  // Any value but "off" wants the relay; set so an outer HONEYGATE_RELAY=off cannot leak in.
  {
    name: 'native relay',
    env: { HONEYGATE_RELAY: 'on' },
    skip: native.ok ? false : `the native addon is not built (${native.reason})`,
  },
  { name: 'Node (HONEYGATE_RELAY=off)', env: { HONEYGATE_RELAY: 'off' }, skip: false },
] as const;

const FIRST_BYTES = 64; // limits.firstBytes of every honeygate here
const BULK = 8 * 1024 * 1024; // many times the relay's 256 KiB read buffer
const CHUNK = 64 * 1024;

/** `n` bytes of a repeating pattern starting at `seed`, so a shifted or cut copy shows. */
function pattern(n: number, seed = 0): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** The one flow event of `listener` from the attacker's port `srcPort`, once it is stored. */
async function flowEvent(hg: Honeygate, listener: string, srcPort: number): Promise<EventRecord> {
  const mine = (e: EventRecord) => e.type === 'flow' && e.listener === listener && e.src.port === srcPort;
  const all = await hg.waitForEvents((es) => es.some(mine));
  return all.find(mine)!;
}

/** Writes `data` in 64 KiB chunks and waits for 'drain' whenever the socket is full. */
class Sender {
  written = 0;
  blocked = false;
  done = false;
  stalls = 0; // times write() found the socket full
  private waiters: (() => void)[] = [];

  constructor(
    private readonly socket: net.Socket,
    private readonly data: Buffer,
  ) {}

  async run(): Promise<void> {
    for (let off = 0; off < this.data.length; off += CHUNK) {
      const part = this.data.subarray(off, off + CHUNK);
      this.written += part.length;
      if (!this.socket.write(part)) {
        this.blocked = true;
        this.stalls++;
        this.wake();
        await new Promise<void>((resolve, reject) => {
          const onClose = () => reject(new Error(`closed after ${this.written} bytes written`));
          this.socket.once('close', onClose);
          this.socket.once('drain', () => {
            this.socket.off('close', onClose);
            resolve();
          });
        });
        this.blocked = false;
      }
    }
    this.done = true;
    this.wake();
  }

  /** Resolves once the sender is blocked on a full socket (now or later), or is done. */
  stuckOrDone(): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.done || this.blocked) resolve();
        else this.waiters.push(check);
      };
      check();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/**
 * Reads `socket` to its end as a slow consumer would: at the start and after each of the
 * first few MiB it stops reading until `sender` is stuck on the full path (backpressure
 * reached it) or has written everything. Resolves to the byte count and sha256 of what arrived.
 */
function slowRead(socket: net.Socket, sender: Sender): Promise<{ bytes: number; sha: string }> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  let nextPause = 1024 * 1024;
  const stall = () => {
    socket.pause();
    void sender.stuckOrDone().then(() => socket.resume());
  };
  // Paused before the first byte: the kernel has not grown the receive buffer for a fast reader.
  stall();
  return new Promise((resolve, reject) => {
    socket.on('data', (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
      if (bytes >= nextPause && nextPause <= 3 * 1024 * 1024) {
        nextPause += 1024 * 1024;
        stall();
      }
    });
    socket.once('end', () => resolve({ bytes, sha: hash.digest('hex') }));
    socket.once('close', () => reject(new Error(`closed before its end after ${bytes} bytes`)));
  });
}

for (const path of PATHS) {
  describe(`forwarded flows: ${path.name}`, { skip: path.skip, timeout: 180_000 }, () => {
    const cleanup: (() => unknown)[] = [];
    let hg: Honeygate; // cases 1-4 and 7-9
    let limited: Honeygate; // cases 5 and 6: maxBytesIn 1000, idleTimeout 300ms
    const REPLY = pattern(600_000, 3); // more than two of the relay's 256 KiB reads
    let reqPot: TcpServer;
    let closerPot: TcpServer;
    let resetPot: TcpServer;
    let proxyPot: TcpServer;
    let livePot: TcpServer;
    let manyPot: TcpServer;
    let sinkPot: TcpServer;
    let deadPort: number;
    const bulk = {
      up: crypto.randomBytes(BULK), // attacker -> honeypot
      down: crypto.randomBytes(BULK),
      // what the honeypot read, and how its sending went
      seen: null as { bytes: number; sha: string } | null,
      sender: null as Sender | null,
      port: 0,
    };

    before(async () => {
      const pots: TcpServer[] = [];
      const pot = async (p: Promise<TcpServer>) => {
        const s = await p;
        pots.push(s);
        return s;
      };
      cleanup.push(() => Promise.all(pots.map((p) => p.stop())));
      reqPot = await pot(startReplyOnEndServer(() => REPLY));
      // Answers the first bytes and closes at once, the attacker's side still open.
      closerPot = await pot(startTcpServer((s) => s.once('data', () => s.end('bye'))));
      resetPot = await pot(
        startTcpServer((s, i) => {
          s.on('data', () => {
            if (resetPot.received[i]!.toString().startsWith('reset me')) s.resetAndDestroy();
          });
          s.once('end', () => s.end());
        }),
      );
      proxyPot = await pot(startReplyOnEndServer(() => 'ok'));
      livePot = await pot(startReplyOnEndServer((d) => `live got ${d.length}`));
      manyPot = await pot(startReplyOnEndServer((d) => `re: ${d}`));
      // Reads everything, replies nothing, closes when the attacker does.
      sinkPot = await pot(startTcpServer((s) => s.once('end', () => s.end())));
      deadPort = await freePort();

      const bulkSockets = new Set<net.Socket>();
      const bulkServer = net.createServer({ allowHalfOpen: true }, (socket) => {
        socket.on('error', () => {});
        bulkSockets.add(socket);
        socket.once('close', () => bulkSockets.delete(socket));
        const sender = new Sender(socket, bulk.down);
        bulk.sender = sender;
        void Promise.all([slowRead(socket, sender), sender.run()]).then(
          ([seen]) => {
            bulk.seen = seen;
            socket.end();
          },
          () => socket.destroy(),
        );
      });
      await new Promise<void>((resolve) => bulkServer.listen(0, '127.0.0.1', resolve));
      bulk.port = (bulkServer.address() as net.AddressInfo).port;
      cleanup.push(
        () =>
          new Promise((resolve) => {
            for (const socket of bulkSockets) socket.destroy();
            bulkServer.close(resolve);
          }),
      );

      const one = (name: string, backend: string, match = '') => ({ name, backend, match });
      const cases = [
        one('req', `{ servers: ["127.0.0.1:${reqPot.port}"] }`),
        one('closer', `{ servers: ["127.0.0.1:${closerPot.port}"] }`),
        one('bulk', `{ servers: ["127.0.0.1:${bulk.port}"] }`),
        one('reset', `{ servers: ["127.0.0.1:${resetPot.port}"] }`),
        one('proxied', `{ servers: ["127.0.0.1:${proxyPot.port}"], source: proxy-v2 }`),
        one('retry', `{ servers: ["127.0.0.1:${deadPort}", "127.0.0.1:${livePot.port}"], retries: 1 }`),
        one('many', `{ servers: ["127.0.0.1:${manyPot.port}"] }`),
        // routed on the peeked protocol: Node reads first, then hands the flow back to the relay
        one(
          'sniffed',
          `{ servers: ["127.0.0.1:${deadPort}", "127.0.0.1:${livePot.port}"], retries: 1 }`,
          ', protocol: http',
        ),
      ];
      const config = (list: { name: string; backend: string; match: string }[], limits: string) => `
listeners:
${list.map((c) => `  - { name: ${c.name}, bind: "127.0.0.1:0" }`).join('\n')}
routes:
${list.map((c) => `  - { name: to-${c.name}, match: { listeners: [${c.name}]${c.match} }, forward: ${c.name} }`).join('\n')}
backends:
${list.map((c) => `  ${c.name}: ${c.backend}`).join('\n')}
limits: { perSourceRate: 100000/s, perSource: 1000, firstBytes: ${FIRST_BYTES}, ${limits} }
`;
      hg = await startHoneygate(config(cases, 'idleTimeout: 60s'), { env: path.env });
      cleanup.push(() => hg.close());
      const sink = `{ servers: ["127.0.0.1:${sinkPot.port}"] }`;
      limited = await startHoneygate(
        `${config([one('capped', sink), one('idle', sink)], 'maxBytesIn: 1000, idleTimeout: 300ms')}
events: { sqlite: "{{dir}}/events.db", batch: 50ms, updateInterval: 300ms }
`,
        { env: path.env },
      );
      cleanup.push(() => limited.close());
    });
    after(async () => {
      for (const c of cleanup.reverse()) await c();
    });

    test('request/response with the attacker half-closing first', async () => {
      const request = pattern(1000);
      const reply = await exchange(hg.port('req'), request);
      assert.equal(reply.error, null);
      assert.ok(
        reply.data.equals(REPLY),
        `the whole reply: got ${reply.data.length} of ${REPLY.length} bytes`,
      );
      assert.ok(
        reqPot.received.some((r) => r.equals(request)),
        'the honeypot read the whole request',
      );

      const e = await flowEvent(hg, 'req', reply.localPort);
      assert.equal(e.closeReason, 'client-closed');
      assert.equal(e.bytesIn, request.length);
      assert.equal(e.bytesOut, REPLY.length);
      assert.ok(e.firstBytes.equals(request.subarray(0, FIRST_BYTES)), 'first bytes: the start, capped');
      assert.equal(e.route, 'to-req');
      assert.equal(e.action, 'forward');
      assert.equal(e.backend, 'req');
      assert.equal(e.server, `127.0.0.1:${reqPot.port}`);
      assert.equal(e.sourceMode, 'none');
      assert.deepEqual(e.dst, { ip: '127.0.0.1', port: hg.port('req') });
    });

    test('the honeypot closes first while the attacker still has its side open', async () => {
      const socket = await connect(hg.port('closer'));
      const localPort = socket.localPort!;
      const got = readAll(socket);
      socket.write('hello'); // and never end(): the honeypot's FIN must arrive on its own
      const reply = await got;
      assert.equal(reply.error, null);
      assert.equal(reply.data.toString(), 'bye');

      const e = await flowEvent(hg, 'closer', localPort);
      assert.equal(e.closeReason, 'server-closed');
      assert.equal(e.bytesIn, 5);
      assert.equal(e.bytesOut, 3);
      assert.equal(e.firstBytes.toString(), 'hello');
      assert.equal(e.server, `127.0.0.1:${closerPot.port}`);
    });

    test('8 MiB each way arrive intact through slow readers', async () => {
      const socket = await connect(hg.port('bulk'));
      const localPort = socket.localPort!;
      const sender = new Sender(socket, bulk.up);
      // The attacker reads slowly too, waiting on the honeypot's sender.
      const received = withTimeout(
        waitFor('the honeypot to accept', () => bulk.sender ?? undefined).then((s) => slowRead(socket, s)),
        60_000,
        'the 8 MiB reply',
      );
      await withTimeout(sender.run(), 60_000, 'sending 8 MiB');
      socket.end();
      const back = await received;
      assert.equal(back.bytes, BULK);
      assert.equal(back.sha, sha256(bulk.down), 'honeypot -> attacker arrived intact');
      const seen = await waitFor('the honeypot to read to the end', () => bulk.seen ?? undefined);
      assert.equal(seen.bytes, BULK);
      assert.equal(seen.sha, sha256(bulk.up), 'attacker -> honeypot arrived intact');

      const e = await flowEvent(hg, 'bulk', localPort);
      assert.equal(e.closeReason, 'client-closed');
      assert.equal(e.bytesIn, BULK);
      assert.equal(e.bytesOut, BULK);
      assert.ok(e.firstBytes.equals(bulk.up.subarray(0, FIRST_BYTES)));
      assert.equal(e.server, `127.0.0.1:${bulk.port}`);
    });

    test("a reset on either side ends the flow as that side's reset", async () => {
      // The honeypot resets.
      const reply = await exchange(hg.port('reset'), 'reset me', { end: false });
      assert.equal(reply.data.length, 0);
      const byPot = await flowEvent(hg, 'reset', reply.localPort);
      assert.equal(byPot.closeReason, 'server-reset');
      assert.equal(byPot.bytesIn, 8);
      assert.equal(byPot.bytesOut, 0);
      assert.equal(byPot.firstBytes.toString(), 'reset me');

      // The attacker resets once the honeypot has its bytes.
      const index = resetPot.accepted;
      const socket = await connect(hg.port('reset'));
      const localPort = socket.localPort!;
      socket.write('hold on');
      await waitFor(
        'the honeypot to get the bytes',
        () => resetPot.received[index]?.toString() === 'hold on',
      );
      socket.resetAndDestroy();
      await waitFor('the honeypot connection to close', () => resetPot.open === 0);
      const byAttacker = await flowEvent(hg, 'reset', localPort);
      assert.equal(byAttacker.closeReason, 'client-reset');
      assert.equal(byAttacker.bytesIn, 7);
      assert.equal(byAttacker.firstBytes.toString(), 'hold on');
    });

    test('maxBytesIn ends the flow with byte-cap and closes the attacker', async () => {
      const payload = pattern(5000, 1);
      const index = sinkPot.accepted;
      const reply = await exchange(limited.port('capped'), payload, { end: false });
      assert.equal(reply.data.length, 0);
      const e = await flowEvent(limited, 'capped', reply.localPort);
      assert.equal(e.closeReason, 'byte-cap');
      assert.equal(e.detail, 'maxBytesIn');
      assert.ok(e.bytesIn > 1000 && e.bytesIn <= payload.length, `bytesIn ${e.bytesIn}`);
      assert.ok(e.firstBytes.equals(payload.subarray(0, FIRST_BYTES)));
      // Nothing past the cap is passed on: the chunk that crosses it is dropped.
      await waitFor('the honeypot connection to close', () => sinkPot.open === 0);
      const passed = sinkPot.received[index]?.length ?? 0;
      assert.ok(passed <= 1000, `the honeypot got ${passed} bytes`);
    });

    test('idleTimeout ends an idle flow, not an active one', async () => {
      const idle = await connect(limited.port('idle'));
      const idlePort = idle.localPort!;
      const started = Date.now();
      const idleReply = readAll(idle);
      idle.write('x');
      assert.equal((await idleReply).error, null);
      const waited = Date.now() - started;
      assert.ok(waited >= 250 && waited < 3000, `closed after ${waited} ms`);
      const e = await flowEvent(limited, 'idle', idlePort);
      assert.equal(e.closeReason, 'idle-timeout');
      assert.equal(e.bytesIn, 1);
      assert.equal(e.firstBytes.toString(), 'x', 'first bytes of a flow ended by a timeout');
      assert.ok(e.durationMs >= 300, `durationMs ${e.durationMs}`);

      // Three idle timeouts long, one write per 100 ms: the sweep must see the counters move.
      const active = await connect(limited.port('idle'));
      const activePort = active.localPort!;
      let closedEarly = false;
      active.once('end', () => {
        closedEarly = true;
      });
      const activeReply = readAll(active);
      for (let i = 0; i < 10; i++) {
        assert.equal(closedEarly, false, `cut after ${i} writes`);
        active.write('ping');
        await sleep(100); // the deliberate cadence under test, not a wait for a condition
      }
      assert.equal(closedEarly, false, 'cut after 10 writes');
      active.end();
      assert.equal((await activeReply).error, null);
      const a = await flowEvent(limited, 'idle', activePort);
      assert.equal(a.closeReason, 'client-closed');
      assert.equal(a.bytesIn, 40);
      assert.ok(a.durationMs >= 1000, `durationMs ${a.durationMs}`);
      // Its update events (every 300 ms while open) carry the counters and first bytes so far.
      const updates = (await limited.events()).filter(
        (e) => e.type === 'update' && e.src.port === activePort,
      );
      assert.ok(updates.length >= 2, `${updates.length} update events`);
      for (const u of updates) {
        assert.ok(u.bytesIn >= 4 && u.bytesIn <= 40, `update bytesIn ${u.bytesIn}`);
        assert.equal(u.firstBytes.toString(), 'ping'.repeat(u.bytesIn / 4), 'update first bytes');
      }
    });

    test('a flow routed on its protocol reaches the honeypot whole, peeked bytes first, after a retry', async () => {
      const request = Buffer.concat([
        Buffer.from('POST /up HTTP/1.1\r\nHost: pot\r\n\r\n'),
        pattern(300_000),
      ]);
      const reply = await exchange(hg.port('sniffed'), request);
      assert.equal(reply.error, null);
      assert.equal(reply.data.toString(), `live got ${request.length}`);
      assert.ok(
        livePot.received.some((r) => r.equals(request)),
        'the honeypot read the request once, in order',
      );
      const e = await flowEvent(hg, 'sniffed', reply.localPort);
      assert.equal(e.closeReason, 'client-closed');
      assert.equal(e.protocol, 'http');
      assert.equal(e.route, 'to-sniffed');
      assert.equal(e.server, `127.0.0.1:${livePot.port}`);
      assert.equal(e.bytesIn, request.length);
      assert.equal(e.bytesOut, reply.data.length);
      assert.ok(e.firstBytes.equals(request.subarray(0, FIRST_BYTES)), 'first bytes: the start, capped');
    });

    test('a proxy-v2 honeypot reads the attacker address, then the payload', async () => {
      const index = proxyPot.accepted;
      const reply = await exchange(hg.port('proxied'), 'payload after the header');
      assert.equal(reply.data.toString(), 'ok');
      const got = proxyPot.received[index]!;
      assert.ok(got.subarray(0, 12).equals(Buffer.from('0d0a0d0a000d0a515549540a', 'hex')), 'v2 signature');
      const r = parseProxyHeader(got, { v1: false, v2: true });
      assert.equal(r.status, 'done');
      if (r.status !== 'done') return;
      assert.deepEqual(r.header.src, { ip: '127.0.0.1', port: reply.localPort });
      assert.deepEqual(r.header.dst, { ip: '127.0.0.1', port: hg.port('proxied') });
      assert.equal(got.subarray(r.consumed).toString(), 'payload after the header');

      const e = await flowEvent(hg, 'proxied', reply.localPort);
      assert.equal(e.closeReason, 'client-closed');
      assert.equal(e.sourceMode, 'proxy-v2');
      assert.equal(e.bytesIn, 'payload after the header'.length, 'the header is not attacker bytes');
      assert.equal(e.bytesOut, 2);
      assert.equal(r.header.uniqueId?.toString('ascii'), e.id);
    });

    test('a refusing server is retried on the next one', async () => {
      // Roundrobin starts at the first server: the closed port, every other flow.
      const replies = [await exchange(hg.port('retry'), 'one'), await exchange(hg.port('retry'), 'two')];
      assert.deepEqual(
        replies.map((r) => r.data.toString()),
        ['live got 3', 'live got 3'],
      );
      for (const r of replies) {
        const e = await flowEvent(hg, 'retry', r.localPort);
        assert.equal(e.closeReason, 'client-closed');
        assert.equal(e.backend, 'retry');
        assert.equal(e.server, `127.0.0.1:${livePot.port}`);
        assert.equal(e.bytesOut, 10);
      }
      const warned = hg
        .logs()
        .some((l) => l.code === 'HG_ERR_UPSTREAM_CONNECT' && l.server === `127.0.0.1:${deadPort}`);
      assert.ok(warned, 'the refused connect was logged');
    });

    test('500 short flows in batches of 50 all complete', async () => {
      const port = hg.port('many');
      const sent = new Set<string>();
      for (let batch = 0; batch < 10; batch++) {
        const ids = Array.from({ length: 50 }, (_, i) => `flow ${batch * 50 + i}`);
        const replies = await Promise.all(ids.map((id) => exchange(port, id, { replyTimeoutMs: 15_000 })));
        replies.forEach((r, i) => {
          assert.equal(r.error, null);
          assert.equal(r.data.toString(), `re: ${ids[i]}`);
        });
        for (const id of ids) sent.add(id);
      }
      const flows = (all: EventRecord[]) => all.filter((e) => e.type === 'flow' && e.listener === 'many');
      const events = flows(await hg.waitForEvents((all) => flows(all).length >= 500, 30_000));
      assert.equal(events.length, 500);
      const seen = new Set<string>();
      for (const e of events) {
        const id = e.firstBytes.toString();
        assert.ok(sent.has(id) && !seen.has(id), `unexpected or repeated flow "${id}"`);
        seen.add(id);
        assert.equal(e.closeReason, 'client-closed');
        assert.equal(e.bytesIn, id.length);
        assert.equal(e.bytesOut, `re: ${id}`.length);
      }
    });
  });
}
