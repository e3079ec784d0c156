// JA4 and HASSH against their published vectors, and on hostile input.
//
// JA4 vectors: FoxIO-LLC/ja4, technical_details/JA4.md ("Cipher hash", "Extension hash",
// "ALPN Extension Value", "Example", "Raw Output"): the example hello's lists in their
// original order (JA4_ro) and the hashes and fingerprint the spec gives for them. The
// implementation was also checked, outside the suite, against FoxIO's expected outputs for
// their TLS pcaps (python/test/testdata/*.json): 151 of 152 hellos agree; the other has a
// non-alphanumeric first ALPN value, where we follow the spec's hex rule quoted below.
// HASSH vectors: salesforce/hassh, README.md (Example 1, the Cyberduck client) and
// python/hasshGen/hassh_fingerprints.csv (rows for dropbear 2018.76 and OpenSSH 7.2p2).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hasshOf, hasshOfAlgorithms } from '../../src/classifiers/hassh.js';
import { completeFields } from '../../src/classifiers/index.js';
import { alpnChars, hash12 } from '../../src/classifiers/ja4.js';
import { ssh } from '../../src/classifiers/ssh.js';
import { tls } from '../../src/classifiers/tls.js';

const hexList = (s: string) => s.split(',').map((h) => Number.parseInt(h, 16));

// The spec's example (JA4.md, "Raw Output": JA4_ro), a Chrome hello to a named host.
const SPEC = {
  ciphers: hexList('1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035'),
  extensions: hexList('001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015'),
  sigAlgs: hexList('0403,0804,0401,0503,0805,0501,0806,0601'),
  ja4: 't13d1516h2_8daaf6152771_e5627efa2ab1',
};

interface HelloSpec {
  ciphers: number[];
  extensions: number[];
  sigAlgs?: number[];
  alpn?: Buffer[];
  sni?: string;
  versions?: number[];
  legacyVersion?: number;
}

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const vec16 = (b: Buffer) => Buffer.concat([u16(b.length), b]);
const vec8 = (b: Buffer) => Buffer.concat([Buffer.from([b.length]), b]);
const list16 = (values: number[]) => Buffer.concat(values.map(u16));

/** A ClientHello record with the extensions in `h.extensions`' order, each with plausible contents. */
function clientHello(h: HelloSpec): Buffer {
  const ext = (type: number): Buffer => {
    let data: Buffer;
    if (type === 0x0000) {
      const name = Buffer.from(h.sni ?? 'www.example.com');
      data = vec16(Buffer.concat([Buffer.from([0]), vec16(name)]));
    } else if (type === 0x0010) data = vec16(Buffer.concat((h.alpn ?? [Buffer.from('h2')]).map(vec8)));
    else if (type === 0x000d) data = vec16(list16(h.sigAlgs ?? []));
    else if (type === 0x002b) data = vec8(list16(h.versions ?? [0x0304, 0x0303]));
    else data = Buffer.from([0]);
    return Buffer.concat([u16(type), vec16(data)]);
  };
  const body = Buffer.concat([
    u16(h.legacyVersion ?? 0x0303),
    Buffer.alloc(32, 7), // random
    vec8(Buffer.alloc(32, 9)), // session id
    vec16(list16(h.ciphers)),
    Buffer.from([1, 0]), // compression: null
    vec16(Buffer.concat(h.extensions.map(ext))),
  ]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), vec16(hs)]);
}

function ja4Of(bytes: Buffer, final = false): unknown {
  const v = tls.classify(bytes, final);
  assert.ok('match' in v && v.match, 'a ClientHello');
  return v.fields.ja4;
}

