// The recording file format, its replay text and the pcap writer's pieces (src/record/).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decode,
  encodeHead,
  encodeHeader,
  FormatError,
  KIND,
  type RecordingHeader,
} from '../../src/record/format.js';
import { addressBytes, sessionPackets, toPcap } from '../../src/record/pcap.js';
import { formatChunk, looksLikeText } from '../../src/record/replay.js';

const HEADER: RecordingHeader = {
  id: '0123456789abcdef0123456789abcdef',
  startedAt: 1_700_000_000_000,
  src: { ip: '198.51.100.7', port: 40001 },
  dst: { ip: '192.0.2.1', port: 22 },
  listener: 'ssh',
  route: 'r',
  action: 'forward',
  backend: 'cowrie',
};

function file(chunks: [number, number, string][]): Buffer {
  const parts = [encodeHeader(HEADER)];
  for (const [kind, t, data] of chunks) {
    const b = Buffer.from(data);
    parts.push(encodeHead(kind as 1, t, b.length), b);
  }
  return Buffer.concat(parts);
}

describe('recording file', () => {
  test('decodes what was encoded, in order', () => {
    const f = decode(
      file([
        [KIND.in, 0.5, 'hi'],
        [KIND.finIn, 0.6, ''],
        [KIND.out, 0.7, 'yo'],
      ]),
    );
    assert.deepEqual(f.header, HEADER);
    assert.equal(f.complete, true);
    assert.deepEqual(
      f.chunks.map((c) => [c.kind, c.t, c.data.toString()]),
      [
        [KIND.in, 0.5, 'hi'],
        [KIND.finIn, 0.6, ''],
        [KIND.out, 0.7, 'yo'],
      ],
    );
  });

  test('every truncation gives the whole records before the cut, or a FormatError', () => {
    const whole = file([
      [KIND.in, 0.5, 'hello'],
      [KIND.out, 0.7, 'world'],
    ]);
    const headerLength = encodeHeader(HEADER).length;
    for (let n = 0; n < whole.length; n++) {
      const cut = whole.subarray(0, n);
      if (n < headerLength) {
        assert.throws(() => decode(cut), FormatError, `cut at ${n}`);
        continue;
      }
      const f = decode(cut);
      assert.equal(f.complete, n === headerLength || n === headerLength + 18, `cut at ${n}`);
      assert.ok(f.chunks.length <= 1 || n === whole.length);
    }
  });

  test('a foreign file is named as such', () => {
    assert.throws(() => decode(Buffer.from('GET / HTTP/1.1\r\n\r\n')), /not a honeygate recording/);
  });
});

describe('replay text', () => {
  test('text as it is, binary as hex', () => {
    assert.equal(looksLikeText(Buffer.from('USER root\r\n\tok')), true);
    assert.equal(looksLikeText(Buffer.from([0x16, 0x03, 0x01, 0x00])), false);
    assert.equal(looksLikeText(Buffer.from([0xff, 0xfe])), false);
    assert.equal(
      formatChunk({ kind: KIND.in, t: 1.5, data: Buffer.from('ls\n') }),
      '## +1.500s attacker > 3 bytes\nls\n',
    );
    assert.equal(
      formatChunk({ kind: KIND.out, t: 0, data: Buffer.from([0, 0x41]) }),
      '## +0.000s attacker < 2 bytes (hex)\n00000000  00 41                                            .A\n',
    );
  });
});

describe('pcap', () => {
  test('addresses: IPv4, IPv4-mapped, IPv6 forms', () => {
    assert.deepEqual([...addressBytes('198.51.100.7')], [198, 51, 100, 7]);
    assert.deepEqual([...addressBytes('::ffff:203.0.113.9')], [203, 0, 113, 9]);
    assert.equal(addressBytes('2001:db8::1').toString('hex'), '20010db8000000000000000000000001');
    assert.equal(addressBytes('::1').toString('hex'), `${'0'.repeat(31)}1`);
    assert.equal(addressBytes('2001:db8::192.0.2.1').toString('hex'), '20010db80000000000000000c0000201');
    assert.throws(() => addressBytes('nope'), /not an IP address/);
  });

  test('handshake, data in MSS segments with running sequence numbers, FINs, last ACK', () => {
    const data = Buffer.alloc(3000, 1);
    const packets = sessionPackets(HEADER, [
      { kind: KIND.in, t: 0.1, data },
      { kind: KIND.finIn, t: 0.2, data: Buffer.alloc(0) },
      { kind: KIND.finOut, t: 0.3, data: Buffer.alloc(0) },
    ]);
    const tcp = packets.map((p) => p.frame.subarray(14 + 20));
    const flags = tcp.map((t) => t[13]);
    assert.deepEqual(flags, [0x02, 0x12, 0x10, 0x10, 0x10, 0x18, 0x11, 0x11, 0x10]);
    const seq = tcp.map((t) => t.readUInt32BE(4));
    const isn = 0x01234567;
    assert.deepEqual(seq.slice(3, 7), [isn + 1, isn + 1461, isn + 2921, isn + 3001]);
    assert.equal(tcp[7]!.readUInt32BE(8), isn + 3002, "the server's FIN acknowledges the client's");
    const file = toPcap([{ header: HEADER, chunks: [] }]);
    assert.equal(file.readUInt32LE(0), 0xa1b2c3d4);
    assert.equal(file.readUInt32LE(20), 1, 'LINKTYPE_ETHERNET');
  });
});
