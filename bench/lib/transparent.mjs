// The namespaced topology of the transparent figures (run.mjs, "Transparent mode") and the
// configs of the proxies in it. Documentation addresses only; nothing in the root namespace
// changes: every interface, route, rule and sysctl is made inside the three namespaces, which
// the runner deletes at the end (also on failure and Ctrl-C).
//
//   attacker ns              gateway ns                          honeypot ns
//   198.51.100.10 eth0 ---- att0 198.51.100.1                    nginx :80-87 (+ X-Remote-Addr)
//                                 192.0.2.97 hp0 ---------- eth0 192.0.2.100, .101 (direct), .102 (kernel)
//                           honeygate / HAProxy (CPU 1)          go-mmproxy :8443 -> 127.0.0.1:80
//
// The attacker aims at decoy addresses nobody owns (192.0.2.64/27, routed to the gateway by
// its default route); the gateway's TPROXY rules hand each decoy's flows to one proxy.
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { honeygateCommonYaml } from './servers.mjs';

export const PLAN = {
  attacker: '198.51.100.10',
  attackerGw: '198.51.100.1',
  honeypot: '192.0.2.100',
  // The direct (no proxy) target: the same nginx on a second address. On the proxies' own
  // address a direct flow could meet a TIME_WAIT socket the gateway keeps from a transparent
  // upstream flow with the same ports (the proxy closed first): the socket match of the
  // TPROXY rules takes nginx's SYN-ACK for that socket, and the connection hangs.
  honeypotDirect: '192.0.2.101',
  // The kernel path's DNAT target, for the same reason on nginx's side: nginx closes first and
  // keeps TIME_WAIT for 60 s; a kernel flow reusing a direct flow's ports on .101 meets it with
  // timestamps of another offset (Linux derives it from the client's address pair: decoy vs
  // .101), nginx answers its SYN with an ACK, and the client resets and retries a second later.
  honeypotKernel: '192.0.2.102',
  honeypotGw: '192.0.2.97',
  nginxPort: 80,
  // nginx also listens on 81-87 for the burst: 65,535 upstream connections from one attacker
  // address to one honeypot port would need as many source ports, all in TIME_WAIT at once.
  burstServers: 8,
  mmproxyPort: 8443,
  admin: 9201,
};

/** Per target: the address the attacker aims at and the proxy's TPROXY listener port. */
export const TARGETS = {
  direct: { host: PLAN.honeypotDirect }, // routed through the gateway, no proxy
  honeygate: { host: '192.0.2.74', tproxyPort: 15001, honeygate: true },
  haproxy: { host: '192.0.2.75', tproxyPort: 15002 },
  'honeygate-mm': { host: '192.0.2.76', tproxyPort: 15003, honeygate: true },
  'haproxy-mm': { host: '192.0.2.77', tproxyPort: 15004 },
  // honeygate's kernel path (`engine: kernel`): its divert's flows are DNATed in the gateway to
  // nginx's third address (PLAN.honeypotKernel), recorded from conntrack.
  kernel: { host: '192.0.2.78', tproxyPort: 15005, honeygate: true, kernel: true },
};

/** The listener name of the kernel path's decoy: its events are counted by it. */
export const KERNEL_LISTENER = 'kernel';

// HAProxy's TPROXY rules, written by hand as its users do (HAProxy's "transparent" docs, in
// nft): a mark and table of their own beside honeygate's (0x1000, 4210), so both proxies
// can run at once, each catching its own decoys.
const HAPROXY_MARK = '0x2000';
const HAPROXY_TABLE = '4211';
export const HAPROXY_NFT = `table inet hgbench_haproxy {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set meta mark | ${HAPROXY_MARK} accept
    iifname "att0" ip daddr ${TARGETS.haproxy.host} meta l4proto tcp tproxy ip to 127.0.0.1:${TARGETS.haproxy.tproxyPort} meta mark set meta mark | ${HAPROXY_MARK} accept
    iifname "att0" ip daddr ${TARGETS['haproxy-mm'].host} meta l4proto tcp tproxy ip to 127.0.0.1:${TARGETS['haproxy-mm'].tproxyPort} meta mark set meta mark | ${HAPROXY_MARK} accept
  }
}
`;

