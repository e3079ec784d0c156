// Load generators: wrk for rates and throughput, bench/clients.mjs for fixed-rate latency,
// idle flows and the port burst.
import { execFileSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './util.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLIENTS = join(HERE, '..', 'clients.mjs');

/**
 * One wrk run against host:port (from inside netns when given). Returns the counts from
 * wrk-report.lua plus rate (requests/s) and mbps (MB/s, 10^6 bytes).
 */
export async function wrk(
  port,
  path,
  { seconds, connections, threads, close = false, cpus, host = '127.0.0.1', netns = null },
) {
  const args = [
    '-t',
    String(threads),
    '-c',
    String(connections),
    '-d',
    `${seconds}s`,
    '--timeout',
    '5s',
    '-s',
    join(HERE, 'wrk-report.lua'),
  ];
  if (close) args.push('-H', 'Connection: close');
  args.push(`http://${host}:${port}${path}`);
  const res = await run('wrk', args, { cpus, netns, timeoutMs: (seconds + 30) * 1000 });
  const line = res.stdout.split('\n').find((l) => l.startsWith('WRKJSON '));
  if (res.code !== 0 || !line) throw new Error(`wrk exited ${res.code}: ${res.stderr || res.stdout}`);
  const r = JSON.parse(line.slice('WRKJSON '.length));
  const secs = r.durationUs / 1e6;
  const errors = r.connect + r.read + r.write + r.timeout;
  return { ...r, errors, rate: r.requests / secs, mbps: r.bytes / secs / 1e6 };
}

/** Runs a clients.mjs mode to completion (against host, from inside netns) and returns its JSON line. */
export async function client(node, mode, args, { cpus, timeoutMs, host = '127.0.0.1', netns = null }) {
  const env = { ...process.env, BENCH_CLIENT_HOST: host };
  const res = await run(node, [CLIENTS, mode, ...args.map(String)], { cpus, netns, env, timeoutMs });
  const line = res.stdout.trim().split('\n').pop();
  if (res.code !== 0 || !line) throw new Error(`clients.mjs ${mode} exited ${res.code}: ${res.stderr}`);
  return JSON.parse(line);
}

/**
 * Opens count idle flows through port in child processes of at most perProcess sockets
 * each (a process may hold 20,000 open files). Resolves { ready, errors, close() } once
 * every connection has had its response (why: the errors by code). sources: a source address per child process
 * (127.x: one address has only the ephemeral range of ports).
 */
export async function openIdle(node, port, path, count, { cpus, perProcess = 9000, sources = [] }) {
  const procs = [];
  const results = [];
  for (let left = count; left > 0; left -= perProcess) {
    const n = Math.min(left, perProcess);
    const argv = [CLIENTS, 'idle', String(port), path, String(n)];
    const source = sources[procs.length];
    const opts = {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: source ? { ...process.env, BENCH_CLIENT_SOURCE: source } : process.env,
    };
    const proc =
      cpus === null ? spawn(node, argv, opts) : spawn('taskset', ['-c', cpus, node, ...argv], opts);
    proc.stdin.on('error', () => {});
    procs.push(proc);
    results.push(
      new Promise((resolve, reject) => {
        let out = '';
        proc.stdout.setEncoding('utf8').on('data', (d) => {
          out += d;
          if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]));
        });
        proc.on('error', reject);
        proc.on('exit', (code) => reject(new Error(`idle client exited ${code} before it was ready`)));
      }),
    );
  }
  const close = async () => {
    await Promise.all(
      procs.map(
        (p) =>
          new Promise((resolve) => {
            if (p.exitCode !== null) return resolve();
            const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
            p.on('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            p.stdin.end();
          }),
      ),
    );
  };
  try {
    const all = await Promise.all(results);
    const why = {};
    for (const r of all)
      for (const [code, n] of Object.entries(r.why ?? {})) why[code] = (why[code] ?? 0) + n;
    return {
      ready: all.reduce((a, r) => a + r.ready, 0),
      errors: all.reduce((a, r) => a + r.errors, 0),
      why,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Compiles bench/conn-load.c (new connections from many source addresses) into dir. */
export function buildConnLoad(root, dir) {
  const binary = join(dir, 'conn-load');
  execFileSync('cc', ['-O2', '-o', binary, join(root, 'bench', 'conn-load.c')], { stdio: 'inherit' });
  return binary;
}

/**
 * One conn-load run: `connections` in flight, each a new connection with one request
 * (Connection: close), from `sources` distinct 127.1.x.y addresses (1: the kernel's choice,
 * as wrk). Returns its counts plus rate (connections/s).
 */
export async function connLoad(
  binary,
  port,
  path,
  { seconds, connections, sources, cpus, host = '127.0.0.1' },
) {
  const args = [host, port, path, connections, seconds, sources].map(String);
  const res = await run(binary, args, { cpus, timeoutMs: (seconds + 30) * 1000 });
  const line = res.stdout.trim().split('\n').pop();
  if (res.code !== 0 || !line) throw new Error(`conn-load exited ${res.code}: ${res.stderr}`);
  const r = JSON.parse(line);
  return { ...r, rate: r.requests / (r.durationUs / 1e6) };
}
