// The UDP figures (issue 18, item 7): datagrams/s through honeygate (a `transport: udp` bind
// listener forwarding to a UDP echo honeypot) side by side with nginx's `stream` UDP proxy and
// with no proxy at all, and memory per idle UDP flow. The load and the echo server are
// bench/udp-load.c, compiled into the run's directory.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { honeygateCommonYaml, launchHoneygate, PORTS } from './servers.mjs';
import { PLAN } from './transparent.mjs';
import { rssKiB, run, startProcess, waitFor } from './util.mjs';

export const UDP_PORTS = { echo: 9401, nginx: 9402, honeygate: 9403 };
const NGINX_STREAM = '/usr/lib/nginx/modules/ngx_stream_module.so';

/** Compiles bench/udp-load.c into dir; returns the binary's path. */
export function buildUdpLoad(root, dir) {
  const binary = join(dir, 'udp-load');
  execFileSync('cc', ['-O2', '-o', binary, join(root, 'bench', 'udp-load.c')], { stdio: 'inherit' });
  return binary;
}

/** Waits until a UDP socket is bound on port (ss -lnu), in netns if given. */
async function udpBound(port, netns = null) {
  await waitFor(
    `a UDP socket on port ${port}${netns ? ` in ${netns}` : ''}`,
    async () => (await run('ss', ['-lnuH', `sport = :${port}`], { netns })).stdout.trim() !== '',
    { timeoutMs: 30_000 },
  );
}

export async function startEcho(binary, dir, cpus) {
  const p = startProcess(binary, ['echo', String(UDP_PORTS.echo)], { cpus, logFile: join(dir, 'echo.log') });
  await udpBound(UDP_PORTS.echo);
  return p;
}

/** nginx's stream module as a UDP proxy to the echo server, one worker. */
export async function startNginxUdp(dir, cpus) {
  const conf = join(dir, 'nginx-udp.conf');
  writeFileSync(
    conf,
    `${process.getuid?.() === 0 ? 'user root;' : ''}
load_module ${NGINX_STREAM};
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid ${join(dir, 'nginx-udp.pid')};
error_log ${join(dir, 'nginx-udp.err')} warn;
events { worker_connections 20000; }
stream {
  server {
    listen 127.0.0.1:${UDP_PORTS.nginx} udp reuseport;
    proxy_pass 127.0.0.1:${UDP_PORTS.echo};
    proxy_timeout 10m;
  }
}
`,
  );
  const p = startProcess('nginx', ['-p', dir, '-e', join(dir, 'nginx-udp.err'), '-c', conf], {
    cpus,
    logFile: join(dir, 'nginx-udp.log'),
  });
  await udpBound(UDP_PORTS.nginx);
  return { process: p, pid: async () => workerPid(p.pid) };
}

/** nginx's one worker (the master forks it): the process that holds the sessions. */
async function workerPid(master) {
  const r = await run('pgrep', ['-P', String(master)]);
  return Number(r.stdout.trim().split('\n')[0]);
}

export async function startHoneygateUdp(dir, { root, node, cpus }) {
  const db = join(dir, 'honeygate-udp.db');
  const admin = PORTS.admin + 9;
  // The guard on, its per-source caps opened up: every flow of the load comes from 127.0.0.1,
  // and the echo answers byte for byte (ratio 1 holds).
  const common = honeygateCommonYaml({ db, admin }).replace(
    '  grace: 1s\n',
    '  grace: 1s\n  udp: { idleTimeout: 10m, maxFlows: 20000 }\n' +
      '  amplification: { bytesPerSecond: 1GiB, packetsPerSecond: 1000000, unanswered: 1000 }\n',
  );
  const hg = await launchHoneygate(dir, 'honeygate-udp', {
    root,
    node,
    cpus,
    db,
    admin,
    ports: [],
    yaml: `
listeners:
  - name: udp
    transport: udp
    bind: "127.0.0.1:${UDP_PORTS.honeygate}"
routes:
  - name: echo
    forward: echo
backends:
  echo:
    servers: ["127.0.0.1:${UDP_PORTS.echo}"]
    source: none
${common}`,
  });
  await udpBound(UDP_PORTS.honeygate);
  return { ...hg, pid: async () => hg.process.pid };
}

