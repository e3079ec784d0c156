// UDP through a `tproxy` listener in the standard farm (src/netns/topology.ts), against real
// servers (issue 18, item 6). honeygate runs with `run --manage-firewall` in the gateway and
// diverts every UDP port arriving on att1; the attacker (attacker1) aims at decoy addresses
// nobody owns.
//   - dig to any decoy address and port: the answer comes from the address and port dig
//     aimed at (dig accepts it), and the DNS honeypot (Debian dnsmasq, log-queries, in the
//     honeypot namespace, behind `source: transparent`) logs the attacker's own address;
//     IPv4 and IPv6.
//   - snmpget against snmpd behind the gateway (`source: transparent`).
//   - go-mmproxy as the PROXY v2 UDP peer (`source: proxy-v2` -> go-mmproxy -p udp ->
//     dnsmasq on the gateway's loopback): dnsmasq logs the attacker's address.
//   - The amplification test: attacker1 sends 1,000 small queries with the source address of
//     attacker2 (the victim), whose honest answers are ~1 KB; tcpdump in the victim counts
//     what arrives: no more than the guard allows, and the flow's event shows the rest held.
// Everything runs with the default amplification guard: honest DNS and SNMP answers pass it.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { nativeAvailable } from '../../src/net/native.js';
import { buildFarm, type Farm } from '../../src/netns/topology.js';
import { type GatewayProcess, startManagedGateway } from '../helpers/farm-gateway.js';
import { type EventRecord, runCli } from '../helpers/honeygate.js';
import { needsRoot, rootState } from '../helpers/netns.js';
import { needs } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

function skipReason(): string | false {
  const missing =
    needsRoot() || needs('nft', 'dig', 'dnsmasq', 'snmpget', 'snmpd', 'go-mmproxy', 'tcpdump', 'python3');
  if (missing) return missing;
  const native = nativeAvailable();
  return native.ok ? false : `a UDP tproxy listener needs the native addon: ${native.reason}`;
}
const skip = skipReason();

const TPROXY_PORT = 15053;
const MMPROXY_PORT = 2553; // go-mmproxy's UDP listener in the gateway
const LOOP_DNS_PORT = 5300; // the dnsmasq behind go-mmproxy, on the gateway's loopback
const BIG = 'x'.repeat(250); // big.test TXT: 4 of these, a ~1 KB answer to a 37-byte query
const SYS_DESCR = 'honeygate e2e snmpd';
const VICTIM_PORT = 40053;
const SPOOFED = 1000;

// The guard's defaults (src/gateway/udp/udp.ts UDP_DEFAULTS), which the config leaves alone.
const GUARD = { ratio: 1, allowance: 512, bytesPerSecond: 16 * 1024, packetsPerSecond: 20 };

const config = (dir: string) => `
limits:
  udp: { idleTimeout: 1s }
listeners:
  - name: udp-all
    transport: udp
    tproxy: { port: ${TPROXY_PORT} }
    divert: { interface: att1 }
routes:
  - name: snmp
    match: { protocol: [snmp] }
    forward: snmpd
  - name: via-mmproxy
    match: { dstPorts: ["${LOOP_DNS_PORT}"] }
    forward: mmproxy
  - name: dns
    match: { protocol: [dns] }
    forward: dnsmasq
  - capture: {}
backends:
  dnsmasq:
    servers: ["192.0.2.100:53", "[2001:db8:c::10]:53"]
    source: transparent
  snmpd:
    servers: ["192.0.2.100:161"]
    source: transparent
  mmproxy:
    servers: ["127.0.0.1:${MMPROXY_PORT}"]
    source: proxy-v2
events: { sqlite: ${dir}/events.db, batch: 50ms }
log: { level: info }
`;

// A scanner's way: one socket, one source port, queries to several decoys in turn; prints
// where each answer came from ("from IP:PORT"), or "timeout".
const ONE_PORT_SCANNER = `
import socket, struct, sys
src, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, port))
s.settimeout(3)
question = b'\\x08honeypot\\x04test\\x00' + struct.pack('!HH', 1, 1)
for i, target in enumerate(sys.argv[3:]):
    s.sendto(struct.pack('!HHHHHH', i, 0x0100, 1, 0, 0, 0) + question, (target, 53))
    try:
        _, addr = s.recvfrom(2048)
        print('from %s:%d' % addr, flush=True)
    except socket.timeout:
        print('timeout', flush=True)
`;

