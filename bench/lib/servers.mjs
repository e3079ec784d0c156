// The backend (nginx) and the proxies under test (HAProxy, honeygate), each from a config
// generated into the run's temp directory. A server is { name, process, port, ... }.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rssKiB, run, startProcess, waitFor, waitListening } from './util.mjs';

export const PORTS = {
  nginx: 8001, // plain HTTP
  nginxProxy: 8002, // `listen ... proxy_protocol`
  haproxy: 9001,
  haproxyProxy: 9002, // send-proxy-v2
  honeygate: 9101,
  honeygateProxy: 9102, // source: proxy-v2
  relayAlone: 9103, // bench/relay-alone.mjs
  honeygateNoJournal: 9104, // HONEYGATE_JOURNAL=off: the start journal's cost
  honeygateNats: 9105, // events also to a nats sink: its cost on the data path
  tunnelSensor: 9106, // the tunnel figures: attacker -> sensor -> hub -> nginx (lib/tunnel.mjs)
  tunnelHub: 9107, // the hub's tunnel listener (mutual TLS, HTTP/2)
  haproxyTlsFront: 9003, // HAProxy -> HAProxy over TLS: the front (send-proxy-v2 ssl)
  haproxyTlsBack: 9004, // ... and the back (accept-proxy ssl crt), to nginx
  haproxyLog: 9005, // HAProxy logging every connection through a syslog socket (startSyslog)
  nats: 9301, // nats-server (JetStream) for the honeygate-nats target
  collectorMetrics: 9302,
  admin: 9200, // honeygate admin APIs: 9200 + n
  burst: 20000, // first port of the burst range (below the ephemeral range, 32768+)
};

// Enough for 9,000 idle flows (two sockets each) under the 20,000 open files a process may hold.
const MAX_FLOWS = 9700;

export const SMALL = '/1k';
export const LARGE = '/64m';

/**
 * nginx with one file of 1 KiB and one of 64 MiB, keep-alive for as long as a run lasts.
 * Default: 127.0.0.1 on the plain and the proxy_protocol port. listens: other plain listen
 * addresses ("80", "192.0.2.100:81") inside netns; remoteAddrHeader: answer with the client
 * address nginx saw (X-Remote-Addr), so that a test can tell what reached the honeypot.
 */
export async function startNginx(
  dir,
  { cpus, workers, netns = null, listens = null, remoteAddrHeader = false },
) {
  const prefix = join(dir, 'nginx');
  const www = join(prefix, 'www');
  mkdirSync(www, { recursive: true });
  writeFileSync(join(www, '1k'), Buffer.alloc(1024, 'x'));
  writeFileSync(join(www, '64m'), Buffer.alloc(64 * 1024 ** 2, 'x'));
  const temp = (name) => `${name}_temp_path ${join(prefix, name)};`;
  const header = remoteAddrHeader ? 'add_header X-Remote-Addr $remote_addr always;' : '';
  const servers = listens
    ? `server { ${listens.map((l) => `listen ${l} backlog=4096;`).join(' ')} root ${www}; ${header} }`
    : `server { listen 127.0.0.1:${PORTS.nginx} backlog=4096; root ${www}; ${header} }
  server { listen 127.0.0.1:${PORTS.nginxProxy} proxy_protocol backlog=4096; root ${www}; ${header} }`;
  const conf = `
${process.getuid?.() === 0 ? 'user root;' : ''}
daemon off;
worker_processes ${workers};
worker_rlimit_nofile 20000;
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'error.log')} warn;
events { worker_connections 19000; }
http {
  access_log off;
  ${temp('client_body')} ${temp('proxy')} ${temp('fastcgi')} ${temp('uwsgi')} ${temp('scgi')}
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 600s;
  keepalive_requests 100000000;
  ${servers}
}
`;
  writeFileSync(join(prefix, 'nginx.conf'), conf);
  const process_ = startProcess(
    'nginx',
    ['-p', prefix, '-e', join(prefix, 'error.log'), '-c', join(prefix, 'nginx.conf')],
    { cpus, netns, logFile: join(dir, 'nginx.log') },
  );
  const server = { name: 'nginx', process: process_, port: PORTS.nginx, netns };
  const ports = listens
    ? listens.map((l) => Number.parseInt(String(l).split(':').pop(), 10)) // "127.0.0.1:81 reuseport"
    : [PORTS.nginx, PORTS.nginxProxy];
  await waitListening(server, ports);
  return server;
}

