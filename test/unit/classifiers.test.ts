import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import tlsLib from 'node:tls';
import { CLASSIFIERS, classify } from '../../src/classifiers/index.js';
import type { Verdict } from '../../src/classifiers/types.js';
import { FIXTURES, NOT_ANY } from '../helpers/fixtures/classifiers/fixtures.js';

function assertFields(verdict: Verdict, protocol: string, fields: Record<string, unknown>): void {
  assert.ok(
    'match' in verdict && verdict.match,
    `expected a ${protocol} match, got ${JSON.stringify(verdict)}`,
  );
  assert.equal(verdict.protocol, protocol);
  for (const [key, value] of Object.entries(fields)) assert.deepEqual(verdict.fields[key], value, key);
}

describe('classify: fixtures', () => {
  for (const f of FIXTURES) {
    it(`${f.name} -> ${f.protocol}`, () => {
      assertFields(classify(f.bytes, false), f.protocol, f.fields);
      assertFields(classify(f.bytes, true), f.protocol, f.fields);
      assert.equal(f.fields.truncated, undefined);
    });
  }

  it('every protocol has at least one fixture', () => {
    for (const c of CLASSIFIERS)
      assert.ok(
        FIXTURES.some((f) => f.protocol === c.protocol),
        c.protocol,
      );
  });

  for (const f of FIXTURES) {
    it(`${f.name}: every truncation is need-more or ${f.protocol}, never another protocol`, () => {
      for (let n = 0; n < f.bytes.length; n++) {
        const part = f.bytes.subarray(0, n);
        for (const final of [false, true]) {
          const v = classify(part, final);
          if ('need' in v) assert.equal(final, false, `need-more on final at ${n} bytes`);
          else if (v.match) assert.equal(v.protocol, f.protocol, `${n} bytes, final=${final}`);
          else assert.equal(final, true, `no match before final at ${n} bytes`);
        }
      }
    });
  }

  it('extra bytes after a fixture do not change the verdict', () => {
    for (const f of FIXTURES) {
      assertFields(
        classify(Buffer.concat([f.bytes, Buffer.from('trailing data\r\n')]), false),
        f.protocol,
        f.fields,
      );
    }
  });

  for (const g of NOT_ANY) {
    it(`${g.name} matches nothing`, () => {
      assert.deepEqual(classify(g.bytes, true), { match: false });
    });
  }

  it('empty input needs more until final', () => {
    assert.deepEqual(classify(Buffer.alloc(0), false), { need: 'more' });
    assert.deepEqual(classify(Buffer.alloc(0), true), { match: false });
  });
});

