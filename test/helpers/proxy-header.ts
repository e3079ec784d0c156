// PROXY protocol headers built by hand (haproxy's proxy-protocol spec), so tests can send
// them from a plain socket without going through honeygate's own codec.
import net from 'node:net';

/** "PROXY TCP4 SRC DST SRCPORT DSTPORT\r\n" (TCP6 for IPv6 addresses). */
export function proxyV1(src: string, dst: string, srcPort: number, dstPort: number): string {
  const fam = net.isIPv6(src) ? 'TCP6' : 'TCP4';
  return `PROXY ${fam} ${src} ${dst} ${srcPort} ${dstPort}\r\n`;
}

export const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A binary v2 header, command PROXY, TCP over IPv4, no TLVs. */
export function proxyV2(src: string, dst: string, srcPort: number, dstPort: number): Buffer {
  const body = Buffer.alloc(12);
  Buffer.from(src.split('.').map(Number)).copy(body, 0);
  Buffer.from(dst.split('.').map(Number)).copy(body, 4);
  body.writeUInt16BE(srcPort, 8);
  body.writeUInt16BE(dstPort, 10);
  const head = Buffer.alloc(4);
  head[0] = 0x21; // version 2, PROXY
  head[1] = 0x11; // AF_INET, STREAM
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}
