// Routing by what the attacker says: rules that match on protocol peek at the first bytes,
// bytes that arrived with a PROXY header count, and a silent client is "unknown".
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { exchange } from '../helpers/client.js';
import { type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { proxyV1 } from '../helpers/proxy-header.js';

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