describe('classify: details', () => {
  it('http waits for the end of the headers, and on final reports what it has', () => {
    const head = Buffer.from('GET /admin HTTP/1.1\r\nUser-Agent: x\r\n');
    assert.deepEqual(classify(head, false), { need: 'more' });
    assertFields(classify(head, true), 'http', { method: 'GET', path: '/admin', userAgent: 'x' });
  });

  it('http header names match in any case; the first Host wins; look-alike names do not count', () => {
    const head = Buffer.from(
      'POST /x HTTP/1.0\r\nHOSTS: no\r\nuser\ragent: no\r\nhOsT: a.example\r\nHost: b.example\r\nUSER-AGENT:  scan/1 \r\n\r\n',
    );
    assertFields(classify(head, false), 'http', {
      method: 'POST',
      version: '1.0',
      host: 'a.example',
      userAgent: 'scan/1',
    });
  });

  it('http/2 prior-knowledge preface is http 2.0', () => {
    assertFields(classify(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), false), 'http', {
      method: 'PRI',
      version: '2.0',
    });
  });

  it('tls ClientHello split over two records is reassembled', () => {
    const record = FIXTURES.find((f) => f.protocol === 'tls')!.bytes;
    const hs = record.subarray(5);
    const split = (part: Buffer): Buffer =>
      Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0, part.length]), part]);
    const bytes = Buffer.concat([
      split(hs.subarray(0, 100)),
      split(hs.subarray(100, 200)),
      split(hs.subarray(200)),
    ]);
    assertFields(classify(bytes, false), 'tls', { sni: 'honeypot.example', alpn: ['h2', 'http/1.1'] });
    assert.deepEqual(classify(bytes.subarray(0, 120), false), { need: 'more' });
  });

  it('tls ClientHello from node:tls (live capture on loopback)', async () => {
    const server = net.createServer();
    const got = new Promise<Buffer>((resolve) => {
      server.on('connection', (sock) => {
        sock.on('error', () => {});
        let buf = Buffer.alloc(0);
        sock.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (!('need' in classify(buf, false))) {
            resolve(buf);
            sock.destroy();
          }
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const client = tlsLib.connect({
      host: '127.0.0.1',
      port,
      servername: 'hp.example',
      ALPNProtocols: ['http/1.1'],
    });
    client.on('error', () => {});
    try {
      assertFields(classify(await got, false), 'tls', {
        sni: 'hp.example',
        alpn: ['http/1.1'],
        version: 'TLS1.3',
      });
    } finally {
      client.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('tls with a broken extension block still matches, without fields from it', () => {
    const bytes = Buffer.from(FIXTURES.find((f) => f.protocol === 'tls')!.bytes);
    // record 5 + handshake 4 + version 2 + random 32 + session 1+32 + suites 2+62 + compression 1+1
    // + extensions length 2 + first type 2 = 146: the SNI extension's length, now overrunning.
    assert.equal(bytes.readUInt16BE(144), 0x0000);
    bytes.writeUInt16BE(0xffff, 146);
    const v = classify(bytes, false);
    assertFields(v, 'tls', { sni: null });
  });

  it('ssh on final with an unfinished line reports the partial banner', () => {
    assertFields(classify(Buffer.from('SSH-2.0-Go'), true), 'ssh', { software: 'Go', truncated: true });
  });

  it('ssh over-long identification is still ssh, capped', () => {
    const v = classify(Buffer.from(`SSH-2.0-${'A'.repeat(5000)}\r\n`), false);
    assertFields(v, 'ssh', { truncated: true });
    assert.ok('match' in v && v.match && (v.fields.clientVersion as string).length <= 255);
  });

  it('redis inline commands are case-insensitive; other words are not redis', () => {
    assertFields(classify(Buffer.from('ping\r\n'), false), 'redis', { command: 'PING', inline: true });
    assertFields(classify(Buffer.from('INFO\n'), false), 'redis', { command: 'INFO', argc: 1 });
    assert.deepEqual(classify(Buffer.from('PINGS\r\n'), true), { match: false });
  });
});

describe('classify: hostile input', () => {
  // Deterministic PRNG so a failure can be replayed.
  function rng(seed: number): () => number {
    let s = seed >>> 0;
    return () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) / 0x100000000;
    };
  }

  it('random garbage never throws, from any classifier', () => {
    const rand = rng(0xc0ffee);
    for (let i = 0; i < 5000; i++) {
      const buf = Buffer.alloc(Math.floor(rand() * 300));
      for (let k = 0; k < buf.length; k++) buf[k] = Math.floor(rand() * 256);
      for (const c of CLASSIFIERS) {
        c.classify(buf, false);
        c.classify(buf, true);
      }
    }
  });

  it('fixtures with random bytes flipped never throw', () => {
    const rand = rng(42);
    for (const f of FIXTURES) {
      for (let i = 0; i < 500; i++) {
        const buf = Buffer.from(f.bytes);
        for (let k = 0; k < 3; k++) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
        for (const c of CLASSIFIERS) {
          c.classify(buf, false);
          c.classify(buf.subarray(0, Math.floor(rand() * buf.length)), true);
        }
      }
    }
  });

  it('huge declared lengths do not make a classifier read past the buffer', () => {
    const cases = [
      '16030100ff01ffffff0303', // TLS: handshake length 16M
      '0300ffff',
      '00ffffffff534d42',
      '2a39393939393939390d0a',
    ];
    for (const h of cases) {
      const v = classify(Buffer.from(h, 'hex'), true);
      assert.ok(!('need' in v));
    }
  });
});