describe('JA4: the spec vectors', () => {
  it('hashes the sorted cipher list and the extension list as the spec shows', () => {
    assert.equal(
      hash12('002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9'),
      '8daaf6152771',
    );
    const exts = '0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01';
    assert.equal(hash12(`${exts}_0403,0804,0401,0503,0805,0501,0806,0601`), 'e5627efa2ab1');
    assert.equal(hash12(exts), '6d807ffa2a79'); // no signature algorithms: no "_"
    assert.equal(hash12(''), '000000000000'); // an empty list
  });

  it("gives the spec's example fingerprint for the example hello", () => {
    const hello = clientHello({ ...SPEC, alpn: [Buffer.from('h2'), Buffer.from('http/1.1')] });
    assert.equal(ja4Of(hello), SPEC.ja4);
  });

  it('ignores GREASE in ciphers, extensions, supported versions and signature algorithms', () => {
    const hello = clientHello({
      ciphers: [0x0a0a, ...SPEC.ciphers],
      extensions: [0x1a1a, ...SPEC.extensions, 0xfafa],
      sigAlgs: SPEC.sigAlgs,
      versions: [0x2a2a, 0x0304, 0x0303],
    });
    assert.equal(ja4Of(hello), SPEC.ja4);
  });

  it('the ALPN characters, by the examples of the spec', () => {
    const cases: [number[] | string | null, string][] = [
      ['h2', 'h2'],
      ['http/1.1', 'h1'],
      ['a', 'aa'], // a single character is both first and last
      ['', '00'],
      [null, '00'],
      [[0xab], 'ab'],
      [[0x20], '20'],
      [[0xab, 0xcd], 'ad'],
      [[0x20, 0x61], '21'],
      [[0x30, 0xab], '3b'],
      [[0x61, 0x20], '60'],
      [[0x30, 0x31, 0xab, 0xcd], '3d'],
      [[0x30, 0xab, 0xcd, 0x31], '01'],
    ];
    for (const [value, want] of cases) {
      const buf = value === null ? null : Buffer.from(value as never);
      assert.equal(alpnChars(buf), want, JSON.stringify(value));
    }
  });

  it('section a: no SNI is "i", no ALPN "00", TLS 1.2 without supported_versions "12", counts capped at 99', () => {
    const hello = clientHello({
      ciphers: Array.from({ length: 120 }, (_, i) => 0x0100 + i),
      extensions: [0x000d, 0x000b],
      sigAlgs: [0x0401],
    });
    assert.match(ja4Of(hello) as string, /^t12i990200_[0-9a-f]{12}_[0-9a-f]{12}$/);
    const ssl3 = clientHello({ ciphers: [0x002f], extensions: [0x000b], legacyVersion: 0x0300 });
    assert.match(ja4Of(ssl3) as string, /^ts3i010100_/);
    const noExt = clientHello({ ciphers: [0x002f], extensions: [0x0000, 0x0010] }); // only SNI and ALPN
    assert.match(ja4Of(noExt) as string, /^t12d0102h2_[0-9a-f]{12}_000000000000$/);
  });
});

describe('JA4: hostile input', () => {
  const hello = clientHello({ ...SPEC });

  it('no prefix of a hello has a JA4 or throws; the whole one has it', () => {
    for (let n = 0; n < hello.length; n++) {
      for (const final of [false, true]) {
        const v = tls.classify(hello.subarray(0, n), final);
        if ('match' in v && v.match) assert.equal(v.fields.ja4, undefined, `prefix ${n}`);
      }
    }
    assert.equal(ja4Of(hello, true), SPEC.ja4);
  });

  it('a hello whose extension block is cut inside an extension keeps its fields but has no JA4', () => {
    // Shorten the extensions length by 3: the last extension's header no longer fits.
    const broken = Buffer.from(hello);
    const extLenAt = 5 + 4 + 2 + 32 + 33 + 2 + SPEC.ciphers.length * 2 + 2;
    broken.writeUInt16BE(broken.readUInt16BE(extLenAt) - 3, extLenAt);
    const v = tls.classify(broken.subarray(0, broken.length - 3), true);
    if ('match' in v && v.match) assert.equal(v.fields.ja4, undefined);
  });
});

// hasshAlgorithms of the README's Example 1 (Cyberduck 6.7.1) and two hasshGen rows.
const HASSH = [
  {
    name: 'Cyberduck 6.7.1 (README)',
    hassh: '8a8ae540028bf433cd68356c1b9e8d5b',
    algorithms:
      'curve25519-sha256@libssh.org,diffie-hellman-group-exchange-sha256,ecdh-sha2-nistp521,ecdh-sha2-nistp384,ecdh-sha2-nistp256,diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,diffie-hellman-group14-sha256,diffie-hellman-group15-sha512,diffie-hellman-group16-sha512,diffie-hellman-group17-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256@ssh.com,diffie-hellman-group15-sha256,diffie-hellman-group15-sha256@ssh.com,diffie-hellman-group15-sha384@ssh.com,diffie-hellman-group16-sha256,diffie-hellman-group16-sha384@ssh.com,diffie-hellman-group16-sha512@ssh.com,diffie-hellman-group18-sha512@ssh.com;aes128-cbc,aes128-ctr,aes192-cbc,aes192-ctr,aes256-cbc,aes256-ctr,blowfish-cbc,blowfish-ctr,cast128-cbc,cast128-ctr,idea-cbc,idea-ctr,serpent128-cbc,serpent128-ctr,serpent192-cbc,serpent192-ctr,serpent256-cbc,serpent256-ctr,3des-cbc,3des-ctr,twofish128-cbc,twofish128-ctr,twofish192-cbc,twofish192-ctr,twofish256-cbc,twofish256-ctr,twofish-cbc,arcfour,arcfour128,arcfour256;hmac-sha1,hmac-sha1-96,hmac-md5,hmac-md5-96,hmac-sha2-256,hmac-sha2-512;zlib@openssh.com,zlib,none',
  },
  {
    name: 'dropbear 2018.76 (hasshGen)',
    hassh: 'e22efe3cde8b396b874c3f13fdb6c61a',
    algorithms:
      'curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp521,ecdh-sha2-nistp384,ecdh-sha2-nistp256,diffie-hellman-group14-sha256,diffie-hellman-group14-sha1,diffie-hellman-group1-sha1,kexguess2@matt.ucc.asn.au;aes128-ctr,aes256-ctr,aes128-cbc,aes256-cbc,3des-ctr,3des-cbc;hmac-sha1-96,hmac-sha1,hmac-sha2-256;zlib@openssh.com,zlib,none',
  },
  {
    name: 'OpenSSH 7.2p2 (hasshGen)',
    hassh: '68e0ba85e1a818f7c49ea3f4b849bd15',
    algorithms:
      'curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group-exchange-sha1,diffie-hellman-group14-sha1,ext-info-c;chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-cbc,aes192-cbc,aes256-cbc,3des-cbc;umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1;none,zlib@openssh.com,zlib',
  },
];

