// Issue 18: the batched datagram path (src/gateway/udp/port.ts over the addon's recvmmsg and
// sendmmsg; Node's dgram with HONEYGATE_RELAY=off) keeps every datagram and every count. 20
// flows each send 40 datagrams, 4 in flight (more would overrun the sockets' receive
// buffers, where UDP drops by design), of sizes from 0 to 600 bytes, through a `bind`
// listener forwarding to a UDP echo server: each flow gets its own datagrams back, in
// order, and its event counts exactly 40 each way and the bytes of each.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, test } from 'node:test';
import { type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { waitFor } from '../helpers/wait.js';

const FLOWS = 20;
const PER_FLOW = 40;
const WINDOW = 4;

let echo: dgram.Socket;
let hg: Honeygate;

/** Flow f's datagram i: a size from 0 to 600 bytes, its bytes naming f and i. */
function datagram(f: number, i: number): Buffer {
  const size = i === 0 ? 0 : (i * 37 + f * 11) % 601;
  return Buffer.alloc(size, `${f}:${i};`);
}

before(async () => {
  echo = dgram.createSocket('udp4');
  echo.on('message', (msg, rinfo) => echo.send(msg, rinfo.port, rinfo.address));
  await new Promise<void>((resolve) => echo.bind(0, '127.0.0.1', resolve));
  // Every flow comes from 127.0.0.1: the guard's per-source caps opened up, its ratio kept.
  hg = await startHoneygate(`
limits:
  udp: { idleTimeout: 500ms }
  amplification: { bytesPerSecond: 1GiB, packetsPerSecond: 1000000, unanswered: 1000 }
listeners:
  - name: udp
    transport: udp
    bind: "127.0.0.1:0"
routes:
  - forward: echo
backends:
  echo:
    servers: ["127.0.0.1:${echo.address().port}"]
`);
});

after(async () => {
  await hg?.close();
  echo?.close();
});

test('every datagram of 20 flows comes back in order, and each event counts them exactly', {
  timeout: 60_000,
}, async () => {
  const clients = await Promise.all(
    Array.from({ length: FLOWS }, async (_, f) => {
      const s = dgram.createSocket('udp4');
      const got: Buffer[] = [];
      s.on('message', (m) => {
        got.push(m);
        const next = got.length + WINDOW - 1;
        if (next < PER_FLOW) s.send(datagram(f, next), hg.port('udp'), '127.0.0.1');
      });
      await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
      return { s, got };
    }),
  );
  try {
    const port = hg.port('udp');
    for (let i = 0; i < WINDOW; i++)
      for (const [f, c] of clients.entries()) c.s.send(datagram(f, i), port, '127.0.0.1');
    await waitFor('every echo', () => clients.every((c) => c.got.length === PER_FLOW), 20_000, 20);
    for (const [f, c] of clients.entries())
      for (let i = 0; i < PER_FLOW; i++)
        assert.deepEqual(c.got[i], datagram(f, i), `flow ${f} datagram ${i}`);

    const events = await hg.waitForEvents((es) => es.filter((e) => e.listener === 'udp').length >= FLOWS);
    for (const [f, c] of clients.entries()) {
      const e = events.find((x) => x.src.port === c.s.address().port)! as (typeof events)[number] & {
        udp?: { datagramsIn: number; datagramsOut: number; heldDatagrams: number; heldBytes: number };
      };
      assert.ok(e, `the event of flow ${f}`);
      let bytes = 0;
      for (let i = 0; i < PER_FLOW; i++) bytes += datagram(f, i).length;
      assert.deepEqual(e.udp, {
        datagramsIn: PER_FLOW,
        datagramsOut: PER_FLOW,
        heldDatagrams: 0,
        heldBytes: 0,
      });
      assert.equal(e.bytesIn, bytes);
      assert.equal(e.bytesOut, bytes);
      assert.equal(e.detail, null);
    }
  } finally {
    for (const c of clients) c.s.close();
  }
});
