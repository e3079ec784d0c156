// Recordings as a classic libpcap file (LINKTYPE_ETHERNET): each flow becomes one TCP
// connection with synthesized Ethernet, IPv4 or IPv6 and TCP headers carrying the real
// addresses and ports, a handshake at time 0, the data in segments of at most one MSS
// with consistent sequence and acknowledgement numbers, and the FINs that were seen.
// Checksums are computed, so Wireshark and tshark verify them and follow the stream.
import net from 'node:net';
import type { Chunk, RecordingHeader } from './format.js';
import { KIND } from './format.js';

const LINKTYPE_ETHERNET = 1;
const SNAPLEN = 262_144;
const MAC_CLIENT = Buffer.from([0x02, 0, 0, 0, 0, 0x01]);
const MAC_SERVER = Buffer.from([0x02, 0, 0, 0, 0, 0x02]);
const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const PSH = 0x08;
const ACK = 0x10;

interface Packet {
  time: number; // epoch seconds
  frame: Buffer;
}

/** The pcap file header (microsecond timestamps, little-endian as written). */
export function pcapHeader(): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(0xa1b2c3d4, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  b.writeInt32LE(0, 8);
  b.writeUInt32LE(0, 12);
  b.writeUInt32LE(SNAPLEN, 16);
  b.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return b;
}

/** One record: its header, then the frame. */
function pcapRecord(p: Packet): Buffer {
  const h = Buffer.alloc(16);
  let sec = Math.floor(p.time);
  let usec = Math.round((p.time - sec) * 1e6);
  if (usec >= 1e6) {
    sec += 1;
    usec -= 1e6;
  }
  h.writeUInt32LE(sec >>> 0, 0);
  h.writeUInt32LE(usec, 4);
  h.writeUInt32LE(p.frame.length, 8);
  h.writeUInt32LE(p.frame.length, 12);
  return Buffer.concat([h, p.frame]);
}

/** A whole pcap file of the given recordings, their packets in time order. */
export function toPcap(sessions: { header: RecordingHeader; chunks: Chunk[] }[]): Buffer {
  const packets: Packet[] = [];
  for (const s of sessions) packets.push(...sessionPackets(s.header, s.chunks));
  // Stable: packets of one flow at the same time keep their order.
  const order = packets.map((p, i) => ({ p, i })).sort((a, b) => a.p.time - b.p.time || a.i - b.i);
  return Buffer.concat([pcapHeader(), ...order.map(({ p }) => pcapRecord(p))]);
}

/** An address as bytes: 4 for IPv4 (and IPv4-mapped IPv6), else 16. */
export function addressBytes(ip: string): Buffer {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  const v4 = mapped ? mapped[1]! : net.isIPv4(ip) ? ip : null;
  if (v4) return Buffer.from(v4.split('.').map(Number));
  if (!net.isIPv6(ip)) throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
  let text = ip.replace(/%.*$/, '');
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const [a, b, c, d] = tail[1]!.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, -tail[1]!.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const r = rest ? rest.split(':') : [];
  const groups = rest === undefined ? h : [...h, ...Array(8 - h.length - r.length).fill('0'), ...r];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g || '0', 16), i * 2);
  return out;
}

