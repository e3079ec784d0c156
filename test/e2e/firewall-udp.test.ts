// honeygate's firewall for UDP listeners (issue 18 item 5), against a real kernel (root), with
// no honeygate data path: a plain Python UDP socket with IP_TRANSPARENT and
// IP_RECVORIGDSTADDR bound to the tproxy port stands where the listener would.
//   - A datagram from the attacker to a diverted UDP port of the gateway's address reaches
//     that socket with the attacker's address and the destination it aimed at (IPv4, IPv6).
//   - The moby/libnetwork#1994 trap: a flow that another table DNATed (a Docker-published
//     port, say) keeps its conntrack entry after the DNAT rule is gone, and honeygate's
//     `ct status dnat accept` lets its datagrams go on to the old place. `firewall apply`
//     deletes such entries (before and after the rules exist); doctor names them until then.
//   - A transparent upstream UDP flow (from the attacker's address to a honeypot): its answer,
//     addressed to the attacker, comes back to the socket by the UDP reply rules.
// Topology: att (203.0.113.7, 2001:db8::7) -- eth0 gw (203.0.113.1, 2001:db8::1) hp0 --
// old (192.0.2.130: where the vanished DNAT rule sent port 5353).
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { Topology } from '../../src/netns/topology.js';
import { BIN } from '../helpers/honeygate.js';
import { needsRoot } from '../helpers/netns.js';
import { which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

const skip =
  needsRoot() ||
  (which('nft') ? false : 'nft not installed (Debian package nftables)') ||
  (which('conntrack') ? false : 'conntrack not installed (Debian package conntrack)') ||
  (which('socat') ? false : 'socat not installed (Debian package socat)') ||
  (which('python3') ? false : 'python3 not installed (the transparent UDP receiver)');

const TPROXY_PORT = 15002;

const CONFIG = `
listeners:
  - name: all-udp
    transport: udp
    tproxy: { port: ${TPROXY_PORT} }
    divert: { interface: eth0, ports: ["5000-5999"] }
routes:
  - match: { dstPorts: ["53"] }
    forward: hp
  - capture: {}
backends:
  hp: { servers: ["192.0.2.130:53"], source: transparent }
`;

// Another table's DNAT, as Docker publishes a UDP port: 5353 on eth0 to the old container.
const OLD_DNAT = `table ip u2old {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "eth0" udp dport 5353 dnat to 192.0.2.130:53
	}
}
`;

// A transparent UDP socket on the tproxy port; prints "listening", then one JSON line per
// datagram: its source, its original destination (IP_RECVORIGDSTADDR) and its bytes.
const RECEIVER = `
import json, socket, struct, sys
v6 = sys.argv[1] == '6'
fam = socket.AF_INET6 if v6 else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
if v6:
    s.setsockopt(socket.IPPROTO_IPV6, 75, 1)  # IPV6_TRANSPARENT
    s.setsockopt(socket.IPPROTO_IPV6, 74, 1)  # IPV6_RECVORIGDSTADDR
    s.bind(('::1', int(sys.argv[2])))
else:
    s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
    s.setsockopt(socket.SOL_IP, 20, 1)  # IP_RECVORIGDSTADDR
    s.bind(('127.0.0.1', int(sys.argv[2])))
print('listening', flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(2048, 256)
    dst = None
    for level, kind, d in anc:
        if not v6 and level == socket.SOL_IP and kind == 20:
            dst = '%s:%d' % (socket.inet_ntop(socket.AF_INET, d[4:8]), struct.unpack('!H', d[2:4])[0])
        if v6 and level == socket.IPPROTO_IPV6 and kind == 74:
            dst = '[%s]:%d' % (socket.inet_ntop(socket.AF_INET6, d[8:24]), struct.unpack('!H', d[2:4])[0])
    src = ('[%s]:%d' if v6 else '%s:%d') % (addr[0], addr[1])
    print(json.dumps({'src': src, 'dst': dst, 'data': data.decode(errors='replace')}), flush=True)
`;

// The old DNAT target and the honeypot: a UDP echo server on 192.0.2.130:53 that answers
// with whom it saw, and prints each datagram's bytes.
const ECHO = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('192.0.2.130', 53))
print('listening', flush=True)
while True:
    data, addr = s.recvfrom(2048)
    print(data.decode(errors='replace'), flush=True)
    s.sendto(('%s:%d ' % addr).encode() + data, addr)
`;

// A transparent upstream UDP flow as honeygate makes one: from the attacker's address to the
// honeypot; prints the answer (or "timeout").
const UPSTREAM = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
s.bind(('203.0.113.7', 40100))
s.settimeout(10)
s.sendto(b'query', ('192.0.2.130', 53))
try:
    data, addr = s.recvfrom(2048)
    print('%s:%d %s' % (addr[0], addr[1], data.decode()), flush=True)
except socket.timeout:
    print('timeout', flush=True)
`;

