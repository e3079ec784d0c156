#!/usr/bin/env node
// `npm run bench`: honeygate side by side with HAProxy and go-mmproxy on this machine, in
// one run, under the same conditions. See bench/README.md.
//
//   BENCH_SECONDS=4          seconds per measured run
//   BENCH_REPEATS=3          runs per target and figure (best and median are reported)
//   BENCH_ONLY=connrate,...  figures: connrate keepalive bulk latency idle-memory burst completeness
//                            recording-floor many-sources transparent-connrate transparent-keepalive
//                            transparent-latency transparent-bulk transparent-burst transparent-kernel-burst transparent-cost
//                            tunnel-connrate tunnel-bulk tunnel-memory udp-rate udp-memory
//                            udp-transparent-rate (default all of these; `transparent`
//                            names the six transparent-*, `kernel` the kernel path's figures
//                            transparent-connrate, transparent-bulk and transparent-kernel-burst, `tunnel`
//                            the three tunnel-*, `udp` the three udp-*), profile (opt-in: honeygate under --cpu-prof),
//                            idle-100k (opt-in: 100,000 idle flows, honeygate workers vs several HAProxy processes)
//   BENCH_LAYOUTS=pinned,shared   CPU layouts for the rate figures
//   BENCH_LATENCY_RATE=1000  new connections/s of the latency figure
//   BENCH_SOURCES=10000      source addresses of the many-sources figure (bench/conn-load.c)
//   BENCH_PROBE=1            honeygate's loop delay, GC pauses, promoted bytes and SQLite batches in
//                            the latency and many-sources runs (lib/loop-probe.mjs); `prof`: --cpu-prof
//                            too (lib/busy-runs.mjs)
//   BENCH_EVENTS_BATCH=200ms honeygate's events.batch in the bench configs
//   BENCH_IDLE_FLOWS=9000    idle flows of the memory figure
//   BENCH_BURST_PORTS=10000  ports of the burst figure (bound by the 20,000 open files limit)
//   BENCH_NODE=/path/node    the node that runs honeygate (default: this one)
//   BENCH_HONEYGATE=DIR      the honeygate tree to measure (default: this repository; it must be built)
//   BENCH_TRANSPARENT_BURST_PORTS=65535  ports of the transparent burst
//   BENCH_TRANSPARENT_TIME_WAIT=1        keep TIME_WAIT sockets in the gateway namespace (lib/transparent.mjs)
//   BENCH_KEEP=1             keep the temp directory (configs, logs, SQLite files)
//
// As root the whole run happens inside its own network namespace (hg-bench-PID, loopback
// only), so its ports and TIME_WAIT sockets meet nothing else on the host. The transparent
// figures (and udp-transparent-rate) run in three more (hgb-att-PID, hgb-gw-PID, hgb-hp-PID;
// lib/transparent.mjs).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { measureRecordingFloor } from './lib/floor.mjs';
import { appendHistory } from './lib/history.mjs';
import { measureIdle100k } from './lib/idle100k.mjs';
import { buildConnLoad, client, connLoad, openIdle, wrk } from './lib/load.mjs';
import { topSelfTime } from './lib/profile.mjs';
import { renderMarkdown } from './lib/report.mjs';
import {
  honeygateStatus,
  LARGE,
  launchHoneygate,
  PORTS,
  SMALL,
  startHaproxy,
  startHoneygate,
  startNats,
  startNginx,
  startRelayAlone,
  startSyslog,
} from './lib/servers.mjs';
import { ensureBuilt, ensureTools, machineInfo } from './lib/setup.mjs';
import {
  buildTopology,
  burstPorts,
  burstServers,
  destroyTopology,
  honeygateBurstYaml,
  honeygateKernelBurstYaml,
  honeygateRatesYaml,
  KERNEL_LISTENER,
  PLAN,
  TARGETS as TP_TARGETS,
} from './lib/transparent.mjs';
import { makePki, startHaproxyTlsPair, startTunnelPair } from './lib/tunnel.mjs';
import {
  buildUdpLoad,
  lastSource,
  startEcho,
  startHoneygateUdp,
  startHoneygateUdpTransparent,
  startNginxUdp,
  startNginxUdpTransparent,
  startUdpHoneypot,
  UDP_PORTS,
  UDP_TP,
  udpIdle,
  udpLoad,
  udpRcvbufErrors,
} from './lib/udp.mjs';
import {
  busyPercent,
  cpuSeconds,
  cpuTimes,
  output,
  rotate,
  rssKiB,
  run,
  sleep,
  startProcess,
  summarize,
  waitFor,
  waitListening,
} from './lib/util.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
// The honeygate under test: this tree, or another checkout (e.g. before and after a change).
const HG_ROOT = process.env.BENCH_HONEYGATE ?? ROOT;
const env = process.env;
const TRANSPARENT = [
  'transparent-connrate',
  'transparent-keepalive',
  'transparent-latency',
  'transparent-bulk',
  'transparent-burst',
  'transparent-kernel-burst',
  'transparent-cost',
];
// honeygate's kernel path (engine: kernel) beside user space, HAProxy and direct (lib/transparent.mjs).
const KERNEL = ['transparent-connrate', 'transparent-bulk', 'transparent-kernel-burst', 'transparent-cost'];
// attacker -> sensor -> hub -> nginx through honeygate's tunnel vs HAProxy -> HAProxy over TLS (lib/tunnel.mjs).
const TUNNEL = ['tunnel-connrate', 'tunnel-bulk', 'tunnel-memory'];
// Datagrams through honeygate's UDP forward vs nginx's stream UDP proxy (lib/udp.mjs).
const UDP = ['udp-rate', 'udp-memory', 'udp-transparent-rate'];
const ALL = [
  'connrate',
  'keepalive',
  'bulk',
  'latency',
  'idle-memory',
  'burst',
  'completeness',
  'recording-floor',
  'many-sources',
  ...TRANSPARENT,
  ...TUNNEL,
  ...UDP,
];
const KNOWN = [...ALL, 'profile', 'idle-100k']; // idle-100k: opt-in, minutes per repeat (lib/idle100k.mjs)
// Names in BENCH_ONLY that stand for several figures.
const GROUPS = { transparent: TRANSPARENT, kernel: KERNEL, tunnel: TUNNEL, udp: UDP };

const settings = {
  seconds: Number(env.BENCH_SECONDS ?? 4),
  repeats: Number(env.BENCH_REPEATS ?? 3),
  only: env.BENCH_ONLY
    ? [...new Set(env.BENCH_ONLY.split(',').flatMap((s) => GROUPS[s.trim()] ?? [s.trim()]))]
    : ALL,
  layouts: env.BENCH_LAYOUTS ? env.BENCH_LAYOUTS.split(',').map((s) => s.trim()) : ['pinned', 'shared'],
  latencyRate: Number(env.BENCH_LATENCY_RATE ?? 1000),
  idleFlows: Number(env.BENCH_IDLE_FLOWS ?? 9000),
  burstPorts: Number(env.BENCH_BURST_PORTS ?? 10000),
  burstWindow: 500,
  sources: Number(env.BENCH_SOURCES ?? 10000),
  // honeygate's loop delay, GC pauses and SQLite batches during the latency runs (lib/loop-probe.mjs).
  probe: env.BENCH_PROBE === '1' || env.BENCH_PROBE === 'prof',
  // BENCH_PROBE=prof: honeygate under --cpu-prof too (kept with BENCH_KEEP=1; lib/busy-runs.mjs reads it).
  cpuProf: env.BENCH_PROBE === 'prof',
  transparentBurstPorts: Number(env.BENCH_TRANSPARENT_BURST_PORTS ?? 65535),
  node: env.BENCH_NODE ?? process.execPath,
};

const log = (msg) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---- CPU layouts -----------------------------------------------------------------------
const LAYOUTS = {
  pinned: {
    id: 'pinned',
    label: '1 core each: proxy on CPU 1 (HAProxy nbthread 1), wrk + nginx on CPU 0',
    proxyCpus: '1',
    loadCpus: '0',
    proxyThreads: 1,
    honeygateWorkers: 1,
    nginxWorkers: 1,
    wrkThreads: 1,
  },
  shared: {
    id: 'shared',
    label:
      '2 cores shared, no pinning (HAProxy nbthread 2, honeygate workers: 2, nginx 2 workers, wrk 2 threads)',
    proxyCpus: null,
    loadCpus: null,
    proxyThreads: 2,
    honeygateWorkers: 2, // a primary and two worker processes on SO_REUSEPORT sockets
    nginxWorkers: 2,
    wrkThreads: 2,
  },
};

// ---- targets ---------------------------------------------------------------------------
const TARGETS = {
  direct: { port: PORTS.nginx },
  haproxy: { port: PORTS.haproxy },
  // HAProxy logging every connection (the fields honeygate stores) through a local syslog
  // socket to a file: the same work as honeygate's recording, in HAProxy's way.
  'haproxy-log': { port: PORTS.haproxyLog },
  honeygate: { port: PORTS.honeygate, honeygate: true },
  'haproxy-pp': { port: PORTS.haproxyProxy },
  'honeygate-pp': { port: PORTS.honeygateProxy, honeygate: true },
  relay: { port: PORTS.relayAlone }, // the floor: bench/relay-alone.mjs
  // honeygate without its start journal (HONEYGATE_JOURNAL=off): what the crash-window
  // write-ahead costs, side by side with `honeygate`.
  'honeygate-nojournal': { port: PORTS.honeygateNoJournal, honeygate: true },
  // honeygate with the fleet's nats sink beside SQLite: what the outbox costs the data path,
  // side by side with `honeygate` (SQLite alone); each run waits until the outbox drained.
  'honeygate-nats': { port: PORTS.honeygateNats, honeygate: true, nats: true },
};
const PLAIN = ['direct', 'haproxy', 'honeygate'];
const WITH_PP = [...PLAIN, 'haproxy-pp', 'honeygate-pp'];

// ---- figures measured per layout ---------------------------------------------------------
const FIGURES = {
  connrate: {
    targets: [...WITH_PP, 'haproxy-log', 'honeygate-nojournal', 'honeygate-nats'],
    connections: 50,
    unit: 'connections/s',
  },
  keepalive: { targets: PLAIN, connections: 50, unit: 'requests/s' },
  bulk: { targets: PLAIN, connections: 2, unit: 'MB/s' },
  latency: { targets: WITH_PP, unit: 'ms' },
};

async function main() {
  const unknown = settings.only.filter((f) => !KNOWN.includes(f));
  if (unknown.length)
    throw new Error(
      `BENCH_ONLY: unknown ${unknown.join(', ')} (known: ${KNOWN.join(', ')}, transparent for the transparent-* figures, kernel for the kernel path's, tunnel for the tunnel-* figures)`,
    );
  if (env.BENCH_INNER) return inner();
  const started = Date.now();
  ensureTools(log);
  ensureBuilt(HG_ROOT, log);
  if (process.getuid?.() !== 0) {
    log(
      'not root: running on the host loopback (no network namespace); ports 8001-9300 and 20000+ must be free',
    );
    return inner({ network: 'host loopback (not root, no namespace)', started });
  }
  const ns = `hg-bench-${process.pid}`;
  // The transparent figures' namespaces are made here, outside the inner run's mount
  // namespace, so that this process can delete them whatever happens to the inner one.
  let topology = null;
  const topologyDir = mkdtempSync(join(tmpdir(), 'hg-bench-topology-'));
  execFileSync('ip', ['netns', 'add', ns], { stdio: 'inherit' });
  try {
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], { stdio: 'inherit' });
    if (settings.only.some((f) => TRANSPARENT.includes(f) || f === 'udp-transparent-rate')) {
      topology = buildTopology(process.pid, topologyDir, {
        keepTimeWait: env.BENCH_TRANSPARENT_TIME_WAIT === '1',
      });
      log(`transparent topology: namespaces ${Object.values(topology).join(', ')}`);
    }
    const code = await new Promise((resolve) => {
      const child = spawn('ip', ['netns', 'exec', ns, process.execPath, fileURLToPath(import.meta.url)], {
        stdio: 'inherit',
        env: {
          ...env,
          BENCH_INNER: '1',
          BENCH_NETWORK: `loopback in network namespace ${ns}`,
          BENCH_STARTED: String(started),
          ...(topology ? { BENCH_TOPOLOGY: JSON.stringify(topology) } : {}),
        },
      });
      const forward = (sig) => child.kill(sig);
      process.on('SIGINT', forward).on('SIGTERM', forward);
      child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
    });
    process.exitCode = code;
  } finally {
    if (topology) destroyTopology(Object.values(topology));
    rmSync(topologyDir, { recursive: true, force: true });
    output('ip', ['netns', 'del', ns]);
  }
}

