// Routing by what the attacker says: rules that match on protocol peek at the first bytes,
// bytes that arrived with a PROXY header count, a silent client is "unknown", and the bytes
// of an attacker who resets during the peek stay in the event.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, exchange } from '../helpers/client.js';
import { type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { receiveQueue } from '../helpers/peers.js';
import { proxyV1 } from '../helpers/proxy-header.js';
import { waitFor } from '../helpers/wait.js';

describe('routing on the detected protocol', { timeout: 60_000 }, () => {
  let hg: Honeygate;

  before(async () => {
    hg = await startHoneygate(`
listeners:
  - name: plain
    bind: "127.0.0.1:0"
  - name: lb
    bind: "127.0.0.1:0"
    acceptProxy: { from: ["127.0.0.1"] }
routes:
  - name: web
    match: { protocol: [http] }
    reject: {}
  - name: ssh
    match: { protocol: [ssh] }
    capture: { banner: "SSH-2.0-OpenSSH_9.2\\r\\n", maxBytes: 64, timeout: 2s }
  - name: rest
    capture: { timeout: 1s }
limits: { perSourceRate: 10000/s }
`);
  });
  after(() => hg?.close());

  const flowOf = async (ip: string, port: number) => {
    const evs = await hg.waitForEvents((all) => all.some((e) => e.src.ip === ip && e.src.port === port));
    return evs.find((e) => e.src.ip === ip && e.src.port === port)!;
  };

  test('an HTTP request takes the http rule, with its fields in the event', async () => {
    const reply = await exchange(
      hg.port('plain'),
      'GET /wp-login.php HTTP/1.1\r\nHost: x\r\nUser-Agent: zgrab\r\n\r\n',
      {
        end: false,
      },
    );
    assert.equal(reply.error, 'ECONNRESET', 'reject answers with a reset');
    const flow = await flowOf('127.0.0.1', reply.localPort);
    assert.equal(flow.route, 'web');
    assert.equal(flow.protocol, 'http');
    assert.equal(flow.protocolFields?.path, '/wp-login.php');
    assert.equal(flow.protocolFields?.userAgent, 'zgrab');
  });

  // Regression: bytes that came in the same packet as the PROXY header were not classified,
  // so the flow waited for more bytes that never came.
  test('a request sent together with a PROXY header is routed at once', async () => {
    const port = hg.port('lb');
    const started = Date.now();
    const reply = await exchange(
      port,
      `${proxyV1('203.0.113.9', '127.0.0.1', 41000, port)}GET / HTTP/1.0\r\n\r\n`,
      {
        end: false,
      },
    );
    assert.equal(reply.error, 'ECONNRESET');
    assert.ok(Date.now() - started < 2000, 'no wait for the peek timeout');
    const flow = await flowOf('203.0.113.9', 41000);
    assert.equal(flow.route, 'web');
    assert.equal(flow.protocol, 'http');
  });

  test('an SSH client gets the banner; a silent client ends as unknown in the default rule', async () => {
    const ssh = await exchange(hg.port('plain'), 'SSH-2.0-libssh_0.9.6\r\n');
    assert.match(ssh.data.toString(), /^SSH-2\.0-OpenSSH_9\.2\r\n/);
    const sshFlow = await flowOf('127.0.0.1', ssh.localPort);
    assert.equal(sshFlow.route, 'ssh');
    assert.equal(sshFlow.protocolFields?.software, 'libssh_0.9.6');

    const silent = await exchange(hg.port('plain'), '', { end: false, replyTimeoutMs: 10_000 });
    const silentFlow = await flowOf('127.0.0.1', silent.localPort);
    assert.equal(silentFlow.route, 'rest');
    assert.equal(silentFlow.protocol, 'unknown');
    assert.equal(silentFlow.closeReason, 'capture-timeout');
  });
});

describe('routing: the peek stage', { timeout: 60_000 }, () => {
  // Bug: bytes read by the peek stage were lost from the event when the attacker reset there.
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
    try {
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
    } finally {
      await hg.close();
    }
  });
});
