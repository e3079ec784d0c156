// The ECS documents (JSON lines file, `events --format ecs`) checked against ECS's own field
// definitions (EcsFlat of the @elastic/ecs package, generated from ECS's ecs_flat.yml), the
// Community ID against the spec's published vectors, and the Elasticsearch index template in
// deploy/elastic/ against the fields we emit.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import { EcsFlat, EcsVersion } from '@elastic/ecs';
import { communityId, ECS_VERSION, type EcsDocument, toEcs } from '../../src/events/ecs.js';
import type { FlowEvent } from '../../src/events/event.js';
import { sampleEvent } from '../helpers/events.js';

interface EcsField {
  type: string;
  normalize: string[];
  allowed_values?: { name: string; expected_event_types?: string[] }[];
}
const FIELDS = EcsFlat as unknown as Record<string, EcsField>;

const repo = (path: string) => new URL(`../../../${path}`, import.meta.url);

interface Vector {
  proto: number;
  saddr: string;
  daddr: string;
  sport: number | null;
  dport: number | null;
  communityid: string;
}

describe('communityId', () => {
  for (const [file, seed] of [
    ['baseline_deflt.json', 0],
    ['baseline_seed1.json', 1],
  ] as const) {
    it(`gives the spec's ${file} ids (TCP, UDP, SCTP, ICMP, ICMPv6, no ports; both directions)`, () => {
      const vectors = JSON.parse(
        readFileSync(repo(`test/helpers/fixtures/community-id/${file}`), 'utf8'),
      ) as Vector[];
      assert.equal(vectors.length, 23);
      for (const v of vectors) {
        assert.equal(
          communityId(v.saddr, v.sport, v.daddr, v.dport, v.proto, seed),
          v.communityid,
          `${v.proto} ${v.saddr}:${v.sport} -> ${v.daddr}:${v.dport}`,
        );
      }
    });
  }
});

/** One event of every type and every protocol mapping the sinks see. */
export function everyKind(): FlowEvent[] {
  return [
    sampleEvent(), // ssh
    sampleEvent({
      protocol: 'http',
      protocolFields: {
        method: 'GET',
        path: '/cgi-bin/luci?x=1',
        version: '1.1',
        host: 'a.example',
        userAgent: 'curl/8',
      },
    }),
    sampleEvent({ protocol: 'http', protocolFields: { method: 'OPTIONS', path: '*', version: '1.1' } }),
    sampleEvent({
      protocol: 'tls',
      protocolFields: { version: 'TLS1.3', sni: 'www.example.com', alpn: ['h2', 'http/1.1'] },
    }),
    sampleEvent({
      protocol: 'tls',
      protocolFields: { version: '0x7f1c', sni: null, alpn: null, truncated: true },
    }),
    sampleEvent({
      protocol: 'redis',
      protocolFields: { command: 'CONFIG', args: ['SET', 'dir'], argc: 3, inline: false },
    }),
    sampleEvent({
      protocol: 'smb',
      protocolFields: { version: 'smb2', command: 'NEGOTIATE', dialects: ['2.0.2'] },
    }),
    sampleEvent({ protocol: null, protocolFields: null, firstBytes: Buffer.alloc(0), bytesIn: 0 }),
    sampleEvent({
      src: { ip: '2001:db8::7', port: 50000 },
      dst: { ip: '2001:db8::1', port: 443 },
      peer: { ip: '2001:db8::99', port: 1234 },
      proxyHeader: 'v2',
      server: '[2001:db8::10]:443',
    }),
    sampleEvent({ type: 'update', closedAt: null, closeReason: null }),
    sampleEvent({
      type: 'rejected',
      action: 'close',
      count: 9,
      src: { ip: '198.51.100.7', port: 0 },
      route: null,
      closeReason: 'limit-per-source',
    }),
    sampleEvent({
      type: 'rejected',
      action: 'close',
      count: 40,
      src: { ip: '*', port: 0 },
      dst: { ip: '*', port: 0 },
    }),
    sampleEvent({
      type: 'rejected',
      action: 'close',
      count: 947,
      src: { ip: '198.51.100.8', port: 0 },
      closeReason: 'limit-rate',
      targets: {
        ports: '1-947',
        portCount: 947,
        addresses: ['192.0.2.1'],
        addressCount: 1,
        lastAt: 1_700_000_000_500,
      },
    }),
    sampleEvent({
      type: 'scan',
      action: null,
      route: null,
      count: 1000,
      src: { ip: '198.51.100.8', port: 0 },
      dst: { ip: '192.0.2.1', port: 0 },
      closeReason: null,
      targets: {
        ports: '1-1000',
        portCount: 1000,
        addresses: ['192.0.2.1'],
        addressCount: 1,
        lastAt: 1_700_000_001_000,
        portsTruncated: true,
      },
      scan: { flows: 1000, refused: 947, rate: 500, techniques: { refused: 947, 'connect-reset': 53 } },
    }),
    sampleEvent({ src: { ip: '', port: 0 }, closeReason: 'client-reset' }), // reset before accept
    sampleEvent({
      protocol: 'tls',
      protocolFields: {
        version: 'TLS1.3',
        sni: null,
        alpn: null,
        ja4: 't13i1516h2_8daaf6152771_e5627efa2ab1',
      },
    }),
    sampleEvent({
      geo: { country: 'DE', asn: 64500, asOrg: 'Example Networks' },
      protocolFields: {
        clientVersion: 'SSH-2.0-OpenSSH_9.2p1',
        hassh: '68e0ba85e1a818f7c49ea3f4b849bd15',
        hasshAlgorithms: 'curve25519-sha256;aes128-ctr;hmac-sha2-256;none',
      },
    }),
    sampleEvent({
      type: 'firewall',
      action: null,
      route: null,
      backend: null,
      server: null,
      src: { ip: '', port: 0 },
      dst: { ip: '', port: 0 },
      detail: 'applied table inet honeygate',
    }),
  ];
}

