// Forwarding with a PROXY header upstream: real HAProxy (accept-proxy) and nginx
// (proxy_protocol) stand where a honeypot would and report the client address they were
// handed. It must be the test client's own address: 127.0.0.1 and its ephemeral port.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { exchange } from '../helpers/client.js';
import { type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import {
  HTTP_REQUEST,
  httpBody,
  needs,
  type Peer,
  startHaproxyAcceptProxy,
  startNginxProxyProtocol,
} from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';

const CASES = [
  { listener: 'haproxy-v2', peer: 'haproxy', source: 'proxy-v2' },
  { listener: 'haproxy-v1', peer: 'haproxy', source: 'proxy-v1' },
  { listener: 'nginx-v2', peer: 'nginx', source: 'proxy-v2' },
  { listener: 'nginx-v1', peer: 'nginx', source: 'proxy-v1' },
] as const;

describe('forward with a PROXY header to a real peer', { timeout: 60_000 }, () => {
  let hg: Honeygate;
  const peers: Partial<Record<'haproxy' | 'nginx', Peer>> = {};

  before(async () => {
    if (!needs('haproxy')) peers.haproxy = await startHaproxyAcceptProxy();
    if (!needs('nginx')) peers.nginx = await startNginxProxyProtocol();
    // A missing peer's backend points at a closed port; its tests are skipped.
    const closed = await freePort();
    const portOf = (p: 'haproxy' | 'nginx') => peers[p]?.port ?? closed;
    const listeners = CASES.map((c) => `  - name: ${c.listener}\n    bind: "127.0.0.1:0"`).join('\n');
    const routes = CASES.map(
      (c) => `  - match: { listeners: [${c.listener}] }\n    forward: ${c.listener}`,
    ).join('\n');
    const backends = CASES.map(
      (c) => `  ${c.listener}:\n    servers: ["127.0.0.1:${portOf(c.peer)}"]\n    source: ${c.source}`,
    ).join('\n');
    hg = await startHoneygate(`
listeners:
${listeners}
routes:
${routes}
backends:
${backends}
limits: { perSourceRate: 10000/s }
`);
  });
  after(async () => {
    await hg?.close();
    await peers.haproxy?.stop();
    await peers.nginx?.stop();
  });

  for (const c of CASES) {
    test(`${c.peer} sees the client's address with ${c.source}`, { skip: needs(c.peer) }, async () => {
      const port = hg.port(c.listener);
      let reported: string;
      let reply: Awaited<ReturnType<typeof exchange>>;
      if (c.peer === 'haproxy') {
        reply = await exchange(port, HTTP_REQUEST);
        reported = httpBody(reply.data);
      } else {
        // nginx answers as soon as the header is in; the byte only gives honeygate a first read.
        reply = await exchange(port, 'x', { end: false });
        reported = reply.data.toString().trim();
      }
      assert.equal(
        reported,
        `127.0.0.1:${reply.localPort}`,
        `peer answered ${JSON.stringify(reply.data.toString())}`,
      );

      const evs = await hg.waitForEvents((all) => all.some((e) => e.src.port === reply.localPort));
      const flow = evs.find((e) => e.src.port === reply.localPort)!;
      assert.equal(flow.action, 'forward');
      assert.equal(flow.backend, c.listener);
      assert.equal(flow.server, `127.0.0.1:${peers[c.peer]!.port}`);
      assert.equal(flow.sourceMode, c.source);
      assert.ok(flow.bytesOut > 0, 'the peer reply counts as bytes out');
    });
  }
});
