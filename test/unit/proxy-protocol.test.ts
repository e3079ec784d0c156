// PROXY protocol codec: spec examples, HAProxy byte-exact headers, encoder round trips, every
// truncation of every valid header, malformed headers, and a seeded fuzz run.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32c } from '../../src/net/crc32c.js';
import {
  type EncodeV2Options,
  encodeProxyV1,
  encodeProxyV2,
  type ParseOptions,
  type ParseResult,
  PP2_TYPE,
  type ProxyHeader,
  parseProxyHeader,
  type Tlv,
} from '../../src/net/proxy-protocol.js';

const BOTH: ParseOptions = { v1: true, v2: true };
const ONLY_V1: ParseOptions = { v1: true, v2: false };
const ONLY_V2: ParseOptions = { v1: false, v2: true };
const SIG = '0d0a0d0a000d0a515549540a';

const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const tlv = (type: number, value: Buffer | string): Tlv => ({
  type,
  value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value,
});
/** TLV bytes written by hand, so malformed lengths can be sent. */
function tlvBytes(type: number, value: Buffer, len = value.length): Buffer {
  const head = Buffer.alloc(3);
  head[0] = type;
  head.writeUInt16BE(len, 1);
  return Buffer.concat([head, value]);
}
/** A v2 header written by hand: signature, ver/cmd, family, length (defaults to body length), body. */
function v2raw(verCmd: number, fam: number, body: Buffer, len = body.length): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = verCmd;
  fixed[1] = fam;
  fixed.writeUInt16BE(len, 2);
  return Buffer.concat([hex(SIG), fixed, body]);
}
const IPV4_BLOCK = hex('c0000201 c6336407 c822 0016'); // 192.0.2.1:51234 -> 198.51.100.7:22
function sslValue(client: number, verify: number, subs: Tlv[]): Buffer {
  const head = Buffer.alloc(5);
  head[0] = client;
  head.writeUInt32BE(verify, 1);
  return Buffer.concat([head, ...subs.map((t) => tlvBytes(t.type, t.value))]);
}
/** Recomputes the CRC32C of a header whose CRC TLV value sits at `at`. */
function withCrc(h: Buffer, at: number): Buffer {
  const out = Buffer.from(h);
  out.fill(0, at, at + 4);
  out.writeUInt32BE(crc32c(out), at);
  return out;
}

function done(r: ParseResult): { header: ProxyHeader; consumed: number } {
  assert.equal(r.status, 'done', r.status === 'error' ? r.reason : 'incomplete');
  return r as { status: 'done'; header: ProxyHeader; consumed: number };
}
function expectFields(header: ProxyHeader, expect: Partial<ProxyHeader>): void {
  for (const [k, v] of Object.entries(expect)) {
    assert.deepEqual(header[k as keyof ProxyHeader], v, `field ${k}`);
  }
}

describe('crc32c', () => {
  it('matches the Castagnoli check value and chains through seed', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32c(Buffer.alloc(0)), 0);
    assert.equal(crc32c(Buffer.from('56789'), crc32c(Buffer.from('1234'))), 0xe3069283);
    // RFC 3720 B.4: 32 bytes of zeros.
    assert.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa);
  });
});

// ------------------------------------------------------------------------------------------
// Valid headers. Every one of these is also truncated byte by byte and followed by payload.

interface Fixture {
  name: string;
  bytes: Buffer;
  expect: Partial<ProxyHeader>;
}

const V6_MAX = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
const V1_FIXTURES: Fixture[] = [
  {
    name: 'spec example TCP4',
    bytes: ascii('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n'),
    expect: {
      version: 1,
      command: 'PROXY',
      family: 'TCP4',
      src: { ip: '192.168.0.1', port: 56324 },
      dst: { ip: '192.168.0.11', port: 443 },
      tlvs: [],
      length: 47,
    },
  },
  {
    name: 'longest TCP4 line (56 bytes)',
    bytes: ascii('PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n'),
    expect: { family: 'TCP4', src: { ip: '255.255.255.255', port: 65535 }, length: 56 },
  },
  {
    name: 'longest TCP6 line (104 bytes)',
    bytes: ascii(`PROXY TCP6 ${V6_MAX} ${V6_MAX} 65535 65535\r\n`),
    expect: { family: 'TCP6', src: { ip: V6_MAX, port: 65535 }, length: 104 },
  },
  {
    name: 'UNKNOWN short form',
    bytes: ascii('PROXY UNKNOWN\r\n'),
    expect: { command: 'PROXY', family: 'UNKNOWN', src: null, dst: null, length: 15 },
  },
  {
    name: 'UNKNOWN worst case (107 bytes), rest of line ignored',
    bytes: ascii(`PROXY UNKNOWN ${V6_MAX} ${V6_MAX} 65535 65535\r\n`),
    expect: { family: 'UNKNOWN', src: null, length: 107 },
  },
  {
    name: 'TCP6 upper case, uncompressed zeros -> normal form',
    bytes: ascii('PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 0 80\r\n'),
    expect: { src: { ip: '2001:db8::1', port: 0 }, dst: { ip: '::1', port: 80 } },
  },
  {
    name: 'TCP6 with an IPv4-mapped address (valid IPv6 text)',
    bytes: ascii('PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n'),
    expect: { src: { ip: '::ffff:192.0.2.1', port: 1 } },
  },
  {
    name: 'TCP4 zero octets and port 0',
    bytes: ascii('PROXY TCP4 0.0.0.0 10.0.0.1 0 80\r\n'),
    expect: { src: { ip: '0.0.0.0', port: 0 }, dst: { ip: '10.0.0.1', port: 80 } },
  },
];