/**
 * HAProxy in TCP mode with splice, one frontend per listen entry.
 * listens: [{ name, port | ports: [from, to], server: port, sendProxy }]; log: write one line per session to stdout.
 * syslog: a unix datagram socket (startSyslog) to log every connection to, with the fields
 * honeygate records (SYSLOG_FORMAT), the first bytes included.
 * For the namespaced figures an entry may instead give bind (its address, port still set),
 * transparent (a TPROXY listener: `bind ... transparent`), servers (["192.0.2.100:80", ...],
 * round robin) and usesrc (`source 0.0.0.0 usesrc clientip`); netns: the namespace to run in.
 * bindOptions / serverOptions: more words on the bind / server lines (TLS: `accept-proxy ssl
 * crt FILE`, `ssl verify none`).
 */
export async function startHaproxy(
  dir,
  name,
  { cpus, threads, listens, log = false, syslog = null, maxconn = MAX_FLOWS, netns = null },
) {
  const sections = listens.map((l) => {
    const bind = l.bind ?? `127.0.0.1:${l.ports ? `${l.ports[0]}-${l.ports[1]}` : l.port}`;
    const servers = l.servers ?? [`127.0.0.1:${l.server}`];
    return `
frontend ${l.name}
  bind ${bind}${l.transparent ? ' transparent' : ''}${l.bindOptions ? ` ${l.bindOptions}` : ''}
${syslog ? SYSLOG_CAPTURE : ''}  default_backend ${l.name}_be
backend ${l.name}_be
${servers.length > 1 ? '  balance roundrobin\n' : ''}${l.usesrc ? '  source 0.0.0.0 usesrc clientip\n' : ''}${servers
  .map(
    (s, i) =>
      `  server s${i + 1} ${s}${l.sendProxy ? ' send-proxy-v2' : ''}${l.serverOptions ? ` ${l.serverOptions}` : ''}`,
  )
  .join('\n')}
`;
  });
  // HAProxy reserves maxconn * 2 sockets plus two per splice pipe (maxconn / 4 pipes by
  // default) and refuses to start above the open files limit: give the pipes what is left.
  const maxpipes = Math.floor((20_000 - 2 * maxconn - listenPorts(listens).length - 100) / 2);
  const conf = `
global
  nbthread ${threads}
  maxconn ${maxconn}
  maxpipes ${maxpipes}
${log ? '  log stdout format raw local0' : ''}${syslog ? `  log ${syslog} len 2048 format raw local0` : ''}
defaults
  mode tcp
${log ? '  log global\n  option tcplog' : ''}${syslog ? `  log global\n  log-format "${SYSLOG_FORMAT}"\n  unique-id-format ${UNIQUE_ID}` : ''}
  option splice-auto
  timeout connect 5s
  timeout client 10m
  timeout server 10m
${sections.join('')}`;
  const file = join(dir, `${name}.cfg`);
  writeFileSync(file, conf);
  const logFile = join(dir, `${name}.log`);
  const server = {
    name,
    process: startProcess('haproxy', ['-db', '-f', file], { cpus, netns, logFile }),
    logFile,
    netns,
  };
  await waitListening(server, listenPorts(listens), 60_000);
  return server;
}

