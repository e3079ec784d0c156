// UDP listeners on loopback with real peers: dig asks through honeygate, a real dnsmasq
// answers (forward), capture answers with its configured bytes, drop answers nothing, and
// the amplification guard cuts an answer far larger than the query. Each flow is one event
// with transport udp and its datagram counts.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { needs } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';

const run = promisify(execFile);
const skip = needs('dnsmasq', 'dig');
const BIG = 'x'.repeat(250);

let dnsmasq: ReturnType<typeof spawn> | null = null;
let dnsPort = 0;
let hg: Honeygate;

/** dig's answer section (+short), or null when it timed out. */
async function dig(port: number, name: string, type = 'A'): Promise<string | null> {
  try {
    const { stdout } = await run('dig', [
      '+time=1',
      '+tries=1',
      '+short',
      '-p',
      String(port),
      '@127.0.0.1',
      name,
      type,
    ]);
    return stdout.includes('timed out') ? null : stdout.trim();
  } catch (err) {
    const out = (err as { stdout?: string }).stdout ?? '';
    if (out.includes('timed out') || out.includes('no servers could be reached')) return null;
    throw err;
  }
}

before(async () => {
  if (skip) return;
  dnsPort = await freePort();
  const log: string[] = [];
  dnsmasq = spawn(
    'dnsmasq',
    [
      '--no-daemon',
      `--port=${dnsPort}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      '--log-queries',
      '--log-facility=-',
      '--address=/honeypot.test/192.0.2.7',
      `--txt-record=big.test,${Array(4).fill(BIG).join(',')}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  dnsmasq.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  // Ready once it answers.
  for (let i = 0; i < 50 && (await dig(dnsPort, 'honeypot.test')) !== '192.0.2.7'; i++);
  hg = await startHoneygate(`
limits:
  udp: { idleTimeout: 500ms }
listeners:
  - name: dns
    transport: udp
    bind: "127.0.0.1:0"
  - name: cap
    transport: udp
    bind: "127.0.0.1:0"
  - name: drop
    transport: udp
    bind: "127.0.0.1:0"
routes:
  - match: { listeners: [dns], protocol: [dns] }
    forward: dnsmasq
  - match: { listeners: [cap] }
    capture: { reply: "68 65 6c 6c 6f" }
  - drop: {}
backends:
  dnsmasq:
    servers: ["127.0.0.1:${dnsPort}"]
`);
});

after(async () => {
  await hg?.close();
  dnsmasq?.kill();
});

test("forward: dig through honeygate gets dnsmasq's answer; one event with counts", {
  skip,
  timeout: 60_000,
}, async () => {
  assert.equal(await dig(hg.port('dns'), 'honeypot.test'), '192.0.2.7');
  const events = await hg.waitForEvents((es) =>
    es.some((e) => e.listener === 'dns' && e.protocolFields?.name === 'honeypot.test.'),
  );
  const e = events.find((x) => x.protocolFields?.name === 'honeypot.test.')! as (typeof events)[number] & {
    transport?: string;
    udp?: { datagramsIn: number; datagramsOut: number; heldDatagrams: number };
  };
  assert.equal(e.transport, 'udp');
  assert.equal(e.action, 'forward');
  assert.equal(e.server, `127.0.0.1:${dnsPort}`);
  assert.equal(e.protocol, 'dns');
  assert.equal(e.closeReason, 'idle-timeout');
  assert.deepEqual(e.udp, { datagramsIn: 1, datagramsOut: 1, heldDatagrams: 0, heldBytes: 0 });
  assert.ok(e.bytesOut > 0 && e.bytesOut <= 2 * e.bytesIn, `${e.bytesOut} bytes back for ${e.bytesIn}`);
});

test('the guard cuts an answer larger than the query, and the event says so', {
  skip,
  timeout: 60_000,
}, async () => {
  // Asked directly, dnsmasq answers ~1 KB; through honeygate the query's ~50 bytes (and the
  // 512-byte allowance) allow no such answer.
  assert.ok((await dig(dnsPort, 'big.test', 'TXT'))!.length > 900);
  assert.equal(await dig(hg.port('dns'), 'big.test', 'TXT'), null);
  const events = await hg.waitForEvents((es) => es.some((e) => e.protocolFields?.name === 'big.test.'));
  const e = events.find((x) => x.protocolFields?.name === 'big.test.')! as (typeof events)[number] & {
    udp?: { datagramsOut: number; heldDatagrams: number; heldBytes: number };
  };
  assert.equal(e.bytesOut, 0);
  assert.equal(e.udp!.datagramsOut, 0);
  assert.equal(e.udp!.heldDatagrams, 1);
  assert.ok(e.udp!.heldBytes > 900);
  assert.match(e.detail ?? '', /amplification guard held 1 replies .* by ratio/);
});

test('capture answers with its reply; drop answers nothing; both recorded', {
  skip,
  timeout: 60_000,
}, async () => {
  const { stdout } = await run('sh', [
    '-c',
    `printf 'hi there' | timeout 2 socat -T1 - UDP:127.0.0.1:${hg.port('cap')}`,
  ]).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  assert.equal(stdout, 'hello');
  const dropped = await run('sh', [
    '-c',
    `printf 'x' | timeout 2 socat -T1 - UDP:127.0.0.1:${hg.port('drop')}`,
  ]).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  assert.equal(dropped.stdout, '');
  const events = await hg.waitForEvents(
    (es) => es.some((e) => e.listener === 'cap') && es.some((e) => e.listener === 'drop'),
  );
  const cap = events.find((e) => e.listener === 'cap')!;
  assert.equal(cap.action, 'capture');
  assert.equal(cap.firstBytes.toString(), 'hi there');
  assert.equal(cap.bytesOut, 5);
  const drop = events.find((e) => e.listener === 'drop')!;
  assert.equal(drop.action, 'drop');
  assert.equal(drop.closeReason, 'dropped');
  assert.equal(drop.bytesOut, 0);
});