// A real HAProxy send-proxy-v2 capture (TCP4, no TLVs) and its LOCAL health-check header.
const HAPROXY_TCP4 = hex(`${SIG}21 11 000c ac130001 ac130003 a652 0050`);
const HAPROXY_LOCAL = hex(`${SIG}20 00 0000`);
// Crafted from HAProxy's make_proxy_line_v2 order (crc32c, ALPN, authority, unique-id, ssl with
// version, cn, key_alg, sig_alg, cipher), CRC computed independently.
const HAPROXY_TLVS = hex(
  '0d0a0d0a000d0a515549540a211100a97f0000017f000001c35001bb030004fa' +
    '685ef4010002683202000b6578616d706c652e636f6d05002d37463030303030' +
    '313a433335305f37463030303030313a303142425f36354131423243335f3030' +
    '30313a3444322000500700000000210007544c5376312e3322000e636c69656e' +
    '742e6578616d706c652500075253413230343824000a5253412d534841323536' +
    '230016544c535f4145535f3235365f47434d5f534841333834',
);

const V2_HAPROXY: Fixture[] = [
  {
    name: 'HAProxy TCP4 capture',
    bytes: HAPROXY_TCP4,
    expect: {
      version: 2,
      command: 'PROXY',
      family: 'TCP4',
      src: { ip: '172.19.0.1', port: 42578 },
      dst: { ip: '172.19.0.3', port: 80 },
      tlvs: [],
      length: 28,
    },
  },
  {
    name: 'HAProxy LOCAL health check',
    bytes: HAPROXY_LOCAL,
    expect: { command: 'LOCAL', family: 'UNKNOWN', src: null, dst: null, tlvs: [], length: 16 },
  },
  {
    name: 'HAProxy TCP4 with crc32c, ALPN, authority, unique-id, ssl',
    bytes: HAPROXY_TLVS,
    expect: {
      family: 'TCP4',
      src: { ip: '127.0.0.1', port: 50000 },
      dst: { ip: '127.0.0.1', port: 443 },
      alpn: 'h2',
      authority: 'example.com',
      uniqueId: Buffer.from('7F000001:C350_7F000001:01BB_65A1B2C3_0001:4D2'),
      ssl: {
        client: 0x07,
        verify: 0,
        version: 'TLSv1.3',
        cn: 'client.example',
        keyAlg: 'RSA2048',
        sigAlg: 'RSA-SHA256',
        cipher: 'TLS_AES_256_GCM_SHA384',
        subTlvs: [
          tlv(0x21, 'TLSv1.3'),
          tlv(0x22, 'client.example'),
          tlv(0x25, 'RSA2048'),
          tlv(0x24, 'RSA-SHA256'),
          tlv(0x23, 'TLS_AES_256_GCM_SHA384'),
        ],
      },
      length: 185,
    },
  },
  {
    name: 'LOCAL with a TCP4 address block: block skipped, TLVs still read',
    bytes: v2raw(0x20, 0x11, Buffer.concat([IPV4_BLOCK, tlvBytes(0x02, ascii('lb.example'))])),
    expect: { command: 'LOCAL', family: 'TCP4', src: null, dst: null, authority: 'lb.example' },
  },
  {
    // The parser rejected a LOCAL header whose family byte was set with a length of 0, while the
    // spec says LOCAL ignores the address block and its family, and HAProxy accepts it.
    name: 'LOCAL with family TCP4 and length 0: accepted, nothing read',
    bytes: hex(`${SIG}20 11 0000`),
    expect: { command: 'LOCAL', family: 'TCP4', src: null, dst: null, tlvs: [], length: 16 },
  },
  {
    name: 'LOCAL with family TCP6 and a block shorter than its addresses',
    bytes: v2raw(0x20, 0x21, Buffer.alloc(12)),
    expect: { command: 'LOCAL', family: 'TCP6', src: null, tlvs: [], length: 28 },
  },
  {
    name: 'LOCAL with a UNIX address block',
    bytes: v2raw(0x20, 0x31, Buffer.alloc(216, 0x41)),
    expect: { command: 'LOCAL', family: 'UNIX_STREAM', src: null, tlvs: [] },
  },
];