async function inner({
  network = env.BENCH_NETWORK,
  started = Number(env.BENCH_STARTED ?? Date.now()),
} = {}) {
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
  const dir = mkdtempSync(join(tmpdir(), 'hg-bench-'));
  // Also on Ctrl-C, which ends this process through process.exit() above, past any finally.
  if (!env.BENCH_KEEP) process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const date = new Date().toISOString().slice(0, 10);
  const results = {
    date,
    machine: machineInfo(HG_ROOT, settings.node),
    network,
    settings: { ...settings, node: undefined },
    layouts: [],
    completeness: [],
    idleMemory: null,
    burst: null,
    manySources: null,
    recordingFloor: null,
    transparent: null,
    tunnel: null,
    udp: null,
    profile: null,
    elapsedSeconds: 0,
  };
  const want = (f) => settings.only.includes(f);
  try {
    const perLayout = ['connrate', 'keepalive', 'bulk', 'latency', 'completeness'].some(want);
    if (perLayout) {
      for (const id of settings.layouts) {
        if (!LAYOUTS[id]) throw new Error(`BENCH_LAYOUTS: unknown ${id} (known: pinned, shared)`);
        results.layouts.push(await measureLayout(LAYOUTS[id], join(dir, id), results.completeness));
      }
    }
    if (want('idle-memory')) results.idleMemory = await measureIdleMemory(LAYOUTS.pinned, join(dir, 'idle'));
    if (want('idle-100k'))
      results.idle100k = await measureIdle100k({
        dir: join(dir, 'idle100k'),
        settings,
        root: HG_ROOT,
        log,
      });
    if (want('burst')) results.burst = await measureBurst(LAYOUTS.pinned, join(dir, 'burst'));
    if (want('many-sources'))
      results.manySources = await measureManySources(LAYOUTS.pinned, join(dir, 'sources'));
    if (want('recording-floor')) {
      results.recordingFloor = await measureRecordingFloor({
        root: HG_ROOT,
        dir: join(dir, 'floor'),
        cpus: LAYOUTS.pinned.proxyCpus,
        repeats: settings.repeats,
        log,
      });
    }
    if (settings.only.some((f) => TRANSPARENT.includes(f))) {
      results.transparent = env.BENCH_TOPOLOGY
        ? await measureTransparent(LAYOUTS.pinned, join(dir, 'transparent'), JSON.parse(env.BENCH_TOPOLOGY))
        : { status: 'not measured: needs root (network namespaces, nftables)' };
    }
    if (TUNNEL.some(want)) results.tunnel = await measureTunnel(LAYOUTS.pinned, join(dir, 'tunnel'));
    if (UDP.some(want)) results.udp = await measureUdp(LAYOUTS.pinned, join(dir, 'udp'));
    if (want('profile')) results.profile = await profileHoneygate(LAYOUTS.pinned, join(dir, 'profile'));
  } finally {
    if (!env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  }
  results.elapsedSeconds = (Date.now() - started) / 1000;
  const md = renderMarkdown(results);
  const out = join(ROOT, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  // A partial run (BENCH_ONLY, BENCH_LAYOUTS) must not overwrite the day's full results.
  const partial = [
    env.BENCH_ONLY?.split(',')
      .map((x) => x.trim())
      .join('+'),
    env.BENCH_LAYOUTS && settings.layouts.join('+'),
  ];
  const name = [date, ...partial.filter(Boolean)].join('-');
  const files = [join(out, `${name}.json`), join(out, `${name}.md`)];
  writeFileSync(files[0], `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(files[1], md);
  // In the repository's own format, so `biome check` passes on committed results.
  const biome = join(ROOT, 'node_modules', '.bin', 'biome');
  if (existsSync(biome)) output(biome, ['format', '--write', ...files]);
  appendHistory(join(out, 'history.md'), name, results);
  process.stdout.write(`\n${md}\n`);
  log(
    `wrote bench/results/${name}.json and .md, a line in history.md, in ${(results.elapsedSeconds / 60).toFixed(1)} min`,
  );
}

// ---- rate, throughput and latency figures, one layout ------------------------------------

async function measureLayout(layout, dir, completeness) {
  mkdirSync(dir, { recursive: true });
  log(`layout ${layout.id}: ${layout.label}`);
  const want = (f) => settings.only.includes(f);
  const figures = Object.keys(FIGURES).filter((f) => want(f) || (f === 'connrate' && want('completeness')));
  // Only completeness wanted: the connection-rate runs of honeygate are enough. The relay
  // alone runs as many processes as honeygate has workers. In the latency figure it tells
  // the tail of Node's loop with the relay from the tail of honeygate's work.
  const targetsOf = (f) => {
    const alone = ['relay'];
    if (f === 'latency') return [...FIGURES[f].targets, ...alone];
    if (f !== 'connrate') return FIGURES[f].targets;
    if (!want('connrate')) return ['honeygate', 'honeygate-pp'];
    return [...FIGURES[f].targets, ...alone];
  };
  const needed = new Set(figures.flatMap(targetsOf));
  const servers = await startLayout(layout, dir, needed);
  const result = {
    id: layout.id,
    label: layout.label,
    honeygateWorkers: layout.honeygateWorkers,
    figures: {},
  };
  try {
    await warmUp(layout, servers, needed);
    for (const f of figures) {
      const targets = targetsOf(f);
      const runs = Object.fromEntries(targets.map((t) => [t, []]));
      for (let r = 0; r < settings.repeats; r++) {
        for (const t of rotate(targets, r)) {
          const res = await measure(f, layout, t, servers);
          runs[t].push(res);
          log(`  ${layout.id} ${f} #${r + 1} ${t}: ${describe(f, res)}`);
        }
      }
      if (f === 'latency') {
        for (const p of ['p50', 'p99']) {
          result.figures[`latency-${p}`] = figureSummary(runs, (x) => x[`${p}Ms`], true, {
            unit: 'ms',
            rate: settings.latencyRate,
          });
        }
      } else {
        const value = f === 'bulk' ? (x) => x.mbps : (x) => x.rate;
        result.figures[f] = figureSummary(runs, value, false, {
          unit: FIGURES[f].unit,
          connections: FIGURES[f].connections,
        });
        // The proxy's CPU per unit of work: comparable even where the load generator, not
        // the proxy, sets the rate. Includes the connections wrk left open at the end.
        const proxies = Object.fromEntries(Object.entries(runs).filter(([t]) => t !== 'direct'));
        const perUnit =
          f === 'bulk'
            ? (x) => x.proxyCpuSeconds / (x.bytes / 1e9)
            : (x) => (x.proxyCpuSeconds * 1e6) / x.requests;
        result.figures[`${f}-cpu`] = figureSummary(proxies, perUnit, true, {
          unit: f === 'bulk' ? 'CPU s/GB' : 'CPU µs/request',
        });
      }
      if (f === 'connrate') {
        if (runs['haproxy-log']) result.figures.haproxyLog = runs['haproxy-log'].map((x) => x.logged);
        for (const t of targets.filter((x) => TARGETS[x].honeygate)) {
          const best = [...runs[t]].sort((a, b) => b.rate - a.rate)[0];
          completeness.push({ layout: layout.id, target: t, ...best.events });
        }
        if (servers.nats) {
          const nats = runs['honeygate-nats'].map((x) => x.events);
          result.figures.nats = {
            leftBehind: Math.max(...nats.map((x) => x.natsLeft)),
            drainMs: nats.map((x) => x.natsDrainMs),
            collector: await collectorThroughput(dir, servers.nats, servers['honeygate-nats'].db),
          };
          log(`  ${layout.id} collector: ${result.figures.nats.collector.rate.toFixed(0)} events/s`);
        }
      }
    }
  } finally {
    await stopAll(servers);
  }
  return result;
}

function figureSummary(runs, value, lowerIsBetter, extra) {
  const targets = {};
  for (const [t, list] of Object.entries(runs)) {
    const values = list.map(value);
    targets[t] = { ...summarize(values, lowerIsBetter), runs: values, raw: list };
  }
  return { ...extra, lowerIsBetter, targets };
}

/** The old generation's growth by scavenges per flow: flows kept alive through two scavenges. */
function promotedText(probe, flows) {
  const { bytes, scavenges } = probe.promoted;
  return `, promoted ${(bytes / Math.max(1, flows)).toFixed(0)} B per flow (${scavenges} scavenges)`;
}

function describe(figure, res) {
  if (figure === 'latency') {
    const p = res.probe;
    const probe = p
      ? `; loop delay max ${p.loopDelay.maxMs} ms, ${p.loopDelay.over1Ms}/${p.loopDelay.windows} 100-ms windows > 1 ms;` +
        ` scavenges ${p.scavenge.count} (mean ${p.scavenge.meanMs}, max ${p.scavenge.maxMs} ms, ${(p.scavenge.share * 100).toFixed(2)}%)` +
        `${promotedText(p, res.ok)};` +
        ` other GC ${p.otherGc.count} (max ${p.otherGc.maxMs} ms); SQLite batches ${p.sqlite.count} of ${p.sqlite.rows} rows` +
        ` (mean ${p.sqlite.meanMs}, max ${p.sqlite.maxMs} ms, ${(p.sqlite.share * 100).toFixed(2)}%;` +
        ` CPU ${((p.sqlite.cpuMs * 1000) / Math.max(1, p.sqlite.rows)).toFixed(2)} µs/row, max ${p.sqlite.maxCpuMs} ms` +
        `${p.sqlite.thread ? `; on the store thread ${((p.sqlite.thread.cpuMs * 1000) / Math.max(1, p.sqlite.thread.rows)).toFixed(2)} µs/row, longest ${p.sqlite.thread.maxMs} ms` : ''}` +
        `${p.sqlite.maxSliceMs != null ? `; in ${p.sqlite.slices} slices, longest ${p.sqlite.maxSliceMs} ms` : ''}` +
        `${p.sqlite.maxCommitMs != null ? `, committed within ${p.sqlite.maxCommitMs} ms of the post` : ''})`
      : '';
    return `p50 ${res.p50Ms?.toFixed(3)} ms, p99 ${res.p99Ms?.toFixed(3)} ms, ${res.ok}/${res.sent} ok${probe}`;
  }
  const main = figure === 'bulk' ? `${res.mbps.toFixed(0)} MB/s` : `${res.rate.toFixed(0)}/s`;
  const ev = res.events ? `, events ${res.events.events}/${res.requests} requests` : '';
  return `${main}${res.errors ? `, ${res.errors} socket errors` : ''}${ev}`;
}

/** Servers by name, and in start order (`list`, stopped in reverse). */
function serverSet() {
  const servers = { list: [] };
  const add = (key, server) => {
    servers[key] = server;
    servers.list.push(server);
    return server;
  };
  return { servers, add };
}

