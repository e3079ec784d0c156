// The idle-100k figure (issue #21): memory per idle flow at 100,000 flows, more than one
// process may hold here (the open-file limit is 20,000 per process, and a proxied flow is two
// descriptors). honeygate `workers: N` against N HAProxy processes sharing one port through
// SO_REUSEPORT (HAProxy's default on Linux), each process summed from /proc; nginx as the
// server (workers with `reuseport`, each under its 19,000 connections), the idle clients
// split over processes with a source address each. See bench/README.md, "idle-100k".
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { openIdle, wrk } from './load.mjs';
import {
  honeygateCommonYaml,
  honeygateStatus,
  launchHoneygate,
  SMALL,
  startHaproxy,
  startNginx,
} from './servers.mjs';
import { rotate, rssKiB, run, summarize, waitFor } from './util.mjs';

const PROXY_PORT = { haproxy: 9001, honeygate: 9101 };
const ADMIN = 9211;
// nginx listens on this many ports (round robin from both proxies): the proxy's upstream
// sockets all come from 127.0.0.1, and one destination gives only the ephemeral range
// (28,232 ports) of source ports; TIME_WAIT of the previous runs takes some too.
const NGINX_PORTS = 16;
const NGINX_FIRST = 8011;
// Flows per proxy process, on average: under the 9,700 one process may hold (two descriptors
// each, in 20,000 open files), with room for SO_REUSEPORT's uneven spread.
const FLOWS_PER_PROCESS = 7500;
const MAX_FLOWS = 9700; // honeygate limits.maxConnections and HAProxy maxconn, per process
const FLOWS_PER_NGINX_WORKER = 12_500; // of worker_connections 19000
const FLOWS_PER_CLIENT = 9000; // one descriptor each

/** Every process of the tree under pid (the pid itself first), from /proc/PID/task/TID/children. */
export function processTree(pid) {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks = [];
    try {
      tasks = readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      try {
        const kids = readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').trim();
        if (kids) out.push(...kids.split(/\s+/).map(Number));
      } catch {}
    }
  }
  return out;
}

/** VmRSS of each pid, once the sum of two samples 500 ms apart differs by less than 0.2% (at most 20 s). */
async function stableRssOf(pids) {
  const sample = () => pids.map((pid) => rssKiB(pid));
  const total = (xs) => xs.reduce((a, b) => a + b, 0);
  let last = sample();
  await waitFor(
    'the RSS sum to settle',
    async () => {
      const now = sample();
      const steady = Math.abs(total(now) - total(last)) <= total(last) * 0.002;
      last = now;
      return steady;
    },
    { timeoutMs: 20_000, intervalMs: 500 },
  ).catch(() => {});
  return last;
}

/** Established TCP sockets whose local port is in [from, to] (this namespace). */
async function established(from, to) {
  const res = await run('sh', [
    '-c',
    `ss -Htn state established '( sport >= :${from} and sport <= :${to} )' | wc -l`,
  ]);
  if (res.code !== 0) throw new Error(`ss: ${res.stderr}`);
  return Number(res.stdout.trim());
}