/** The 16-bit ones' complement sum of the buffers (for IP and TCP checksums). */
function checksum(parts: Buffer[]): number {
  let sum = 0;
  for (const b of parts) {
    let i = 0;
    for (; i + 1 < b.length; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
    if (i < b.length) sum += b[i]! << 8; // parts are even-length but the last
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

interface Side {
  ip: Buffer;
  port: number;
  mac: Buffer;
  seq: number; // next sequence number this side sends
}

/** The packets of one recorded flow. */
export function sessionPackets(h: RecordingHeader, chunks: Chunk[]): Packet[] {
  let cip = addressBytes(h.src.ip);
  let sip = addressBytes(h.dst.ip);
  if (cip.length !== sip.length) {
    // One side IPv4, the other IPv6 (a dual-stack socket): write both as IPv6.
    const six = (b: Buffer) =>
      b.length === 16 ? b : Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), b]);
    cip = six(cip);
    sip = six(sip);
  }
  const v6 = cip.length === 16;
  const mss = v6 ? 1440 : 1460;
  const isn = (hex: string) => Number.parseInt(hex.padEnd(8, '0'), 16) >>> 0;
  const client: Side = { ip: cip, port: h.src.port, mac: MAC_CLIENT, seq: isn(h.id.slice(0, 8)) };
  const server: Side = { ip: sip, port: h.dst.port, mac: MAC_SERVER, seq: isn(h.id.slice(8, 16)) };
  const t0 = h.startedAt / 1000;
  const packets: Packet[] = [];
  let ipId = 1;

  const send = (time: number, from: Side, to: Side, flags: number, data: Buffer = Buffer.alloc(0)) => {
    const tcp = Buffer.alloc(20);
    tcp.writeUInt16BE(from.port, 0);
    tcp.writeUInt16BE(to.port, 2);
    tcp.writeUInt32BE(from.seq >>> 0, 4);
    tcp.writeUInt32BE(flags & ACK ? to.seq >>> 0 : 0, 8);
    tcp.writeUInt8(5 << 4, 12);
    tcp.writeUInt8(flags, 13);
    tcp.writeUInt16BE(65535, 14);
    const tcpLen = 20 + data.length;
    const pseudo = v6 ? Buffer.alloc(40) : Buffer.alloc(12);
    if (v6) {
      from.ip.copy(pseudo, 0);
      to.ip.copy(pseudo, 16);
      pseudo.writeUInt32BE(tcpLen, 32);
      pseudo.writeUInt8(6, 39);
    } else {
      from.ip.copy(pseudo, 0);
      to.ip.copy(pseudo, 4);
      pseudo.writeUInt8(6, 9);
      pseudo.writeUInt16BE(tcpLen, 10);
    }
    tcp.writeUInt16BE(checksum([pseudo, tcp, data]), 16);
    let ip: Buffer;
    if (v6) {
      ip = Buffer.alloc(40);
      ip.writeUInt32BE(0x60000000, 0);
      ip.writeUInt16BE(tcpLen, 4);
      ip.writeUInt8(6, 6);
      ip.writeUInt8(64, 7);
      from.ip.copy(ip, 8);
      to.ip.copy(ip, 24);
    } else {
      ip = Buffer.alloc(20);
      ip.writeUInt8(0x45, 0);
      ip.writeUInt16BE(20 + tcpLen, 2);
      ip.writeUInt16BE(ipId++ & 0xffff, 4);
      ip.writeUInt16BE(0x4000, 6); // don't fragment
      ip.writeUInt8(64, 8);
      ip.writeUInt8(6, 9);
      from.ip.copy(ip, 12);
      to.ip.copy(ip, 16);
      ip.writeUInt16BE(checksum([ip]), 10);
    }
    const eth = Buffer.alloc(14);
    to.mac.copy(eth, 0);
    from.mac.copy(eth, 6);
    eth.writeUInt16BE(v6 ? 0x86dd : 0x0800, 12);
    packets.push({ time, frame: Buffer.concat([eth, ip, tcp, data]) });
    from.seq = (from.seq + data.length + (flags & (SYN | FIN) ? 1 : 0)) >>> 0;
  };

  // The handshake, at the time recording began.
  send(t0, client, server, SYN);
  send(t0, server, client, SYN | ACK);
  send(t0, client, server, ACK);
  let finC = false;
  let finS = false;
  let lastFin: Side | null = null;
  let last = t0;
  for (const c of chunks) {
    const time = t0 + c.t;
    last = time;
    if (c.kind === KIND.in || c.kind === KIND.out) {
      const [from, to] = c.kind === KIND.in ? [client, server] : [server, client];
      if ((from === client && finC) || (from === server && finS)) continue; // not after its FIN
      for (let off = 0; off < c.data.length; off += mss) {
        const seg = c.data.subarray(off, off + mss);
        send(time, from, to, ACK | (off + mss >= c.data.length ? PSH : 0), seg);
      }
    } else if (c.kind === KIND.finIn && !finC) {
      finC = true;
      lastFin = client;
      send(time, client, server, FIN | ACK);
    } else if (c.kind === KIND.finOut && !finS) {
      finS = true;
      lastFin = server;
      send(time, server, client, FIN | ACK);
    }
  }
  // Both FINs seen: the last one is acknowledged. Otherwise the flow was cut (a reset, a
  // timeout, truncation): a reset from the side that did not close ends the stream.
  if (finC && finS) send(last, lastFin === client ? server : client, lastFin!, ACK);
  else if (!finC) send(last, client, server, RST | ACK);
  else send(last, server, client, RST | ACK);
  return packets;
}