// What honeygate stores per flow, as an HAProxy log line (`option tcplog` with this
// log-format; HAProxy warns that the format replaces the option's, so only the format is set):
// a unique id, time opened, source, original destination, listener, backend/server and its
// address, bytes each way, timings (queue/connect/total: the duration), the close reason
// (termination state) and the first bytes the client sent (up to 64, hex: honeygate keeps
// them, and its protocol detection reads them).
const SYSLOG_FORMAT = '%ID %t %ci:%cp %fi:%fp %ft %b/%s %si:%sp %U %B %Tw/%Tc/%Tt %ts %[capture.req.hdr(0)]';
const UNIQUE_ID = '%{+X}o%ci%cp%fi%fp%Ts%rt%pid';
// The first bytes: wait (at most 1 s) until the client has
// sent something, keep up to 64 bytes of it, then forward. `req.payload(0,0)` is what has
// arrived; `req.payload(0,64)` would wait for 64 bytes (a shorter request waited out the
// whole delay), hence the `bytes` converter.
const SYSLOG_CAPTURE = `  tcp-request inspect-delay 1s
  tcp-request content capture req.payload(0,0),bytes(0,64),hex len 128 if { req.len ge 1 }
  tcp-request content accept if { req.len ge 1 }
`;

/**
 * The local syslog daemon of the logging HAProxy rows: socat receiving datagrams on a unix
 * socket and appending each (one log line, newline included) to a file. Resolves
 * { name, process, socket, file } once the socket exists.
 */
export async function startSyslog(dir, name, { cpus, netns = null }) {
  const socket = join(dir, `${name}.sock`);
  const file = join(dir, `${name}.log`);
  const syslog = {
    name,
    process: startProcess('socat', ['-u', `UNIX-RECV:${socket},mode=666`, `OPEN:${file},creat,append`], {
      cpus,
      netns,
      logFile: join(dir, `${name}.err`),
    }),
    socket,
    file,
  };
  await waitFor(`${name} to create ${socket}`, () => existsSync(socket) || syslog.process.exitCode !== null);
  if (syslog.process.exitCode !== null) throw new Error(`socat (${name}) exited ${syslog.process.exitCode}`);
  return syslog;
}

/**
 * honeygate `run` with one route forwarding everything to nginx, events in SQLite.
 * listens: [{ port | ports: [from, to] }]; source: none | proxy-v2; workers: processes
 * (above 1: a primary forks them, each listens with SO_REUSEPORT).
 */
export async function startHoneygate(
  dir,
  name,
  {
    root,
    node,
    cpus,
    listens,
    server,
    source,
    admin,
    maxFlows = MAX_FLOWS,
    nodeArgs = [],
    workers = 1,
    env = process.env,
    nats = null, // a nats-server URL: events also go to the fleet sink, its outbox in dir
  },
) {
  const ranges = [];
  for (const l of listens) {
    // A listener takes at most 5,000 ports: a longer range becomes several listeners.
    const [from, to] = l.ports ?? [l.port, l.port];
    for (let p = from; p <= to; p += 5000)
      ranges.push(`127.0.0.1:${p}${Math.min(to, p + 4999) > p ? `-${Math.min(to, p + 4999)}` : ''}`);
  }
  const db = join(dir, `${name}.db`);
  const yaml = `
listeners:
${ranges.map((r, i) => `  - name: bench${i}\n    bind: "${r}"`).join('\n')}
routes:
  - name: nginx
    forward: nginx
backends:
  nginx:
    servers: ["127.0.0.1:${server}"]
    source: ${source}
    retries: 0
${honeygateCommonYaml({ maxFlows, db, admin, nats: nats && { url: nats, outbox: join(dir, `${name}-outbox.db`) } })}${workers > 1 ? `workers: ${workers}\n` : ''}`;
  return launchHoneygate(dir, name, {
    root,
    node,
    cpus,
    yaml,
    db,
    admin,
    nodeArgs,
    ports: listenPorts(listens),
    env,
  });
}

