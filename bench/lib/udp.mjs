// The UDP figures (issue 18, item 7): datagrams/s through honeygate (a `transport: udp` bind
// listener forwarding to a UDP echo honeypot) side by side with nginx's `stream` UDP proxy and
// with no proxy at all, and memory per idle UDP flow. The load and the echo server are
// bench/udp-load.c, compiled into the run's directory.
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { honeygateCommonYaml, launchHoneygate, PORTS } from './servers.mjs';
import { rssKiB, run, startProcess, waitFor } from './util.mjs';

export const UDP_PORTS = { echo: 9401, nginx: 9402, honeygate: 9403 };
const NGINX_STREAM = '/usr/lib/nginx/modules/ngx_stream_module.so';

/** Compiles bench/udp-load.c into dir; returns the binary's path. */
export function buildUdpLoad(root, dir) {
  const binary = join(dir, 'udp-load');
  execFileSync('cc', ['-O2', '-o', binary, join(root, 'bench', 'udp-load.c')], { stdio: 'inherit' });
  return binary;
}

/** Waits until a UDP socket is bound on 127.0.0.1:port (ss -lnu). */
async function udpBound(port) {
  await waitFor(
    `a UDP socket on port ${port}`,
    async () => (await run('ss', ['-lnuH', `sport = :${port}`])).stdout.trim() !== '',
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

/** Datagrams answered per second through port: { rate, replies, resent }. */
export async function udpLoad(binary, port, { flows, window, seconds, size, cpus }) {
  const r = await run(
    binary,
    ['load', String(port), String(flows), String(window), String(seconds), String(size)],
    {
      cpus,
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

export { rssKiB };