// Sends SPOOFED queries for big.test TXT from the victim's address (IP_TRANSPARENT lets the
// attacker bind an address it does not own), 50 at a time; prints "sent N BYTES". Each
// query offers a 4096-byte EDNS buffer, as reflection attacks do (without it dnsmasq
// answers a truncated 26 bytes).
const SPOOFER = `
import socket, struct, sys, time
victim, port, target, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
s.bind((victim, port))
question = b'\\x03big\\x04test\\x00' + struct.pack('!HH', 16, 1)
opt = b'\\x00' + struct.pack('!HHIH', 41, 4096, 0, 0)
total = 0
for i in range(count):
    q = struct.pack('!HHHHHH', i, 0x0100, 1, 0, 0, 1) + question + opt
    s.sendto(q, (target, 53))
    total += len(q)
    if i % 50 == 49:
        time.sleep(0.02)
print('sent %d %d' % (count, total), flush=True)
`;

type UdpEvent = EventRecord & {
  transport?: string;
  udp?: { datagramsIn: number; datagramsOut: number; heldDatagrams: number; heldBytes: number };
};

/** A child's output lines as they come (stdout and stderr), and its exit. */
function collect(child: ChildProcess) {
  const lines: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
  createInterface({ input: child.stderr! }).on('line', (l) => lines.push(l));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { lines, exited, text: () => lines.join('\n') };
}