/** Datagrams answered per second through host:port (from netns if given): { rate, replies, resent }. */
export async function udpLoad(
  binary,
  port,
  { flows, window, seconds, size, cpus, host = null, netns = null },
) {
  const r = await run(
    binary,
    [
      'load',
      String(port),
      String(flows),
      String(window),
      String(seconds),
      String(size),
      ...(host ? [host] : []),
    ],
    {
      cpus,
      netns,
      timeoutMs: (seconds + 30) * 1000,
    },
  );
  if (r.code !== 0) throw new Error(`udp-load load ${port}: exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim());
}

/** Opens `flows` UDP flows through port, each answered once; resolves once they are, with close(). */
export async function udpIdle(binary, port, flows, cpus) {
  const args = ['idle', String(port), String(flows)];
  const child = cpus ? spawn('taskset', ['-c', cpus, binary, ...args]) : spawn(binary, args);
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  await waitFor('the idle UDP flows to be answered', () => out.includes('answered'), { timeoutMs: 60_000 });
  const { answered } = JSON.parse(out.trim());
  return {
    answered,
    close: () =>
      new Promise((resolve) => {
        child.once('exit', resolve);
        child.stdin.end();
      }),
  };
}

// ---- transparent: the catch-all in the namespaces of lib/transparent.mjs -------------------
// The attacker aims at a decoy nobody owns, any port; the gateway hands the datagrams to one
// proxy, which sends them on from the attacker's address to the echo honeypot (192.0.2.100:9401
// in the honeypot namespace); the echo answers the attacker's address, and the gateway hands the
// answer back to the proxy's transparent socket.

/** Per target: the decoy the load aims at, and the port it aims at there. */
export const UDP_TP = {
  direct: { host: PLAN.honeypot, port: UDP_PORTS.echo }, // routed through the gateway, no proxy
  honeygate: { host: '192.0.2.80', port: 53, tproxyPort: 15011 },
  'honeygate-mm': { host: '192.0.2.81', port: 53, tproxyPort: 15012 },
  nginx: { host: '192.0.2.82', port: 53 },
};
const MMPROXY_UDP_PORT = 8444;
// nginx's own rules, as its users write them: nginx has no TPROXY listener (no IP_TRANSPARENT
// on `listen`, so it could not answer from the decoy's address), so the decoy's every UDP port
// is DNATed to its listener, and conntrack gives the answers the decoy's address back. Its
// transparent upstream sockets (proxy_bind $remote_addr transparent) get the echo's answers
// through the same mark and table as HAProxy's (lib/transparent.mjs: 0x2000, table 4211).
const NGINX_UDP_NFT = `table inet hgbench_udp_nginx {
  chain prerouting_mangle {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto udp socket transparent 1 meta mark set meta mark | 0x2000 accept
  }
  chain prerouting_nat {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "att0" ip daddr ${UDP_TP.nginx.host} meta l4proto udp dnat ip to ${PLAN.attackerGw}:${UDP_PORTS.nginx}
  }
}
`;

/**
 * The echo honeypot on the honeypot's address, and go-mmproxy -p udp in front of a second echo
 * on 127.0.0.1 (its README's setup: the answers to the attacker's address leave from loopback,
 * which the policy routing of lib/transparent.mjs hands back to go-mmproxy), all in the
 * honeypot namespace. An echo on 0.0.0.0 would answer from the interface's first address, not
 * from the one the datagram was sent to.
 */
export async function startUdpHoneypot(binary, dir, ns, cpus) {
  const echo = startProcess(binary, ['echo', String(UDP_PORTS.echo), PLAN.honeypot], {
    cpus,
    netns: ns.hp,
    logFile: join(dir, 'echo-tp.log'),
  });
  const loopEcho = startProcess(binary, ['echo', String(UDP_PORTS.echo), '127.0.0.1'], {
    cpus,
    netns: ns.hp,
    logFile: join(dir, 'echo-tp-loop.log'),
  });
  await udpBound(UDP_PORTS.echo, ns.hp);
  const mmproxy = startProcess(
    'go-mmproxy',
    [
      '-p',
      'udp',
      '-l',
      `${PLAN.honeypot}:${MMPROXY_UDP_PORT}`,
      '-4',
      `127.0.0.1:${UDP_PORTS.echo}`,
      '-v',
      '0',
      '-close-after',
      '600',
    ],
    {
      cpus,
      netns: ns.hp,
      logFile: join(dir, 'go-mmproxy-udp.log'),
      env: { ...process.env, GOMAXPROCS: '1' },
    },
  );
  await udpBound(MMPROXY_UDP_PORT, ns.hp);
  return { echo, loopEcho, mmproxy };
}

/**
 * honeygate in the gateway: two UDP tproxy listeners, one per decoy; the first forwards with
 * \`source: transparent\` to the echo, the second with \`source: proxy-v2\` to go-mmproxy.
 */
export async function startHoneygateUdpTransparent(dir, { root, node, cpus, ns }) {
  const db = join(dir, 'honeygate-udp-tp.db');
  const common = honeygateCommonYaml({ db, admin: PLAN.admin }).replace(
    '  grace: 1s\n',
    '  grace: 1s\n  udp: { idleTimeout: 10m, maxFlows: 20000 }\n' +
      '  amplification: { bytesPerSecond: 1GiB, packetsPerSecond: 1000000, unanswered: 1000 }\n',
  );
  const listener = (name, t) => `  - name: ${name}
    transport: udp
    tproxy: { port: ${t.tproxyPort}, address: ["127.0.0.1"] }
    divert: { interface: att0, addresses: ["${t.host}/32"] }`;
  const hg = await launchHoneygate(dir, 'honeygate-udp-tp', {
    root,
    node,
    cpus,
    db,
    admin: PLAN.admin,
    args: ['--manage-firewall'],
    ports: [],
    netns: ns.gw,
    yaml: `
listeners:
${listener('transparent', UDP_TP.honeygate)}
${listener('mmproxy', UDP_TP['honeygate-mm'])}
routes:
  - name: mmproxy
    match: { listeners: [mmproxy] }
    forward: mmproxy
  - name: echo
    forward: echo
backends:
  echo:
    servers: ["${PLAN.honeypot}:${UDP_PORTS.echo}"]
    source: transparent
  mmproxy:
    servers: ["${PLAN.honeypot}:${MMPROXY_UDP_PORT}"]
    source: proxy-v2
${common}`,
  });
  for (const t of [UDP_TP.honeygate, UDP_TP['honeygate-mm']]) await udpBound(t.tproxyPort, ns.gw);
  return { ...hg, pid: async () => hg.process.pid };
}

/** nginx's stream UDP proxy in the gateway, \`proxy_bind $remote_addr transparent\`, one worker, with its nft rules. */
export async function startNginxUdpTransparent(dir, cpus, ns) {
  const nft = join(dir, 'nginx-udp.nft');
  writeFileSync(nft, NGINX_UDP_NFT);
  const loaded = await run('nft', ['-f', nft], { netns: ns.gw });
  if (loaded.code !== 0) throw new Error(`nft -f ${nft} in ${ns.gw}: ${loaded.stderr.trim()}`);
  const conf = join(dir, 'nginx-udp-tp.conf');
  writeFileSync(
    conf,
    `user root;
load_module ${NGINX_STREAM};
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid ${join(dir, 'nginx-udp-tp.pid')};
error_log ${join(dir, 'nginx-udp-tp.err')} warn;
events { worker_connections 20000; }
stream {
  server {
    listen ${PLAN.attackerGw}:${UDP_PORTS.nginx} udp;
    proxy_bind $remote_addr transparent;
    proxy_pass ${PLAN.honeypot}:${UDP_PORTS.echo};
    proxy_timeout 10m;
  }
}
`,
  );
  const p = startProcess('nginx', ['-p', dir, '-e', join(dir, 'nginx-udp-tp.err'), '-c', conf], {
    cpus,
    netns: ns.gw,
    logFile: join(dir, 'nginx-udp-tp.log'),
  });
  await udpBound(UDP_PORTS.nginx, ns.gw);
  return {
    process: {
      ...p,
      stop: async () => {
        await p.stop();
        await run('nft', ['delete', 'table', 'inet', 'hgbench_udp_nginx'], { netns: ns.gw });
      },
    },
    pid: async () => workerPid(p.pid),
  };
}

/** UDP datagrams dropped for a full receive buffer in netns so far (/proc/net/snmp, Udp: RcvbufErrors). */
export async function udpRcvbufErrors(netns) {
  const lines = (await run('cat', ['/proc/net/snmp'], { netns })).stdout
    .split('\n')
    .filter((l) => l.startsWith('Udp:'));
  const [names, values] = lines.map((l) => l.trim().split(/\s+/));
  return Number(values?.[names?.indexOf('RcvbufErrors')] ?? Number.NaN);
}

/** The last source address an echo saw (its "from SRC" lines), or null. */
export function lastSource(echo) {
  const lines = readFileSync(echo.logFile, 'utf8').trim().split('\n');
  return /^from (\S+)$/.exec(lines.at(-1) ?? '')?.[1] ?? null;
}

export { rssKiB };