/** nginx plus the proxies the wanted targets need, all running for the whole layout. */
async function startLayout(layout, dir, needed) {
  const { servers, add } = serverSet();
  try {
    add('nginx', await startNginx(dir, { cpus: layout.loadCpus, workers: layout.nginxWorkers }));
    const haproxy = (name, port, server, sendProxy) =>
      startHaproxy(dir, name, {
        cpus: layout.proxyCpus,
        threads: layout.proxyThreads,
        listens: [{ name: 'bench', port, server, sendProxy }],
      });
    const honeygate = (name, port, server, source, admin, env = process.env, nats = null) =>
      startHoneygate(dir, name, {
        ...probeOptions(dir, name, env),
        nats,
        root: HG_ROOT,
        node: settings.node,
        cpus: layout.proxyCpus,
        listens: [{ port }],
        server,
        source,
        admin,
        workers: layout.honeygateWorkers,
      });
    if (needed.has('haproxy')) add('haproxy', await haproxy('haproxy', PORTS.haproxy, PORTS.nginx, false));
    if (needed.has('haproxy-pp'))
      add('haproxy-pp', await haproxy('haproxy-pp', PORTS.haproxyProxy, PORTS.nginxProxy, true));
    if (needed.has('haproxy-log')) await startLoggingHaproxy(layout, dir, add);
    if (needed.has('honeygate'))
      add('honeygate', await honeygate('honeygate', PORTS.honeygate, PORTS.nginx, 'none', PORTS.admin + 1));
    if (needed.has('honeygate-nojournal'))
      add(
        'honeygate-nojournal',
        await honeygate(
          'honeygate-nojournal',
          PORTS.honeygateNoJournal,
          PORTS.nginx,
          'none',
          PORTS.admin + 3,
          {
            ...process.env,
            HONEYGATE_JOURNAL: 'off',
          },
        ),
      );
    if (needed.has('honeygate-nats')) {
      const nats = add(
        'nats',
        await startNats(dir, { root: HG_ROOT, node: settings.node, cpus: layout.loadCpus, port: PORTS.nats }),
      );
      add(
        'honeygate-nats',
        await honeygate(
          'honeygate-nats',
          PORTS.honeygateNats,
          PORTS.nginx,
          'none',
          PORTS.admin + 4,
          process.env,
          nats.url,
        ),
      );
    }
    if (needed.has('honeygate-pp'))
      add(
        'honeygate-pp',
        await honeygate('honeygate-pp', PORTS.honeygateProxy, PORTS.nginxProxy, 'proxy-v2', PORTS.admin + 2),
      );
    if (needed.has('relay'))
      add(
        'relay',
        await startRelayAlone(dir, {
          root: HG_ROOT,
          node: settings.node,
          cpus: layout.proxyCpus,
          port: PORTS.relayAlone,
          server: PORTS.nginx,
          processes: layout.honeygateWorkers,
        }),
      );
  } catch (err) {
    await stopAll(servers);
    throw err;
  }
  return servers;
}

async function stopAll(servers) {
  for (const s of [...servers.list].reverse()) await s.process.stop();
}

/** A short unrecorded run through each proxy first, so JIT and pools are warm in every run. */
async function warmUp(layout, servers, needed) {
  for (const t of needed) {
    if (t === 'direct') continue;
    const opts = { seconds: 1, connections: 20, threads: 1, cpus: layout.loadCpus };
    await wrk(TARGETS[t].port, SMALL, { ...opts, close: true });
    await wrk(TARGETS[t].port, SMALL, opts);
    if (TARGETS[t].honeygate) await settle(servers[t]);
  }
}

/** With BENCH_PROBE=1: honeygate runs with lib/loop-probe.mjs, its timeline in dir/NAME-probe.jsonl. */
function probeOptions(dir, name, env) {
  if (!settings.probe) return { env };
  const probe = join(dirname(fileURLToPath(import.meta.url)), 'lib', 'loop-probe.mjs');
  return {
    env: { ...env, HG_PROBE_ROOT: HG_ROOT, HG_PROBE_FILE: join(dir, `${name}-probe.jsonl`) },
    nodeArgs: [
      '--import',
      pathToFileURL(probe).href,
      ...(settings.cpuProf
        ? ['--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir', join(dir, `${name}-prof`)]
        : []),
    ],
  };
}

/**
 * What held honeygate's loop back between from and to (wall clock ms), from its probe file:
 * loop delay per 100 ms, GC pauses, SQLite batches, and the share of the window each took.
 */
function probeSummary(file, from, to) {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const rows = text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((r) => r.t >= from && r.t <= to);
  const windowMs = to - from;
  const stats = (list) => {
    const ms = list.map((r) => r.ms).sort((a, b) => a - b);
    const total = ms.reduce((a, b) => a + b, 0);
    return {
      count: ms.length,
      totalMs: Number(total.toFixed(1)),
      share: Number((total / windowMs).toFixed(4)),
      meanMs: ms.length ? Number((total / ms.length).toFixed(3)) : null,
      p50Ms: ms.length ? ms[Math.floor(ms.length / 2)] : null,
      maxMs: ms.length ? ms[ms.length - 1] : null,
    };
  };
  const delays = rows.filter((r) => r.delay).map((r) => r.delay.max);
  const sqlite = rows.filter((r) => r.sqlite !== undefined && !r.thread);
  const onThread = rows.filter((r) => r.thread); // the store thread's own transactions (store-thread.ts)
  const promotions = rows.filter((r) => r.promoted !== undefined); // per 500 ms: a window's edges are approximate
  return {
    windowMs,
    loopDelay: {
      windows: delays.length,
      maxMs: delays.length ? Math.max(...delays) : null,
      over1Ms: delays.filter((d) => d > 1).length,
      over2Ms: delays.filter((d) => d > 2).length,
    },
    scavenge: stats(rows.filter((r) => r.gc === 'scavenge')),
    promoted: {
      bytes: promotions.reduce((a, r) => a + r.promoted, 0),
      scavenges: promotions.reduce((a, r) => a + r.scavenges, 0),
    },
    otherGc: stats(rows.filter((r) => r.gc && r.gc !== 'scavenge')),
    sqlite: {
      ...stats(sqlite),
      rows: sqlite.reduce((a, r) => a + r.sqlite, 0),
      cpuMs: Number(sqlite.reduce((a, r) => a + (r.cpuMs ?? 0), 0).toFixed(1)),
      maxCpuMs: sqlite.length ? Math.max(...sqlite.map((r) => r.cpuMs ?? 0)) : null,
      // Sliced on the loop (SqliteSink sliceMs): the longest slice, what a connection waited at most.
      slices: sqlite.some((r) => r.slices != null) ? sqlite.reduce((a, r) => a + (r.slices ?? 0), 0) : null,
      maxSliceMs: sqlite.some((r) => r.sliceMaxMs != null)
        ? Math.max(...sqlite.map((r) => r.sliceMaxMs ?? 0))
        : null,
      // On the store's thread (ThreadedSqliteSink): the longest wait from the post to the commit, off the loop.
      maxCommitMs: sqlite.some((r) => r.commitMs != null)
        ? Math.max(...sqlite.map((r) => r.commitMs ?? 0))
        : null,
      thread: onThread.length
        ? {
            rows: onThread.reduce((a, r) => a + r.sqlite, 0),
            cpuMs: Number(onThread.reduce((a, r) => a + (r.cpuMs ?? 0), 0).toFixed(1)),
            maxMs: Math.max(...onThread.map((r) => r.ms)),
          }
        : null,
    },
  };
}

/**
 * HAProxy with its syslog daemon (socat), both on the proxy's CPUs: on one core, writing
 * the log is part of the proxy's work, as writing events is part of honeygate's.
 */
async function startLoggingHaproxy(layout, dir, add) {
  // A unix datagram socket queues 10 datagrams by default: past that HAProxy drops the line
  // (it never blocks on logging). As a syslog host would, allow more; only inside the
  // bench's own namespace (the setting is per network namespace), never on the host.
  if (env.BENCH_INNER) output('sysctl', ['-qw', 'net.unix.max_dgram_qlen=4096']);
  const syslog = add(
    'haproxy-log-syslog',
    await startSyslog(dir, 'haproxy-log-syslog', { cpus: layout.proxyCpus }),
  );
  const haproxy = add(
    'haproxy-log',
    await startHaproxy(dir, 'haproxy-log', {
      cpus: layout.proxyCpus,
      threads: layout.proxyThreads,
      listens: [{ name: 'bench', port: PORTS.haproxyLog, server: PORTS.nginx }],
      syslog: syslog.socket,
    }),
  );
  haproxy.syslog = syslog;
}

/** One run, with the CPU time the proxy spent on it (proxyCpuSeconds; null for direct). */
async function measure(figure, layout, target, servers) {
  const server = target === 'direct' ? null : servers[target];
  // The logging HAProxy's syslog daemon counts as part of it.
  const pids = server ? [server.process.pid, server.syslog?.process.pid].filter(Boolean) : [];
  const cpu = () => pids.reduce((s, pid) => s + cpuSeconds(pid), 0);
  const cpuBefore = cpu();
  const res = await measureRun(figure, layout, target, servers);
  res.proxyCpuSeconds = server ? cpu() - cpuBefore : null;
  return res;
}

/**
 * Events recorded against flows made in one wrk run. A completed request is a flow; so is
 * each connection wrk left open at the end and each that failed after it was accepted.
 */
function completeness(res, before, after) {
  const events = after.events - before.events;
  const missing = Math.max(0, res.requests - events);
  return {
    ...(after.natsLeft === undefined ? {} : { natsLeft: after.natsLeft, natsDrainMs: after.natsDrainMs }),
    rate: res.rate,
    requests: res.requests,
    errors: res.errors,
    events,
    missing,
    dropped: after.dropped - before.dropped,
    complete: missing === 0 && after.dropped === before.dropped,
  };
}

async function measureRun(figure, layout, target, servers) {
  const port = TARGETS[target].port;
  const base = { seconds: settings.seconds, threads: layout.wrkThreads, cpus: layout.loadCpus };
  switch (figure) {
    case 'connrate': {
      const hg = TARGETS[target].honeygate ? servers[target] : null;
      const syslog = servers[target]?.syslog ?? null;
      const before = hg ? await settle(hg) : syslog ? await settleLog(syslog.file) : null;
      const res = await wrk(port, SMALL, { ...base, connections: FIGURES.connrate.connections, close: true });
      if (hg) res.events = completeness(res, before, await settle(hg));
      if (syslog) res.logged = logCompleteness(res, before, await settleLog(syslog.file));
      return res;
    }
    case 'keepalive':
      return wrk(port, SMALL, { ...base, connections: FIGURES.keepalive.connections });
    case 'bulk':
      return wrk(port, LARGE, { ...base, threads: 1, connections: FIGURES.bulk.connections });
    case 'latency': {
      const from = Date.now();
      const res = await client(
        settings.node,
        'latency',
        [port, SMALL, settings.latencyRate, settings.seconds],
        {
          cpus: layout.loadCpus,
          timeoutMs: (settings.seconds + 60) * 1000,
        },
      );
      if (settings.probe && TARGETS[target].honeygate) {
        await sleep(600); // the probe writes its timeline every 500 ms
        res.probe = probeSummary(
          join(dirname(servers[target].logFile), `${target}-probe.jsonl`),
          from,
          Date.now() - 600,
        );
      }
      return res;
    }
    default:
      throw new Error(`unknown figure ${figure}`);
  }
}

/**
 * Waits until honeygate has no open flow and nothing queued for the sinks, then counts
 * the flow events in its SQLite file. Returns { events, dropped }.
 */
