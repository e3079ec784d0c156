// The PROXY protocol codec: parseProxyHeader over attacker bytes. Invariants: it never throws;
// `consumed` is within the input; every prefix of the input is 'incomplete' until the full
// input's answer settles, and an error or a header, once seen, stays as the input grows; a
// parsed header re-encodes and parses back to the same addresses.
import type * as Codec from '../../../src/net/proxy-protocol.js';
import { type Check, moduleUrl, type Target } from '../engine.js';

const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');
const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function fail(what: string, input: Buffer): never {
  throw new Error(`${what}; input ${input.toString('hex')}`);
}

export const proxyProtocol: Target = {
  name: 'proxy-protocol',
  covers: ['net/proxy-protocol.js'],
  maxLength: 1024,
  dictionary: [
    SIG,
    Buffer.concat([SIG, Buffer.from([0x21, 0x11, 0x00, 0x0c])]),
    Buffer.concat([SIG, Buffer.from([0x20, 0x00, 0x00, 0x00])]),
    ...[0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x30, 0xe0].map((t) =>
      Buffer.from([t, 0x00]),
    ),
    ...[0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32].map((f) => Buffer.from([f])),
    ...[
      'PROXY ',
      'PROXY TCP4 ',
      'PROXY TCP6 ',
      'PROXY UNKNOWN',
      'TCP4',
      'TCP6',
      'UNKNOWN',
      '\r\n',
      ' ',
      '::ffff:',
      '::',
      '255.255.255.255',
      '65535',
      '0',
      '127.0.0.1',
      '2001:db8::1',
    ].map(ascii),
  ],
  seeds: () => [],
  async prepare(src: string): Promise<Check> {
    const codec = (await import(moduleUrl(src, 'net/proxy-protocol.js'))) as typeof Codec;
    const OPTS: Codec.ParseOptions[] = [
      { v1: true, v2: true },
      { v1: true, v2: false },
      { v1: false, v2: true },
      { v1: true, v2: true, maxV2Length: 64 },
    ];
    const parse = (buf: Buffer, opts: Codec.ParseOptions): Codec.ParseResult => {
      const r = codec.parseProxyHeader(buf, opts);
      if (r.status === 'done') {
        if (!(r.consumed > 0 && r.consumed <= buf.length))
          fail(`consumed ${r.consumed} of ${buf.length} bytes`, buf);
        if (r.header.length !== r.consumed)
          fail(`header.length ${r.header.length} != consumed ${r.consumed}`, buf);
      } else if (r.status === 'error') {
        if (typeof r.reason !== 'string' || !r.reason) fail('error without a reason', buf);
      } else if (r.status !== 'incomplete') fail(`unknown status ${JSON.stringify(r)}`, buf);
      return r;
    };
    const reencode = (h: Codec.ProxyHeader, input: Buffer): void => {
      if (h.version === 1) {
        if (!h.src || !h.dst) return;
        const again = codec.parseProxyHeader(codec.encodeProxyV1(h.src, h.dst), { v1: true, v2: false });
        if (again.status !== 'done')
          fail(`v1 header did not parse after re-encoding: ${JSON.stringify(again)}`, input);
        // The encoder writes UNKNOWN for an IPv4 (or v4-mapped) address beside an IPv6 one, by design.
        if (again.header.family !== 'UNKNOWN' && again.header.dst?.port !== h.dst.port)
          fail(`v1 header changed by re-encoding: ${JSON.stringify(again)}`, input);
        return;
      }
      // A UNIX path that is not UTF-8 is decoded with U+FFFD and may no longer fit in 108 bytes.
      if (`${h.unixSrc ?? ''}${h.unixDst ?? ''}`.includes('\uFFFD')) return;
      const tlvs = h.tlvs.filter((t) => t.type !== codec.PP2_TYPE.CRC32C);
      const encoded = codec.encodeProxyV2({
        command: h.command,
        family: h.family,
        ...(h.src ? { src: h.src } : {}),
        ...(h.dst ? { dst: h.dst } : {}),
        ...(h.unixSrc !== undefined ? { unixSrc: h.unixSrc } : {}),
        ...(h.unixDst !== undefined ? { unixDst: h.unixDst } : {}),
        tlvs,
      });
      const again = codec.parseProxyHeader(encoded, { v1: false, v2: true, maxV2Length: 65535 });
      if (again.status !== 'done')
        fail(`v2 header did not parse after re-encoding: ${JSON.stringify(again)}`, input);
      if (
        h.command === 'PROXY' &&
        (again.header.src?.ip !== h.src?.ip || again.header.dst?.port !== h.dst?.port)
      )
        fail('v2 addresses changed by re-encoding', input);
    };
    return (input, deep) => {
      for (const opts of OPTS) {
        const full = parse(input, opts);
        if (full.status === 'done') reencode(full.header, input);
        if (!deep) continue;
        // Fed byte by byte: 'incomplete' until the answer settles, which then does not change.
        let settled: Codec.ParseResult | undefined;
        for (let n = 0; n <= input.length; n++) {
          const r = parse(input.subarray(0, n), opts);
          if (settled?.status === 'error' && r.status !== 'error')
            fail(`error went away at ${n} bytes`, input);
          if (settled?.status === 'done' && (r.status !== 'done' || r.consumed !== settled.consumed))
            fail(`header changed at ${n} bytes`, input);
          if (!settled && r.status !== 'incomplete') settled = r;
        }
        if (full.status !== (settled ?? { status: 'incomplete' }).status)
          fail('full input and byte-by-byte differ', input);
      }
      return undefined;
    };
  },
};
