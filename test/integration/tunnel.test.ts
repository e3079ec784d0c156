// Sensor -> hub over the mutual-TLS HTTP/2 tunnel (docs/tunnel.md), on loopback: two real
// gateways (`honeygate run`), a CA and certificates made with the openssl CLI, and real
// honeypots behind the hub (nginx with proxy_protocol, a TCP echo server that keeps what it
// received). Checks what an operator would: the honeypot sees the attacker's address and
// the same id as both events; the hub refuses foreign certificates and unlisted names;
// flows end as tunnel-lost when the tunnel dies (PING finds a stopped sensor); the sensor
// captures while the hub is away and reconnects; SIGHUP with renewed certificates keeps an
// open flow.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type tls from 'node:tls';
import { encodeProxyV2, PP2_TYPE, parseProxyHeader } from '../../src/net/proxy-protocol.js';
import { connect, exchange, readAll, readUntil } from '../helpers/client.js';
import { type Honeygate, runCli, startHoneygate } from '../helpers/honeygate.js';
import { makeCa, type TestCa } from '../helpers/openssl-pki.js';
import {
  needs,
  type Peer,
  startEchoServer,
  startNginxProxyProtocol,
  type TcpServer,
  tempDir,
} from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { GiveUp, waitFor, withTimeout } from '../helpers/wait.js';

const missing = needs('openssl', 'nginx');

let pki: string;
let ca: TestCa;
let rogue: TestCa;
let echo: TcpServer;
let nginx: Peer;
let hubPort: number;
let frontPort: number;
let webPort: number;
let adminPort: number;
let slowPort = 0;
let slow: net.Server | null = null;
let floodPort = 0;
let flood: net.Server | null = null;
const floodSockets: net.Socket[] = [];
const slowSockets: net.Socket[] = [];
let hub: Honeygate | null = null;
let sensor: Honeygate | null = null;

function hubConfig(): string {
  return `
listeners:
  - name: sensors
    tunnel:
      listen: "127.0.0.1:${hubPort}"
      ca: ${ca.ca}
      cert: ${pki}/hub.pem
      key: ${pki}/hub-key.pem
      sensors: [sensor-a]
      headerTimeout: 2s
routes:
  - name: web-from-a
    match: { sensors: [sensor-a], dstPorts: ["${webPort}"] }
    forward: nginx
  - name: slow
    match: { dstPorts: ["${slowPort}"] }
    forward: slow
  - name: flood
    match: { dstPorts: ["${floodPort}"] }
    forward: flood
  - name: from-a
    match: { sensors: [sensor-a] }
    forward: echo
  - capture: {}
backends:
  echo: { servers: ["127.0.0.1:${echo.port}"], source: proxy-v2 }
  nginx: { servers: ["127.0.0.1:${nginx.port}"], source: proxy-v2 }
  slow: { servers: ["127.0.0.1:${(slow!.address() as net.AddressInfo).port}"], source: proxy-v2 }
  flood: { servers: ["127.0.0.1:${(flood!.address() as net.AddressInfo).port}"], source: proxy-v2 }
limits: { maxBytesIn: 0, perSourceRate: 100000/s }  # the 1,500-flow test comes from one address
events: { sqlite: "{{dir}}/events.db", batch: 50ms, sensor: hub }
`;
}

function sensorConfig(): string {
  return `
listeners:
  - name: front
    bind: "127.0.0.1:${frontPort}"
  - name: web
    bind: "127.0.0.1:${webPort}"
  - name: slow
    bind: "127.0.0.1:${slowPort}"
  - name: flood
    bind: "127.0.0.1:${floodPort}"
limits: { maxBytesIn: 0, perSourceRate: 100000/s }  # the 1,500-flow test comes from one address
routes:
  - forward: farm
backends:
  farm:
    tunnel:
      hub: "127.0.0.1:${hubPort}"
      serverName: hub
      ca: ${ca.ca}
      cert: ${pki}/sensor-a.pem
      key: ${pki}/sensor-a-key.pem
admin: { listen: "127.0.0.1:${adminPort}" }
events: { sqlite: "{{dir}}/events.db", batch: 50ms, sensor: sensor-a }
`;
}