/** N HAProxy processes (nbthread 1 each) on one port; resolves once all N sockets listen. */
async function startHaproxies(dir, name, n, { cpus, servers }) {
  const procs = [];
  try {
    for (let i = 0; i < n; i++) {
      procs.push(
        await startHaproxy(dir, `${name}-${i}`, {
          cpus,
          threads: 1,
          maxconn: MAX_FLOWS,
          listens: [{ name: 'idle', port: PROXY_PORT.haproxy, servers }],
        }),
      );
    }
    await waitFor(
      `${n} HAProxy processes to listen on port ${PROXY_PORT.haproxy}`,
      async () => {
        const res = await run('sh', ['-c', `ss -Hltn 'sport = :${PROXY_PORT.haproxy}' | wc -l`]);
        return Number(res.stdout.trim()) === n;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  } catch (err) {
    await Promise.all(procs.map((p) => p.process.stop()));
    throw err;
  }
  return {
    pids: () => procs.map((p) => p.process.pid),
    stop: () => Promise.all(procs.map((p) => p.process.stop())),
  };
}

/** honeygate `workers: n`, one bind listener, round robin over nginx's ports; resolves once every worker is ready. */
async function startHoneygateWorkers(dir, name, n, { root, node, cpus, servers }) {
  const db = join(dir, `${name}.db`);
  const yaml = `listeners:
  - name: idle
    bind: "127.0.0.1:${PROXY_PORT.honeygate}"
routes:
  - name: nginx
    forward: nginx
backends:
  nginx:
    servers: ${JSON.stringify(servers)}
    balance: roundrobin
    source: none
    retries: 0
${honeygateCommonYaml({ maxFlows: MAX_FLOWS, db, admin: ADMIN })}workers: ${n}
`;
  const hg = await launchHoneygate(dir, name, {
    root,
    node,
    cpus,
    yaml,
    db,
    admin: ADMIN,
    ports: [PROXY_PORT.honeygate],
  });
  try {
    await waitFor(
      `${n} honeygate workers to be ready`,
      async () => {
        const s = await honeygateStatus(hg);
        return s.workers?.length === n && s.workers.every((w) => w.ready);
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
  } catch (err) {
    await hg.process.stop(30_000);
    throw err;
  }
  return {
    hg,
    pids: () => processTree(hg.process.pid),
    stop: () => hg.process.stop(30_000),
  };
}

/** Rows of flow events in a honeygate store. */
async function flowEvents(db) {
  const res = await run('sqlite3', [db, "select count(*) from events where type = 'flow'"]);
  return res.code === 0 ? Number(res.stdout.trim()) : null;
}

/**
 * The figure: per repeat, HAProxy and honeygate in rotated order, each fresh, warmed up,
 * RSS of each of its processes once steady; `flows` idle flows (one keep-alive request
 * each); every flow counted at nginx; RSS again; (after - before) summed / flows.
 * Returns { layout, flows, processes, nginxWorkers, clients, targets: { haproxy, honeygate } }.
 */
export async function measureIdle100k({ dir, settings, root, log }) {
  // No pinning: memory does not depend on the CPU layout, and the 40-odd processes open the
  // flows sooner on both cores (a run must stay well inside the 10-minute idle timeouts).
  const layout = {
    label: 'no pinning: the proxy processes, nginx and the clients share both cores',
    proxyCpus: null,
    loadCpus: null,
  };
  mkdirSync(dir, { recursive: true });
  const flows = Number(process.env.BENCH_IDLE_100K_FLOWS ?? 100_000);
  const n = Math.max(2, Math.ceil(flows / FLOWS_PER_PROCESS));
  const nginxWorkers = Math.max(1, Math.ceil(flows / FLOWS_PER_NGINX_WORKER));
  const clients = Math.ceil(flows / FLOWS_PER_CLIENT);
  const perClient = Math.ceil(flows / clients);
  const ports = Array.from({ length: NGINX_PORTS }, (_, i) => NGINX_FIRST + i);
  const servers = ports.map((p) => `127.0.0.1:${p}`);
  log(
    `idle-100k: ${flows} idle flows through ${n} HAProxy processes vs honeygate workers: ${n}; ` +
      `nginx ${nginxWorkers} workers on ${NGINX_PORTS} ports, ${clients} client processes`,
  );
  const load = { before: loadavg() };
  const nginx = await startNginx(dir, {
    cpus: layout.loadCpus,
    workers: nginxWorkers,
    listens: ports.map((p) => `127.0.0.1:${p} reuseport`),
  });
  const runs = { haproxy: [], honeygate: [] };
  try {
    for (let r = 0; r < settings.repeats; r++) {
      for (const t of rotate(['haproxy', 'honeygate'], r)) {
        const name = `${t}-idle100k-${r}`;
        const proxy =
          t === 'haproxy'
            ? await startHaproxies(dir, name, n, { cpus: layout.proxyCpus, servers })
            : await startHoneygateWorkers(dir, name, n, {
                root,
                node: settings.node,
                cpus: layout.proxyCpus,
                servers,
              });
        try {
          const port = PROXY_PORT[t];
          // Warm-up as in idle-memory: new connections, then keep-alive, over every process.
          await wrk(port, SMALL, {
            seconds: 1,
            connections: 4 * n,
            threads: 1,
            cpus: layout.loadCpus,
            close: true,
          });
          await wrk(port, SMALL, { seconds: 1, connections: 4 * n, threads: 1, cpus: layout.loadCpus });
          let warmEvents = null;
          if (t === 'honeygate') {
            await waitFor(
              'honeygate to close the warm-up flows and write their events',
              async () => {
                const s = await honeygateStatus(proxy.hg);
                return s.gateway.openFlows === 0 && s.recorder.queued === 0 && !s.recorder.writing;
              },
              { timeoutMs: 60_000, intervalMs: 200 },
            );
            warmEvents = await flowEvents(proxy.hg.db);
          }
          const pids = proxy.pids();
          const before = await stableRssOf(pids);
          const atNginxBefore = await established(ports[0], ports.at(-1));
          const started = Date.now();
          // A fresh 127.1.R.x per client process and run: 100,000 source ports do not fit one
          // address, and the last run's TIME_WAIT sockets keep theirs for 60 s.
          const idle = await openIdle(settings.node, port, SMALL, flows, {
            cpus: layout.loadCpus,
            perProcess: perClient,
            sources: Array.from(
              { length: clients },
              (_, i) => `127.1.${2 * r + (t === 'honeygate' ? 1 : 0)}.${i + 1}`,
            ),
          });
          const openSeconds = (Date.now() - started) / 1000;
          try {
            const after = await stableRssOf(pids);
            const atNginx = (await established(ports[0], ports.at(-1))) - atNginxBefore;
            const atProxy = await established(port, port);
            const status = t === 'honeygate' ? await honeygateStatus(proxy.hg) : null;
            const sum = (xs) => xs.reduce((a, b) => a + b, 0);
            // Flows open end to end: the client's, the proxy's and nginx's counts agree unless
            // some closed meanwhile (an idle timeout, 10 minutes, on a very slow run).
            const open = Math.min(idle.ready, atNginx, atProxy);
            const kib = (sum(after) - sum(before)) / open;
            const res = {
              flows: open,
              ready: idle.ready,
              errors: idle.errors,
              why: idle.why,
              atNginx,
              atProxy,
              openSeconds,
              processes: pids.length,
              beforeKiB: sum(before),
              afterKiB: sum(after),
              perProcess: pids.map((pid, i) => ({ pid, beforeKiB: before[i], afterKiB: after[i] })),
              kib,
            };
            if (status) {
              res.openFlows = status.gateway.openFlows;
              res.workerFlows = status.workers.map((w) => w.openFlows);
              res.restarts = status.workers.reduce((a, w) => a + w.restarts, 0);
            }
            runs[t].push(res);
            log(
              `  idle-100k #${r + 1} ${t}: ${pids.length} processes, RSS ${res.beforeKiB} -> ${res.afterKiB} KiB over ` +
                `${idle.ready} flows (${idle.errors} errors, ${atNginx} open at nginx, ${atProxy} at the proxy, ` +
                `opened in ${openSeconds.toFixed(1)} s) = ${kib.toFixed(2)} KiB/flow` +
                (status
                  ? `; worker flows ${Math.min(...res.workerFlows)}-${Math.max(...res.workerFlows)}`
                  : ''),
            );
            if (idle.errors) log(`  idle-100k: client errors ${JSON.stringify(idle.why)}`);
            if (atNginx < idle.ready)
              log(`  idle-100k: only ${atNginx} of ${idle.ready} client flows are open at nginx`);
          } finally {
            await idle.close();
          }
          if (t === 'honeygate') {
            // Every flow closed is a record: the idle flows and the warm-up's.
            await waitFor(
              'honeygate to close the idle flows and write their events',
              async () => {
                const s = await honeygateStatus(proxy.hg);
                return s.gateway.openFlows === 0 && s.recorder.queued === 0 && !s.recorder.writing;
              },
              { timeoutMs: 180_000, intervalMs: 500 },
            );
            const last = runs[t].at(-1);
            last.recorded = (await flowEvents(proxy.hg.db)) - warmEvents;
            log(
              `  idle-100k #${r + 1} honeygate: ${last.recorded} flows recorded of the ${last.flows + last.errors} ` +
                `opened (${last.flows} idle, ${last.errors} that failed)`,
            );
          }
        } finally {
          await proxy.stop();
        }
      }
    }
  } finally {
    await nginx.process.stop();
  }
  load.after = loadavg();
  const targets = {};
  for (const [t, list] of Object.entries(runs)) {
    targets[t] = {
      ...summarize(
        list.map((x) => x.kib),
        true,
      ),
      raw: list,
    };
  }
  return {
    layout: layout.label,
    flows,
    processes: n,
    nginxWorkers,
    nginxPorts: NGINX_PORTS,
    clients,
    load,
    unit: 'KiB/flow',
    targets,
  };
}