/** An unencrypted SSH_MSG_KEXINIT packet whose client-to-server lists are `algorithms`' four parts. */
function kexinit(algorithms: string): Buffer {
  const [kex, enc, mac, cmp] = algorithms.split(';') as [string, string, string, string];
  const nameList = (s: string) => {
    const b = Buffer.from(s, 'latin1');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const lists = [kex, 'ssh-ed25519', enc, 'aes128-ctr', mac, 'hmac-sha1', cmp, 'none', '', ''];
  const payload = Buffer.concat([
    Buffer.from([20]),
    Buffer.alloc(16, 0x5a), // cookie
    ...lists.map(nameList),
    Buffer.from([0, 0, 0, 0, 0]), // first_kex_packet_follows, reserved
  ]);
  let padding = 8 - ((payload.length + 5) % 8);
  if (padding < 4) padding += 8;
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length + padding + 1);
  head[4] = padding;
  return Buffer.concat([head, payload, Buffer.alloc(padding)]);
}

describe('HASSH: the published vectors', () => {
  for (const v of HASSH) {
    it(`${v.name}: md5 of hasshAlgorithms, and read from a KEXINIT after the ident line`, () => {
      assert.equal(hasshOfAlgorithms(v.algorithms), v.hassh);
      const bytes = Buffer.concat([Buffer.from('SSH-2.0-Client_1.0\r\n'), kexinit(v.algorithms)]);
      const got = ssh.classify(bytes, true);
      assert.ok('match' in got && got.match);
      assert.equal(got.fields.hassh, v.hassh);
      assert.equal(got.fields.hasshAlgorithms, v.algorithms);
      assert.equal(got.fields.clientVersion, 'SSH-2.0-Client_1.0');
    });
  }

  it("completes a peek's fields (ident line only) from the flow's first bytes at its end", () => {
    const line = Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n');
    const peeked = ssh.classify(line, false);
    assert.ok('match' in peeked && peeked.match && !('hassh' in peeked.fields));
    const first = Buffer.concat([line, kexinit(HASSH[2]!.algorithms)]);
    const done = completeFields('ssh', peeked.fields, () => first);
    assert.equal(done?.hassh, HASSH[2]!.hassh);
    assert.equal(done?.software, 'OpenSSH_9.2p1');
    // Nothing to add: the same fields back; other protocols are left alone.
    assert.equal(
      completeFields('ssh', peeked.fields, () => line),
      peeked.fields,
    );
    const http = { method: 'GET' };
    assert.equal(
      completeFields('http', http, () => first),
      http,
    );
  });
});

describe('HASSH: hostile input', () => {
  const bytes = Buffer.concat([Buffer.from('SSH-2.0-x\r\n'), kexinit(HASSH[1]!.algorithms)]);

  it('no prefix has a HASSH or throws; the whole packet has it', () => {
    for (let n = 0; n < bytes.length; n++) {
      const v = ssh.classify(bytes.subarray(0, n), true);
      if ('match' in v && v.match) assert.equal(v.fields.hassh, undefined, `prefix ${n}`);
    }
    assert.equal(hasshOf(bytes, 11)?.hassh, HASSH[1]!.hassh);
  });

  it('lengths past the packet, a padding longer than the packet and another message are no KEXINIT', () => {
    const packet = kexinit(HASSH[1]!.algorithms);
    const huge = Buffer.from(packet);
    huge.writeUInt32BE(0xffffffff, 0);
    assert.equal(hasshOf(huge, 0), null);
    const pad = Buffer.from(packet);
    pad[4] = 255;
    assert.equal(hasshOf(pad, 0), null);
    const other = Buffer.from(packet);
    other[5] = 21; // NEWKEYS
    assert.equal(hasshOf(other, 0), null);
    const list = Buffer.from(packet);
    list.writeUInt32BE(0x7fffffff, 22); // the kex name-list's length
    assert.equal(hasshOf(list, 0), null);
    for (const start of [-1, packet.length, packet.length + 10]) assert.equal(hasshOf(packet, start), null);
  });
});