const ip = (args) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const inNs = (ns, argv, input) =>
  execFileSync('ip', ['netns', 'exec', ns, ...argv], { input, stdio: ['pipe', 'ignore', 'pipe'] });
const sysctl = (ns, key, value) =>
  inNs(ns, ['sh', '-c', 'printf "%s\\n" "$1" > "$2"', 'sh', value, `/proc/sys/${key.replaceAll('.', '/')}`]);

/**
 * Builds the three namespaces (hgb-att-ID, hgb-gw-ID, hgb-hp-ID) with their links, routes,
 * the gateway's forwarding and HAProxy's TPROXY rules, and go-mmproxy's policy routing in the
 * honeypot namespace. Returns their names; on failure removes what it made and throws.
 */
export function buildTopology(id, dir, { keepTimeWait = false } = {}) {
  const ns = { att: `hgb-att-${id}`, gw: `hgb-gw-${id}`, hp: `hgb-hp-${id}` };
  const made = [];
  try {
    for (const n of Object.values(ns)) {
      ip(['netns', 'add', n]);
      made.push(n);
      ip(['-n', n, 'link', 'set', 'lo', 'up']);
    }
    ip(['-n', ns.gw, 'link', 'add', 'att0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.att]);
    ip(['-n', ns.gw, 'link', 'add', 'hp0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.hp]);
    for (const [n, dev] of [
      [ns.gw, 'att0'],
      [ns.gw, 'hp0'],
      [ns.att, 'eth0'],
      [ns.hp, 'eth0'],
    ])
      ip(['-n', n, 'link', 'set', dev, 'up']);
    ip(['-n', ns.gw, 'addr', 'add', `${PLAN.attackerGw}/24`, 'dev', 'att0']);
    ip(['-n', ns.gw, 'addr', 'add', `${PLAN.honeypotGw}/27`, 'dev', 'hp0']);
    ip(['-n', ns.att, 'addr', 'add', `${PLAN.attacker}/24`, 'dev', 'eth0']);
    ip(['-n', ns.hp, 'addr', 'add', `${PLAN.honeypot}/27`, 'dev', 'eth0']);
    ip(['-n', ns.hp, 'addr', 'add', `${PLAN.honeypotDirect}/27`, 'dev', 'eth0']);
    ip(['-n', ns.hp, 'addr', 'add', `${PLAN.honeypotKernel}/27`, 'dev', 'eth0']);
    ip(['-n', ns.att, 'route', 'add', 'default', 'via', PLAN.attackerGw]);
    ip(['-n', ns.hp, 'route', 'add', 'default', 'via', PLAN.honeypotGw]);
    sysctl(ns.gw, 'net.ipv4.ip_forward', '1');
    // Transparent upstream connections all come from the one attacker address: give the
    // proxies every port for them.
    sysctl(ns.gw, 'net.ipv4.ip_local_port_range', '1024 65535');
    // No TIME_WAIT sockets in the gateway unless asked for: wrk reuses its source ports
    // every few seconds, and a SYN that meets the TIME_WAIT socket of an earlier diverted
    // flow is taken by the `socket transparent` rule (honeygate's and HAProxy's alike)
    // before tproxy can hand it to the listener; the client gets an ACK, resets, and
    // retries after a second, which makes both rates collapse run after run.
    if (!keepTimeWait) sysctl(ns.gw, 'net.ipv4.tcp_max_tw_buckets', '0');
    // go-mmproxy: nginx's replies to the attacker's address go back to loopback (its README).
    ip(['-n', ns.hp, 'rule', 'add', 'from', '127.0.0.1/8', 'iif', 'lo', 'table', '123']);
    ip(['-n', ns.hp, 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '123']);
    // HAProxy's hand-written TPROXY rules and their policy routing.
    const nftFile = join(dir, 'haproxy-tproxy.nft');
    writeFileSync(nftFile, HAPROXY_NFT);
    inNs(ns.gw, ['nft', '-f', nftFile]);
    ip([
      '-n',
      ns.gw,
      'rule',
      'add',
      'pref',
      '10001',
      'fwmark',
      `${HAPROXY_MARK}/${HAPROXY_MARK}`,
      'lookup',
      HAPROXY_TABLE,
    ]);
    ip(['-n', ns.gw, 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', HAPROXY_TABLE]);
    return ns;
  } catch (err) {
    destroyTopology(made);
    throw new Error(`building the transparent topology: ${err.stderr?.toString().trim() || err.message}`);
  }
}

/** Ends what still runs in the namespaces (all started by this run) and deletes them. Never throws. */
export function destroyTopology(names) {
  for (const n of names) {
    const pids = spawnSync('ip', ['netns', 'pids', n], { encoding: 'utf8' }).stdout ?? '';
    for (const pid of pids
      .split('\n')
      .map(Number)
      .filter((p) => p > 0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
  }
  for (const n of names) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
}

const servers = (ports, host = PLAN.honeypot) => `[${ports.map((p) => `"${host}:${p}"`).join(', ')}]`;

// 22 (sshd's default) and the admin port are kept out of a divert unless named alone; there
// is no sshd in the namespace, so every port is diverted.
const divert = (host) =>
  `{ interface: att0, addresses: ["${host}/32"], ports: [22, ${PLAN.admin}, "1-65535"] }`;

const kernelListener = `  - name: ${KERNEL_LISTENER}
    tproxy: { port: ${TARGETS.kernel.tproxyPort}, address: ["127.0.0.1"] }
    divert: ${divert(TARGETS.kernel.host)}`;
const kernelRoute = `  - name: kernel
    match: { listeners: [${KERNEL_LISTENER}] }
    forward: kernel`;

/**
 * honeygate for the rate figures: one tproxy listener per decoy; the first forwards with
 * `source: transparent` to nginx, the second with `source: proxy-v2` to go-mmproxy, the third
 * in the kernel (`engine: kernel`, DNAT) to nginx's direct address.
 */
export function honeygateRatesYaml({ db, maxFlows }) {
  return `
listeners:
  - name: transparent
    tproxy: { port: ${TARGETS.honeygate.tproxyPort}, address: ["127.0.0.1"] }
    divert: ${divert(TARGETS.honeygate.host)}
  - name: mmproxy
    tproxy: { port: ${TARGETS['honeygate-mm'].tproxyPort}, address: ["127.0.0.1"] }
    divert: ${divert(TARGETS['honeygate-mm'].host)}
${kernelListener}
routes:
${kernelRoute}
  - name: mmproxy
    match: { listeners: [mmproxy] }
    forward: mmproxy
  - name: honeypot
    forward: honeypot
backends:
  honeypot:
    servers: ${servers([PLAN.nginxPort])}
    source: transparent
    retries: 0
  mmproxy:
    servers: ${servers([PLAN.mmproxyPort])}
    source: proxy-v2
    retries: 0
  kernel:
    servers: ${servers([PLAN.nginxPort], PLAN.honeypotKernel)}
    engine: kernel
${honeygateCommonYaml({ maxFlows, db, admin: PLAN.admin })}`;
}

/** honeygate for the kernel burst: the kernel decoy's every port DNATed to the burst servers, round robin. */
export function honeygateKernelBurstYaml({ db, maxFlows }) {
  return `
listeners:
${kernelListener}
routes:
${kernelRoute}
backends:
  kernel:
    servers: ${servers(burstPorts(), PLAN.honeypotKernel)}
    engine: kernel
    balance: roundrobin
${honeygateCommonYaml({ maxFlows, db, admin: PLAN.admin })}`;
}

/** honeygate for the burst: one catch-all tproxy listener, forwarding to the burst servers. */
export function honeygateBurstYaml({ db, maxFlows }) {
  return `
listeners:
  - name: burst
    tproxy: { port: ${TARGETS.honeygate.tproxyPort}, address: ["127.0.0.1"] }
    divert: ${divert(TARGETS.honeygate.host)}
routes:
  - name: honeypot
    forward: honeypot
backends:
  honeypot:
    servers: ${servers(burstPorts())}
    source: transparent
    balance: roundrobin
    retries: 0
${honeygateCommonYaml({ maxFlows, db, admin: PLAN.admin })}`;
}

export function burstPorts() {
  return Array.from({ length: PLAN.burstServers }, (_, i) => PLAN.nginxPort + i);
}

export const burstServers = () => burstPorts().map((p) => `${PLAN.honeypot}:${p}`);