/** Every leaf of a document as [dotted name, value]; arrays are leaves. */
function leaves(doc: object, prefix = ''): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [k, v] of Object.entries(doc)) {
    const name = prefix + k;
    if (v && typeof v === 'object' && !Array.isArray(v)) out.push(...leaves(v, `${name}.`));
    else out.push([name, v]);
  }
  return out;
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

function checkValue(name: string, def: EcsField, value: unknown): void {
  const values = Array.isArray(value) ? value : [value];
  if (Array.isArray(value))
    assert.ok(def.normalize.includes('array'), `${name}: ECS does not make it an array`);
  for (const v of values) {
    switch (def.type) {
      case 'keyword':
      case 'wildcard':
      case 'match_only_text':
      case 'constant_keyword':
        assert.equal(typeof v, 'string', `${name}: a ${def.type} holds a string`);
        break;
      case 'long':
        assert.ok(Number.isSafeInteger(v), `${name}: a long holds a whole number, got ${v}`);
        break;
      case 'ip':
        assert.ok(typeof v === 'string' && isIP(v), `${name}: an ip holds an IP address, got ${v}`);
        break;
      case 'date':
        assert.ok(typeof v === 'string' && RFC3339.test(v), `${name}: a date, got ${v}`);
        break;
      default:
        assert.fail(`${name}: ECS type ${def.type} not checked here`);
    }
    if (def.allowed_values) {
      const allowed = def.allowed_values.map((a) => a.name);
      assert.ok(allowed.includes(v as string), `${name}: "${v}" is not one of ${allowed.join(', ')}`);
    }
  }
}