// Encoder round trips: every address kind crossed with every TLV type.
const SRC4 = { ip: '192.0.2.1', port: 51234 };
const DST4 = { ip: '198.51.100.7', port: 22 };
const SRC6 = { ip: '2001:db8::1', port: 1 };
const DST6 = { ip: '2001:db8:0:0:1:0:0:2', port: 65535 };
const ADDRESS_CASES: Array<{ name: string; opts: EncodeV2Options; expect: Partial<ProxyHeader> }> = [
  {
    name: 'TCP4',
    opts: { src: SRC4, dst: DST4 },
    expect: { command: 'PROXY', family: 'TCP4', src: SRC4, dst: DST4 },
  },
  {
    name: 'TCP6',
    opts: { src: SRC6, dst: DST6 },
    expect: { family: 'TCP6', src: SRC6, dst: { ip: '2001:db8::1:0:0:2', port: 65535 } },
  },
  { name: 'UDP4', opts: { family: 'UDP4', src: SRC4, dst: DST4 }, expect: { family: 'UDP4', src: SRC4 } },
  { name: 'UDP6', opts: { family: 'UDP6', src: SRC6, dst: DST6 }, expect: { family: 'UDP6', src: SRC6 } },
  {
    name: 'mixed IPv4/IPv6 -> TCP6 with a mapped address',
    opts: { src: SRC4, dst: SRC6 },
    expect: { family: 'TCP6', src: { ip: '::ffff:192.0.2.1', port: 51234 }, dst: SRC6 },
  },
  {
    name: 'UNIX_STREAM',
    opts: { unixSrc: '/run/client.sock', unixDst: '/run/honeypot.sock' },
    expect: {
      family: 'UNIX_STREAM',
      src: null,
      dst: null,
      unixSrc: '/run/client.sock',
      unixDst: '/run/honeypot.sock',
    },
  },
  {
    name: 'UNIX_DGRAM, abstract source, 108-byte destination',
    opts: { family: 'UNIX_DGRAM', unixSrc: '\0hg-abstract', unixDst: 'p'.repeat(108) },
    expect: { family: 'UNIX_DGRAM', unixSrc: '\0hg-abstract', unixDst: 'p'.repeat(108) },
  },
  {
    name: 'UNSPEC with PROXY',
    opts: { command: 'PROXY', family: 'UNKNOWN' },
    expect: { command: 'PROXY', family: 'UNKNOWN', src: null },
  },
  { name: 'LOCAL', opts: {}, expect: { command: 'LOCAL', family: 'UNKNOWN', src: null, dst: null } },
  {
    name: 'LOCAL given addresses sends none',
    opts: { command: 'LOCAL', src: SRC4, dst: DST4 },
    expect: { command: 'LOCAL', family: 'UNKNOWN', src: null },
  },
];

const SSL_SUBS = [
  tlv(0x21, 'TLSv1.2'),
  tlv(0x22, 'Mallory Ünïcode'),
  tlv(0x23, 'ECDHE-RSA-AES128-GCM-SHA256'),
  tlv(0x24, 'RSA-SHA256'),
  tlv(0x25, 'RSA2048'),
  tlv(0x2f, Buffer.from([1, 2, 3])), // unknown sub-TLV kept
];
const UNIQUE = Buffer.alloc(128, 0xab);
const TLV_CASES: Array<{ name: string; tlvs: Tlv[]; crc?: boolean; expect: Partial<ProxyHeader> }> = [
  { name: 'no TLV', tlvs: [], expect: { tlvs: [] } },
  { name: 'ALPN', tlvs: [tlv(PP2_TYPE.ALPN, 'h2')], expect: { alpn: 'h2' } },
  {
    name: 'AUTHORITY (UTF-8)',
    tlvs: [tlv(PP2_TYPE.AUTHORITY, 'bücher.example')],
    expect: { authority: 'bücher.example' },
  },
  { name: 'CRC32C', tlvs: [], crc: true, expect: {} },
  {
    name: 'NOOP, empty and padded',
    tlvs: [tlv(PP2_TYPE.NOOP, ''), tlv(PP2_TYPE.NOOP, Buffer.alloc(5))],
    expect: {},
  },
  { name: 'UNIQUE_ID of 128 bytes', tlvs: [tlv(PP2_TYPE.UNIQUE_ID, UNIQUE)], expect: { uniqueId: UNIQUE } },
  {
    name: 'SSL with every sub-TLV',
    tlvs: [tlv(PP2_TYPE.SSL, sslValue(0x05, 1, SSL_SUBS))],
    expect: {
      ssl: {
        client: 0x05,
        verify: 1,
        version: 'TLSv1.2',
        cn: 'Mallory Ünïcode',
        cipher: 'ECDHE-RSA-AES128-GCM-SHA256',
        sigAlg: 'RSA-SHA256',
        keyAlg: 'RSA2048',
        subTlvs: SSL_SUBS,
      },
    },
  },
  {
    name: 'SSL without sub-TLVs',
    tlvs: [tlv(PP2_TYPE.SSL, sslValue(0, 0, []))],
    expect: { ssl: { client: 0, verify: 0, subTlvs: [] } },
  },
  { name: 'NETNS', tlvs: [tlv(PP2_TYPE.NETNS, 'honeypots')], expect: { netns: 'honeypots' } },
  { name: 'custom type 0xE0', tlvs: [tlv(0xe0, Buffer.from([0, 0xff]))], expect: {} },
  {
    name: 'all together with CRC32C',
    tlvs: [
      tlv(PP2_TYPE.ALPN, 'http/1.1'),
      tlv(PP2_TYPE.AUTHORITY, 'a.example'),
      tlv(PP2_TYPE.NOOP, Buffer.alloc(3)),
      tlv(PP2_TYPE.UNIQUE_ID, 'flow-1'),
      tlv(PP2_TYPE.SSL, sslValue(1, 0, [tlv(0x21, 'TLSv1.3')])),
      tlv(PP2_TYPE.NETNS, 'blue'),
      tlv(0xf0, 'x'),
    ],
    crc: true,
    expect: { alpn: 'http/1.1', authority: 'a.example', uniqueId: Buffer.from('flow-1'), netns: 'blue' },
  },
];