interface Datagram {
  src: string;
  dst: string | null;
  data: string;
}

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('firewall for UDP listeners in namespaces', { skip }, () => {
  let topology: Topology;
  let gw = '';
  let att = '';
  let old = '';
  let dir = '';
  let configPath = '';
  const received: Record<4 | 6, Datagram[]> = { 4: [], 6: [] };
  const atOld: string[] = []; // what reached the old DNAT target

  const gwRun = async (argv: string[], input?: string): Promise<Result> => {
    const r = await topology.exec(gw, argv, { input, timeoutMs: 60_000 });
    return { code: r.code, stdout: r.stdout, stderr: r.stderr };
  };
  const hg = (...args: string[]) => gwRun([process.execPath, BIN, ...args]);

  async function must(argv: string[], input?: string): Promise<string> {
    const r = await gwRun(argv, input);
    assert.equal(r.code, 0, `${argv.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  }

  /** One datagram from the attacker, from a fixed source port. */
  async function send(host: string, port: number, sport: number, text: string): Promise<void> {
    const v6 = host.includes(':');
    const to = `${v6 ? 'UDP6' : 'UDP4'}-SENDTO:${v6 ? `[${host}]` : host}:${port},sourceport=${sport}`;
    const r = await topology.exec(att, ['socat', '-u', '-', to], { input: text });
    assert.equal(r.code, 0, `socat: ${r.stderr}`);
  }

  /** gw's UDP conntrack entries (both families) as conntrack prints them. */
  async function udpEntries(): Promise<string> {
    const v4 = await gwRun(['conntrack', '-L', '-f', 'ipv4', '-p', 'udp']);
    const v6 = await gwRun(['conntrack', '-L', '-f', 'ipv6', '-p', 'udp']);
    return `${v4.stdout}${v6.stdout}`;
  }

  const entryTo = (sport: number, target: string) => (list: string) =>
    list.split('\n').some((l) => l.includes(`sport=${sport} dport=5353`) && l.includes(`src=${target} `));

  function doctorLine(out: string, check: string): string {
    const line = out.split('\n').find((l) => l.slice(6).trimStart().startsWith(`${check} `));
    assert.ok(line, `no ${check} line in:\n${out}`);
    return line!;
  }

  function startReceiver(family: 4 | 6): Promise<ChildProcess> {
    const child = topology.spawn(gw, ['python3', '-c', RECEIVER, String(family), String(TPROXY_PORT)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr!.on('data', (d) => {
      err += d;
    });
    return new Promise((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line === 'listening') resolve(child);
        else received[family].push(JSON.parse(line) as Datagram);
      });
      child.on('exit', (code) => reject(new Error(`receiver (IPv${family}) exited ${code}: ${err}`)));
    });
  }

  const arrived = (family: 4 | 6, data: string) =>
    waitFor(`"${data}" at the transparent IPv${family} socket`, () =>
      received[family].find((d) => d.data === data),
    );

  before(async () => {
    topology = new Topology('u2fw');
    topology.destroyOnExit();
    gw = await topology.namespace('gw');
    att = await topology.namespace('att');
    old = await topology.namespace('old');
    await topology.veth({ ns: gw, dev: 'eth0' }, { ns: att, dev: 'eth0' });
    await topology.veth({ ns: gw, dev: 'hp0' }, { ns: old, dev: 'eth0' });
    await topology.address(gw, 'eth0', '203.0.113.1/24');
    await topology.address(gw, 'eth0', '2001:db8::1/64');
    await topology.address(att, 'eth0', '203.0.113.7/24');
    await topology.address(att, 'eth0', '2001:db8::7/64');
    await topology.address(gw, 'hp0', '192.0.2.1/24');
    await topology.address(old, 'eth0', '192.0.2.130/24');
    await topology.route(old, 'default', '192.0.2.1');
    await topology.route(att, 'default', '203.0.113.1');
    // the old DNAT target is another host: forwarded, so its conntrack entry is confirmed
    await topology.sysctl(gw, 'net.ipv4.ip_forward', '1');
    const echo = topology.spawn(old, ['python3', '-c', ECHO], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: echo.stdout! }).on('line', (l) =>
        l === 'listening' ? resolve() : atOld.push(l),
      );
      echo.on('exit', (code) => reject(new Error(`echo server exited ${code}`)));
    });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'u2fw-'));
    configPath = path.join(dir, 'honeygate.yaml');
    fs.writeFileSync(configPath, CONFIG);
  });

  after(async () => {
    await topology?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('an entry DNATed before the rules existed: apply deletes it, the next datagram reaches the tproxy socket', async () => {
    await must(['nft', '-f', '-'], OLD_DNAT);
    await send('203.0.113.1', 5353, 40000, 'before');
    await waitFor('the DNATed entry', async () => entryTo(40000, '192.0.2.130')(await udpEntries()));
    await must(['nft', 'delete', 'table', 'ip', 'u2old']); // the container went; its entry stays

    const applied = await hg('firewall', 'apply', '-c', configPath);
    assert.equal(applied.code, 0, `${applied.stdout}\n${applied.stderr}`);
    assert.match(applied.stdout, /applied table inet honeygate \(2 divert rules, 2 of them UDP\)/);
    assert.match(
      applied.stdout,
      /conntrack: deleted 1 stale UDP entry .*: 203\.0\.113\.7:40000 -> 203\.0\.113\.1:5353 was going to 192\.0\.2\.130:53/,
    );
    assert.equal(entryTo(40000, '192.0.2.130')(await udpEntries()), false);

    await startReceiver(4);
    await send('203.0.113.1', 5353, 40000, 'after');
    const d = await arrived(4, 'after');
    assert.deepEqual(d, { src: '203.0.113.7:40000', dst: '203.0.113.1:5353', data: 'after' });

    const doc = await hg('firewall', 'doctor', '-c', configPath);
    assert.match(
      doctorLine(doc.stdout, 'udp-conntrack'),
      /^ok {4}udp-conntrack +no stale UDP conntrack entry/,
    );
    assert.doesNotMatch(doc.stdout, /^FAIL/m, doc.stdout);
    assert.equal(doc.code, 0, doc.stdout);

    const shown = await hg('firewall', 'show', '-c', configPath);
    assert.match(
      shown.stdout,
      /# listener all-udp \(UDP\): datagrams to UDP ports 5000-5999 go to 127\.0\.0\.1:15002 and \[::1\]:15002/,
    );
    assert.match(shown.stdout, /# in place: the live state matches the config/);
  });

  test('any diverted port and address, IPv4 and IPv6: the attacker and its destination arrive intact', async () => {
    await startReceiver(6);
    await send('203.0.113.1', 5999, 40010, 'v4 high');
    await send('198.51.100.99', 5000, 40011, 'v4 elsewhere'); // routed through gw to an address it does not own
    await send('2001:db8::1', 5060, 40012, 'v6');
    assert.deepEqual(await arrived(4, 'v4 high'), {
      src: '203.0.113.7:40010',
      dst: '203.0.113.1:5999',
      data: 'v4 high',
    });
    assert.deepEqual(await arrived(6, 'v6'), {
      src: '[2001:db8::7]:40012',
      dst: '[2001:db8::1]:5060',
      data: 'v6',
    });
    assert.deepEqual(await arrived(4, 'v4 elsewhere'), {
      src: '203.0.113.7:40011',
      dst: '198.51.100.99:5000',
      data: 'v4 elsewhere',
    });
  });

  test('an entry DNATed while the rules exist, its rule then gone: doctor names it, its fix deletes it', async () => {
    await must(['nft', '-f', '-'], OLD_DNAT);
    await send('203.0.113.1', 5353, 40001, 'old place');
    await waitFor('the DNATed entry', async () => entryTo(40001, '192.0.2.130')(await udpEntries()));
    // while the DNAT rule exists the entry is by design (ct status dnat): doctor is content
    const live = await hg('firewall', 'doctor', '-c', configPath);
    assert.match(doctorLine(live.stdout, 'udp-conntrack'), /^ok .*1 NATed by a rule that still exists/);
    // The rule goes, its chain stays, as when Docker drops one published port among others: a
    // NAT chain on the hook is what applies an entry's NAT to its later packets. (With no NAT
    // chain left at all they are not translated, and `ct status dnat accept` sends them to
    // this host's port 5353, where nothing listens: no better for honeygate.)
    await must(['nft', 'flush', 'chain', 'ip', 'u2old', 'prerouting']);
    // the trap: with the DNAT rule gone, the flow's datagrams still go to the old place
    await send('203.0.113.1', 5353, 40001, 'still old');
    await waitFor('"still old" at the old DNAT target', () => atOld.includes('still old'));

    const doc = await hg('firewall', 'doctor', '-c', configPath);
    const line = doctorLine(doc.stdout, 'udp-conntrack');
    assert.match(
      line,
      /^WARN +udp-conntrack +1 UDP conntrack entry on diverted ports still points where a NAT rule that no longer exists sent it \(203\.0\.113\.7:40001 -> 203\.0\.113\.1:5353 goes to 192\.0\.2\.130:53\)/,
    );
    const lines = doc.stdout.split('\n');
    const fix = lines[lines.indexOf(line) + 1]!.trim();
    assert.match(fix, new RegExp(`^fix: honeygate firewall apply -c ${configPath.replace(/[.]/g, '\\.')} `));

    const applied = await hg('firewall', 'apply', '-c', configPath);
    assert.match(applied.stdout, /conntrack: deleted 1 stale UDP entry/);
    const again = await hg('firewall', 'doctor', '-c', configPath);
    assert.match(doctorLine(again.stdout, 'udp-conntrack'), /^ok /);
    await send('203.0.113.1', 5353, 40001, 'new place');
    assert.equal((await arrived(4, 'new place')).src, '203.0.113.7:40001');
  });

  test("a transparent upstream UDP flow: the honeypot sees the attacker's address, its answer comes home", async () => {
    // the answer is addressed to the attacker, whose route is the other way: only the
    // conntrack mark (output chain) and the packet mark from it (prerouting) bring it here
    const r = await gwRun(['python3', '-c', UPSTREAM]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '192.0.2.130:53 203.0.113.7:40100 query');
  });
});