describe('toEcs against the ECS field definitions', () => {
  const docs = everyKind().map((e) => [e, toEcs(e)] as const);

  it(`uses only ECS fields (validated against @elastic/ecs ${EcsVersion}), of their ECS types`, () => {
    for (const [, doc] of docs) {
      for (const [name, value] of leaves(doc)) {
        if (name.startsWith('honeygate.')) continue;
        const def = FIELDS[name];
        assert.ok(def, `${name} is not an ECS field`);
        checkValue(name, def, value);
      }
    }
  });

  it('declares an 8.x ecs.version and sets every ECS core field it needs', () => {
    assert.match(ECS_VERSION, /^8\.\d+\.\d+$/);
    for (const [e, doc] of docs) {
      assert.equal(doc.ecs.version, ECS_VERSION);
      assert.ok(doc['@timestamp'], 'ECS requires @timestamp');
      assert.deepEqual(
        [doc.observer.product, doc.observer.vendor, doc.observer.type],
        ['honeygate', 'honeygate', 'proxy'],
      );
      // event.type values must be ones ECS expects for the event's category
      const category = FIELDS['event.category']!.allowed_values!.find(
        (a) => a.name === doc.event.category[0],
      )!;
      for (const t of doc.event.type)
        assert.ok(category.expected_event_types!.includes(t), `${e.type}: ${t}`);
    }
  });

  it('keeps our own fields under honeygate.*, in snake_case', () => {
    for (const [, doc] of docs) {
      for (const [name] of leaves(doc)) {
        if (!name.startsWith('honeygate.')) continue;
        assert.match(name, /^[a-z0-9_.]+$/, name);
      }
    }
  });

  it('maps protocol fields to ECS http, url, user_agent and tls fields', () => {
    const [ssh, http, star, tls, oddTls] = docs.map(([, d]) => d);
    assert.deepEqual(ssh!.honeygate.ssh, { client_version: 'SSH-2.0-Go' });
    assert.deepEqual(http!.http, { request: { method: 'GET' }, version: '1.1' });
    assert.deepEqual(http!.url, { original: '/cgi-bin/luci?x=1', path: '/cgi-bin/luci', query: 'x=1' });
    assert.deepEqual(http!.user_agent, { original: 'curl/8' });
    assert.deepEqual(http!.honeygate.protocol_fields, { host: 'a.example' });
    assert.deepEqual(star!.url, { original: '*' });
    assert.deepEqual(tls!.tls, {
      version: '1.3',
      version_protocol: 'tls',
      client: { server_name: 'www.example.com' },
    });
    assert.deepEqual(tls!.honeygate.protocol_fields, { alpn: ['h2', 'http/1.1'] });
    assert.equal(oddTls!.tls, undefined);
    assert.deepEqual(oddTls!.honeygate.protocol_fields, { version: '0x7f1c', alpn: null, truncated: true });
  });

  it('puts JA4 under honeygate.tls (ECS has no JA4 field) and HASSH under honeygate.ssh', () => {
    const ja4 = docs.find(([e]) => e.protocolFields?.ja4)![1];
    assert.deepEqual(ja4.honeygate.tls, { ja4: 't13i1516h2_8daaf6152771_e5627efa2ab1' });
    assert.equal(ja4.honeygate.protocol_fields?.ja4, undefined);
    assert.deepEqual(ja4.tls, { version: '1.3', version_protocol: 'tls' });
    const hassh = docs.find(([e]) => e.protocolFields?.hassh)![1];
    assert.deepEqual(hassh.honeygate.ssh, {
      client_version: 'SSH-2.0-OpenSSH_9.2p1',
      hassh: '68e0ba85e1a818f7c49ea3f4b849bd15',
      hassh_algorithms: 'curve25519-sha256;aes128-ctr;hmac-sha2-256;none',
    });
  });

  it('puts events.enrich under source.geo and source.as', () => {
    const doc = docs.find(([e]) => e.geo)![1];
    assert.deepEqual(doc.source!.geo, { country_iso_code: 'DE' });
    assert.deepEqual(doc.source!.as, { number: 64500, organization: { name: 'Example Networks' } });
    const partial = toEcs(sampleEvent({ geo: { country: null, asn: 64501, asOrg: null } }));
    assert.equal(partial.source!.geo, undefined);
    assert.deepEqual(partial.source!.as, { number: 64501 });
  });

  it('sets network.type, direction, community_id and related.ip for flows', () => {
    const [ssh] = docs.map(([, d]) => d);
    assert.deepEqual(ssh!.network, {
      type: 'ipv4',
      transport: 'tcp',
      direction: 'inbound',
      protocol: 'ssh',
      community_id: communityId('198.51.100.7', 40001, '192.0.2.1', 22, 6),
      bytes: 4690,
    });
    assert.deepEqual(ssh!.related, { ip: ['198.51.100.7', '192.0.2.1', '192.0.2.10'] });
    const v6 = docs[8]![1];
    assert.equal(v6.network!.type, 'ipv6');
    assert.deepEqual(v6.related, { ip: ['2001:db8::7', '2001:db8::1', '2001:db8::99', '2001:db8::10'] });
    const tally = docs[10]![1];
    assert.equal(tally.network!.community_id, undefined, 'a tally is many flows, not one');
    const firewall = docs.at(-1)![1];
    assert.equal(firewall.network, undefined);
    assert.equal(firewall.related, undefined);
  });

  it('event.duration agrees with event.start and event.end (a 2.9 ms flow opened at x.9 ms)', () => {
    // Regression: closedAt and openedAt each truncate Date.now() to whole ms while the
    // duration is a monotonic floor, so a 2 ms flow could show 3 ms between start and end.
    const doc = toEcs(sampleEvent({ openedAt: 1_000_000, closedAt: 1_000_003, durationMs: 2 }));
    const span = Date.parse(doc.event.end!) - Date.parse(doc.event.start!);
    assert.equal(doc.event.duration, span * 1_000_000);
    assert.equal(doc['@timestamp'], doc.event.end);
  });
});

describe('deploy/elastic index template', () => {
  const template = JSON.parse(readFileSync(repo('deploy/elastic/honeygate-template.json'), 'utf8')) as {
    index_patterns: string[];
    data_stream?: object;
    template: { mappings: { properties: Record<string, Mapping> } };
  };
  interface Mapping {
    type?: string;
    properties?: Record<string, Mapping>;
  }
  const mapped = new Map<string, string>();
  const walk = (props: Record<string, Mapping>, prefix: string) => {
    for (const [k, m] of Object.entries(props)) {
      if (m.properties) walk(m.properties, `${prefix}${k}.`);
      if (m.type) mapped.set(prefix + k, m.type);
    }
  };
  walk(template.template.mappings.properties, '');

  it('maps every field we emit, ECS fields with their ECS type', () => {
    const emitted = new Set<string>();
    for (const e of everyKind()) for (const [name] of leaves(toEcs(e))) emitted.add(name);
    for (const name of emitted) {
      // flattened: the whole object is one field (classifier fields vary by protocol)
      const flat = [...mapped].find(([m, t]) => t === 'flattened' && name.startsWith(`${m}.`));
      if (flat) continue;
      const type = mapped.get(name);
      assert.ok(type, `${name} is emitted but not in the template`);
      const def = FIELDS[name];
      if (def) assert.equal(type, def.type, `${name}: template says ${type}, ECS says ${def.type}`);
    }
  });

  it('maps no ECS field with a type other than its ECS type', () => {
    for (const [name, type] of mapped) {
      const def = FIELDS[name];
      if (def) assert.equal(type, def.type, name);
      else assert.ok(name.startsWith('honeygate.'), `${name}: neither ECS nor ours`);
    }
  });
});

export type { EcsDocument };
