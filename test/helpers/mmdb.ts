// A small MaxMind DB writer for tests (format: "MaxMind DB File Format Specification" 2.0,
// maxmind.github.io/MaxMind-DB): an IPv6 search tree with IPv4 networks under ::/96,
// 24-bit records, a data section of maps, strings and unsigned integers, and the metadata.
// Enough for the layouts of GeoLite2 Country and ASN; not a general writer.
import { writeFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';

export type MmdbValue = string | number | { [key: string]: MmdbValue } | MmdbValue[];

export interface MmdbNetwork {
  cidr: string; // "192.0.2.0/24" or "2001:db8::/32"
  data: { [key: string]: MmdbValue };
}

/** Writes an MMDB file at `path` with these networks (none may contain another). */
export function writeMmdb(path: string, databaseType: string, networks: MmdbNetwork[]): void {
  writeFileSync(path, buildMmdb(databaseType, networks));
}

interface Node {
  children: [Node | number | null, Node | number | null]; // a node, a data offset, or nothing
}

export function buildMmdb(databaseType: string, networks: MmdbNetwork[]): Buffer {
  const data: Buffer[] = [];
  let dataLength = 0;
  const root: Node = { children: [null, null] };
  for (const net of networks) {
    const encoded = encode(net.data);
    const offset = dataLength;
    data.push(encoded);
    dataLength += encoded.length;
    const [bits, prefix] = networkBits(net.cidr);
    let node = root;
    for (let i = 0; i < prefix - 1; i++) {
      const bit = bits[i]!;
      let next: Node | number | null = node.children[bit] ?? null;
      if (next === null) {
        next = { children: [null, null] };
        node.children[bit] = next;
      }
      if (typeof next === 'number') throw new Error(`${net.cidr} lies inside another network`);
      node = next;
    }
    node.children[bits[prefix - 1]!] = offset;
  }
  // Number the nodes breadth-first (the root is 0).
  const order: Node[] = [];
  const index = new Map<Node, number>();
  for (let q = [root]; q.length; ) {
    const n = q.shift()!;
    index.set(n, order.length);
    order.push(n);
    for (const c of n.children) if (c !== null && typeof c === 'object') q.push(c);
  }
  const nodeCount = order.length;
  const tree = Buffer.alloc(nodeCount * 6);
  const record = (c: Node | number | null) =>
    c === null ? nodeCount : typeof c === 'number' ? nodeCount + 16 + c : index.get(c)!;
  order.forEach((n, i) => {
    tree.writeUIntBE(record(n.children[0]), i * 6, 3);
    tree.writeUIntBE(record(n.children[1]), i * 6 + 3, 3);
  });
  const metadata = encode({
    node_count: nodeCount,
    record_size: 24,
    ip_version: 6,
    database_type: databaseType,
    languages: ['en'],
    binary_format_major_version: 2,
    binary_format_minor_version: 0,
    build_epoch: 1_700_000_000,
    description: { en: 'honeygate test database' },
  });
  return Buffer.concat([
    tree,
    Buffer.alloc(16),
    ...data,
    Buffer.from('\xab\xcd\xefMaxMind.com', 'latin1'),
    metadata,
  ]);
}

/** The network's address as 128 bits (IPv4 under ::/96) and its prefix length in that tree. */
function networkBits(cidr: string): [number[], number] {
  const [ip, len] = cidr.split('/') as [string, string];
  let bytes: number[];
  let prefix = Number(len);
  if (isIPv4(ip)) {
    bytes = [...Array<number>(12).fill(0), ...ip.split('.').map(Number)];
    prefix += 96;
  } else {
    const [head, tail] = ip.split('::') as [string, string | undefined];
    const words = (s: string | undefined) => (s ? s.split(':').map((w) => Number.parseInt(w, 16)) : []);
    const h = words(head);
    const t = words(tail);
    const all = [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
    bytes = all.flatMap((w) => [w >> 8, w & 0xff]);
  }
  const bits = bytes.flatMap((b) => [7, 6, 5, 4, 3, 2, 1, 0].map((s) => (b >> s) & 1));
  return [bits, prefix];
}

/** A control byte (and its size bytes) for `type` and `size`; extended types take a second byte. */
function control(type: number, size: number): Buffer {
  const head: number[] = [];
  let sizeBits: number;
  let extra: number[] = [];
  if (size < 29) sizeBits = size;
  else if (size < 29 + 256) {
    sizeBits = 29;
    extra = [size - 29];
  } else {
    sizeBits = 30;
    const n = size - 285;
    extra = [n >> 8, n & 0xff];
  }
  if (type <= 7) head.push((type << 5) | sizeBits);
  else head.push(sizeBits, type - 7);
  return Buffer.from([...head, ...extra]);
}

function encode(v: MmdbValue): Buffer {
  if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    return Buffer.concat([control(2, b.length), b]);
  }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`only unsigned integers: ${v}`);
    const bytes: number[] = [];
    for (let n = v; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
    // uint32 (type 6) up to 4 bytes, uint64 (extended type 9) beyond
    return Buffer.concat([control(bytes.length <= 4 ? 6 : 9, bytes.length), Buffer.from(bytes)]);
  }
  if (Array.isArray(v)) return Buffer.concat([control(11, v.length), ...v.map(encode)]);
  const entries = Object.entries(v);
  return Buffer.concat([control(7, entries.length), ...entries.flatMap(([k, x]) => [encode(k), encode(x)])]);
}

/** The documentation ranges with made-up countries and private-use AS numbers (RFC 5398). */
export const TEST_NETWORKS: Record<'country' | 'asn', MmdbNetwork[]> = {
  country: [
    { cidr: '192.0.2.0/24', data: { country: { iso_code: 'DE', names: { en: 'Germany' } } } },
    { cidr: '198.51.100.0/24', data: { country: { iso_code: 'US', names: { en: 'United States' } } } },
    { cidr: '2001:db8::/32', data: { registered_country: { iso_code: 'NL' } } },
  ],
  asn: [
    {
      cidr: '192.0.2.0/24',
      data: { autonomous_system_number: 64500, autonomous_system_organization: 'Example Networks A' },
    },
    {
      cidr: '198.51.100.0/25',
      data: { autonomous_system_number: 64501, autonomous_system_organization: 'Example Networks B' },
    },
    { cidr: '2001:db8::/32', data: { autonomous_system_number: 4_200_000_000 } }, // 32-bit private use
  ],
};