const ROUND_TRIPS: Array<Fixture & { tlvs: Tlv[]; crc: boolean }> = [];
for (const a of ADDRESS_CASES) {
  for (const t of TLV_CASES) {
    ROUND_TRIPS.push({
      name: `${a.name} + ${t.name}`,
      bytes: encodeProxyV2({ ...a.opts, tlvs: t.tlvs, crc32c: t.crc }),
      expect: { version: 2, ...a.expect, ...t.expect },
      tlvs: t.tlvs,
      crc: t.crc ?? false,
    });
  }
}

const ALL_VALID: Fixture[] = [...V1_FIXTURES, ...V2_HAPROXY, ...ROUND_TRIPS];

describe('valid headers', () => {
  for (const f of [...V1_FIXTURES, ...V2_HAPROXY]) {
    it(f.name, () => {
      const { header, consumed } = done(parseProxyHeader(f.bytes, BOTH));
      assert.equal(consumed, f.bytes.length);
      expectFields(header, f.expect);
    });
  }

  it('v2 encoder round trips every address kind with every TLV type', () => {
    for (const f of ROUND_TRIPS) {
      const { header, consumed } = done(parseProxyHeader(f.bytes, BOTH));
      assert.equal(consumed, f.bytes.length, f.name);
      assert.equal(header.length, f.bytes.length, f.name);
      expectFields(header, f.expect);
      // Every TLV comes back in order; the CRC TLV, when asked for, is the last one.
      assert.deepEqual(header.tlvs.slice(0, f.tlvs.length), f.tlvs, f.name);
      assert.equal(header.tlvs.length, f.tlvs.length + (f.crc ? 1 : 0), f.name);
      if (f.crc) assert.equal(header.tlvs.at(-1)?.type, PP2_TYPE.CRC32C, f.name);
    }
  });

  it('v2 encoder reproduces the HAProxy captures byte for byte', () => {
    const tcp4 = encodeProxyV2({
      src: { ip: '172.19.0.1', port: 42578 },
      dst: { ip: '172.19.0.3', port: 80 },
    });
    assert.deepEqual(tcp4, HAPROXY_TCP4);
    assert.deepEqual(encodeProxyV2({}), HAPROXY_LOCAL);
  });

  it('a v2 length equal to maxV2Length is accepted', () => {
    const h = v2raw(0x21, 0x11, Buffer.concat([IPV4_BLOCK, tlvBytes(PP2_TYPE.NOOP, Buffer.alloc(85))]));
    assert.equal(h.length - 16, 100);
    done(parseProxyHeader(h, { ...BOTH, maxV2Length: 100 }));
  });
});