const tunnelsUp = (h: Honeygate) => h.logs().filter((r) => r.msg === 'tunnel up').length;

async function startHub(): Promise<Honeygate> {
  hub = await startHoneygate(hubConfig());
  return hub;
}

before(async () => {
  if (missing) return;
  pki = tempDir('tunnel-pki');
  ca = makeCa(pki, 'farm-ca');
  ca.issue('hub');
  ca.issue('sensor-a');
  ca.issue('sensor-b'); // signed by the farm's CA, not listed by the hub
  rogue = makeCa(path.join(pki, 'rogue'), 'rogue-ca');
  rogue.issue('sensor-a'); // the right name, the wrong CA
  echo = await startEchoServer();
  nginx = await startNginxProxyProtocol();
  hubPort = await freePort();
  frontPort = await freePort();
  webPort = await freePort();
  adminPort = await freePort();
  slowPort = await freePort();
  floodPort = await freePort();
  // A honeypot that accepts and never reads: the tunnel's flow control must hold the attacker back.
  const server = net.createServer((socket) => {
    socket.pause();
    socket.on('error', () => {});
    slowSockets.push(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  slow = server;
  // A honeypot that sends without end (a download): it writes whenever its socket drains.
  flood = net.createServer((socket) => {
    socket.on('error', () => {});
    floodSockets.push(socket);
    const chunk = Buffer.alloc(64 * 1024, 0x62);
    const fill = () => {
      while (!socket.destroyed && socket.write(chunk)) {}
    };
    socket.on('drain', fill);
    fill();
  });
  await new Promise<void>((resolve) => flood!.listen(0, '127.0.0.1', () => resolve()));
  await startHub();
  sensor = await startHoneygate(sensorConfig());
  await sensor.waitForLine((r) => r.msg === 'tunnel up', 10_000);
});

after(async () => {
  await sensor?.close();
  await hub?.close();
  await nginx?.stop();
  await echo?.stop();
  for (const socket of [...slowSockets, ...floodSockets]) socket.destroy();
  (slow as net.Server | null)?.close();
  (flood as net.Server | null)?.close();
  if (pki) fs.rmSync(pki, { recursive: true, force: true });
});

test('a flow through sensor and hub: the honeypot sees the attacker and the same id as both events', {
  skip: missing,
}, async () => {
  const before = echo.accepted;
  const r = await exchange(frontPort, 'hello farm\n', { replyTimeoutMs: 10_000 });
  assert.equal(r.error, null);
  assert.ok(r.data.toString().includes('hello farm\n'), `echoed: ${r.data.toString()}`);
  const got = echo.received[before]!;
  const h = parseProxyHeader(got, { v1: false, v2: true });
  assert.equal(h.status, 'done');
  if (h.status !== 'done') return;
  assert.deepEqual(h.header.src, { ip: '127.0.0.1', port: r.localPort });
  assert.deepEqual(h.header.dst, { ip: '127.0.0.1', port: frontPort });
  const id = h.header.uniqueId!.toString('latin1');
  assert.equal(got.subarray(h.consumed).toString(), 'hello farm\n');

  const atHub = (await hub!.waitForEvents((es) => es.some((e) => e.id === id), 10_000)).find(
    (e) => e.id === id,
  )!;
  assert.equal(atHub.sensor, 'sensor-a'); // from the certificate
  assert.equal(atHub.listener, 'sensors');
  assert.equal(atHub.route, 'from-a');
  assert.deepEqual(atHub.src, { ip: '127.0.0.1', port: r.localPort });
  assert.deepEqual(atHub.dst, { ip: '127.0.0.1', port: frontPort });
  assert.equal(atHub.peer?.ip, '127.0.0.1'); // the sensor's end of the tunnel
  assert.equal(atHub.server, `127.0.0.1:${echo.port}`);
  assert.equal(atHub.firstBytes.toString(), 'hello farm\n');
  const atSensor = (await sensor!.waitForEvents((es) => es.some((e) => e.id === id), 10_000)).find(
    (e) => e.id === id,
  )!;
  assert.equal(atSensor.sourceMode, 'tunnel');
  assert.equal(atSensor.backend, 'farm');
  assert.equal(atSensor.server, `127.0.0.1:${hubPort}`);
  assert.equal(atSensor.bytesIn, 11);
  assert.equal(atSensor.closeReason, 'client-closed');

  // `events --sensor` on the hub's store finds it by the sensor's name.
  const q = await runCli(['events', '--db', hub!.dbPath, '--json', '--sensor', 'sensor-a']);
  assert.equal(q.code, 0, q.stderr);
  assert.ok(q.stdout.includes(id));
});

test('8 MiB both ways through sensor and hub arrive intact, with the attacker reading in bursts', {
  skip: missing,
}, async () => {
  // The hub reads the honeypot's side into reused buffers (src/net/read-pool.ts): a buffer
  // given back too early would show here as bytes overwritten on their way to the attacker.
  const sent = randomBytes(8 * 1024 * 1024);
  const c = await connect(frontPort);
  const got: Buffer[] = [];
  let length = 0;
  let header = 0; // the echo server sends back the hub's PROXY v2 header too
  const echoed = new Promise<void>((resolve, reject) => {
    c.on('error', reject);
    c.on('data', (chunk: Buffer) => {
      got.push(chunk);
      length += chunk.length;
      // Stop reading every MiB: the honeypot's side backs up through the tunnel meanwhile.
      if (Math.floor((length - chunk.length) / 2 ** 20) !== Math.floor(length / 2 ** 20)) {
        c.pause();
        setImmediate(() => c.resume());
      }
      if (header === 0) {
        const h = parseProxyHeader(Buffer.concat(got), { v1: false, v2: true });
        if (h.status === 'error') reject(new Error(`no PROXY header echoed: ${h.reason}`));
        if (h.status === 'done') header = h.consumed;
      }
      if (header > 0 && length >= header + sent.length) resolve();
    });
  });
  c.write(sent);
  await withTimeout(echoed, 30_000, 'the echo of 8 MiB');
  c.destroy();
  assert.equal(length, header + sent.length);
  assert.ok(Buffer.concat(got).subarray(header).equals(sent), 'the echoed bytes are the bytes sent');
});

test('nginx behind the hub (proxy_protocol) answers with the attacker address the sensor saw', {
  skip: missing,
}, async () => {
  const r = await exchange(webPort, '', { end: false, replyTimeoutMs: 10_000 });
  assert.equal(r.data.toString(), `127.0.0.1:${r.localPort}\n`);
  await hub!.waitForEvents(
    (es) => es.some((e) => e.route === 'web-from-a' && e.src.port === r.localPort),
    10_000,
  );
});

// Found by the tunnel bench rows: the sensor reset (RST_STREAM CANCEL) the stream of every
// flow whose honeypot closed first, and after 1,000 resets at more than 33/s the hub's
// nghttp2 (its rapid-reset guard) ended the whole tunnel: flows in flight ended as
// tunnel-lost, new ones were captured until the sensor had redialled.
test('1,500 flows the honeypot closes first keep the tunnel up', { skip: missing }, async () => {
  const ups = tunnelsUp(sensor!);
  const lost = () => sensor!.logs().filter((r) => r.code === 'HG_ERR_TUNNEL').length;
  const lostBefore = lost();
  const FLOWS = 1500;
  let started = 0;
  const wrong: string[] = [];
  await Promise.all(
    Array.from({ length: 25 }, async () => {
      while (started < FLOWS) {
        started++;
        const r = await exchange(webPort, '', { end: false, replyTimeoutMs: 10_000 });
        if (r.data.toString() !== `127.0.0.1:${r.localPort}\n`)
          wrong.push(r.data.toString() || String(r.error));
      }
    }),
  );
  assert.deepEqual(wrong.slice(0, 3), [], `${wrong.length} of ${FLOWS} flows did not get nginx's answer`);
  assert.equal(lost(), lostBefore, 'the tunnel was not lost');
  assert.equal(tunnelsUp(sensor!), ups, 'the tunnel was not set up again');
});

/** A raw HTTP/2 client with some certificate, as a rogue or broken sensor would be. */
function dialHub(cert: { cert: string; key: string }, caFile = ca.ca): http2.ClientHttp2Session {
  const session = http2.connect(`https://127.0.0.1:${hubPort}`, {
    ca: fs.readFileSync(caFile),
    cert: fs.readFileSync(cert.cert),
    key: fs.readFileSync(cert.key),
    servername: 'hub',
    minVersion: 'TLSv1.3',
  });
  session.on('error', () => {});
  return session;
}

/** Resolves when the session ends; true if a CONNECT stream got a 200 first. */
function tryStream(session: http2.ClientHttp2Session): Promise<boolean> {
  return new Promise((resolve) => {
    let ok = false;
    // On Node 20 a session the hub ends right after the TLS handshake did not always emit
    // 'close' (a clean-clone CI run waited on it for ten minutes): the timer settles it too.
    const timer = setTimeout(() => {
      session.destroy();
      resolve(ok);
    }, 5000);
    session.once('close', () => {
      clearTimeout(timer);
      resolve(ok);
    });
    session.once('connect', () => {
      try {
        const s = session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:1' });
        s.on('error', () => {});
        s.on('response', () => {
          ok = true;
          session.destroy();
        });
      } catch {
        session.destroy();
      }
    });
  });
}

test('a certificate from another CA is refused', { skip: missing }, async () => {
  const from = hub!.logs().length;
  const wrong = { cert: path.join(rogue.dir, 'sensor-a.pem'), key: path.join(rogue.dir, 'sensor-a-key.pem') };
  assert.equal(await tryStream(dialHub(wrong)), false);
  await hub!.waitForLine(
    (r) => typeof r.msg === 'string' && r.msg.startsWith('refused a tunnel'),
    5000,
    from,
  );
});

test("a certificate of the hub's CA whose name the hub does not list is refused", {
  skip: missing,
}, async () => {
  const refusedBefore = hub!.logs().some((r) => typeof r.msg === 'string' && r.msg.startsWith('refused'));
  const b = { cert: `${pki}/sensor-b.pem`, key: `${pki}/sensor-b-key.pem` };
  assert.equal(await tryStream(dialHub(b)), false);
  // Warnings are at most one per 10 s: the CA test's may hide this one; the tally counts it.
  if (!refusedBefore)
    await hub!.waitForLine(
      (r) => typeof r.msg === 'string' && r.msg.includes('"sensor-b" is not in tunnel.sensors'),
    );
});

test('the hub picks AES-128-GCM, the cheaper cipher, even for a peer that prefers AES-256-GCM', {
  skip: missing,
}, async () => {
  const session = dialHub({ cert: `${pki}/sensor-a.pem`, key: `${pki}/sensor-a-key.pem` });
  try {
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('close', () => reject(new Error('the hub closed the session')));
    });
    // Node's own default order puts TLS_AES_256_GCM_SHA384 first, as this client offers it.
    assert.equal((session.socket as tls.TLSSocket).getCipher().name, 'TLS_AES_128_GCM_SHA256');
  } finally {
    session.destroy();
  }
});

test('a malformed stream header is recorded as bad-proxy-header under the sensor name', {
  skip: missing,
}, async () => {
  const session = dialHub({ cert: `${pki}/sensor-a.pem`, key: `${pki}/sensor-a-key.pem` });
  await withTimeout(
    new Promise<void>((resolve) => session.once('connect', () => resolve())),
    10_000,
    'the sensor session to connect',
  );
  const s = session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:1' });
  s.on('error', () => {});
  s.end(Buffer.from('\r\n\r\n\0\r\nQUIT\n\x99garbage that is no header'));
  await hub!.waitForEvents(
    (es) => es.some((e) => e.closeReason === 'bad-proxy-header' && e.sensor === 'sensor-a'),
    10_000,
  );
  // A header naming a UNIQUE_ID that is no flow id: refused the same way.
  const t = session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:1' });
  t.on('error', () => {});
  const bad = encodeProxyV2({
    command: 'PROXY',
    src: { ip: '198.51.100.7', port: 4000 },
    dst: { ip: '203.0.113.9', port: 22 },
    tlvs: [{ type: PP2_TYPE.UNIQUE_ID, value: Buffer.from("'; DROP TABLE events") }],
  });
  t.end(bad);
  await hub!.waitForEvents(
    (es) => es.some((e) => e.closeReason === 'bad-proxy-header' && e.detail?.includes('UNIQUE_ID')),
    10_000,
  );
  session.close();
});

test('SIGHUP with renewed certificates keeps an open flow; new flows take the new tunnel', {
  skip: missing,
}, async () => {
  const c = await connect(frontPort);
  c.write('before\n');
  await readUntil(c, (d) => d.toString().includes('before\n'), 10_000);
  ca.issue('hub');
  ca.issue('sensor-a');
  const hubFrom = hub!.logs().length;
  const sensorFrom = sensor!.logs().length;
  const ups = tunnelsUp(sensor!);
  hub!.signal('SIGHUP');
  sensor!.signal('SIGHUP');
  await hub!.waitForLine((r) => r.msg === 'config reloaded', 10_000, hubFrom);
  await sensor!.waitForLine((r) => r.msg === 'config reloaded', 10_000, sensorFrom);
  await waitFor(
    'the sensor to set up a tunnel with its new certificate',
    () => tunnelsUp(sensor!) > ups,
    10_000,
  );
  c.write('after\n');
  await readUntil(c, (d) => d.toString().includes('after\n'), 10_000);
  const n = await exchange(frontPort, 'new\n', { replyTimeoutMs: 10_000 });
  assert.ok(n.data.toString().includes('new\n'));
  const closed = readAll(c, 10_000);
  c.end();
  await closed;
  await sensor!.waitForEvents(
    (es) =>
      es.some((e) => e.firstBytes.toString() === 'before\nafter\n' && e.closeReason === 'client-closed'),
    10_000,
  );
});

test('a stopped sensor: the hub finds the dead tunnel by PING within 10 s, both ends record tunnel-lost', {
  skip: missing,
}, async () => {
  const c = await connect(frontPort);
  c.write('held\n');
  await readUntil(c, (d) => d.toString().includes('held\n'), 10_000);
  const stoppedAt = Date.now();
  sensor!.signal('SIGSTOP');
  try {
    const es = await hub!.waitForEvents(
      (all) => all.some((e) => e.firstBytes.toString() === 'held\n' && e.closeReason === 'tunnel-lost'),
      12_000,
    );
    const e = es.find((x) => x.firstBytes.toString() === 'held\n')!;
    assert.ok(e.closedAt! - stoppedAt < 10_000, `found after ${e.closedAt! - stoppedAt} ms`);
    assert.equal(e.sensor, 'sensor-a');
  } finally {
    sensor!.signal('SIGCONT');
  }
  await sensor!.waitForEvents(
    (all) => all.some((e) => e.firstBytes.toString() === 'held\n' && e.closeReason === 'tunnel-lost'),
    10_000,
  );
  await readAll(c, 10_000); // the attacker's connection ends too
});

test('hub killed and restarted: open flows end as tunnel-lost, flows meanwhile are captured, the sensor reconnects', {
  skip: missing,
}, async () => {
  await waitFor(
    'the sensor tunnel to be up',
    async () => {
      const r = await fetch(`http://127.0.0.1:${adminPort}/api/status`).then(
        (x) => x.json() as Promise<{ gateway?: { tunnels?: { up: boolean }[] } }>,
      );
      return r.gateway?.tunnels?.[0]?.up === true;
    },
    15_000,
  );
  const c = await connect(frontPort);
  c.write('open\n');
  await readUntil(c, (d) => d.toString().includes('open\n'), 10_000);
  const ups = tunnelsUp(sensor!);
  hub!.proc.kill('SIGKILL');
  await readAll(c, 10_000);
  await sensor!.waitForEvents(
    (es) => es.some((e) => e.firstBytes.toString() === 'open\n' && e.closeReason === 'tunnel-lost'),
    10_000,
  );
  // While the hub is away: the fallback (capture) answers and the flow is recorded.
  const during = await exchange(frontPort, 'nobody home\n', { replyTimeoutMs: 15_000 });
  const captured = await sensor!.waitForEvents(
    (es) => es.some((e) => e.src.port === during.localPort && e.action === 'capture'),
    10_000,
  );
  const e = captured.find((x) => x.src.port === during.localPort)!;
  assert.equal(e.backend, 'farm');
  assert.match(e.detail ?? '', /no tunnel/);
  await hub!.close();
  await startHub();
  await waitFor('the sensor to reconnect', () => tunnelsUp(sensor!) > ups, 15_000);
  const back = await exchange(frontPort, 'back\n', { replyTimeoutMs: 10_000 });
  assert.ok(back.data.toString().includes('back\n'));
  const metrics = await fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text());
  assert.match(metrics, /honeygate_tunnel_up\{backend="farm",hub="127\.0\.0\.1:\d+"\} 1/);
  assert.match(metrics, /honeygate_tunnel_reconnects_total\{backend="farm",hub="127\.0\.0\.1:\d+"\} [1-9]/);
});