describe('UDP through a tproxy listener, against real servers', { skip, timeout: 110_000 }, () => {
  let farm: Farm;
  let gateway: GatewayProcess;
  let dir = '';
  let rootBefore: Record<string, string> = {};
  let hpDns: ReturnType<typeof collect>; // dnsmasq in the honeypot namespace
  let loopDns: ReturnType<typeof collect>; // dnsmasq behind go-mmproxy
  let mmproxy: ReturnType<typeof collect>;

  const exec = (ns: string, argv: string[], timeoutMs = 20_000) =>
    farm.topology.exec(ns, argv, { timeoutMs });

  /** `dig +short` from `ns`, one try of `seconds`. */
  const digIn = (ns: string, server: string, port: number, name: string, seconds: number) =>
    exec(ns, ['dig', `+time=${seconds}`, '+tries=1', '+short', '-p', String(port), `@${server}`, name]);

  /** dig from attacker1; its stdout (+short), or throws with what dig said. */
  async function dig(server: string, port: number, name: string): Promise<string> {
    const r = await digIn(farm.attacker1.ns, server, port, name, 3);
    assert.equal(r.code, 0, `dig @${server} -p ${port} ${name}: ${r.stdout}${r.stderr}`);
    return r.stdout.trim();
  }

  async function events(): Promise<UdpEvent[]> {
    const r = await runCli(['events', '--db', path.join(dir, 'events.db'), '--json', '--limit', '10000']);
    if (r.code !== 0) throw new Error(`honeygate events exited ${r.code}: ${r.stderr}`);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l));
  }

  const eventOf = (pred: (e: UdpEvent) => boolean, what: string) =>
    waitFor(what, async () => (await events()).find(pred), 20_000, 100);

  /** Waits until a server in `ns` answers a dig at server:port. */
  const answers = (ns: string, server: string, port: number, name: string) =>
    waitFor(
      `a DNS server on ${server}:${port}`,
      async () => {
        const r = await digIn(ns, server, port, name, 1);
        return r.code === 0 && r.stdout.trim() !== '';
      },
      15_000,
      100,
    );

  before(async () => {
    rootBefore = rootState();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-u3-udp-'));
    fs.chmodSync(dir, 0o755);
    farm = await buildFarm({ honeypotHost: true });
    const { topology } = farm;
    const gw = farm.gateway.ns;
    const hp = farm.honeypot!.ns;
    // The spoofed queries arrive on att1 from attacker2's address: no reverse-path filter.
    for (const key of ['all', 'default', 'att1'])
      await topology.sysctl(gw, `net.ipv4.conf.${key}.rp_filter`, '0');

    // The DNS honeypot: answers honeypot.test and big.test, logs each query with its source.
    const dnsmasq = (ns: string, args: string[]) =>
      topology.spawn(
        ns,
        [
          'dnsmasq',
          '--no-daemon',
          '--bind-interfaces',
          '--no-resolv',
          '--no-hosts',
          '--log-queries=extra', // "N IP/PORT query[A] NAME from IP": the port too
          '--log-facility=-',
          '--user=root',
          `--pid-file=${dir}/dnsmasq-${ns}.pid`,
          ...args,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
    hpDns = collect(
      dnsmasq(hp, [
        '--port=53',
        '--listen-address=192.0.2.100',
        '--listen-address=2001:db8:c::10',
        '--address=/honeypot.test/192.0.2.7',
        `--txt-record=big.test,${Array(4).fill(BIG).join(',')}`,
      ]),
    );
    await answers(hp, '192.0.2.100', 53, 'honeypot.test');

    // snmpd on the honeypot host.
    fs.writeFileSync(
      path.join(dir, 'snmpd.conf'),
      `agentAddress udp:192.0.2.100:161\nrocommunity public default\nsysDescr ${SYS_DESCR}\n`,
    );
    topology.spawn(
      hp,
      ['snmpd', '-f', '-Lo', '-C', '-c', path.join(dir, 'snmpd.conf'), '-p', path.join(dir, 'snmpd.pid')],
      { stdio: ['ignore', 'ignore', 'ignore'], env: { ...process.env, SNMP_PERSISTENT_DIR: dir, MIBS: '' } },
    );
    await waitFor(
      'snmpd to answer',
      async () => {
        const r = await exec(hp, [
          'snmpget',
          '-v2c',
          '-c',
          'public',
          '-t',
          '1',
          '-r',
          '0',
          '-m',
          '',
          '-On',
          '192.0.2.100',
          '1.3.6.1.2.1.1.1.0',
        ]);
        return r.stdout.includes(SYS_DESCR);
      },
      15_000,
      200,
    );

    // go-mmproxy's recipe (docs/proxy-protocol.md) with -p udp, and a dnsmasq behind it.
    await topology.run(gw, [
      'sh',
      '-ec',
      'ip rule add from 127.0.0.1/8 iif lo table 123; ip route add local 0.0.0.0/0 dev lo table 123',
    ]);
    fs.writeFileSync(path.join(dir, 'allowed-subnets.txt'), '127.0.0.1/32\n');
    loopDns = collect(
      dnsmasq(gw, [
        `--port=${LOOP_DNS_PORT}`,
        '--listen-address=127.0.0.1',
        '--address=/mmproxy.test/192.0.2.8',
      ]),
    );
    await answers(gw, '127.0.0.1', LOOP_DNS_PORT, 'mmproxy.test');
    mmproxy = collect(
      topology.spawn(
        gw,
        [
          'go-mmproxy',
          '-p',
          'udp',
          '-l',
          `127.0.0.1:${MMPROXY_PORT}`,
          '-4',
          `127.0.0.1:${LOOP_DNS_PORT}`,
          '-allowed-subnets',
          path.join(dir, 'allowed-subnets.txt'),
          '-v',
          '1',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    );
    await waitFor('go-mmproxy to listen', async () => {
      const r = await exec(gw, ['ss', '-Hlun', `sport = :${MMPROXY_PORT}`]);
      return r.stdout.includes(`127.0.0.1:${MMPROXY_PORT}`);
    });

    fs.writeFileSync(path.join(dir, 'honeygate.yaml'), config(dir));
    gateway = startManagedGateway(farm, path.join(dir, 'honeygate.yaml'));
    await gateway.ready();
  });

  after(async () => {
    await gateway?.stop();
    await farm?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
  });

  test('dig to any address and port: the answer comes from where dig aimed, dnsmasq logs the attacker', async () => {
    const a1 = farm.attacker1;
    for (const [host, port] of [
      ['192.0.2.74', 53],
      ['192.0.2.75', 5354],
    ] as const) {
      // dig drops an answer from any other address or port ("reply from unexpected source")
      assert.equal(await dig(host, port, 'honeypot.test'), '192.0.2.7', `${host}:${port}`);
      const e = await eventOf(
        (x) => x.dst.ip === host && x.dst.port === port,
        `the event of ${host}:${port}`,
      );
      assert.equal(e.transport, 'udp');
      assert.equal(e.src.ip, a1.ip4);
      assert.equal(e.action, 'forward');
      assert.equal(e.route, 'dns');
      assert.equal(e.sourceMode, 'transparent');
      assert.equal(e.server, '192.0.2.100:53');
      assert.equal(e.protocol, 'dns');
      assert.deepEqual(e.udp, { datagramsIn: 1, datagramsOut: 1, heldDatagrams: 0, heldBytes: 0 });
      assert.equal(e.detail, null);
      // dnsmasq: "query[A] honeypot.test from 198.51.100.10"
      await waitFor("the query in dnsmasq's log", () =>
        hpDns.lines.some((l) => l.includes(`query[A] honeypot.test from ${a1.ip4}`)),
      );
    }
    assert.ok(!hpDns.lines.some((l) => /from 192\.0\.2\.97|from 127\./.test(l)), hpDns.text());
  });

  test("one source port to two decoys routed to one honeypot: each answer comes from the decoy asked, the second flow's event says which port the honeypot saw", async () => {
    const a1 = farm.attacker1;
    const port = 40054;
    const [first, second] = ['192.0.2.81', '192.0.2.82'];
    const r = await exec(a1.ns, [
      'python3',
      '-c',
      ONE_PORT_SCANNER,
      a1.ip4,
      String(port),
      first,
      second,
      first,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [
      `from ${first}:53`,
      `from ${second}:53`,
      `from ${first}:53`,
    ]);
    const flowTo = (host: string) =>
      eventOf((x) => x.src.port === port && x.dst.ip === host, `the event of ${host}`);
    const [one, two] = [await flowTo(first), await flowTo(second)];
    assert.deepEqual(one.udp, { datagramsIn: 2, datagramsOut: 2, heldDatagrams: 0, heldBytes: 0 });
    assert.equal(one.detail, null);
    assert.deepEqual(two.udp, { datagramsIn: 1, datagramsOut: 1, heldDatagrams: 0, heldBytes: 0 });
    const seen = /^the honeypot sees source port (\d+): 40054 was in use towards 192\.0\.2\.100:53$/.exec(
      two.detail ?? '',
    );
    assert.ok(seen, `detail: ${two.detail}`);
    await waitFor("both queries' sources in dnsmasq's log", () =>
      [port, Number(seen[1])].every((p) =>
        hpDns.lines.some((l) => l.includes(`${a1.ip4}/${p} query[A] honeypot.test`)),
      ),
    );
  });

  test('IPv6: dig through the tproxy listener to dnsmasq, which logs the attacker', async () => {
    const a1 = farm.attacker1;
    assert.equal(await dig('2001:db8:d::74', 53, 'honeypot.test'), '192.0.2.7');
    const e = await eventOf((x) => x.dst.ip === '2001:db8:d::74', 'the IPv6 event');
    assert.equal(e.src.ip, a1.ip6);
    assert.equal(e.dst.port, 53);
    assert.equal(e.server, '[2001:db8:c::10]:53');
    assert.deepEqual(e.udp, { datagramsIn: 1, datagramsOut: 1, heldDatagrams: 0, heldBytes: 0 });
    await waitFor("the IPv6 query in dnsmasq's log", () =>
      hpDns.lines.some((l) => l.includes(`query[A] honeypot.test from ${a1.ip6}`)),
    );
  });

  test('snmpget against snmpd behind the gateway', async () => {
    const r = await exec(farm.attacker1.ns, [
      'snmpget',
      '-v2c',
      '-c',
      'public',
      '-t',
      '3',
      '-r',
      '0',
      '-m',
      '',
      '-On',
      '192.0.2.76',
      '1.3.6.1.2.1.1.1.0',
    ]);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    assert.match(
      r.stdout,
      new RegExp(`^\\.1\\.3\\.6\\.1\\.2\\.1\\.1\\.1\\.0 = STRING: "?${SYS_DESCR}"?$`, 'm'),
    );
    const e = await eventOf((x) => x.dst.ip === '192.0.2.76', 'the SNMP event');
    assert.equal(e.src.ip, farm.attacker1.ip4);
    assert.equal(e.dst.port, 161);
    assert.equal(e.protocol, 'snmp');
    assert.equal(e.route, 'snmp');
    assert.equal(e.server, '192.0.2.100:161');
    assert.equal(e.udp!.datagramsOut, 1);
    assert.equal(e.udp!.heldDatagrams, 0);
  });

  test('proxy-v2 to go-mmproxy -p udp: the honeypot behind it sees the attacker', async () => {
    const a1 = farm.attacker1;
    assert.equal(await dig('192.0.2.77', LOOP_DNS_PORT, 'mmproxy.test'), '192.0.2.8');
    const e = await eventOf((x) => x.dst.ip === '192.0.2.77', 'the go-mmproxy event');
    assert.equal(e.route, 'via-mmproxy');
    assert.equal(e.sourceMode, 'proxy-v2');
    assert.equal(e.server, `127.0.0.1:${MMPROXY_PORT}`);
    assert.deepEqual(e.udp, { datagramsIn: 1, datagramsOut: 1, heldDatagrams: 0, heldBytes: 0 });
    await waitFor(`the query in the log of the dnsmasq behind go-mmproxy\n${mmproxy.text()}`, () =>
      loopDns.lines.some((l) => l.includes(`query[A] mmproxy.test from ${a1.ip4}`)),
    );
  });

  test('a spoofed victim gets no more than the guard allows, and the event shows what was held', async () => {
    const victim = farm.attacker2;
    const tcpdump = farm.topology.spawn(
      victim.ns,
      ['tcpdump', '-i', 'eth0', '-nn', '-l', '-q', '-p', `udp and dst port ${VICTIM_PORT}`],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const dump = collect(tcpdump);
    await waitFor('tcpdump to listen', () => dump.lines.some((l) => l.startsWith('listening on eth0')));

    const r = await exec(
      farm.attacker1.ns,
      ['python3', '-c', SPOOFER, victim.ip4, String(VICTIM_PORT), '192.0.2.78', String(SPOOFED)],
      60_000,
    );
    assert.equal(r.code, 0, r.stderr);
    const [, count = 0, sentBytes = 0] = r.stdout.trim().split(' ').map(Number);
    assert.equal(count, SPOOFED);

    const e = await eventOf((x) => x.dst.ip === '192.0.2.78', 'the spoofed flow');
    tcpdump.kill('SIGINT');
    await dump.exited;
    const replies = dump.lines
      .map((l) => / IP 192\.0\.2\.78\.53 > [\d.]+: UDP, length (\d+)$/.exec(l))
      .filter((m) => m !== null)
      .map((m) => Number(m[1]));
    const victimBytes = replies.reduce((a, b) => a + b, 0);

    assert.equal(e.src.ip, victim.ip4, "the flow is the victim's");
    assert.ok(
      e.udp!.datagramsIn > SPOOFED * 0.9,
      `${e.udp!.datagramsIn} of ${SPOOFED} queries reached honeygate`,
    );
    assert.ok(e.bytesIn <= sentBytes!);
    // What reached the victim is what the event says honeygate sent.
    assert.equal(replies.length, e.udp!.datagramsOut, dump.text());
    assert.equal(victimBytes, e.bytesOut);
    // ... and no more than the guard allows: the reply budget (ratio x bytes received, plus
    // at most one allowance per reply sent) and the per-second caps over the flow's life.
    const seconds = e.durationMs / 1000 + 1;
    assert.ok(
      victimBytes <= GUARD.ratio * e.bytesIn + GUARD.allowance * (replies.length + 1),
      `${victimBytes} bytes for ${e.bytesIn}`,
    );
    assert.ok(victimBytes <= GUARD.bytesPerSecond * seconds, `${victimBytes} bytes in ${seconds} s`);
    assert.ok(
      replies.length <= GUARD.packetsPerSecond * seconds,
      `${replies.length} datagrams in ${seconds} s`,
    );
    // Every honest answer was ~1 KB: what the victim did not get, the event shows held. (On a
    // loaded machine some answers are lost before honeygate reads them: UDP.)
    const honest = e.udp!.datagramsOut + e.udp!.heldDatagrams;
    assert.ok(honest > SPOOFED / 10, `${honest} answers of ${SPOOFED} reached honeygate`);
    assert.ok(e.udp!.heldBytes > 5 * victimBytes, `held ${e.udp!.heldBytes}, sent ${victimBytes}`);
    assert.match(e.detail ?? '', /^amplification guard held \d+ replies \(\d+ bytes; first by ratio\)$/);
  });
});
