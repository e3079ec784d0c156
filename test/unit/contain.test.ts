// contain: its config errors, the rules for Docker networks, and egress counters -> events.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { fromInspect } from '../../src/contain/docker.js';
import { egressDeltas, egressEvent, parseEgressSets } from '../../src/contain/egress.js';
import { planRuleset, renderRuleset } from '../../src/firewall/render.js';

const BASE = 'listeners: [{ name: ssh, bind: "0.0.0.0:2222" }]\n';

function load(text: string) {
  return loadConfigText(BASE + text, { env: {}, baseDir: '/tmp', fileName: 'config.yaml' });
}

function config(text: string): Config {
  const r = load(text);
  if (!r.ok) assert.fail(r.errors.join('\n'));
  return r.config;
}

function errors(text: string): string {
  const r = load(text);
  assert.equal(r.ok, false, 'the config is refused');
  return r.ok ? '' : r.errors.join('\n');
}

test('contain: a config error names the key and what is allowed', () => {
  assert.match(errors('contain: {}\n'), /config\.yaml:2: contain: names nothing to contain: give honeypots/);
  assert.match(
    errors('contain: { honeypots: ["192.0.2.300"] }\n'),
    /contain\.honeypots\[0\]: "192\.0\.2\.300" is not an IP address/,
  );
  assert.match(errors('contain: { honeypots: ["0.0.0.0/0"] }\n'), /would hold in every address/);
  assert.match(errors('contain: { networks: ["-bad"] }\n'), /invalid Docker network name "-bad"/);
  assert.match(
    errors('contain: { networks: [hp], honeypot: [] }\n'),
    /unknown key 'honeypot' \(allowed: honeypots, networks/,
  );
  assert.match(
    errors('contain: { networks: [hp], allow: [{ to: "0.0.0.0/0" }] }\n'),
    /contain\.allow\[0\]\.to: 0\.0\.0\.0\/0 allows every address/,
  );
  assert.match(
    errors('contain: { networks: [hp], allow: [{ to: "192.0.2.53", protocol: icmp }] }\n'),
    /contain\.allow\[0\]\.protocol: .*icmp/,
  );
  assert.match(
    errors('contain: { networks: [hp], allow: [{ to: "192.0.2.53", rate: "5/d" }] }\n'),
    /contain\.allow\[0\]\.rate: invalid rate "5\/d"/,
  );
  assert.match(
    errors('contain: { networks: [hp], allow: { to: "192.0.2.53" } }\n'),
    /contain\.allow: expected a list/,
  );
});

test('contain: defaults', () => {
  const c = config('contain: { networks: [hp, hp] }\n').contain!;
  assert.deepEqual(c.networks, ['hp']);
  assert.deepEqual(c.honeypots, []);
  assert.equal(c.docker, '/var/run/docker.sock');
  assert.equal(c.recordIntervalMs, 10_000);
  assert.deepEqual(c.allow, []);
  const a = config('contain: { honeypots: "192.0.2.10", allow: [{ to: "192.0.2.53", rate: 10/m }] }\n')
    .contain!;
  assert.deepEqual(a.allow[0]!.protocols, ['tcp', 'udp']);
  assert.deepEqual(a.allow[0]!.rate, { count: 10, unit: 'minute' });
  assert.equal(config('').contain, null);
});

const NETWORKS = {
  networks: [{ name: 'farm', bridge: 'br-0123456789ab', subnets: ['192.0.2.0/26'] }],
  missing: [{ name: 'gone', why: 'Docker has no network "gone" (docker network ls)' }],
};

test('contain: a Docker network is held in by its bridge, in both hooks, before Docker (priority filter - 10)', () => {
  const c = config(
    'contain: { networks: [farm, gone], allow: [{ to: "192.0.2.53", protocol: udp, ports: ["53"] }] }\n',
  );
  const text = renderRuleset(c, { protectedPorts: [], contain: NETWORKS });
  assert.match(text, /set contain_ifaces \{\n\t\ttype ifname\n\t\telements = \{ "br-0123456789ab" \}/);
  for (const hook of ['forward', 'input']) {
    assert.match(
      text,
      new RegExp(`chain contain_${hook} \\{\\n\\t\\ttype filter hook ${hook} priority filter - 10;`),
    );
  }
  assert.match(text, /# network gone is NOT contained: Docker has no network "gone"/);
  // an interface carries both families: the allow entry's IPv4 rule only, recording for both
  assert.match(
    text,
    /iifname @contain_ifaces ip daddr \{ 192\.0\.2\.53 \} meta l4proto \{ udp \} th dport \{ 53 \} accept/,
  );
  assert.doesNotMatch(text, /iifname @contain_ifaces ip6 daddr/);
  assert.match(text, /iifname @contain_ifaces meta l4proto \{[^}]+\} update @egress_v6 \{ ip6 saddr/);
  assert.match(text, /iifname @contain_ifaces drop comment "honeygate: contain \(input\): networks drop"/);
  const plan = planRuleset(c, { protectedPorts: [], contain: NETWORKS })!;
  assert.deepEqual(
    plan.chains.filter((x) => x.name.startsWith('contain')).map((x) => [x.name, x.hook, x.prio]),
    [
      ['contain_forward', 'forward', -10],
      ['contain_input', 'input', -10],
    ],
  );
  assert.deepEqual(plan.sets.find((s) => s.name === 'contain_ifaces')?.elements, ['br-0123456789ab']);
  assert.deepEqual(plan.families, [], 'containment alone needs no policy routing');

  if (process.getuid?.() === 0 && !spawnSync('nft', ['--version']).error) {
    const dir = mkdtempSync(join(tmpdir(), 'hg-contain-'));
    try {
      writeFileSync(join(dir, 'r.nft'), text);
      const r = spawnSync('unshare', ['--net', 'nft', '--check', '-f', join(dir, 'r.nft')], {
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('contain.sink: defaults, and its errors name the key', () => {
  assert.equal(config('contain: { networks: [hp] }\n').contain!.sink, null);
  assert.deepEqual(config('contain: { networks: [hp], sink: {} }\n').contain!.sink, {
    port: 15071,
    rate: { count: 10, unit: 'second' },
    holdMs: 5_000,
  });
  assert.deepEqual(
    config('contain: { networks: [hp], sink: { port: 9999, rate: 600/m, hold: 2s } }\n').contain!.sink,
    { port: 9999, rate: { count: 600, unit: 'minute' }, holdMs: 2_000 },
  );
  assert.match(errors('contain: { networks: [hp], sink: { port: 0 } }\n'), /contain\.sink\.port: /);
  assert.match(
    errors('contain: { networks: [hp], sink: { rate: 5/d } }\n'),
    /contain\.sink\.rate: invalid rate/,
  );
  assert.match(
    errors('contain: { networks: [hp], sink: { ports: 1 } }\n'),
    /unknown key 'ports' \(allowed: port, rate, hold\)/,
  );
});

test('contain.sink: new TCP connections are redirected before Docker, the allow list is not, and only redirected ones reach the port', () => {
  const c = config(
    'contain: { networks: [farm], honeypots: ["192.0.2.70"], sink: { port: 15071, rate: 20/s },' +
      ' allow: [{ to: "192.0.2.53", ports: ["53"] }, { to: "192.0.2.54", protocol: udp }] }\n',
  );
  const text = renderRuleset(c, { protectedPorts: [], contain: NETWORKS });
  assert.match(
    text,
    /chain contain_sink \{\n\t\ttype nat hook prerouting priority dstnat - 10; policy accept;/,
  );
  assert.match(
    text,
    /iifname @contain_ifaces ip daddr \{ 192\.0\.2\.53 \} meta l4proto \{ tcp, udp \} th dport \{ 53 \} accept comment "honeygate: contain \(sink\): networks IPv4 allow\[0\] is not redirected"/,
  );
  assert.doesNotMatch(text, /allow\[1\] is not redirected/, 'a UDP-only allow entry has no TCP to exempt');
  assert.match(text, /iifname @contain_ifaces meta l4proto tcp limit rate 20\/second redirect to :15071/);
  assert.match(text, /ip saddr @contain_v4 meta l4proto tcp limit rate 20\/second redirect to :15071/);
  const input = text.slice(text.indexOf('chain contain_input'));
  assert.match(input, /meta l4proto tcp th dport 15071 ct status ! dnat drop/);
  assert.ok(
    input.indexOf('ct status ! dnat drop') < input.indexOf('record in egress_v4"'),
    'redirected connections pass before the recording rules',
  );
  const plan = planRuleset(c, { protectedPorts: [], contain: NETWORKS })!;
  const sink = plan.chains.find((x) => x.name === 'contain_sink');
  assert.deepEqual([sink?.type, sink?.hook, sink?.prio], ['nat', 'prerouting', -110]);

  if (process.getuid?.() === 0 && !spawnSync('nft', ['--version']).error) {
    const dir = mkdtempSync(join(tmpdir(), 'hg-contain-'));
    try {
      writeFileSync(join(dir, 'r.nft'), text);
      const r = spawnSync('unshare', ['--net', 'nft', '--check', '-f', join(dir, 'r.nft')], {
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test("contain: Docker's network answer -> its bridge, or why it cannot be held in", () => {
  assert.deepEqual(
    fromInspect('farm', {
      Id: '0123456789abcdef',
      Name: 'farm',
      Driver: 'bridge',
      IPAM: { Config: [{ Subnet: '192.0.2.0/26' }, { Subnet: '2001:db8:f::/64' }] },
    }),
    { name: 'farm', bridge: 'br-0123456789ab', subnets: ['192.0.2.0/26', '2001:db8:f::/64'] },
  );
  assert.equal(
    (fromInspect('bridge', { Id: 'ff', Name: 'bridge', Driver: 'bridge' }) as { bridge: string }).bridge,
    'docker0',
  );
  const named = fromInspect('x', {
    Id: 'ff',
    Name: 'x',
    Driver: 'bridge',
    Options: { 'com.docker.network.bridge.name': 'hp0' },
  });
  assert.equal((named as { bridge: string }).bridge, 'hp0');
  assert.match(
    (fromInspect('m', { Id: 'ff', Name: 'm', Driver: 'macvlan' }) as { why: string }).why,
    /driver is macvlan/,
  );
});

// As `nft -j list table inet honeygate` prints the egress sets (nftables 1.0.6; chains, rules
// and the other sets left out).
const TABLE_JSON = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6' } },
    { table: { family: 'inet', name: 'honeygate' } },
    {
      set: {
        family: 'inet',
        name: 'contain_ifaces',
        table: 'honeygate',
        type: 'ifname',
        elem: ['br-61794b0f8bee'],
      },
    },
    {
      set: {
        family: 'inet',
        name: 'egress_v4',
        table: 'honeygate',
        elem: [
          {
            elem: {
              val: { concat: ['192.0.2.10', '203.0.113.5', 'tcp', 80] },
              expires: 3599,
              counter: { packets: 3, bytes: 180 },
            },
          },
          {
            elem: {
              val: { concat: ['192.0.2.10', '203.0.113.6', 'udp', 53] },
              counter: { packets: 1, bytes: 70 },
            },
          },
        ],
      },
    },
    {
      set: {
        family: 'inet',
        name: 'egress_v4_icmp',
        table: 'honeygate',
        elem: [
          {
            elem: {
              val: { concat: ['192.0.2.10', '203.0.113.7', 'echo-request'] },
              counter: { packets: 4, bytes: 336 },
            },
          },
          {
            elem: {
              val: { concat: ['192.0.2.10', '203.0.113.7', 42] }, // a type nft has no name for
              counter: { packets: 1, bytes: 28 },
            },
          },
        ],
      },
    },
    {
      set: {
        family: 'inet',
        name: 'egress_v6_icmp',
        table: 'honeygate',
        elem: [
          {
            elem: {
              val: { concat: ['2001:db8:e::10', '2001:db8:2::7', 'echo-request'] },
              counter: { packets: 1, bytes: 104 },
            },
          },
        ],
      },
    },
    {
      set: {
        family: 'inet',
        name: 'egress_v4_other',
        table: 'honeygate',
        elem: [
          {
            elem: {
              val: { concat: ['192.0.2.10', '203.0.113.8', 'gre'] },
              counter: { packets: 2, bytes: 200 },
            },
          },
        ],
      },
    },
  ],
});

test('egress: set counters become one event per honeypot, destination, protocol and port, counting what grew', () => {
  const counts = parseEgressSets(TABLE_JSON);
  assert.deepEqual(
    counts.map((c) => `${c.honeypot} ${c.dst} ${c.protocol} ${c.port} ${c.icmpType} ${c.packets}`),
    [
      '192.0.2.10 203.0.113.5 tcp 80 null 3',
      '192.0.2.10 203.0.113.6 udp 53 null 1',
      '192.0.2.10 203.0.113.7 icmp 0 8 4',
      '192.0.2.10 203.0.113.7 icmp 0 42 1',
      '2001:db8:e::10 2001:db8:2::7 ipv6-icmp 0 128 1',
      '192.0.2.10 203.0.113.8 gre 0 null 2',
    ],
  );
  const before = new Map(
    counts.map((c) => [`${c.honeypot}|${c.dst}|${c.protocol}|${c.port}|${c.icmpType ?? ''}`, c]),
  );
  const later = counts.map((c) => ({ ...c }));
  later[0]!.packets = 5; // 2 more SYNs
  later[2]!.packets = 1; // the element was created again (the table re-applied): 1 new
  const grown = egressDeltas(before, later);
  assert.deepEqual(
    grown.map((c) => `${c.dst} ${c.packets}`),
    ['203.0.113.5 2', '203.0.113.7 1'],
  );
  const e = egressEvent(grown[0]!, 'gw1', 1000, 11_000);
  assert.equal(e.type, 'egress');
  assert.deepEqual(
    [e.src, e.dst, e.protocol, e.count, e.action],
    [{ ip: '192.0.2.10', port: 0 }, { ip: '203.0.113.5', port: 80 }, 'tcp', 2, 'drop'],
  );
  assert.equal(e.durationMs, 10_000);
});

test('egress: an ICMP attempt is recorded with its type, by number and by name', () => {
  const [, , echo, unnamed, echo6] = parseEgressSets(TABLE_JSON);
  const e = egressEvent(echo!, 'gw1', 0, 1);
  assert.deepEqual([e.dst, e.protocol], [{ ip: '203.0.113.7', port: 0 }, 'icmp']);
  assert.deepEqual(e.protocolFields, { packets: 4, bytes: 336, icmpType: 8, icmpTypeName: 'echo-request' });
  assert.match(e.detail ?? '', /\(icmp echo-request\) dropped$/);
  assert.equal(egressEvent(unnamed!, 'gw1', 0, 1).protocolFields?.icmpTypeName, '42');
  assert.deepEqual(egressEvent(echo6!, 'gw1', 0, 1).protocolFields, {
    packets: 1,
    bytes: 104,
    icmpType: 128,
    icmpTypeName: 'echo-request',
  });
});

test('egress: output that is not JSON is an error, not an empty read', () => {
  assert.throws(() => parseEgressSets('Error: No such file or directory'), /no JSON/);
});