/** Bytes in the kernel's send and receive queues of the loopback sockets with these local ports (/proc/net/tcp). */
function kernelQueued(ports: number[]): number {
  const hex = new Set(ports.map((p) => p.toString(16).toUpperCase().padStart(4, '0')));
  let sum = 0;
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (!f[1] || !hex.has(f[1].split(':')[1]!)) continue;
    const [tx, rx] = f[4]!.split(':').map((x) => Number.parseInt(x, 16));
    sum += tx! + rx!;
  }
  return sum;
}

test('a honeypot that does not read holds the attacker back: both gateways buffer a bounded amount', {
  skip: missing,
}, async (t) => {
  await waitFor('the sensor to be connected', () => tunnelsUp(sensor!) > 0, 10_000);
  const c = await connect(slowPort);
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let stalledSince = Date.now();
  let last = -1;
  // Write whenever the socket drains, until nothing more leaves for a second.
  const accepted = await waitFor(
    'the attacker to be held back',
    () => {
      if (c.destroyed) throw new GiveUp('the attacker connection closed');
      while (c.writableLength < 1024 * 1024) c.write(chunk);
      const sent = c.bytesWritten - c.writableLength;
      if (sent !== last) {
        last = sent;
        stalledSince = Date.now();
        return undefined;
      }
      return Date.now() - stalledSince > 1000 ? sent : undefined;
    },
    30_000,
    50,
  );
  const honeypot = slowSockets.at(-1)!;
  const kernel = kernelQueued([c.localPort!, slowPort, honeypot.localPort!, honeypot.remotePort!]);
  const held = accepted - kernel - honeypot.bytesRead;
  t.diagnostic(
    `attacker sent ${accepted} B; kernel queues ${kernel} B; honeypot read ${honeypot.bytesRead} B; ` +
      `held by sensor, tunnel and hub: ${held} B`,
  );
  // 256 KiB window + Node's stream buffers on each side, and the tunnel's own TCP queues.
  assert.ok(held < 1024 * 1024, `held ${held} B`);
  assert.ok(held > 0);
  c.destroy();
});

