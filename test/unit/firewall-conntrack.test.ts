// Stale UDP conntrack entries (issue 18, moby/libnetwork#1994): parsing `conntrack -L`, the
// entries `firewall apply` deletes, and doctor's udp-conntrack check over them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { deleteArgs, isNated, parseConntrack, staleUdp } from '../../src/firewall/conntrack.js';
import { udpConntrack } from '../../src/firewall/doctor/checks/conntrack.js';
import type { Facts } from '../../src/firewall/doctor/index.js';
import { protectedFrom } from '../../src/firewall/render.js';

// as conntrack v1.4.7 prints them (the summary line goes to stderr); the second DNATed by
// a rule sending 5353 to 192.0.2.130:53, the third honeygate's own transparent upstream flow
const LISTING = [
  'udp      17 29 src=203.0.113.7 dst=203.0.113.1 sport=40000 dport=5353 [UNREPLIED] src=203.0.113.1 dst=203.0.113.7 sport=5353 dport=40000 mark=0 use=1',
  'udp      17 118 src=203.0.113.8 dst=203.0.113.1 sport=40001 dport=5353 src=192.0.2.130 dst=203.0.113.8 sport=53 dport=40001 [ASSURED] mark=0 use=1',
  'udp      17 29 src=203.0.113.9 dst=192.0.2.53 sport=40002 dport=53 [UNREPLIED] src=192.0.2.130 dst=203.0.113.9 sport=53 dport=40002 mark=4096 use=1',
  'ipv6     10 udp      17 29 src=2001:db8::7 dst=2001:db8::1 sport=40003 dport=161 [UNREPLIED] src=2001:db8:2::5 dst=2001:db8::7 sport=161 dport=40003 mark=0 use=1 id=1234',
  'tcp      6 431999 ESTABLISHED src=203.0.113.7 dst=203.0.113.1 sport=1 dport=22 src=203.0.113.1 dst=203.0.113.7 sport=22 dport=1 [ASSURED] mark=0 use=1',
  '',
].join('\n');

function config(yaml: string): Config {
  const r = loadConfigText(yaml, { fileName: 'test.yaml' });
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return r.config;
}

const UDP = config(`
listeners:
  - name: all-udp
    transport: udp
    tproxy: { port: 15002 }
    divert: { interface: eth0, exclude: [123] }
routes:
  - capture: {}
`);
const PROT = protectedFrom(UDP, [{ address: '0.0.0.0:22', port: 22 }]);

test('parseConntrack: UDP lines of both output formats, original then reply tuple, mark', () => {
  const entries = parseConntrack(LISTING);
  assert.equal(entries.length, 4);
  assert.deepEqual(entries[1], {
    family: 4,
    src: '203.0.113.8',
    dst: '203.0.113.1',
    sport: 40001,
    dport: 5353,
    replySrc: '192.0.2.130',
    replySport: 53,
    mark: 0,
  });
  assert.equal(entries[3]!.family, 6);
  assert.equal(entries[2]!.mark, 4096);
  assert.deepEqual(
    entries.map((e) => isNated(e)),
    [false, true, true, true],
  );
  assert.deepEqual(
    parseConntrack('conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.\n'),
    [],
  );
});

test('staleUdp: NATed entries on diverted ports only; never honeygate-marked ones', () => {
  const stale = staleUdp(UDP, PROT, parseConntrack(LISTING));
  // not the un-NATed one, not the marked one; the IPv6 one too (::1 receives IPv6)
  assert.deepEqual(
    stale.map((e) => e.sport),
    [40001, 40003],
  );
  assert.deepEqual(deleteArgs(stale[0]!), [
    '-D',
    '-f',
    'ipv4',
    '-p',
    'udp',
    '-s',
    '203.0.113.8',
    '-d',
    '203.0.113.1',
    '--sport',
    '40001',
    '--dport',
    '5353',
  ]);
  assert.equal(deleteArgs(stale[1]!)[2], 'ipv6');
});