/** nats-server with JetStream on 127.0.0.1 (its store in dir), and the stream set up by `honeygate fleet init`. */
export async function startNats(dir, { root, node, cpus, port }) {
  const nats = {
    name: 'nats',
    process: startProcess(
      'nats-server',
      ['-js', '-sd', join(dir, 'jetstream'), '-a', '127.0.0.1', '-p', String(port)],
      {
        cpus,
        logFile: join(dir, 'nats.log'),
      },
    ),
    port,
    url: `nats://127.0.0.1:${port}`,
    config: join(dir, 'fleet.yaml'),
  };
  await waitListening(nats, [port]);
  writeFileSync(nats.config, `events:\n  sqlite: false\n  nats:\n    servers: ["${nats.url}"]\n`);
  const init = await run(node, [join(root, 'bin', 'honeygate.js'), 'fleet', 'init', '-c', nats.config], {
    timeoutMs: 30_000,
  });
  if (init.code !== 0) {
    await nats.process.stop();
    throw new Error(`honeygate fleet init: ${init.stderr}`);
  }
  return nats;
}

/** bench/relay-alone.mjs: honeygate's native relay with nothing per flow in JS but the dial. */
export async function startRelayAlone(dir, { root, node, cpus, port, server, processes = 1 }) {
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'relay-alone.mjs');
  const relay = {
    name: 'relay',
    process: startProcess(node, [script, root, String(port), String(server), String(processes)], {
      cpus,
      logFile: join(dir, 'relay-alone.log'),
    }),
    port,
  };
  await waitListening(relay, [port]);
  return relay;
}

/** The limits (opened up so that admission never refuses the load), events and admin parts of a bench config. */
export function honeygateCommonYaml({ maxFlows = MAX_FLOWS, db, admin, nats = null, sensor = null }) {
  const fleet = nats
    ? `  nats:\n    servers: [${JSON.stringify(nats.url)}]\n    outbox: ${JSON.stringify(nats.outbox)}\n`
    : '';
  return `limits:
  maxConnections: ${maxFlows}
  perSource: 1000000
  perSourceRate: 1000000/s
  idleTimeout: 10m
  maxBytesIn: 0
  maxBytesOut: 0
  grace: 1s
events:
  sqlite: ${JSON.stringify(db)}
${process.env.BENCH_EVENTS_BATCH ? `  batch: ${process.env.BENCH_EVENTS_BATCH}\n` : ''}${sensor ? `  sensor: ${JSON.stringify(sensor)}\n` : ''}${fleet}admin:
  listen: "127.0.0.1:${admin}"
log:
  level: warn
`;
}

/**
 * Runs `honeygate run -c <name>.yaml` (plus args, e.g. --manage-firewall) in netns if given,
 * and waits until ports and the admin port listen.
 */
export async function launchHoneygate(
  dir,
  name,
  { root, node, cpus, yaml, db, admin, nodeArgs = [], args = [], ports, netns = null, env = process.env },
) {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, yaml);
  const logFile = join(dir, `${name}.log`);
  const hg = {
    name,
    process: startProcess(
      node,
      [...nodeArgs, join(root, 'bin', 'honeygate.js'), 'run', '-c', file, ...args],
      { cpus, netns, logFile, cwd: dir, env },
    ),
    db,
    admin,
    logFile,
    netns,
  };
  await waitListening(hg, [...ports, admin], 60_000);
  return hg;
}

function listenPorts(listens) {
  return listens.flatMap((l) => {
    if (!l.ports) return [l.port];
    const ports = [];
    for (let p = l.ports[0]; p <= l.ports[1]; p++) ports.push(p);
    return ports;
  });
}

/** honeygate's /api/status (open flows, recorder queue); in another namespace through curl. */
export async function honeygateStatus(hg) {
  if (hg.netns) {
    const url = `http://127.0.0.1:${hg.admin}/api/status`;
    const res = await run('curl', ['-sf', '--max-time', '5', url], { netns: hg.netns, timeoutMs: 10_000 });
    if (res.code !== 0) throw new Error(`${hg.name} /api/status: curl exited ${res.code}`);
    return JSON.parse(res.stdout);
  }
  const res = await fetch(`http://127.0.0.1:${hg.admin}/api/status`);
  if (!res.ok) throw new Error(`${hg.name} /api/status: HTTP ${res.status}`);
  return res.json();
}

export { rssKiB };