test('an attacker who resets mid-download: the hub closes the honeypot side and records the flow', {
  skip: missing,
}, async () => {
  await waitFor('the sensor to be connected', () => tunnelsUp(sensor!) > 0, 10_000);
  const c = await connect(floodPort);
  c.pause(); // reads nothing: the honeypot's bytes back up through hub, tunnel and sensor
  const honeypot = await waitFor('the honeypot to accept', () => floodSockets.at(-1), 10_000);
  let last = -1;
  let stalledSince = Date.now();
  await waitFor(
    'the honeypot to be held back',
    () => {
      if (honeypot.bytesWritten !== last) {
        last = honeypot.bytesWritten;
        stalledSince = Date.now();
        return false;
      }
      return Date.now() - stalledSince > 500;
    },
    30_000,
    50,
  );
  const port = c.localPort;
  c.resetAndDestroy();
  // The sensor's stream reset is the hub's client reset; before, the hub's stream never
  // closed and the honeypot's side stayed open, blocked in its write, until the idle timeout.
  await waitFor('the honeypot connection to close', () => honeypot.destroyed || honeypot.closed, 10_000, 50);
  const es = await hub!.waitForEvents(
    (all) => all.some((e) => e.route === 'flood' && e.src.port === port),
    10_000,
  );
  const e = es.find((x) => x.route === 'flood' && x.src.port === port)!;
  assert.equal(e.closeReason, 'client-reset');
  assert.ok(e.bytesOut > 0, `the honeypot's bytes are counted (${e.bytesOut})`);
});