async function settle(hg) {
  const status = await waitFor(
    `${hg.name} to close its flows and flush its events`,
    async () => {
      const s = await honeygateStatus(hg);
      return s.gateway.openFlows === 0 && s.recorder.queued === 0 && !s.recorder.writing ? s : null;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  const settled = { events: await countEvents(hg.db), dropped: status.recorder.dropped };
  if (hg.name === 'honeygate-nats') {
    // Kept up means the outbox drains once the load stops: what it still holds after 60 s is left behind.
    const start = Date.now();
    let left = await outboxEvents(hg);
    while (left > 0 && Date.now() - start < 60_000) {
      await sleep(100);
      left = await outboxEvents(hg);
    }
    settled.natsLeft = left;
    settled.natsDrainMs = Date.now() - start;
  }
  return settled;
}

/** Lines in a log file once two counts 200 ms apart agree (the writer has caught up). */
async function settleLog(file) {
  let last = -1;
  return waitFor(
    `${file} to stop growing`,
    () => {
      const n = logLines(file);
      const steady = n === last;
      last = n;
      return steady ? { lines: n } : null;
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
}

function logLines(file) {
  let data;
  try {
    data = readFileSync(file);
  } catch {
    return 0;
  }
  let n = 0;
  for (let i = data.indexOf(10); i >= 0; i = data.indexOf(10, i + 1)) n++;
  return n;
}

/** The logging HAProxy's lines against the flows of one wrk run (as completeness() for honeygate). */
function logCompleteness(res, before, after) {
  const lines = after.lines - before.lines;
  const missing = Math.max(0, res.requests - lines);
  return {
    rate: res.rate,
    requests: res.requests,
    errors: res.errors,
    lines,
    missing,
    complete: missing === 0,
  };
}

async function outboxEvents(hg) {
  const text = await (await fetch(`http://127.0.0.1:${hg.admin}/metrics`)).text();
  return Number(/^honeygate_nats_outbox_events (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
}

/**
 * `honeygate collect` over the stream the honeygate-nats runs filled, into a new store:
 * events/s from start to the last one stored (start-up included).
 */
async function collectorThroughput(dir, nats, recordedDb) {
  const db = join(dir, 'central.db');
  const started = Date.now();
  const collector = startProcess(
    settings.node,
    [
      join(HG_ROOT, 'bin', 'honeygate.js'),
      'collect',
      '-c',
      nats.config,
      '--db',
      db,
      '--metrics',
      `127.0.0.1:${PORTS.collectorMetrics}`,
    ],
    { logFile: join(dir, 'collect.log') },
  );
  try {
    const metric = async (name) => {
      const res = await fetch(`http://127.0.0.1:${PORTS.collectorMetrics}/metrics`).catch(() => null);
      const text = res?.ok ? await res.text() : '';
      return Number(new RegExp(`^honeygate_collector_${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
    };
    const expected = await countEvents(recordedDb, '1');
    const stored = await waitFor(
      `the collector to store the ${expected} events honeygate-nats recorded`,
      async () => {
        const n = await metric('stored_total');
        return n >= expected ? n : null;
      },
      { timeoutMs: 600_000, intervalMs: 200 },
    );
    const seconds = (Date.now() - started) / 1000;
    return { events: stored, seconds, rate: stored / seconds };
  } finally {
    await collector.stop();
  }
}

let openDatabase = null;
async function countEvents(file, where = "type = 'flow'", what = 'count(*)') {
  // The project's own driver: node:sqlite on Node >= 22.13, better-sqlite3 on Node 20.
  openDatabase ??= (await import(pathToFileURL(join(HG_ROOT, 'dist/src/events/sqlite-driver.js')).href))
    .openDatabase;
  const db = openDatabase(file, { readonly: true });
  try {
    return Number(db.prepare(`SELECT ${what} AS n FROM events WHERE ${where}`).get().n);
  } finally {
    db.close();
  }
}

// ---- memory per idle proxied flow --------------------------------------------------------

async function measureIdleMemory(layout, dir) {
  mkdirSync(dir, { recursive: true });
  const flows = settings.idleFlows;
  log(`idle memory: ${flows} idle flows through each proxy (${layout.id})`);
  const nginx = await startNginx(dir, { cpus: layout.loadCpus, workers: layout.nginxWorkers });
  const runs = { haproxy: [], honeygate: [] };
  try {
    for (let r = 0; r < settings.repeats; r++) {
      for (const t of rotate(['haproxy', 'honeygate'], r)) {
        const name = `${t}-idle-${r}`;
        const proxy =
          t === 'haproxy'
            ? await startHaproxy(dir, name, {
                cpus: layout.proxyCpus,
                threads: layout.proxyThreads,
                listens: [{ name: 'bench', port: PORTS.haproxy, server: PORTS.nginx }],
              })
            : await startHoneygate(dir, name, {
                root: HG_ROOT,
                node: settings.node,
                cpus: layout.proxyCpus,
                listens: [{ port: PORTS.honeygate }],
                server: PORTS.nginx,
                source: 'none',
                admin: PORTS.admin + 1,
              });
        try {
          const port = TARGETS[t].port;
          await wrk(port, SMALL, {
            seconds: 1,
            connections: 20,
            threads: 1,
            cpus: layout.loadCpus,
            close: true,
          });
          await wrk(port, SMALL, { seconds: 1, connections: 20, threads: 1, cpus: layout.loadCpus });
          if (t === 'honeygate') await settle(proxy);
          const before = await stableRss(proxy.process.pid);
          const idle = await openIdle(settings.node, port, SMALL, flows, { cpus: layout.loadCpus });
          try {
            const after = await stableRss(proxy.process.pid);
            const open = t === 'honeygate' ? (await honeygateStatus(proxy)).gateway.openFlows : idle.ready;
            const kib = (after - before) / idle.ready;
            runs[t].push({
              beforeKiB: before,
              afterKiB: after,
              flows: idle.ready,
              errors: idle.errors,
              open,
              kib,
            });
            log(
              `  idle #${r + 1} ${t}: RSS ${before} -> ${after} KiB over ${idle.ready} flows = ${kib.toFixed(2)} KiB/flow`,
            );
          } finally {
            await idle.close();
          }
        } finally {
          await proxy.process.stop();
        }
      }
    }
  } finally {
    await nginx.process.stop();
  }
  return { layout: layout.label, flows, ...figureSummary(runs, (x) => x.kib, true, { unit: 'KiB/flow' }) };
}

/** RSS once two samples 300 ms apart differ by less than 0.5% (at most 10 s). */
async function stableRss(pid) {
  let last = rssKiB(pid);
  let stable = last;
  await waitFor(
    'RSS to settle',
    async () => {
      const now = rssKiB(pid);
      const steady = Math.abs(now - last) <= last * 0.005;
      last = now;
      stable = now;
      return steady;
    },
    { timeoutMs: 10_000, intervalMs: 300 },
  ).catch(() => {});
  return stable;
}

// ---- many sources: new connections from 10,000 attacker addresses vs one ------------------

/**
 * New connections/s (Connection: close, 1 KiB) from settings.sources distinct 127.1.x.y
 * addresses against the same from one, through HAProxy and honeygate, the same client
 * (bench/conn-load.c) for all four cases, in rotated order. honeygate keeps admission state
 * per source (concurrency, rate bucket); the ratio N sources / 1 source is what that state
 * costs (target: >= 0.9). Every honeygate run's events are counted, and the distinct
 * source addresses in them.
 */
async function measureManySources(layout, dir) {
  mkdirSync(dir, { recursive: true });
  const n = settings.sources;
  log(`many sources: new connections from ${n} source addresses vs 1 (${layout.id})`);
  const binary = buildConnLoad(ROOT, dir);
  const { servers, add } = serverSet();
  const cases = ['haproxy', 'honeygate'].flatMap((t) => [`${t} 1`, `${t} ${n}`]);
  const runs = Object.fromEntries(cases.map((c) => [c, []]));
  try {
    add('nginx', await startNginx(dir, { cpus: layout.loadCpus, workers: layout.nginxWorkers }));
    add(
      'haproxy',
      await startHaproxy(dir, 'haproxy', {
        cpus: layout.proxyCpus,
        threads: layout.proxyThreads,
        listens: [{ name: 'bench', port: PORTS.haproxy, server: PORTS.nginx }],
      }),
    );
    add(
      'honeygate',
      await startHoneygate(dir, 'honeygate', {
        ...probeOptions(dir, 'honeygate', process.env),
        root: HG_ROOT,
        node: settings.node,
        cpus: layout.proxyCpus,
        listens: [{ port: PORTS.honeygate }],
        server: PORTS.nginx,
        source: 'none',
        admin: PORTS.admin + 1,
      }),
    );
    const load = (t, sources, seconds) =>
      connLoad(binary, TARGETS[t].port, SMALL, {
        seconds,
        connections: FIGURES.connrate.connections,
        sources,
        cpus: layout.loadCpus,
      });
    for (const t of ['haproxy', 'honeygate']) {
      await load(t, n, 1);
      if (t === 'honeygate') await settle(servers.honeygate);
    }
    for (let r = 0; r < settings.repeats; r++) {
      for (const c of rotate(cases, r)) {
        const [t, sources] = c.split(' ');
        const hg = t === 'honeygate' ? servers.honeygate : null;
        const before = hg ? await settle(hg) : null;
        const since = Date.now();
        const cpu0 = cpuSeconds(servers[t].process.pid);
        const res = await load(t, Number(sources), settings.seconds);
        res.proxyCpuSeconds = cpuSeconds(servers[t].process.pid) - cpu0;
        if (hg) {
          res.events = completeness(res, before, await settle(hg));
          res.events.sources = await countEvents(
            hg.db,
            `type = 'flow' AND opened_at >= ${since}`,
            'count(DISTINCT src_ip)',
          );
          // SQLite's share: the rollup keeps a row per source and hour (src/events/rollup.ts).
          if (settings.probe) res.probe = probeSummary(join(dir, 'honeygate-probe.jsonl'), since, Date.now());
        }
        runs[c].push(res);
        log(
          `  sources #${r + 1} ${c}: ${res.rate.toFixed(0)}/s, ${((res.proxyCpuSeconds * 1e6) / res.requests).toFixed(1)} CPU µs/conn` +
            `${res.errors ? `, ${res.errors} socket errors` : ''}${res.events ? `, events ${res.events.events}/${res.requests} requests from ${res.events.sources} addresses` : ''}` +
            `${res.probe ? `; SQLite CPU ${((res.probe.sqlite.cpuMs * 1000) / Math.max(1, res.probe.sqlite.rows)).toFixed(2)} µs/row in ${res.probe.sqlite.count} batches${promotedText(res.probe, res.requests)}` : ''}`,
        );
      }
    }
  } finally {
    await stopAll(servers);
  }
  return {
    layout: layout.label,
    sources: n,
    connections: FIGURES.connrate.connections,
    rate: figureSummary(runs, (x) => x.rate, false, { unit: 'connections/s' }),
    cpu: figureSummary(runs, (x) => (x.proxyCpuSeconds * 1e6) / x.requests, true, {
      unit: 'CPU µs/connection',
    }),
  };
}

// ---- burst: one connection to each of many ports -------------------------------------------

/**
 * The non-transparent variant: until tproxy lands, honeygate catches the ports with bind
 * listeners on a port range (one socket per port), as many as 20,000 open files allow.
 */
async function measureBurst(layout, dir) {
  mkdirSync(dir, { recursive: true });
  const ports = settings.burstPorts;
  const range = [PORTS.burst, PORTS.burst + ports - 1];
  // Listening sockets + two per flow must stay under 20,000 open files.
  const maxFlows = Math.floor((19_000 - ports) / 2);
  log(`burst: one connection to each of ${ports} ports (${range[0]}-${range[1]}), ${layout.id}`);
  const nginx = await startNginx(dir, { cpus: layout.loadCpus, workers: layout.nginxWorkers });
  const runs = { haproxy: [], honeygate: [] };
  try {
    for (let r = 0; r < settings.repeats; r++) {
      for (const t of rotate(['haproxy', 'honeygate'], r)) {
        const name = `${t}-burst-${r}`;
        const startedAt = Date.now();
        const proxy =
          t === 'haproxy'
            ? await startHaproxy(dir, name, {
                cpus: layout.proxyCpus,
                threads: layout.proxyThreads,
                listens: [{ name: 'burst', ports: range, server: PORTS.nginx }],
                log: true,
                maxconn: maxFlows,
              })
            : await startHoneygate(dir, name, {
                root: HG_ROOT,
                node: settings.node,
                cpus: layout.proxyCpus,
                listens: [{ ports: range }],
                server: PORTS.nginx,
                source: 'none',
                admin: PORTS.admin + 1,
                maxFlows,
              });
        const startupMs = Date.now() - startedAt;
        try {
          const res = {
            ...(await burstOnce(t, proxy, { firstPort: range[0], ports, cpus: layout.loadCpus })),
            startupSeconds: startupMs / 1000,
          };
          runs[t].push(res);
          log(
            `  burst #${r + 1} ${t}: ${res.recorded}/${ports} recorded in ${res.seconds?.toFixed(2) ?? '—'} s ` +
              `(client done in ${res.clientSeconds.toFixed(2)} s, ${res.errors} errors; ${res.startupSeconds.toFixed(1)} s to bind; CPUs busy ${busyText(res.cpuBusy)})`,
          );
        } finally {
          await proxy.process.stop();
        }
      }
    }
  } finally {
    await nginx.process.stop();
  }
  return {
    layout: layout.label,
    ports,
    window: settings.burstWindow,
    variant: 'bind listeners on a port range (non-transparent)',
    ...figureSummary(runs, (x) => x.seconds ?? Number.NaN, true, { unit: 's' }),
  };
}

/**
 * One connection to each of `ports` ports from firstPort (host, from inside netns if given),
 * `settings.burstWindow` at a time; seconds from the first connect until the proxy has
 * recorded them all (null if it never did within 120 s).
 */
async function burstOnce(t, proxy, { firstPort, ports, cpus, host, netns }) {
  const recorded = t.startsWith('haproxy')
    ? () => haproxyLogLines(proxy.logFile)
    : () => countEvents(proxy.db);
  const t0 = performance.now();
  const cpu0 = cpuTimes();
  const burst = client(settings.node, 'burst', [firstPort, ports, settings.burstWindow], {
    cpus,
    host,
    netns,
    timeoutMs: 120_000,
  });
  let seen = 0;
  await waitFor(
    `${t} to record ${ports} flows`,
    async () => {
      seen = await recorded();
      return seen >= ports;
    },
    { timeoutMs: 120_000, intervalMs: 20 },
  ).catch(() => {});
  const recordedMs = performance.now() - t0;
  // Whether the proxy or the whole machine is the bound: both cores busy means the latter.
  const cpuBusy = busyPercent(cpu0, cpuTimes());
  const c = await burst;
  return {
    seconds: seen >= ports ? recordedMs / 1000 : null,
    cpuBusy,
    clientSeconds: c.ms / 1000,
    connected: c.connected,
    errors: c.errors,
    recorded: seen,
  };
}

const busyText = (busy) =>
  Object.entries(busy)
    .map(([cpu, pct]) => `${cpu}: ${pct}%`)
    .join(', ');

/** HAProxy `option tcplog` lines of the burst frontend in its log file. */
function haproxyLogLines(file) {
  let text = '';
  try {
    text = readFileSync(file, 'latin1');
  } catch {
    return 0;
  }
  let n = 0;
  for (let i = text.indexOf(' burst burst_be/'); i >= 0; i = text.indexOf(' burst burst_be/', i + 1)) n++;
  return n;
}

// ---- the tunnel: sensor -> hub vs HAProxy -> HAProxy over TLS --------------------------------
// Each pair on the proxy core (both of its processes there: the pair shares CPU 1, as the
// single proxy does in the other pinned figures); wrk, nginx and the idle clients on the load
// core. Both back ends send PROXY v2 to nginx's proxy_protocol port.

const TUNNEL_TARGETS = { 'haproxy-tls': PORTS.haproxyTlsFront, 'honeygate-tunnel': PORTS.tunnelSensor };
const TUNNEL_LIST = Object.keys(TUNNEL_TARGETS);

/** The two processes of a pair, as { sensor, hub } (HAProxy's front is the sensor's end). */
const sidesOf = (pair) => (pair.front ? { sensor: pair.front, hub: pair.back } : pair);

async function measureTunnel(layout, dir) {
  mkdirSync(dir, { recursive: true });
  const want = (f) => settings.only.includes(f);
  log(`tunnel: attacker -> sensor -> hub -> nginx vs HAProxy -> HAProxy over TLS (${layout.id})`);
  const pki = await makePki(dir, { root: HG_ROOT, node: settings.node });
  const nginx = await startNginx(dir, { cpus: layout.loadCpus, workers: layout.nginxWorkers });
  const result = { layout: layout.label, figures: {}, completeness: [], idleMemory: null };
  try {
    const rates = ['tunnel-connrate', 'tunnel-bulk'].filter(want);
    if (rates.length) await tunnelRates(layout, dir, pki, rates, result);
    if (want('tunnel-memory')) result.idleMemory = await tunnelMemory(layout, dir, pki);
  } finally {
    await nginx.process.stop();
  }
  return result;
}

function startPair(t, layout, dir, name, pki) {
  return t === 'haproxy-tls'
    ? startHaproxyTlsPair(dir, name, { cpus: layout.proxyCpus, threads: layout.proxyThreads, pki })
    : startTunnelPair(dir, name, { root: HG_ROOT, node: settings.node, cpus: layout.proxyCpus, pki });
}

async function stopPair(pair) {
  const { sensor, hub } = sidesOf(pair);
  await sensor.process.stop();
  await hub.process.stop();
}

async function tunnelRates(layout, dir, pki, figures, result) {
  const pairs = {};
  try {
    for (const t of TUNNEL_LIST) pairs[t] = sidesOf(await startPair(t, layout, dir, t, pki));
    const hg = pairs['honeygate-tunnel'];
    const pairCpu = (t) => cpuSeconds(pairs[t].sensor.process.pid) + cpuSeconds(pairs[t].hub.process.pid);
    // Each process's share of a core during a run: is one of them the bound (near 100%)?
    const sideCpu = (t) => ({
      sensor: cpuSeconds(pairs[t].sensor.process.pid),
      hub: cpuSeconds(pairs[t].hub.process.pid),
    });
    const sideShares = (a, b, wall) =>
      `CPU sensor ${((100 * (b.sensor - a.sensor)) / wall).toFixed(0)}% hub ${((100 * (b.hub - a.hub)) / wall).toFixed(0)}%`;
    for (const t of TUNNEL_LIST) {
      const opts = { seconds: 1, connections: 20, threads: 1, cpus: layout.loadCpus };
      await wrk(TUNNEL_TARGETS[t], SMALL, { ...opts, close: true });
      await wrk(TUNNEL_TARGETS[t], SMALL, opts);
      // The bulk path's code is not the small requests' (JIT, buffers): warm it too.
      if (figures.includes('tunnel-bulk'))
        await wrk(TUNNEL_TARGETS[t], LARGE, { ...opts, connections: FIGURES.bulk.connections });
    }
    await settle(hg.sensor);
    await settle(hg.hub);
    for (const f of figures) {
      const id = f === 'tunnel-connrate' ? 'connrate' : 'bulk';
      const runs = Object.fromEntries(TUNNEL_LIST.map((t) => [t, []]));
      for (let r = 0; r < settings.repeats; r++) {
        for (const t of rotate(TUNNEL_LIST, r)) {
          const port = TUNNEL_TARGETS[t];
          const counted = id === 'connrate' && t === 'honeygate-tunnel';
          const before = counted ? { sensor: await settle(hg.sensor), hub: await settle(hg.hub) } : null;
          const cpuBefore = pairCpu(t);
          const sideBefore = sideCpu(t);
          const wallBefore = performance.now();
          const res =
            id === 'connrate'
              ? await wrk(port, SMALL, {
                  seconds: settings.seconds,
                  threads: layout.wrkThreads,
                  cpus: layout.loadCpus,
                  connections: FIGURES.connrate.connections,
                  close: true,
                })
              : await wrk(port, LARGE, {
                  seconds: settings.seconds,
                  threads: 1,
                  cpus: layout.loadCpus,
                  connections: FIGURES.bulk.connections,
                });
          if (counted) {
            res.events = {
              sensor: completeness(res, before.sensor, await settle(hg.sensor)),
              hub: completeness(res, before.hub, await settle(hg.hub)),
            };
          }
          res.proxyCpuSeconds = pairCpu(t) - cpuBefore;
          res.sideCpuShare = sideShares(sideBefore, sideCpu(t), (performance.now() - wallBefore) / 1000);
          runs[t].push(res);
          const ev = res.events
            ? `, events sensor ${res.events.sensor.events} hub ${res.events.hub.events} / ${res.requests} requests`
            : '';
          log(
            `  tunnel ${id} #${r + 1} ${t}: ${id === 'bulk' ? `${res.mbps.toFixed(0)} MB/s` : `${res.rate.toFixed(0)}/s`}` +
              `${res.errors ? `, ${res.errors} socket errors` : ''}${ev}, ${res.sideCpuShare}`,
          );
        }
      }
      const value = id === 'bulk' ? (x) => x.mbps : (x) => x.rate;
      result.figures[id] = figureSummary(runs, value, false, {
        unit: FIGURES[id].unit,
        connections: FIGURES[id].connections,
      });
      const perUnit =
        id === 'bulk'
          ? (x) => x.proxyCpuSeconds / (x.bytes / 1e9)
          : (x) => (x.proxyCpuSeconds * 1e6) / x.requests;
      result.figures[`${id}-cpu`] = figureSummary(runs, perUnit, true, {
        unit: id === 'bulk' ? 'CPU s/GB (both processes)' : 'CPU µs/request (both processes)',
      });
      if (id === 'connrate') {
        const best = [...runs['honeygate-tunnel']].sort((a, b) => b.rate - a.rate)[0];
        for (const side of ['sensor', 'hub'])
          result.completeness.push({ layout: 'tunnel', target: `honeygate ${side}`, ...best.events[side] });
      }
    }
  } finally {
    for (const t of [...TUNNEL_LIST].reverse()) if (pairs[t]) await stopPair(pairs[t]);
  }
}

/** Memory per idle flow on each side of a fresh pair: RSS delta over settings.idleFlows flows. */
async function tunnelMemory(layout, dir, pki) {
  const flows = settings.idleFlows;
  log(`tunnel idle memory: ${flows} idle flows through each pair (${layout.id})`);
  const runs = Object.fromEntries(TUNNEL_LIST.map((t) => [t, []]));
  for (let r = 0; r < settings.repeats; r++) {
    for (const t of rotate(TUNNEL_LIST, r)) {
      const pair = sidesOf(await startPair(t, layout, dir, `${t}-idle-${r}`, pki));
      try {
        const port = TUNNEL_TARGETS[t];
        const opts = { seconds: 1, connections: 20, threads: 1, cpus: layout.loadCpus };
        await wrk(port, SMALL, { ...opts, close: true });
        await wrk(port, SMALL, opts);
        if (t === 'honeygate-tunnel') {
          await settle(pair.sensor);
          await settle(pair.hub);
        }
        const before = {
          sensor: await stableRss(pair.sensor.process.pid),
          hub: await stableRss(pair.hub.process.pid),
        };
        const idle = await openIdle(settings.node, port, SMALL, flows, { cpus: layout.loadCpus });
        try {
          const after = {
            sensor: await stableRss(pair.sensor.process.pid),
            hub: await stableRss(pair.hub.process.pid),
          };
          const kib = (side) => (after[side] - before[side]) / idle.ready;
          const res = {
            flows: idle.ready,
            errors: idle.errors,
            beforeKiB: before,
            afterKiB: after,
            sensorKiB: kib('sensor'),
            hubKiB: kib('hub'),
            kib: kib('sensor') + kib('hub'),
          };
          runs[t].push(res);
          log(
            `  tunnel idle #${r + 1} ${t}: sensor side ${res.sensorKiB.toFixed(2)} KiB/flow, hub side ` +
              `${res.hubKiB.toFixed(2)} KiB/flow over ${idle.ready} flows`,
          );
        } finally {
          await idle.close();
        }
      } finally {
        await stopPair(pair);
      }
    }
  }
  const unit = { unit: 'KiB/flow' };
  return {
    layout: layout.label,
    flows,
    sensor: figureSummary(runs, (x) => x.sensorKiB, true, unit),
    hub: figureSummary(runs, (x) => x.hubKiB, true, unit),
    pair: figureSummary(runs, (x) => x.kib, true, unit),
  };
}

// ---- UDP: datagrams/s and memory per idle flow, honeygate vs nginx stream --------------------
// The proxy on the proxy core; the load and the echo honeypot on the load core. The load keeps
// UDP_WINDOW datagrams in flight on each of UDP_FLOWS flows and counts the answers.

const UDP_FLOWS = 50;
const UDP_WINDOW = 8;
const UDP_SIZE = 64; // a DNS query's size
const UDP_IDLE_FLOWS = 5000;
const UDP_LIST = ['direct', 'nginx-udp', 'honeygate-udp'];

async function measureUdp(layout, dir) {
  mkdirSync(dir, { recursive: true });
  const want = (f) => settings.only.includes(f);
  log(`udp: datagrams through honeygate vs nginx stream UDP (${layout.id})`);
  const binary = buildUdpLoad(HG_ROOT, dir);
  const echo = await startEcho(binary, dir, layout.loadCpus);
  const result = {
    layout: layout.label,
    flows: UDP_FLOWS,
    window: UDP_WINDOW,
    size: UDP_SIZE,
    rate: null,
    memory: null,
  };
  const start = (t) =>
    t === 'nginx-udp'
      ? startNginxUdp(dir, layout.proxyCpus)
      : startHoneygateUdp(dir, { root: HG_ROOT, node: settings.node, cpus: layout.proxyCpus });
  const stop = async (p) => p && (await p.process.stop());
  try {
    if (want('udp-rate')) {
      const runs = Object.fromEntries(UDP_LIST.map((t) => [t, []]));
      for (let r = 0; r < settings.repeats; r++) {
        for (const t of rotate(UDP_LIST, r)) {
          const proxy = t === 'direct' ? null : await start(t);
          try {
            const port =
              t === 'direct' ? UDP_PORTS.echo : t === 'nginx-udp' ? UDP_PORTS.nginx : UDP_PORTS.honeygate;
            const pid = proxy ? await proxy.pid() : null;
            const cpu0 = pid ? cpuSeconds(pid) : 0;
            const res = await udpLoad(binary, port, {
              flows: UDP_FLOWS,
              window: UDP_WINDOW,
              seconds: settings.seconds,
              size: UDP_SIZE,
              cpus: layout.loadCpus,
            });
            if (pid) res.cpuUsPerDatagram = ((cpuSeconds(pid) - cpu0) * 1e6) / (res.total || 1);
            runs[t].push(res);
            log(`  udp #${r + 1} ${t}: ${res.rate.toFixed(0)} datagrams/s answered (${res.resent} resent)`);
          } finally {
            await stop(proxy);
          }
        }
      }
      result.rate = figureSummary(runs, (x) => x.rate, false, { unit: 'datagrams/s' });
      result.cpu = figureSummary(
        Object.fromEntries(UDP_LIST.slice(1).map((t) => [t, runs[t]])),
        (x) => x.cpuUsPerDatagram,
        true,
        { unit: 'µs' },
      );
    }
    if (want('udp-memory')) {
      const runs = { 'nginx-udp': [], 'honeygate-udp': [] };
      for (let r = 0; r < settings.repeats; r++) {
        for (const t of rotate(Object.keys(runs), r)) {
          const proxy = await start(t);
          try {
            const port = t === 'nginx-udp' ? UDP_PORTS.nginx : UDP_PORTS.honeygate;
            await udpLoad(binary, port, {
              flows: 10,
              window: 1,
              seconds: 1,
              size: UDP_SIZE,
              cpus: layout.loadCpus,
            });
            const pid = await proxy.pid();
            const before = await stableRss(pid);
            const idle = await udpIdle(binary, port, UDP_IDLE_FLOWS, layout.loadCpus);
            try {
              const kib = ((await stableRss(pid)) - before) / idle.answered;
              runs[t].push({ kib, flows: idle.answered });
              log(`  udp idle #${r + 1} ${t}: ${kib.toFixed(2)} KiB/flow over ${idle.answered} flows`);
            } finally {
              await idle.close();
            }
          } finally {
            await stop(proxy);
          }
        }
      }
      result.memory = figureSummary(runs, (x) => x.kib, true, { unit: 'KiB/flow', flows: UDP_IDLE_FLOWS });
    }
  } finally {
    await echo.stop();
  }
  if (want('udp-transparent-rate')) {
    result.transparent = env.BENCH_TOPOLOGY
      ? await udpTransparent(layout, join(dir, 'transparent'), binary, JSON.parse(env.BENCH_TOPOLOGY))
      : { status: 'not measured: needs root (network namespaces, nftables)' };
  }
  return result;
}

// ---- UDP transparent: the catch-all, honeygate vs nginx transparent vs go-mmproxy -----------
// In lib/transparent.mjs's namespaces: the load in the attacker's, the proxies in the gateway's
// (proxy core), the echo and go-mmproxy in the honeypot's (load core). Every proxy sends on from
// the attacker's address: honeygate `source: transparent`, nginx `proxy_bind $remote_addr
// transparent`, and honeygate `source: proxy-v2` to go-mmproxy -p udp, which does it in the
// honeypot namespace (go-mmproxy is a receiving end, not a gateway: the chain is the way an
// operator deploys it, so its row is the chain; its own CPU is reported apart).

const UDP_TP_LIST = ['direct', 'nginx', 'honeygate', 'honeygate-mm'];

async function udpTransparent(layout, dir, binary, ns) {
  mkdirSync(dir, { recursive: true });
  log(`udp transparent: namespaces ${ns.att} -> ${ns.gw} -> ${ns.hp} (${layout.id})`);
  const result = {
    status: 'measured',
    layout: layout.label,
    flows: UDP_FLOWS,
    window: UDP_WINDOW,
    size: UDP_SIZE,
    source: {},
    load: { before: loadavg(), after: null, cpus: cpus().length },
  };
  const hp = await startUdpHoneypot(binary, dir, ns, layout.loadCpus);
  let hg = null;
  try {
    hg = await startHoneygateUdpTransparent(dir, {
      root: HG_ROOT,
      node: settings.node,
      cpus: layout.proxyCpus,
      ns,
    });
    await honeygateFirewall(hg, ns);
    const runs = Object.fromEntries(UDP_TP_LIST.map((t) => [t, []]));
    for (let r = 0; r < settings.repeats; r++) {
      for (const t of rotate(UDP_TP_LIST, r)) {
        await flushConntrack(ns);
        const nginx = t === 'nginx' ? await startNginxUdpTransparent(dir, layout.proxyCpus, ns) : null;
        try {
          const pid = t === 'nginx' ? await nginx.pid() : t.startsWith('honeygate') ? hg.process.pid : null;
          const mmPid = t === 'honeygate-mm' ? hp.mmproxy.pid : null;
          const cpu0 = pid ? cpuSeconds(pid) : 0;
          const mm0 = mmPid ? cpuSeconds(mmPid) : 0;
          const drops0 = await Promise.all([ns.gw, ns.hp].map(udpRcvbufErrors));
          const res = await udpLoad(binary, UDP_TP[t].port, {
            flows: UDP_FLOWS,
            window: UDP_WINDOW,
            seconds: settings.seconds,
            size: UDP_SIZE,
            cpus: layout.loadCpus,
            host: UDP_TP[t].host,
            netns: ns.att,
          });
          if (pid) res.cpuUsPerDatagram = ((cpuSeconds(pid) - cpu0) * 1e6) / (res.total || 1);
          if (mmPid) res.mmproxyUsPerDatagram = ((cpuSeconds(mmPid) - mm0) * 1e6) / (res.total || 1);
          const drops1 = await Promise.all([ns.gw, ns.hp].map(udpRcvbufErrors));
          res.drops = { gateway: drops1[0] - drops0[0], honeypot: drops1[1] - drops0[1] };
          res.source = lastSource(t === 'honeygate-mm' ? hp.loopEcho : hp.echo);
          runs[t].push(res);
          result.source[t] = { seen: res.source, ok: res.source === PLAN.attacker };
          log(
            `  udp transparent #${r + 1} ${t}: ${res.rate.toFixed(0)} datagrams/s answered (${res.resent} resent; ` +
              `full receive buffers dropped ${res.drops.gateway} in the gateway, ${res.drops.honeypot} in the honeypot), ` +
              `the echo sees ${res.source}${res.source === PLAN.attacker ? '' : ' (NOT the attacker)'}`,
          );
        } finally {
          if (nginx) await nginx.process.stop();
        }
      }
    }
    result.rate = figureSummary(runs, (x) => x.rate, false, { unit: 'datagrams/s' });
    result.drops = figureSummary(runs, (x) => x.drops.gateway + x.drops.honeypot, true, {
      unit: 'datagrams',
    });
    result.cpu = figureSummary(
      {
        nginx: runs.nginx,
        honeygate: runs.honeygate,
        'honeygate-mm': runs['honeygate-mm'],
        'go-mmproxy': runs['honeygate-mm'].map((x) => ({ ...x, cpuUsPerDatagram: x.mmproxyUsPerDatagram })),
      },
      (x) => x.cpuUsPerDatagram,
      true,
      { unit: 'µs' },
    );
  } finally {
    if (hg) await hg.process.stop();
    await hp.mmproxy.stop();
    await hp.loopEcho.stop();
    await hp.echo.stop();
  }
  result.load.after = loadavg();
  return result;
}

// ---- profile (opt-in) ------------------------------------------------------------------------

async function profileHoneygate(layout, dir) {
  const profiles = [];
  const nginx = await startNginx(dir, { cpus: layout.loadCpus, workers: layout.nginxWorkers });
  try {
    for (const [load, close] of [
      ['new connections (Connection: close)', true],
      ['keep-alive requests', false],
    ]) {
      const profDir = join(dir, `prof-${close ? 'close' : 'keepalive'}`);
      const hg = await startHoneygate(dir, `honeygate-prof-${close ? 'close' : 'ka'}`, {
        root: HG_ROOT,
        node: settings.node,
        cpus: layout.proxyCpus,
        listens: [{ port: PORTS.honeygate }],
        server: PORTS.nginx,
        source: 'none',
        admin: PORTS.admin + 1,
        nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profDir],
      });
      let res;
      try {
        const opts = { threads: 1, cpus: layout.loadCpus, connections: 50, close };
        await wrk(PORTS.honeygate, SMALL, { ...opts, seconds: 1 });
        res = await wrk(PORTS.honeygate, SMALL, { ...opts, seconds: settings.seconds });
        await settle(hg);
      } finally {
        await hg.process.stop(15_000); // the profile is written on a clean exit
      }
      const top = topSelfTime(profDir, HG_ROOT);
      profiles.push({ load, rate: res.rate, ...top });
      log(`  profile ${load}: top ${top.top[0]?.name} ${top.top[0]?.percent.toFixed(1)}%`);
    }
  } finally {
    await nginx.process.stop();
  }
  return profiles;
}

// ---- transparent mode, in namespaces ---------------------------------------------------------
// The attacker namespace aims at decoy addresses; the gateway namespace's TPROXY rules hand
// each decoy's flows to one proxy's transparent listener (honeygate's own rules from
// `run --manage-firewall`, HAProxy's hand-written ones from lib/transparent.mjs); the proxy
// dials nginx in the honeypot namespace from the attacker's address (honeygate `source:
// transparent`, HAProxy `usesrc clientip`), or sends PROXY v2 to go-mmproxy there, which
// dials nginx from the attacker's address over loopback. Pinned layout: the proxy on CPU 1;
// wrk, the Node clients, nginx and go-mmproxy on CPU 0.

const TP_RATES = {
  'transparent-connrate': { id: 'connrate', connections: 50, unit: 'connections/s' },
  'transparent-keepalive': { id: 'keepalive', connections: 50, unit: 'requests/s' },
  'transparent-latency': { id: 'latency', unit: 'ms' },
  // Bulk without the PROXY rows: through go-mmproxy it would measure go-mmproxy's copy.
  'transparent-bulk': {
    id: 'bulk',
    connections: 2,
    unit: 'MB/s',
    targets: ['direct', 'haproxy', 'honeygate', 'kernel'],
  },
  // CPU per connection of the path at a fixed rate (costRun): what the gateway costs, where the
  // connection rate is bound by the load side.
  'transparent-cost': {
    id: 'cost',
    unit: 'CPU µs/connection',
    targets: ['direct', 'haproxy', 'honeygate', 'kernel'],
  },
};
const TP_ALL = ['direct', 'haproxy', 'honeygate', 'kernel', 'haproxy-mm', 'honeygate-mm'];
// The kernel path's flows have no process of their own: their CPU is the gateway's softirq.
const hasProcess = (t) => t !== 'direct' && !TP_TARGETS[t].kernel;

async function measureTransparent(layout, dir, ns) {
  mkdirSync(dir, { recursive: true });
  const want = (f) => settings.only.includes(f);
  log(`transparent: namespaces ${ns.att} -> ${ns.gw} -> ${ns.hp} (${layout.id})`);
  const nginx = await startNginx(dir, {
    cpus: layout.loadCpus,
    workers: layout.nginxWorkers,
    netns: ns.hp,
    listens: burstPorts().map(String),
    remoteAddrHeader: true,
  });
  const result = {
    status: 'measured',
    layout: layout.label,
    topology:
      `attacker ns ${PLAN.attacker} -> gateway ns (TPROXY, the proxy) -> honeypot ns ${PLAN.honeypot} ` +
      '(nginx; go-mmproxy in front of it for the PROXY rows), veth pairs',
    figures: {},
    remoteAddress: {},
    completeness: [],
    burst: null,
    kernelBurst: null,
    load: { before: loadavg(), after: null, cpus: cpus().length },
  };
  try {
    if (Object.keys(TP_RATES).some(want)) await transparentRates(layout, dir, ns, result, nginx);
    if (want('transparent-burst')) result.burst = await transparentBurst(layout, dir, ns);
    if (want('transparent-kernel-burst')) result.kernelBurst = await kernelBurst(layout, dir, ns);
  } finally {
    await nginx.process.stop();
  }
  result.load.after = loadavg();
  return result;
}

/** Empties the gateway's conntrack table: each run starts from the same state (and far from its size limit). */
async function flushConntrack(ns) {
  await run('conntrack', ['-F'], { netns: ns.gw, timeoutMs: 30_000 });
}

/** Waits until honeygate's `run --manage-firewall` has loaded its table in the gateway. */
async function honeygateFirewall(hg, ns) {
  await waitFor(
    `${hg.name} to load its nftables table`,
    async () => {
      if (hg.process.exitCode !== null) throw new Error(`${hg.name} exited (${hg.process.exitCode})`);
      return (await run('nft', ['list', 'table', 'inet', 'honeygate'], { netns: ns.gw })).code === 0;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
}

/** The client address nginx saw (its X-Remote-Addr header) for one request through target. */
async function remoteAddress(ns, target) {
  const url = `http://${TP_TARGETS[target].host}:${PLAN.nginxPort}${SMALL}`;
  const res = await run('curl', ['-s', '-o', '/dev/null', '-D', '-', '--max-time', '5', url], {
    netns: ns.att,
    timeoutMs: 10_000,
  });
  return /^x-remote-addr:\s*(\S+)/im.exec(res.stdout)?.[1] ?? null;
}

async function transparentRates(layout, dir, ns, result, nginx) {
  const figures = Object.keys(TP_RATES).filter((f) => settings.only.includes(f));
  const { servers, add } = serverSet();
  servers.nginxPid = nginx.process.pid; // for costRun
  try {
    add(
      'mmproxy',
      startProcess(
        'go-mmproxy',
        ['-l', `${PLAN.honeypot}:${PLAN.mmproxyPort}`, '-4', `127.0.0.1:${PLAN.nginxPort}`, '-v', '0'],
        {
          cpus: layout.loadCpus,
          netns: ns.hp,
          logFile: join(dir, 'go-mmproxy.log'),
          env: { ...process.env, GOMAXPROCS: '1' },
        },
      ),
    );
    await waitListening({ name: 'go-mmproxy', process: servers.mmproxy, netns: ns.hp }, [PLAN.mmproxyPort]);
    const db = join(dir, 'honeygate-tp.db');
    const hg = await launchHoneygate(dir, 'honeygate-tp', {
      root: HG_ROOT,
      node: settings.node,
      cpus: layout.proxyCpus,
      yaml: honeygateRatesYaml({ db }),
      db,
      admin: PLAN.admin,
      args: ['--manage-firewall'],
      ports: [TP_TARGETS.honeygate.tproxyPort, TP_TARGETS['honeygate-mm'].tproxyPort],
      netns: ns.gw,
    });
    servers.honeygate = servers['honeygate-mm'] = servers.kernel = hg;
    servers.list.push(hg.process);
    await honeygateFirewall(hg, ns);
    const ha = await startHaproxy(dir, 'haproxy-tp', {
      cpus: layout.proxyCpus,
      threads: layout.proxyThreads,
      netns: ns.gw,
      listens: [
        {
          name: 'transparent',
          bind: `127.0.0.1:${TP_TARGETS.haproxy.tproxyPort}`,
          port: TP_TARGETS.haproxy.tproxyPort,
          transparent: true,
          usesrc: true,
          servers: [`${PLAN.honeypot}:${PLAN.nginxPort}`],
        },
        {
          name: 'mmproxy',
          bind: `127.0.0.1:${TP_TARGETS['haproxy-mm'].tproxyPort}`,
          port: TP_TARGETS['haproxy-mm'].tproxyPort,
          transparent: true,
          sendProxy: true,
          servers: [`${PLAN.honeypot}:${PLAN.mmproxyPort}`],
        },
      ],
    });
    servers.haproxy = servers['haproxy-mm'] = ha;
    servers.list.push(ha.process);

    for (const t of TP_ALL) {
      const seen = await remoteAddress(ns, t);
      result.remoteAddress[t] = { seen, ok: seen === PLAN.attacker };
      log(
        `  transparent ${t}: nginx sees ${seen ?? 'nothing'}${seen === PLAN.attacker ? '' : ' (NOT the attacker)'}`,
      );
    }
    for (const t of TP_ALL) {
      const opts = { seconds: 1, connections: 20, threads: 1, cpus: layout.loadCpus, ...tpWrk(ns, t) };
      await wrk(PLAN.nginxPort, SMALL, { ...opts, close: true });
      await wrk(PLAN.nginxPort, SMALL, opts);
    }
    await settle(hg);

    for (const f of figures) {
      const fig = TP_RATES[f];
      const targets = fig.targets ?? TP_ALL;
      const runs = Object.fromEntries(targets.map((t) => [t, []]));
      for (let r = 0; r < settings.repeats; r++) {
        for (const t of rotate(targets, r)) {
          await flushConntrack(ns);
          const pid = hasProcess(t) ? servers[t].process.pid : null;
          const cpuBefore = pid ? cpuSeconds(pid) : 0;
          const res = await transparentRun(fig.id, layout, ns, t, servers);
          res.proxyCpuSeconds = pid ? cpuSeconds(pid) - cpuBefore : null;
          runs[t].push(res);
          log(`  transparent ${fig.id} #${r + 1} ${t}: ${describe(fig.id, res)}`);
        }
      }
      if (fig.id === 'cost') {
        result.figures.cost = figureSummary(runs, (x) => x.cpuUsPerConnection, true, {
          unit: fig.unit,
          rate: settings.latencyRate,
        });
        continue;
      }
      if (fig.id === 'latency') {
        for (const p of ['p50', 'p99']) {
          result.figures[`latency-${p}`] = figureSummary(runs, (x) => x[`${p}Ms`], true, {
            unit: 'ms',
            rate: settings.latencyRate,
          });
        }
        continue;
      }
      result.figures[fig.id] = figureSummary(runs, fig.id === 'bulk' ? (x) => x.mbps : (x) => x.rate, false, {
        unit: fig.unit,
        connections: fig.connections,
      });
      const proxies = Object.fromEntries(Object.entries(runs).filter(([t]) => hasProcess(t)));
      result.figures[`${fig.id}-cpu`] = figureSummary(
        proxies,
        (x) => (x.proxyCpuSeconds * 1e6) / x.requests,
        true,
        { unit: 'CPU µs/request' },
      );
      if (fig.id === 'connrate') {
        for (const t of ['honeygate', 'honeygate-mm', 'kernel']) {
          const best = [...runs[t]].sort((a, b) => b.rate - a.rate)[0];
          result.completeness.push({ layout: 'transparent', target: t, ...best.events });
        }
      }
    }
  } finally {
    for (const p of [...servers.list].reverse()) await p.stop();
  }
}

/** wrk / client options that aim at target from the attacker namespace. */
function tpWrk(ns, target) {
  return { host: TP_TARGETS[target].host, netns: ns.att };
}

async function transparentRun(figure, layout, ns, target, servers) {
  const base = {
    seconds: settings.seconds,
    threads: layout.wrkThreads,
    cpus: layout.loadCpus,
    ...tpWrk(ns, target),
  };
  switch (figure) {
    case 'connrate': {
      if (TP_TARGETS[target].kernel) return kernelConnrate(ns, servers[target], base);
      const hg = TP_TARGETS[target].honeygate ? servers[target] : null;
      const before = hg ? await settle(hg) : null;
      const res = await wrk(PLAN.nginxPort, SMALL, {
        ...base,
        connections: TP_RATES['transparent-connrate'].connections,
        close: true,
      });
      if (hg) res.events = completeness(res, before, await settle(hg));
      return res;
    }
    case 'keepalive':
      return wrk(PLAN.nginxPort, SMALL, {
        ...base,
        connections: TP_RATES['transparent-keepalive'].connections,
      });
    case 'bulk':
      return wrk(PLAN.nginxPort, LARGE, {
        ...base,
        threads: 1,
        connections: TP_RATES['transparent-bulk'].connections,
      });
    case 'latency':
      return client(
        settings.node,
        'latency',
        [PLAN.nginxPort, SMALL, settings.latencyRate, settings.seconds],
        {
          cpus: layout.loadCpus,
          ...tpWrk(ns, target),
          timeoutMs: (settings.seconds + 60) * 1000,
        },
      );
    case 'cost':
      return costRun(layout, ns, target, servers);
    default:
      throw new Error(`unknown figure ${figure}`);
  }
}

/** utime + stime of one process (every thread), without its children, in seconds. */
function ownCpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;

/**
 * CPU per connection of the whole path at a fixed rate (BENCH_LATENCY_RATE new connections/s,
 * bench/clients.mjs's open loop, Connection: close): the client's, nginx's and the gateway
 * process's CPU (utime + stime; honeygate's includes recording the flows, for the kernel path
 * from conntrack). This kernel charges the softirq work done in a task's context to that task
 * (tick accounting without CONFIG_IRQ_TIME_ACCOUNTING), and on veth the gateway namespace's
 * routing, NAT and conntrack run in the sender's context, so the kernel's work for the flow is
 * inside these numbers too. Minus direct's (the same client and nginx, no gateway), it is what
 * the gateway costs per connection. Per-process, so other jobs on the machine stay out of it
 * (except softirqs that happen to run while one of theirs is interrupted).
 */
async function costRun(layout, ns, target, servers) {
  const gateway = target === 'direct' ? null : servers[target].process.pid;
  // nginx with its workers; the gateway process alone: honeygate's short-lived children (nft,
  // ss) would count while alive and vanish when reaped, and they are no work of a flow's
  const cpuOf = (pid, i) => (i === 0 ? cpuSeconds(pid) : ownCpuSeconds(pid));
  const pids = [servers.nginxPid, ...(gateway ? [gateway] : [])];
  // what the processes spend with no flow (timers, health checks, sweeps), per second: not a flow's
  const idleStart = pids.map(cpuOf);
  const idleAt = performance.now();
  await sleep(2_000);
  const before = pids.map(cpuOf);
  const idlePerSecond = before.map((c, i) => (c - idleStart[i]) / ((performance.now() - idleAt) / 1000));
  const startedAt = performance.now();
  const res = await client(
    settings.node,
    'latency',
    [PLAN.nginxPort, SMALL, settings.latencyRate, settings.seconds],
    { cpus: layout.loadCpus, ...tpWrk(ns, target), timeoutMs: (settings.seconds + 60) * 1000 },
  );
  // the records come after the flows close (the kernel path's ~1 s after): their CPU is the gateway's
  if (TP_TARGETS[target].honeygate) await sleep(2_000);
  const wall = (performance.now() - startedAt) / 1000;
  const seconds = pids.map((p, i) => cpuOf(p, i) - before[i] - idlePerSecond[i] * wall);
  const cpu = seconds.reduce((a, b) => a + b, 0) + res.cpuMs / 1000;
  res.requests = res.ok;
  res.cpuUsPerConnection = (cpu * 1e6) / Math.max(1, res.ok);
  res.cpuParts = {
    clientMs: res.cpuMs,
    nginxMs: seconds[0] * 1000,
    gatewayMs: (seconds[1] ?? 0) * 1000,
    gatewayIdleMsPerSecond: (idlePerSecond[1] ?? 0) * 1000,
  };
  log(
    `    cost ${target}: ${res.cpuUsPerConnection.toFixed(1)} CPU µs/connection at ${res.rate.toFixed(0)}/s ` +
      `(client ${res.cpuMs.toFixed(0)} ms, nginx ${(seconds[0] * 1000).toFixed(0)} ms, gateway process ` +
      `${((seconds[1] ?? 0) * 1000).toFixed(0)} ms beyond its idle ${((idlePerSecond[1] ?? 0) * 1000).toFixed(0)} ms/s; ` +
      `${res.ok}/${res.sent} ok)`,
  );
  return res;
}

// ---- the kernel path (engine: kernel) ----------------------------------------------------------
// Its flows never reach a socket of honeygate's: the gateway DNATs them, and the conntrack reader
// records each one when conntrack forgets it (TIME_WAIT 1 s after the close, docs/kernel.md). So
// a run's flows are counted by the DNAT rules' counters, and the run waits for their records.

const KERNEL_WHERE = `type = 'flow' AND listener = '${KERNEL_LISTENER}'`;

/** Flows the kernel chain has DNATed so far: the sum of its DNAT rules' counters (the nat hook sees a flow's first packet only). */
async function kernelDnatFlows(ns) {
  const res = await run('nft', ['-j', 'list', 'chain', 'inet', 'honeygate', 'kernel'], { netns: ns.gw });
  if (res.code !== 0) throw new Error(`nft list chain inet honeygate kernel: ${res.stderr.trim()}`);
  let flows = 0;
  for (const item of JSON.parse(res.stdout).nftables) {
    const expr = item.rule?.expr ?? [];
    if (!expr.some((e) => e.dnat)) continue;
    flows += expr.find((e) => e.counter)?.counter.packets ?? 0;
  }
  return flows;
}

/**
 * Waits until honeygate has recorded `flows` kernel flows opened at or after `since` (epoch
 * ms), or until 30 s pass with none new; returns what it counted and how long after `from`.
 */
async function kernelRecorded(hg, flows, since, from) {
  const where = `${KERNEL_WHERE} AND opened_at >= ${Math.floor(since)}`;
  let events = await countEvents(hg.db, where);
  let lastChange = Date.now();
  while (events < flows && Date.now() - lastChange < 30_000) {
    await sleep(50);
    const n = await countEvents(hg.db, where);
    if (n !== events) lastChange = Date.now();
    events = n;
  }
  return { events, waitedSeconds: (Date.now() - from) / 1000 };
}

/** New connections/s through the kernel path; every flow the kernel DNATed must be recorded. */
async function kernelConnrate(ns, hg, base) {
  const dnatBefore = await kernelDnatFlows(ns);
  const since = Date.now();
  const res = await wrk(PLAN.nginxPort, SMALL, {
    ...base,
    connections: TP_RATES['transparent-connrate'].connections,
    close: true,
  });
  const ended = Date.now();
  const flows = (await kernelDnatFlows(ns)) - dnatBefore;
  const { events, waitedSeconds } = await kernelRecorded(hg, flows, since, ended);
  const status = await honeygateStatus(hg);
  res.events = {
    rate: res.rate,
    requests: res.requests,
    errors: res.errors,
    flows,
    events,
    missing: Math.max(0, flows - events),
    dropped: status.recorder.dropped,
    recordedSecondsAfterLoad: waitedSeconds,
    complete: events >= flows && events >= res.requests,
  };
  return res;
}

/**
 * The 65,535-port burst through the kernel path: one connection to each port of the kernel
 * decoy, DNATed to nginx's 8 ports (round robin), a fresh honeygate per run; seconds from the
 * first connect until every flow is recorded.
 */
async function kernelBurst(layout, dir, ns) {
  const ports = settings.transparentBurstPorts;
  log(`kernel burst: one connection to each of ${ports} ports through the kernel path (${layout.id})`);
  const runs = { kernel: [] };
  for (let r = 0; r < settings.repeats; r++) {
    await flushConntrack(ns);
    const name = `kernel-burst-${r}`;
    const db = join(dir, `${name}.db`);
    const proxy = await launchHoneygate(dir, name, {
      root: HG_ROOT,
      node: settings.node,
      cpus: layout.proxyCpus,
      yaml: honeygateKernelBurstYaml({ db }),
      db,
      admin: PLAN.admin,
      args: ['--manage-firewall'],
      ports: [TP_TARGETS.kernel.tproxyPort],
      netns: ns.gw,
    });
    try {
      await honeygateFirewall(proxy, ns);
      const res = await kernelBurstOnce(proxy, ns, ports, layout.loadCpus);
      res.overruns = await conntrackOverruns(proxy);
      runs.kernel.push(res);
      log(
        `  kernel burst #${r + 1} after the client, s: conntrack entries / recorded: ${res.timeline
          .map((x) => `${x.at}: ${x.conntrackEntries}/${x.recorded}`)
          .join(', ')}`,
      );
      log(
        `  kernel burst #${r + 1}: ${res.recorded}/${res.flows} flows recorded in ${res.seconds?.toFixed(2) ?? '—'} s ` +
          `(client done in ${res.clientSeconds.toFixed(2)} s, ${res.connected} connected, ${res.errors} errors, ` +
          `${res.overruns} conntrack overruns; CPUs busy ${busyText(res.cpuBusy)})`,
      );
    } finally {
      await proxy.process.stop();
    }
  }
  return {
    layout: layout.label,
    ports,
    window: settings.burstWindow,
    servers: burstServers().length,
    variant: 'the kernel path: nft DNAT, records from conntrack',
    ...figureSummary(runs, (x) => x.seconds ?? Number.NaN, true, { unit: 's' }),
  };
}

/**
 * One kernel burst: the burst client, then the wait until every flow the DNAT rules counted
 * (a retried SYN after a reset makes a flow of its own, so there may be more than ports) is
 * in SQLite. Seconds from the first connect to the last record.
 */
async function kernelBurstOnce(hg, ns, ports, cpus) {
  const t0 = performance.now();
  const since = Date.now();
  const cpu0 = cpuTimes();
  const c = await client(settings.node, 'burst', [1, ports, settings.burstWindow], {
    cpus,
    ...tpWrk(ns, 'kernel'),
    timeoutMs: 120_000,
  });
  const clientSeconds = (performance.now() - t0) / 1000;
  const cpuBusy = busyPercent(cpu0, cpuTimes());
  const flows = await kernelDnatFlows(ns);
  // What the records wait for after the client: conntrack still holding the flows (their
  // close timeouts, the sweep), or the recorder (entries gone, events not yet in SQLite).
  const timeline = [];
  const sample = setInterval(async () => {
    const at = (performance.now() - t0) / 1000;
    const [entries, recorded] = await Promise.all([
      run('conntrack', ['-C'], { netns: ns.gw, timeoutMs: 5_000 }).then((r) => Number(r.stdout.trim())),
      countEvents(hg.db),
    ]);
    timeline.push({ at: Number(at.toFixed(1)), conntrackEntries: entries, recorded });
  }, 1000);
  const { events } = await kernelRecorded(hg, flows, since - 1000, since).finally(() =>
    clearInterval(sample),
  );
  const seconds = (performance.now() - t0) / 1000;
  return {
    seconds: events >= flows && c.connected === ports ? seconds : null,
    cpuBusy,
    clientSeconds,
    connected: c.connected,
    errors: c.errors,
    flows,
    recorded: events,
    recordedAfterClientSeconds: seconds - clientSeconds,
    timeline,
  };
}

/** honeygate_conntrack_overruns_total, read in the gateway namespace. */
async function conntrackOverruns(hg) {
  const url = `http://127.0.0.1:${hg.admin}/metrics`;
  const res = await run('curl', ['-sf', '--max-time', '5', url], { netns: hg.netns, timeoutMs: 10_000 });
  const text = res.stdout;
  return Number(/^honeygate_conntrack_overruns_total (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
}

/**
 * The real burst: one connection to each of 65,535 ports through one catch-all TPROXY
 * listener, forwarded transparently to nginx (8 ports, round robin), a fresh proxy per run.
 */
async function transparentBurst(layout, dir, ns) {
  const ports = settings.transparentBurstPorts;
  log(
    `transparent burst: one connection to each of ${ports} ports through one TPROXY listener (${layout.id})`,
  );
  const runs = { haproxy: [], honeygate: [] };
  for (let r = 0; r < settings.repeats; r++) {
    for (const t of rotate(['haproxy', 'honeygate'], r)) {
      await flushConntrack(ns);
      const name = `${t}-tp-burst-${r}`;
      const startedAt = Date.now();
      let proxy;
      if (t === 'haproxy') {
        proxy = await startHaproxy(dir, name, {
          cpus: layout.proxyCpus,
          threads: layout.proxyThreads,
          netns: ns.gw,
          log: true,
          listens: [
            {
              name: 'burst',
              bind: `127.0.0.1:${TP_TARGETS.haproxy.tproxyPort}`,
              port: TP_TARGETS.haproxy.tproxyPort,
              transparent: true,
              usesrc: true,
              servers: burstServers(),
            },
          ],
        });
      } else {
        const db = join(dir, `${name}.db`);
        proxy = await launchHoneygate(dir, name, {
          root: HG_ROOT,
          node: settings.node,
          cpus: layout.proxyCpus,
          yaml: honeygateBurstYaml({ db }),
          db,
          admin: PLAN.admin,
          args: ['--manage-firewall'],
          ports: [TP_TARGETS.honeygate.tproxyPort],
          netns: ns.gw,
        });
      }
      try {
        if (t === 'honeygate') await honeygateFirewall(proxy, ns);
        const startupMs = Date.now() - startedAt;
        const res = {
          ...(await burstOnce(t, proxy, { firstPort: 1, ports, cpus: layout.loadCpus, ...tpWrk(ns, t) })),
          startupSeconds: startupMs / 1000,
        };
        runs[t].push(res);
        log(
          `  transparent burst #${r + 1} ${t}: ${res.recorded}/${ports} recorded in ${res.seconds?.toFixed(2) ?? '—'} s ` +
            `(client done in ${res.clientSeconds.toFixed(2)} s, ${res.connected} connected, ${res.errors} errors; ${res.startupSeconds.toFixed(1)} s to start; CPUs busy ${busyText(res.cpuBusy)})`,
        );
      } finally {
        await proxy.process.stop();
      }
    }
  }
  return {
    layout: layout.label,
    ports,
    window: settings.burstWindow,
    servers: burstServers().length,
    variant: 'one catch-all TPROXY listener, forwarded transparently',
    ...figureSummary(runs, (x) => x.seconds ?? Number.NaN, true, { unit: 's' }),
  };
}

main().catch((err) => {
  process.stderr.write(`npm run bench: FAILED: ${err.stack ?? err}\n`);
  process.exit(1);
});