test('staleUdp: excluded and protected ports, divert.addresses, families and TCP listeners stay out', () => {
  const e = parseConntrack(LISTING)[1]!;
  const at = (dport: number, dst = e.dst) => [{ ...e, dport, dst }];
  assert.equal(staleUdp(UDP, PROT, at(123)).length, 0, 'excluded');
  assert.equal(staleUdp(UDP, PROT, at(22)).length, 0, 'protected (sshd)');
  const some = config(`
listeners:
  - name: dns
    transport: udp
    tproxy: { port: 15053, address: [127.0.0.1] }
    divert: { interface: eth0, addresses: [203.0.113.53], ports: ["53"] }
routes:
  - capture: {}
`);
  assert.equal(staleUdp(some, PROT, at(53, '203.0.113.53')).length, 1);
  assert.equal(staleUdp(some, PROT, at(53, '203.0.113.54')).length, 0, 'another address');
  assert.equal(staleUdp(some, PROT, at(54, '203.0.113.53')).length, 0, 'another port');
  const v6 = parseConntrack(LISTING)[3]!;
  assert.equal(staleUdp(some, PROT, [{ ...v6, dport: 53 }]).length, 0, 'no IPv6 socket');
  const tcp = config(`
listeners:
  - name: all
    tproxy: { port: 15001 }
    divert: { interface: eth0 }
routes:
  - capture: {}
`);
  assert.equal(staleUdp(tcp, PROT, at(5353)).length, 0, 'TCP listeners divert no UDP');
});

function facts(over: Partial<Facts>): Facts {
  return {
    config: UDP,
    file: 'hg.yaml',
    protectedPorts: PROT,
    links: [
      {
        name: 'eth0',
        kind: 'veth',
        master: null,
        addrs: [{ family: 4, local: '203.0.113.1', scope: 'global' }],
      },
    ],
    natTargets: { dnat: new Set(), redirect: false },
    ...over,
  } as Facts;
}

test('doctor udp-conntrack: a stale entry is named with its fix; one a live rule made is fine', () => {
  const entries = parseConntrack(LISTING);
  const [f] = udpConntrack(facts({ conntrack: { status: 'ok', detail: '', entries } }));
  assert.equal(f!.status, 'warn');
  assert.match(
    f!.message,
    /^2 UDP conntrack entries on diverted ports still point where a NAT rule that no longer exists/,
  );
  assert.match(f!.message, /203\.0\.113\.8:40001 -> 203\.0\.113\.1:5353 goes to 192\.0\.2\.130:53/);
  assert.match(f!.message, /\[2001:db8::7\]:40003 -> \[2001:db8::1\]:161 goes to \[2001:db8:2::5\]:161/);
  assert.equal(
    f!.fix,
    'honeygate firewall apply -c hg.yaml   # deletes them; or one by one: conntrack -D -f ipv4 -p udp -s 203.0.113.8 -d 203.0.113.1 --sport 40001 --dport 5353',
  );

  // a DNAT rule still sends flows to both targets (a Docker-published port): by design
  const live = udpConntrack(
    facts({
      conntrack: { status: 'ok', detail: '', entries },
      natTargets: { dnat: new Set(['192.0.2.130', '2001:db8:2::5']), redirect: false },
    }),
  );
  assert.equal(live[0]!.status, 'ok');
  assert.match(live[0]!.message, /2 NATed by a rule that still exists/);

  const none = udpConntrack(facts({ conntrack: { status: 'ok', detail: '', entries: [] } }));
  assert.deepEqual(
    none.map((x) => [x.status, x.message]),
    [['ok', 'no stale UDP conntrack entry on a diverted port']],
  );
});

test('doctor udp-conntrack: without the conntrack tool it says what to install; TCP-only configs: silent', () => {
  const [f] = udpConntrack(facts({ conntrack: { status: 'missing', detail: '', entries: [] } }));
  assert.equal(f!.status, 'warn');
  assert.match(f!.message, /^conntrack is not installed/);
  assert.equal(f!.fix, 'apt-get install conntrack');
  const tcp = config(
    'listeners: [{ name: a, tproxy: { port: 1 }, divert: { interface: eth0 } }]\nroutes: [{ capture: {} }]\n',
  );
  assert.deepEqual(udpConntrack(facts({ config: tcp, conntrack: undefined })), []);
});
