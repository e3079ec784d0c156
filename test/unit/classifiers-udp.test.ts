// The UDP classifiers on real datagrams: dig and snmpget captured on loopback, the rest from
// nmap's nmap-payloads (the probes scanners send). Every truncation of every fixture, and
// random bytes, must neither throw nor be taken for another protocol.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyDatagram, UDP_CLASSIFIERS } from '../../src/classifiers/index.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const FIXTURES: { name: string; bytes: Buffer; protocol: string; fields: Record<string, unknown> }[] = [
  {
    name: 'dig example.com (EDNS, cookie)',
    bytes: Buffer.from('dr4BIAABAAAAAAABB2V4YW1wbGUDY29tAAABAAEAACkE0AAAAAAADAAKAAheWXNhmF5ipg==', 'base64'),
    protocol: 'dns',
    fields: {
      id: 30398,
      opcode: 0,
      name: 'example.com.',
      type: 'A',
      class: 'IN',
      recursion: true,
      questions: 1,
      additional: 1,
    },
  },
  {
    name: 'snmpget -v2c -c public sysDescr.0',
    bytes: hex('302902010104067075626c6963a01c02040bc8a693020100020100300e300c06082b060102010101000500'),
    protocol: 'snmp',
    fields: { version: '2c', community: 'public', pdu: 'get' },
  },
  {
    name: 'snmpget -v3 (engine discovery)',
    bytes: hex(
      '303e020103301102047b3ba4fa020300ffe30401040201030410300e0400020100020100040004000400301404000400a00e02041ddcf7380201000201003000',
    ),
    protocol: 'snmp',
    fields: { version: '3' },
  },
  {
    name: 'nmap SNMP public walk (v1 get-next)',
    bytes: hex('301f02010004067075626c6963a112020100020100020100300730050601000500'),
    protocol: 'snmp',
    fields: { version: '1', community: 'public', pdu: 'get-next' },
  },
  {
    name: 'nmap NTPRequest (client, v4)',
    bytes: hex(
      'E30004FA000100000001000000000000000000000000000000000000000000000000000000000000C54F234B71B152F3',
    ),
    protocol: 'ntp',
    fields: { version: 4, mode: 'client', stratum: 0 },
  },
  {
    name: 'ntpdc monlist (mode 7, REQ_MON_GETLIST_1)',
    bytes: hex('1700032a00000000'),
    protocol: 'ntp',
    fields: { version: 2, mode: 'private', request: 'monlist' },
  },
  {
    name: 'nmap CLDAP (AD LDAP ping, long-form BER lengths)',
    bytes: Buffer.concat([
      hex('30840000002d02010763840000002404000a01000a0100020100020164010100870b'),
      Buffer.from('objectClass'),
      hex('308400000000'),
    ]),
    protocol: 'cldap',
    fields: { operation: 'search', messageId: 7, baseObject: '' },
  },
  {
    name: 'nmap UPnP M-SEARCH',
    bytes: Buffer.from(
      'M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nMan: "ssdp:discover"\r\nMX: 5\r\nST: ssdp:all\r\n\r\n',
    ),
    protocol: 'ssdp',
    fields: { method: 'M-SEARCH', target: 'ssdp:all', man: '"ssdp:discover"' },
  },
  {
    name: 'nmap memcached version',
    bytes: Buffer.from('\0\x01\0\0\0\x01\0\0version\r\n', 'latin1'),
    protocol: 'memcached',
    fields: { command: 'version', line: 'version', requestId: 1 },
  },
  {
    name: 'sipvicious-style OPTIONS',
    bytes: Buffer.from(
      'OPTIONS sip:100@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK-1\r\n' +
        'From: "sipvicious"<sip:100@1.1.1.1>;tag=6434\r\nTo: "sipvicious"<sip:100@1.1.1.1>\r\n' +
        'Call-ID: 1\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n',
    ),
    protocol: 'sip',
    fields: { method: 'OPTIONS', uri: 'sip:100@198.51.100.7', userAgent: 'friendly-scanner' },
  },
];

for (const f of FIXTURES) {
  test(`${f.name}: ${f.protocol}`, () => {
    const v = classifyDatagram(f.bytes);
    assert.ok('match' in v && v.match, `no match for ${f.bytes.toString('hex')}`);
    assert.equal(v.protocol, f.protocol);
    for (const [k, want] of Object.entries(f.fields)) assert.deepEqual(v.fields[k], want, k);
  });

  test(`${f.name}: every truncation is no other protocol, and nothing throws`, () => {
    for (let n = 0; n < f.bytes.length; n++) {
      const cut = f.bytes.subarray(0, n);
      for (const c of UDP_CLASSIFIERS) c.classify(cut, true); // throws fail the test
      const v = classifyDatagram(cut);
      if ('match' in v && v.match) assert.equal(v.protocol, f.protocol, `${n} bytes: ${v.protocol}`);
    }
  });
}

test('random datagrams: no classifier throws', () => {
  let seed = 7;
  const next = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  for (let i = 0; i < 5000; i++) {
    const buf = Buffer.alloc(next() % 300);
    for (let j = 0; j < buf.length; j++) buf[j] = next() & 0xff;
    // Hostile shapes: a plausible first byte for each binary protocol.
    if (buf.length > 0 && i % 4 === 1) buf[0] = 0x30;
    for (const c of UDP_CLASSIFIERS) c.classify(buf, true);
  }
});

test('BER lengths past the datagram are not read', () => {
  // SEQUENCE claiming 4 GiB, a community claiming more than is there
  assert.deepEqual(classifyDatagram(hex('3084ffffffff020101')), { match: false });
  assert.deepEqual(classifyDatagram(hex('300c0201010450706f')), { match: false });
});

test('a DNS response or a compressed question is not a client query', () => {
  const q = FIXTURES[0]!.bytes;
  const response = Buffer.from(q);
  response[2] = response[2]! | 0x80;
  assert.deepEqual(classifyDatagram(response), { match: false });
  const pointer = Buffer.from(q);
  pointer[12] = 0xc0;
  assert.deepEqual(classifyDatagram(pointer), { match: false });
});
