#!/usr/bin/env node
// Load clients that wrk cannot be: each runs as its own process (pinned like wrk) and
// prints one JSON line with its result.
//
//   node bench/clients.mjs latency PORT PATH RATE SECONDS   new connections at a fixed rate (open loop)
//   node bench/clients.mjs idle PORT PATH COUNT             COUNT keep-alive connections, one request each, then idle
//   node bench/clients.mjs burst FIRST_PORT COUNT WINDOW    one connection to each of COUNT ports, WINDOW at a time
//
// They connect to 127.0.0.1, or to BENCH_CLIENT_HOST (the transparent figures aim at addresses
// the gateway namespace catches); idle binds its sockets to BENCH_CLIENT_SOURCE when set.
import net from 'node:net';
import { performance } from 'node:perf_hooks';

const HOST = process.env.BENCH_CLIENT_HOST || '127.0.0.1';
const SOURCE = process.env.BENCH_CLIENT_SOURCE || undefined;
const [mode, ...args] = process.argv.slice(2);

const request = (path, close) =>
  `GET ${path} HTTP/1.1\r\nHost: bench\r\n${close ? 'Connection: close\r\n' : ''}\r\n`;

/** Calls done() once a whole HTTP response (headers + Content-Length bytes) has arrived. */
function onResponse(socket, done) {
  let head = '';
  let need = -1;
  let got = 0;
  socket.on('data', (chunk) => {
    if (need < 0) {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      need = Number(/content-length:\s*(\d+)/i.exec(head.slice(0, end))?.[1] ?? 0);
      got = head.length - end - 4;
    } else {
      got += chunk.length;
    }
    if (got >= need) {
      need = Number.POSITIVE_INFINITY; // only once
      done();
    }
  });
}

function sortedPercentiles(values) {
  const s = Float64Array.from(values).sort();
  const at = (p) =>
    s.length ? s[Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length))) - 1] : null;
  return { p50Ms: at(50), p90Ms: at(90), p99Ms: at(99), maxMs: s.length ? s[s.length - 1] : null };
}

/**
 * Open loop: connection i starts at start + i/rate whatever happened to the ones before
 * (so a slow response does not delay the next request). Latency: from connect() to the
 * last byte of the response. The timer's own lateness (maxLagMs) is the client's, not the
 * proxy's, so it is reported apart and not counted.
 */
async function latency(port, path, rate, seconds) {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const req = request(path, true);
  const times = [];
  let errors = 0;
  let finished = 0;
  let maxLag = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const all = new Promise((resolve) => {
    const fire = () => {
      const t0 = performance.now();
      const socket = net.connect({ host: HOST, port });
      let counted = false;
      const finish = (ok) => {
        if (counted) return;
        counted = true;
        if (ok) times.push(performance.now() - t0);
        else errors++;
        if (++finished === total) resolve();
      };
      socket.on('error', () => finish(false));
      socket.on('close', () => finish(false)); // no-op when the response was complete
      socket.setNoDelay(true);
      // A connection that never completes counts as an error rather than stalling the run.
      socket.setTimeout(10_000, () => socket.destroy());
      socket.on('connect', () => socket.write(req));
      onResponse(socket, () => finish(true));
      socket.on('end', () => socket.end());
    };
    let i = 0;
    const tick = () => {
      const now = performance.now();
      while (i < total && start + i * interval <= now) {
        maxLag = Math.max(maxLag, now - (start + i * interval));
        fire();
        i++;
      }
      if (i < total) setTimeout(tick, Math.max(0, start + i * interval - performance.now()));
    };
    tick();
  });
  await all;
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    sent: total,
    ok: times.length,
    errors,
    rate: total / elapsed,
    maxLagMs: maxLag,
    cpuMs: (cpu.user + cpu.system) / 1000, // this client's, for the CPU per connection of a path

    ...sortedPercentiles(times),
  };
}

/** COUNT connections, each served one keep-alive request, then left open until stdin closes. */
async function idle(port, path, count) {
  const window = 256; // in flight while opening: keeps the accept queues short
  const req = request(path, false);
  const sockets = [];
  let errors = 0;
  const why = {}; // errors by code (ECONNRESET, ...; "closed": closed before the response)
  let next = 0;
  await new Promise((resolve) => {
    let done = 0;
    const openOne = () => {
      if (next >= count) return;
      next++;
      const socket = net.connect({ host: HOST, port, localAddress: SOURCE });
      sockets.push(socket);
      let settled = false;
      const settle = (ok, code) => {
        if (settled) return;
        settled = true;
        if (!ok) {
          errors++;
          why[code] = (why[code] ?? 0) + 1;
        }
        if (++done === count) resolve();
        else openOne();
      };
      socket.on('error', (err) => settle(false, err.code ?? 'error'));
      socket.on('close', () => settle(false, 'closed'));
      socket.on('connect', () => socket.write(req));
      onResponse(socket, () => settle(true));
    };
    for (let i = 0; i < Math.min(window, count); i++) openOne();
  });
  const open = sockets.filter((s) => !s.destroyed).length;
  process.stdout.write(`${JSON.stringify({ ready: open, errors, why })}\n`);
  // Hold the flows until the runner has measured and closes our stdin.
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve).on('close', resolve));
  for (const s of sockets) s.destroy();
  return null;
}

/** One connection to each port (connect, then close our side), WINDOW at a time. */
async function burst(firstPort, count, window) {
  const start = performance.now();
  let connected = 0;
  let errors = 0;
  let next = 0;
  await new Promise((resolve) => {
    let done = 0;
    const openOne = () => {
      if (next >= count) return;
      const port = firstPort + next++;
      const socket = net.connect({ host: HOST, port });
      let settled = false;
      const settle = () => {
        if (settled) return;
        settled = true;
        if (++done === count) resolve();
        else openOne();
      };
      socket.on('error', () => {
        errors++;
        settle();
      });
      socket.on('connect', () => {
        connected++;
        socket.end();
      });
      socket.on('close', settle);
      socket.resume();
    };
    for (let i = 0; i < Math.min(window, count); i++) openOne();
  });
  return { ms: performance.now() - start, connected, errors };
}

const modes = {
  latency: () => latency(Number(args[0]), args[1], Number(args[2]), Number(args[3])),
  idle: () => idle(Number(args[0]), args[1], Number(args[2])),
  burst: () => burst(Number(args[0]), Number(args[1]), Number(args[2])),
};
if (!modes[mode]) {
  process.stderr.write('Usage: node bench/clients.mjs latency|idle|burst ARGS (see the top of this file)\n');
  process.exit(2);
}
const result = await modes[mode]();
if (result) process.stdout.write(`${JSON.stringify(result)}\n`);
