// The classifiers: classify(buf, final) over an attacker's first bytes, and each classifier
// on its own (classify() swallows a classifier's exception, which would hide a bug here).
// Invariants: nothing throws; a verdict is {match: true, protocol, fields}, {match: false}
// or {need: 'more'}; a match names a known protocol and its fields serialise to JSON (they go
// into events); with `final` set, classify() never asks for more.
import type * as Classifiers from '../../../src/classifiers/index.js';
import { FIXTURES, NOT_ANY } from '../../helpers/fixtures/classifiers/fixtures.js';
import { type Check, moduleUrl, type Target } from '../engine.js';

const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');

function fail(what: string, input: Buffer): never {
  throw new Error(`${what}; input ${input.toString('hex')}`);
}

export const classifiers: Target = {
  name: 'classifiers',
  covers: [
    'classifiers/index.js',
    'classifiers/http.js',
    'classifiers/rdp.js',
    'classifiers/redis.js',
    'classifiers/smb.js',
    'classifiers/ssh.js',
    'classifiers/telnet.js',
    'classifiers/tls.js',
    'classifiers/types.js',
  ],
  maxLength: 2048,
  dictionary: [
    ...[
      'SSH-2.0-',
      'SSH-1.99-',
      'GET ',
      'POST ',
      'HEAD ',
      'PUT ',
      'OPTIONS ',
      'CONNECT ',
      ' HTTP/1.1\r\n',
      ' HTTP/1.0\r\n',
      'Host: ',
      'User-Agent: ',
      '\r\n\r\n',
      '\r\n',
      '\n',
      '*1\r\n$4\r\nPING\r\n',
      '*',
      '$',
      'INFO\r\n',
      'Cookie: mstshash=',
      '\xff\xfb\x01',
      '\xff\xfd\x18',
      '\xffSMB',
      '\xfeSMB',
    ].map(ascii),
    Buffer.from('160301', 'hex'), // TLS handshake record, TLS 1.0 version
    Buffer.from('160303', 'hex'),
    Buffer.from('0100', 'hex'), // ClientHello
    Buffer.from('0000', 'hex'), // server_name extension
    Buffer.from('0010', 'hex'), // ALPN extension
    Buffer.from('002b', 'hex'), // supported_versions
    Buffer.from('030000', 'hex'), // TPKT (RDP)
    Buffer.from('e0000000000000', 'hex'), // X.224 connection request
    Buffer.from('00000000', 'hex'), // NetBIOS session header (SMB)
  ],
  seeds: () => [...FIXTURES.map((f) => f.bytes), ...NOT_ANY.map((f) => f.bytes)],
  async prepare(src: string): Promise<Check> {
    const mod = (await import(moduleUrl(src, 'classifiers/index.js'))) as typeof Classifiers;
    const known = new Set(mod.PROTOCOLS);
    const verdict = (v: Classifiers.Verdict, who: string, input: Buffer, final: boolean): void => {
      if (v === null || typeof v !== 'object') fail(`${who}: verdict ${String(v)}`, input);
      if ('need' in v) {
        if (v.need !== 'more' || Object.keys(v).length !== 1)
          fail(`${who}: bad verdict ${JSON.stringify(v)}`, input);
        if (final && who === 'classify') fail('classify(final) asked for more bytes', input);
        return;
      }
      if (v.match === false) {
        if (Object.keys(v).length !== 1) fail(`${who}: bad verdict ${JSON.stringify(v)}`, input);
        return;
      }
      if (v.match !== true || !known.has(v.protocol) || typeof v.fields !== 'object' || v.fields === null)
        fail(`${who}: bad verdict ${JSON.stringify(v)}`, input);
      JSON.stringify(v.fields); // throws on a cycle or a BigInt
    };
    return (input, deep) => {
      const lengths = deep ? Array.from({ length: input.length + 1 }, (_, n) => n) : [input.length];
      for (const n of lengths) {
        const buf = input.subarray(0, n);
        for (const final of [false, true]) {
          for (const c of mod.CLASSIFIERS) verdict(c.classify(buf, final), c.protocol, input, final);
          verdict(mod.classify(buf, final), 'classify', input, final);
        }
      }
      return undefined;
    };
  },
};
