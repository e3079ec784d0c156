// The test peers themselves, without honeygate: HAProxy and nginx must report the client
// address from a hand-sent PROXY header, and HAProxy as a sender must prepend one. When
// these fail, the environment is broken, not honeygate.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { exchange } from '../helpers/client.js';
import {
  HTTP_REQUEST,
  httpBody,
  needs,
  startHaproxyAcceptProxy,
  startHaproxySendingProxy,
  startNginxProxyProtocol,
  startTcpServer,
} from '../helpers/peers.js';
import { proxyV1, proxyV2 } from '../helpers/proxy-header.js';

describe('test peers', () => {
  test('HAProxy accept-proxy reports the address from a v1 and a v2 header', {
    skip: needs('haproxy'),
  }, async () => {
    const haproxy = await startHaproxyAcceptProxy();
    try {
      const v1 = await exchange(
        haproxy.port,
        proxyV1('203.0.113.7', '127.0.0.1', 40000, haproxy.port) + HTTP_REQUEST,
      );
      assert.equal(httpBody(v1.data), '203.0.113.7:40000', v1.data.toString());
      const v2 = await exchange(
        haproxy.port,
        Buffer.concat([proxyV2('198.51.100.9', '127.0.0.1', 41000, haproxy.port), Buffer.from(HTTP_REQUEST)]),
      );
      assert.equal(httpBody(v2.data), '198.51.100.9:41000', v2.data.toString());
    } finally {
      await haproxy.stop();
    }
  });

  test('nginx proxy_protocol reports the address from a v1 and a v2 header', {
    skip: needs('nginx'),
  }, async () => {
    const nginx = await startNginxProxyProtocol();
    try {
      const v1 = await exchange(nginx.port, proxyV1('203.0.113.7', '127.0.0.1', 40000, nginx.port));
      assert.equal(v1.data.toString(), '203.0.113.7:40000\n', nginx.output());
      const v2 = await exchange(nginx.port, proxyV2('198.51.100.9', '127.0.0.1', 41000, nginx.port));
      assert.equal(v2.data.toString(), '198.51.100.9:41000\n', nginx.output());
    } finally {
      await nginx.stop();
    }
  });

  for (const version of ['v1', 'v2'] as const) {
    test(`HAProxy send-proxy${version === 'v2' ? '-v2' : ''} prepends a header naming the client`, {
      skip: needs('haproxy'),
    }, async () => {
      const seen: Buffer[] = [];
      const target = await startTcpServer((socket) => {
        socket.once('data', (c: Buffer) => {
          seen.push(c);
          socket.end('ok');
        });
      });
      const haproxy = await startHaproxySendingProxy({ target: target.port, version });
      try {
        const reply = await exchange(haproxy.port, 'hello', { localAddress: '127.0.0.3', end: false });
        assert.equal(reply.data.toString(), 'ok');
        const header = seen[0]!;
        if (version === 'v1') {
          const want = `PROXY TCP4 127.0.0.3 127.0.0.1 ${reply.localPort} ${haproxy.port}\r\n`;
          assert.equal(header.subarray(0, want.length).toString(), want);
        } else {
          const want = proxyV2('127.0.0.3', '127.0.0.1', reply.localPort, haproxy.port);
          assert.deepEqual(header.subarray(0, 14), want.subarray(0, 14), 'signature, version, family');
          assert.deepEqual(header.subarray(16, 28), want.subarray(16, 28), 'addresses and ports');
        }
      } finally {
        await haproxy.stop();
        await target.stop();
      }
    });
  }
});