describe('truncation and payload', () => {
  it('every proper prefix of every valid header is incomplete', () => {
    for (const f of ALL_VALID) {
      const own = f.bytes[0] === 0x50 ? ONLY_V1 : ONLY_V2;
      for (let n = 0; n < f.bytes.length; n++) {
        for (const opts of [BOTH, own]) {
          const r = parseProxyHeader(f.bytes.subarray(0, n), opts);
          assert.deepEqual(r, { status: 'incomplete' }, `${f.name}: prefix of ${n}/${f.bytes.length} bytes`);
        }
      }
    }
  });

  it('bytes after the header are left to the stream', () => {
    const payloads = [
      ascii('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      hex(`${SIG}21110000`),
      ascii('\r\n'),
      Buffer.alloc(70000),
    ];
    for (const f of ALL_VALID) {
      for (const p of payloads) {
        const { header, consumed } = done(parseProxyHeader(Buffer.concat([f.bytes, p]), BOTH));
        assert.equal(consumed, f.bytes.length, f.name);
        assert.equal(header.length, f.bytes.length, f.name);
      }
    }
  });
});

// ------------------------------------------------------------------------------------------
// Malformed input. `bytes` is complete unless the case says the error must come early.

interface Bad {
  name: string;
  bytes: Buffer;
  reason: RegExp | string;
  opts?: ParseOptions;
}

const crcFixture = encodeProxyV2({ src: SRC4, dst: DST4, crc32c: true });
const badCrc = Buffer.from(crcFixture);
badCrc[27] = badCrc[27]! ^ 0x01; // destination port changed after the CRC was computed
const v1 = (line: string): Buffer => ascii(line);

const MALFORMED: Bad[] = [
  // Which protocol is it?
  {
    name: 'HTTP request',
    bytes: v1('GET / HTTP/1.1\r\n'),
    reason: /first byte 0x47, expected "P" \(v1\) or 0x0D \(v2\)/,
  },
  { name: 'TLS ClientHello', bytes: hex('16030100'), reason: /first byte 0x16/ },
  { name: 'lower-case proxy', bytes: v1('proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n'), reason: /first byte 0x70/ },
  {
    name: 'v1 header while v1 is disabled',
    bytes: V1_FIXTURES[0]!.bytes,
    opts: ONLY_V2,
    reason: 'v1 header received but only v2 is accepted',
  },
  { name: 'v1 first byte while v1 is disabled', bytes: v1('P'), opts: ONLY_V2, reason: /only v2/ },
  {
    name: 'v2 header while v2 is disabled',
    bytes: HAPROXY_TCP4,
    opts: ONLY_V1,
    reason: 'v2 header received but only v1 is accepted',
  },
  {
    name: 'no version enabled',
    bytes: HAPROXY_TCP4,
    opts: { v1: false, v2: false },
    reason: /no PROXY protocol version enabled/,
  },
  {
    name: 'first byte error names only enabled versions',
    bytes: v1('X'),
    opts: ONLY_V2,
    reason: /expected 0x0D \(v2\)$/,
  },

  // v2 fixed part, decided as soon as the byte arrives.
  {
    name: 'bad signature byte',
    bytes: hex('0d0a0d0a000d0a52'),
    reason: 'v2: signature byte 7 is 0x52, expected 0x51',
  },
  { name: 'signature as v1 CRLF', bytes: hex('0d0a50524f5859'), reason: /signature byte 2/ },
  { name: 'version nibble 1', bytes: hex(`${SIG}11`), reason: 'v2: version nibble is 1, only 2 is valid' },
  { name: 'version nibble 3', bytes: hex(`${SIG}31`), reason: /version nibble is 3/ },
  { name: 'command 2', bytes: hex(`${SIG}22`), reason: 'v2: command 0x2 is not 0x0 (LOCAL) or 0x1 (PROXY)' },
  { name: 'command 0xF', bytes: hex(`${SIG}2f`), reason: /command 0xF/ },
  {
    name: 'family 0x13',
    bytes: hex(`${SIG}2113`),
    reason: /family\/transport byte 0x13 is not one of 0x00, 0x11/,
  },
  { name: 'family 0x41', bytes: hex(`${SIG}2141`), reason: /byte 0x41/ },
  { name: 'family 0x01 (UNSPEC + STREAM)', bytes: hex(`${SIG}2101`), reason: /byte 0x01/ },
  { name: 'family 0x10 (INET + UNSPEC)', bytes: hex(`${SIG}2010`), reason: /byte 0x10/ },
  {
    name: 'length over the default 4096',
    bytes: hex(`${SIG}21111001`),
    reason: 'v2: header length 4097 exceeds the limit of 4096',
  },
  {
    name: 'length over maxV2Length',
    bytes: hex(`${SIG}21110065`),
    opts: { ...BOTH, maxV2Length: 100 },
    reason: /101 exceeds the limit of 100/,
  },
  { name: 'length 0xFFFF', bytes: hex(`${SIG}2111ffff`), reason: /65535 exceeds/ },
  {
    name: 'length short of the TCP4 block',
    bytes: v2raw(0x21, 0x11, IPV4_BLOCK.subarray(0, 11)),
    reason: /length 11 is too short for the TCP4 address block \(12 bytes\)/,
  },
  {
    name: 'length short of the TCP6 block',
    bytes: hex(`${SIG}2121000c`),
    reason: /too short for the TCP6 address block \(36/,
  },
  {
    name: 'length short of the UNIX block',
    bytes: hex(`${SIG}21320064`),
    reason: /UNIX_DGRAM address block \(216/,
  },

  // TLV framing.
  {
    name: 'TLV overrun',
    bytes: v2raw(0x21, 0x11, Buffer.concat([IPV4_BLOCK, tlvBytes(0x02, Buffer.alloc(12), 40)])),
    reason: 'v2: TLV 0x02 overruns header (len 40 > 12 left)',
  },
  {
    name: 'TLV overrun seen before the header is all in',
    bytes: v2raw(0x21, 0x11, Buffer.concat([IPV4_BLOCK, tlvBytes(0x01, Buffer.alloc(0), 500)]), 100),
    reason: /TLV 0x01 overruns header \(len 500 > 85 left\)/,
  },
  {
    name: 'TLV underrun: 2 stray bytes',
    bytes: v2raw(0x21, 0x11, Buffer.concat([IPV4_BLOCK, hex('0400')])),
    reason: /2 stray byte\(s\) at the end of header/,
  },
  {
    name: 'TLV underrun: stray byte after a TLV',
    bytes: v2raw(0x21, 0x00, Buffer.concat([tlvBytes(0x04, Buffer.alloc(2)), hex('00')])),
    reason: /1 stray byte/,
  },
  {
    name: 'bad CRC32C',
    bytes: badCrc,
    reason: /CRC32C mismatch \(header says 0x[0-9A-F]{8}, computed 0x[0-9A-F]{8}\)/,
  },
  {
    name: 'CRC32C TLV of length 3',
    bytes: v2raw(0x21, 0x11, Buffer.concat([IPV4_BLOCK, tlvBytes(0x03, Buffer.alloc(3))])),
    reason: 'v2: CRC32C TLV has length 3, must be 4',
  },
  {
    name: 'two CRC32C TLVs',
    bytes: (() => {
      const h = v2raw(
        0x21,
        0x11,
        Buffer.concat([IPV4_BLOCK, tlvBytes(3, Buffer.alloc(4)), tlvBytes(3, Buffer.alloc(4))]),
      );
      return withCrc(withCrc(h, 38), 31); // the first CRC checks out; the second is a duplicate
    })(),
    reason: /TLV 0x03 appears more than once/,
  },
  {
    name: 'UNIQUE_ID of 129 bytes (decided from the TLV header alone)',
    bytes: v2raw(0x21, 0x11, Buffer.concat([IPV4_BLOCK, tlvBytes(0x05, Buffer.alloc(0), 129)]), 12 + 3 + 129),
    reason: 'v2: UNIQUE_ID TLV has length 129, at most 128 allowed',
  },
  {
    name: 'duplicate AUTHORITY',
    bytes: v2raw(0x21, 0x00, Buffer.concat([tlvBytes(2, ascii('a')), tlvBytes(2, ascii('b'))])),
    reason: /TLV 0x02 appears more than once/,
  },
  {
    name: 'SSL TLV shorter than 5',
    bytes: v2raw(0x21, 0x00, tlvBytes(0x20, Buffer.alloc(4))),
    reason: 'v2: SSL TLV has length 4, needs at least 5 (client, verify)',
  },
  {
    name: 'SSL sub-TLV overrun',
    bytes: v2raw(
      0x21,
      0x00,
      tlvBytes(0x20, Buffer.concat([Buffer.alloc(5), tlvBytes(0x21, ascii('TLS'), 9)])),
    ),
    reason: 'v2: TLV 0x21 overruns SSL TLV (len 9 > 3 left)',
  },
  {
    name: 'SSL sub-TLV underrun',
    bytes: v2raw(0x21, 0x00, tlvBytes(0x20, Buffer.concat([Buffer.alloc(5), hex('2100')]))),
    reason: /2 stray byte\(s\) at the end of SSL TLV/,
  },
  {
    name: 'duplicate SSL CN',
    bytes: v2raw(0x21, 0x00, tlvBytes(0x20, sslValue(1, 0, [tlv(0x22, 'a'), tlv(0x22, 'b')]))),
    reason: /SSL sub-TLV 0x22 appears more than once/,
  },
  {
    name: 'LOCAL still validates TLVs',
    bytes: v2raw(0x20, 0x11, Buffer.concat([IPV4_BLOCK, hex('01')])),
    reason: /1 stray byte/,
  },

  // v1 framing.
  {
    name: 'v1 over 107 bytes without CRLF',
    bytes: v1(`PROXY UNKNOWN ${'a'.repeat(100)}`),
    reason: 'v1: no CRLF within the first 107 bytes',
  },
  {
    name: 'v1 of 108 bytes with CRLF',
    bytes: v1(`PROXY UNKNOWN ${'a'.repeat(92)}\r\n`),
    reason: /no CRLF within the first 107/,
  },
  {
    name: 'LF without CR',
    bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'),
    reason: 'v1: line ends in a lone LF at byte 30 (CRLF required)',
  },
  { name: 'LF without CR in UNKNOWN', bytes: v1('PROXY UNKNOWN\n'), reason: /lone LF/ },
  {
    name: 'CR without LF',
    bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX'),
    reason: 'v1: CR at byte 30 is not followed by LF',
  },
  { name: 'CR CR LF', bytes: v1('PROXY UNKNOWN\r\r\n'), reason: /CR at byte 13 is not followed by LF/ },
  { name: 'PROXY without protocol', bytes: v1('PROXY\r\n'), reason: /must be followed by a space/ },
  { name: 'PROXYX', bytes: v1('PROXYX'), reason: /line starts with "PROXYX"/ },
  { name: 'PROXY then tab', bytes: v1('PROXY\t'), reason: /line starts with "PROXY\\x09"/ },
  { name: 'double space before protocol', bytes: v1('PROXY  '), reason: /empty protocol field/ },
  { name: 'protocol TCP5', bytes: v1('PROXY TCP5'), reason: /protocol "TCP5" is not TCP4, TCP6 or UNKNOWN/ },
  { name: 'protocol tcp4', bytes: v1('PROXY tcp4 '), reason: /protocol "tcp4"/ },
  { name: 'protocol UDP4', bytes: v1('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'), reason: /protocol "UDP4"/ },
  { name: 'UNKNOWNX', bytes: v1('PROXY UNKNOWNX\r\n'), reason: /protocol "UNKNOWNX"/ },
  {
    name: 'too few fields',
    bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'),
    reason: 'v1: TCP4 line has 5 fields, expected 6',
  },
  { name: 'too many fields', bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n'), reason: /has 7 fields/ },
  { name: 'trailing space', bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n'), reason: /has 7 fields/ },
  {
    name: 'double space between addresses',
    bytes: v1('PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n'),
    reason: /empty destination address/,
  },
  { name: 'NUL in a v1 line', bytes: v1('PROXY TCP4 1.2.3.4\0'), reason: /source address "1.2.3.4\\x00"/ },
];

// Bad addresses and ports, each in a full line and each a complete v1 header otherwise.
const BAD_V4 = [
  '256.1.1.1',
  '1.2.3',
  '1.2.3.4.5',
  '01.2.3.4',
  '1.2.3.00',
  '1.2.3.-1',
  '1..2.3',
  '::1',
  '1.2.3.4a',
  '0x1.2.3.4',
  '',
];
const BAD_V6 = [
  '1.2.3.4',
  '1:2:3:4:5:6:7:8:9',
  'fe80::1%eth0',
  '::ffff:01.2.3.4',
  'gggg::1',
  '1:::2',
  '1::2::3',
  '12345::1',
  ':1',
  '1:2:3:4:5:6:7',
];
const BAD_PORTS = ['65536', '+80', '-1', '080', '1e3', '0x50', '99999', '123456', ' 80'];
for (const ip of BAD_V4) {
  MALFORMED.push({
    name: `TCP4 source ${JSON.stringify(ip)}`,
    bytes: v1(`PROXY TCP4 ${ip} 5.6.7.8 1 2\r\n`),
    reason: /source address/,
  });
}
for (const ip of BAD_V6) {
  MALFORMED.push({
    name: `TCP6 destination ${JSON.stringify(ip)}`,
    bytes: v1(`PROXY TCP6 ::1 ${ip} 1 2\r\n`),
    reason: /destination address/,
  });
}
for (const port of BAD_PORTS) {
  MALFORMED.push({
    name: `port ${JSON.stringify(port)}`,
    bytes: v1(`PROXY TCP4 1.2.3.4 5.6.7.8 ${port} 2\r\n`),
    reason: /source port|has 7 fields|empty source port/,
  });
}

describe('malformed headers', () => {
  for (const b of MALFORMED) {
    it(b.name, () => {
      const r = parseProxyHeader(b.bytes, b.opts ?? BOTH);
      assert.equal(r.status, 'error', `expected an error, got ${JSON.stringify(r)}`);
      const reason = (r as { reason: string }).reason;
      if (typeof b.reason === 'string') assert.equal(reason, b.reason);
      else assert.match(reason, b.reason);
    });
  }

  it('errors come as early as the bytes allow', () => {
    // Each of these is the shortest prefix that can no longer become a header.
    const early: Array<[string, Buffer]> = [
      ['bad first byte', v1('G')],
      ['v2 signature mismatch at byte 4', hex('0d0a0d0a01')],
      ['octet over 255', v1('PROXY TCP4 256')],
      ['leading zero in an octet', v1('PROXY TCP4 1.02')],
      ['fifth octet', v1('PROXY TCP4 1.2.3.4.')],
      ['port over 65535', v1('PROXY TCP4 1.2.3.4 5.6.7.8 65536')],
      ['leading zero in a port', v1('PROXY TCP4 1.2.3.4 5.6.7.8 01')],
      ['sign in a port', v1('PROXY TCP4 1.2.3.4 5.6.7.8 +')],
      ['IPv6 group of 5 digits', v1('PROXY TCP6 12345')],
      ['second "::"', v1('PROXY TCP6 1::2::')],
      ['oversized v2 length', hex(`${SIG}21111001`)],
    ];
    for (const [name, bytes] of early) {
      assert.equal(parseProxyHeader(bytes, BOTH).status, 'error', name);
      assert.equal(
        parseProxyHeader(bytes.subarray(0, -1), BOTH).status,
        'incomplete',
        `${name}: one byte shorter`,
      );
    }
  });
});

describe('encoders', () => {
  it('encodeProxyV1 writes TCP4/TCP6 lines and UNKNOWN for mixed or non-IP', () => {
    const cases: Array<[string, string, string]> = [
      ['192.0.2.1', '198.51.100.7', 'PROXY TCP4 192.0.2.1 198.51.100.7 51234 22\r\n'],
      ['::ffff:192.0.2.1', '198.51.100.7', 'PROXY TCP4 192.0.2.1 198.51.100.7 51234 22\r\n'], // dual-stack socket
      ['2001:DB8:0::1', '::1', 'PROXY TCP6 2001:db8::1 ::1 51234 22\r\n'],
      ['192.0.2.1', '2001:db8::1', 'PROXY UNKNOWN\r\n'],
      ['/run/x.sock', '192.0.2.1', 'PROXY UNKNOWN\r\n'],
      ['fe80::1%eth0', '::1', 'PROXY UNKNOWN\r\n'],
    ];
    for (const [s, d, line] of cases) {
      const out = encodeProxyV1({ ip: s, port: 51234 }, { ip: d, port: 22 });
      assert.equal(out.toString('latin1'), line);
      done(parseProxyHeader(out, ONLY_V1));
    }
  });

  it('issue #14 fuzz: ::a.b.c.d (IPv4-compatible) was encoded as the IPv4 address a.b.c.d', () => {
    // ipaddr.js reads "::1.2.3.4" as "::ffff:1.2.3.4"; the encoders then told the honeypot
    // "PROXY TCP4 1.2.3.4 5.6.7.8", someone else's address. Node prints those bytes so.
    const v1line = encodeProxyV1({ ip: '::1.2.3.4', port: 1 }, { ip: '::5.6.7.8', port: 2 }).toString(
      'latin1',
    );
    assert.equal(v1line, 'PROXY TCP6 ::1.2.3.4 ::5.6.7.8 1 2\r\n');
    const { header } = done(
      parseProxyHeader(encodeProxyV2({ src: { ip: '::1.2.3.4', port: 1 }, dst: DST6 }), ONLY_V2),
    );
    expectFields(header, { family: 'TCP6', src: { ip: '::1.2.3.4', port: 1 } });
    // The mapped form still becomes IPv4, as before.
    assert.equal(
      encodeProxyV1({ ip: '::ffff:1.2.3.4', port: 1 }, { ip: '5.6.7.8', port: 2 }).toString('latin1'),
      'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n',
    );
  });

  it('encodeProxyV2 without two IP addresses sends PROXY with UNSPEC, as v1 sends UNKNOWN', () => {
    for (const opts of [{ src: SRC4 }, { src: { ip: 'x', port: 1 }, dst: DST4 }] as EncodeV2Options[]) {
      const { header } = done(parseProxyHeader(encodeProxyV2(opts), ONLY_V2));
      expectFields(header, { command: 'PROXY', family: 'UNKNOWN', src: null, dst: null, length: 16 });
    }
  });

  it('encoders refuse values no receiver would accept', () => {
    assert.throws(
      () => encodeProxyV1({ ip: '1.2.3.4', port: 65536 }, { ip: '1.2.3.4', port: 1 }),
      /port must be an integer 0-65535/,
    );
    assert.throws(() => encodeProxyV2({ src: SRC4, dst: { ...DST4, port: -1 } }), RangeError);
    assert.throws(() => encodeProxyV2({ family: 'TCP4', src: SRC4 }), /TCP4 needs literal IP addresses/);
    assert.throws(() => encodeProxyV2({ family: 'TCP4', src: SRC4, dst: SRC6 }), /TCP4 needs IPv4/);
    assert.throws(
      () => encodeProxyV2({ family: 'UDP6', src: { ip: 'x', port: 1 }, dst: DST4 }),
      /literal IP/,
    );
    assert.throws(() => encodeProxyV2({ unixSrc: 'p'.repeat(109) }), /at most 108/);
    assert.throws(() => encodeProxyV2({ tlvs: [tlv(PP2_TYPE.UNIQUE_ID, Buffer.alloc(129))] }), /at most 128/);
    assert.throws(() => encodeProxyV2({ tlvs: [tlv(256, '')] }), /type must be 0-255/);
    assert.throws(() => encodeProxyV2({ tlvs: [tlv(3, Buffer.alloc(4))], crc32c: true }), /one or the other/);
    assert.throws(
      () => encodeProxyV2({ tlvs: [tlv(0xe0, Buffer.alloc(40000)), tlv(0xe1, Buffer.alloc(40000))] }),
      /at most 65535/,
    );
  });
});

// ------------------------------------------------------------------------------------------
// Fuzz: seeded, so a failure names the seed and the input to replay.

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function checkResult(buf: Buffer, opts: ParseOptions, where: string): ParseResult {
  let r: ParseResult;
  try {
    r = parseProxyHeader(buf, opts);
  } catch (err) {
    assert.fail(`${where}: threw ${(err as Error).message} on ${buf.toString('hex')}`);
  }
  switch (r.status) {
    case 'incomplete':
      break;
    case 'error':
      assert.ok(typeof r.reason === 'string' && r.reason.length > 0, where);
      assert.ok(!r.reason.startsWith('internal error'), `${where}: ${r.reason} on ${buf.toString('hex')}`);
      break;
    case 'done':
      assert.ok(r.consumed > 0 && r.consumed <= buf.length && r.consumed === r.header.length, where);
      break;
    default:
      assert.fail(`${where}: unknown status ${JSON.stringify(r)}`);
  }
  return r;
}

describe('fuzz', () => {
  const seed = Number(process.env.HG_FUZZ_SEED ?? 0x5eed);
  const rand = rng(seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const optsList: ParseOptions[] = [BOTH, ONLY_V1, ONLY_V2, { ...BOTH, maxV2Length: 64 }];

  it(`10,000 random buffers never throw (seed ${seed})`, () => {
    const starts = [
      Buffer.alloc(0),
      v1('P'),
      v1('PROXY '),
      v1('PROXY TCP4 '),
      v1('PROXY TCP6 '),
      hex(SIG),
      hex(`${SIG}21`),
    ];
    for (let i = 0; i < 10_000; i++) {
      const start = starts[int(starts.length)]!;
      const tail =
        rand() < 0.5
          ? bytes(int(300))
          : ascii(
              Array.from({ length: int(120) }, () => '0123456789abcdef.: \r\nPROXYTCUNKW'[int(32)]).join(''),
            );
      checkResult(Buffer.concat([start, tail]), optsList[int(optsList.length)]!, `seed ${seed} random #${i}`);
    }
  });

  it(`10,000 mutations of valid headers never throw, and errors and results are stable as bytes arrive (seed ${seed})`, () => {
    const mutate = (b: Buffer): Buffer => {
      const out = Buffer.from(b);
      const pos = int(Math.max(1, out.length));
      switch (int(6)) {
        case 0: // flip bits in one byte
          out[pos] = out[pos]! ^ (1 + int(255));
          return out;
        case 1: // delete a span
          return Buffer.concat([out.subarray(0, pos), out.subarray(pos + 1 + int(8))]);
        case 2: // insert random bytes
          return Buffer.concat([out.subarray(0, pos), bytes(1 + int(8)), out.subarray(pos)]);
        case 3: // random v2 length field
          if (out.length >= 16) out.writeUInt16BE(int(65536), 14);
          return out;
        case 4: // random TLV-ish length somewhere
          if (out.length >= 3) out.writeUInt16BE(int(512), Math.min(pos, out.length - 2));
          return out;
        default: // several flips
          for (let k = 0; k < 4; k++) out[int(out.length)] = int(256);
          return out;
      }
    };
    for (let i = 0; i < 10_000; i++) {
      const base = ALL_VALID[int(ALL_VALID.length)]!.bytes;
      const buf = mutate(base);
      const opts = optsList[int(optsList.length)]!;
      const where = `seed ${seed} mutation #${i}`;
      const full = checkResult(buf, opts, where);
      if (i % 5 !== 0) continue;
      // Fed byte by byte, an error or a header, once seen, must not change.
      let settled: ParseResult | null = null;
      for (let n = 0; n <= buf.length; n++) {
        const r = checkResult(buf.subarray(0, n), opts, where);
        if (settled?.status === 'error')
          assert.equal(r.status, 'error', `${where}: error went away at ${n} bytes: ${buf.toString('hex')}`);
        if (settled?.status === 'done') {
          assert.equal(r.status, 'done', where);
          assert.equal((r as { consumed: number }).consumed, settled.consumed, where);
        }
        if (!settled && r.status !== 'incomplete') settled = r;
      }
      assert.equal(full.status, (settled ?? { status: 'incomplete' }).status, where);
    }
  });
});
