// The nginx and HAProxy recipes of docs/proxy-protocol.md, run as written (ports and paths
// swapped for the test's own): the peer must see the attacker's address (nginx's
// $remote_addr in its access log, HAProxy's log and X-Forwarded-For), and honeygate must
// record the flow with the attacker as src. The attacker is 127.0.0.3; honeygate and the
// peers use 127.0.0.1, so a peer that shows 127.0.0.1 has not read the header.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { exchange } from '../helpers/client.js';
import { type EventRecord, type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { needs, type Peer, startProcessPeer, tempDir, which } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { snippet, substitute } from '../helpers/snippets.js';
import { waitFor } from '../helpers/wait.js';

const DOC = 'docs/proxy-protocol.md';
const ATTACKER = '127.0.0.3';

/** The web honeypot behind the peer: answers with the client headers it was given, as JSON. */
async function startWebHoneypot(): Promise<{ port: number; stop(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        'x-real-ip': req.headers['x-real-ip'] ?? null,
        'x-forwarded-for': req.headers['x-forwarded-for'] ?? null,
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A plain HTTP/1.0 GET from the attacker's address; the server closes when done. */
async function get(port: number) {
  const reply = await exchange(port, 'GET / HTTP/1.0\r\nHost: honeypot\r\n\r\n', {
    localAddress: ATTACKER,
    end: false,
  });
  const text = reply.data.toString();
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  return { ...reply, text, body };
}

async function flowFrom(hg: Honeygate, port: number): Promise<EventRecord> {
  const evs = await hg.waitForEvents((all) =>
    all.some((e) => e.type === 'flow' && e.src.ip === ATTACKER && e.src.port === port && e.closedAt !== null),
  );
  return evs.find((e) => e.src.ip === ATTACKER && e.src.port === port)!;
}

describe('docs/proxy-protocol.md recipes', { timeout: 60_000 }, () => {
  for (const version of ['v1', 'v2'] as const) {
    test(`nginx proxy_protocol + realip behind honeygate (proxy-${version}) logs the attacker`, {
      skip: needs('nginx'),
    }, async () => {
      const web = await startWebHoneypot();
      const dir = tempDir('nginx-recipe');
      const nginxPort = await freePort();
      let nginx: Peer | undefined;
      let hg: Honeygate | undefined;
      try {
        const server = substitute(snippet(DOC, 'nginx.conf'), {
          '127.0.0.1:8080': `127.0.0.1:${nginxPort}`,
          '127.0.0.1:8081': `127.0.0.1:${web.port}`,
          '/var/log/nginx/honeypot.log': `${dir}/honeypot.log`,
        });
        // The recipe is the inside of http { }; the rest keeps nginx in its temp dir.
        const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
          .map((t) => `${t}_temp_path ${dir}/${t};`)
          .join(' ');
        const conf = [
          'daemon off;',
          'master_process off;',
          `pid ${dir}/nginx.pid;`,
          `error_log ${dir}/error.log info;`,
          'events { worker_connections 64; }',
          `http { access_log ${dir}/access.log; ${temp}`,
          server,
          '}',
          '',
        ].join('\n');
        fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
        const args = ['-p', dir, '-e', `${dir}/error.log`, '-c', `${dir}/nginx.conf`];
        nginx = await startProcessPeer(
          'nginx (recipe)',
          dir,
          nginxPort,
          which('nginx')!,
          args,
          `${dir}/error.log`,
        );

        let yaml = substitute(snippet(DOC, 'nginx-honeygate.yaml'), {
          '0.0.0.0:80': '127.0.0.1:0',
          '127.0.0.1:8080': `127.0.0.1:${nginxPort}`,
        });
        if (version === 'v2') yaml = substitute(yaml, { 'source: proxy-v1': 'source: proxy-v2' });
        hg = await startHoneygate(yaml);

        const reply = await get(hg.port('web'));
        assert.match(reply.text, /^HTTP\/1\.1 200 /, reply.text);
        assert.deepEqual(JSON.parse(reply.body), { 'x-real-ip': ATTACKER, 'x-forwarded-for': ATTACKER });
        const line = `${ATTACKER}:${reply.localPort} "GET / HTTP/1.0" 200 (via 127.0.0.1)`;
        await waitFor(`nginx to log ${line}`, () => {
          try {
            return fs.readFileSync(`${dir}/honeypot.log`, 'utf8').includes(line);
          } catch {
            return false;
          }
        }).catch((err: Error) => {
          throw new Error(`${err.message}\n${nginx!.output()}`);
        });

        const flow = await flowFrom(hg, reply.localPort);
        assert.equal(flow.route, 'web-to-nginx-proxy-v1');
        assert.equal(flow.action, 'forward');
        assert.equal(flow.backend, 'nginx');
        assert.equal(flow.sourceMode, `proxy-${version}`);
      } finally {
        await hg?.close();
        await nginx?.stop();
        await web.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test('HAProxy send-proxy-v2 in front of honeygate: src is the attacker, peer is HAProxy', {
    skip: needs('haproxy'),
  }, async () => {
    const dir = tempDir('haproxy-front-recipe');
    const lbPort = await freePort();
    let lb: Peer | undefined;
    let hg: Honeygate | undefined;
    try {
      hg = await startHoneygate(
        substitute(snippet(DOC, 'haproxy-front-honeygate.yaml'), { '127.0.0.1:2222': '127.0.0.1:0' }),
      );
      const cfg = substitute(snippet(DOC, 'haproxy-front.cfg'), {
        'bind :22': `bind 127.0.0.1:${lbPort}`,
        '127.0.0.1:2222': `127.0.0.1:${hg.port('from-haproxy')}`,
      });
      fs.writeFileSync(path.join(dir, 'haproxy.cfg'), cfg);
      lb = await startProcessPeer(
        'haproxy (front)',
        dir,
        lbPort,
        which('haproxy')!,
        ['-db', '-f', 'haproxy.cfg'],
        null,
      );

      const hello = 'SSH-2.0-libssh_0.10.6\r\n';
      const reply = await exchange(lbPort, hello, { localAddress: ATTACKER });
      assert.equal(
        reply.data.toString(),
        'SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n',
        'the banner, through HAProxy',
      );

      const flow = await flowFrom(hg, reply.localPort);
      assert.equal(flow.listener, 'from-haproxy');
      assert.equal(flow.route, 'from-haproxy-capture-ssh');
      assert.equal(flow.proxyHeader, 'v2');
      assert.equal(flow.peer?.ip, '127.0.0.1', `peer: ${JSON.stringify(flow.peer)}`);
      assert.deepEqual(flow.dst, { ip: '127.0.0.1', port: lbPort }, 'dst: where the attacker connected');
      assert.equal(flow.firstBytes.toString(), hello);
    } finally {
      await hg?.close();
      await lb?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('HAProxy accept-proxy behind honeygate logs the attacker and forwards it', {
    skip: needs('haproxy'),
  }, async () => {
    const web = await startWebHoneypot();
    const dir = tempDir('haproxy-back-recipe');
    const port = await freePort();
    let haproxy: Peer | undefined;
    let hg: Honeygate | undefined;
    try {
      const cfg = substitute(snippet(DOC, 'haproxy-back.cfg'), {
        '127.0.0.1:8080': `127.0.0.1:${port}`,
        '127.0.0.1:8081': `127.0.0.1:${web.port}`,
      });
      fs.writeFileSync(path.join(dir, 'haproxy.cfg'), cfg);
      haproxy = await startProcessPeer(
        'haproxy (back)',
        dir,
        port,
        which('haproxy')!,
        ['-db', '-f', 'haproxy.cfg'],
        null,
      );
      hg = await startHoneygate(
        substitute(snippet(DOC, 'haproxy-back-honeygate.yaml'), {
          '0.0.0.0:80': '127.0.0.1:0',
          '127.0.0.1:8080': `127.0.0.1:${port}`,
        }),
      );

      const reply = await get(hg.port('web'));
      assert.match(reply.text, /^HTTP\/1\.[01] 200 /, reply.text);
      assert.equal(JSON.parse(reply.body)['x-forwarded-for'], ATTACKER);
      const logged = `${ATTACKER}:${reply.localPort} [`;
      await waitFor(`HAProxy to log ${logged}`, () => haproxy!.output().includes(logged)).catch(
        (err: Error) => {
          throw new Error(`${err.message}\n${haproxy!.output()}`);
        },
      );

      // honeygate's first health check (PROXY LOCAL, no request) ran at start, before the
      // request: HAProxy logs no line for it, so none from honeygate's own address.
      assert.doesNotMatch(haproxy.output(), /^127\.0\.0\.1:/m, 'a health check was logged');

      const flow = await flowFrom(hg, reply.localPort);
      assert.equal(flow.route, 'web-to-haproxy-proxy-v2');
      assert.equal(flow.backend, 'haproxy');
      assert.equal(flow.sourceMode, 'proxy-v2');
    } finally {
      await hg?.close();
      await haproxy?.stop();
      await web.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
