// Small helpers shared by the benchmark: child processes that die with us, waiting by
// condition, and the statistics every figure uses.
import { spawn, spawnSync } from 'node:child_process';
import { openSync, readdirSync, readFileSync } from 'node:fs';

const children = new Set();

// Whatever happens to the runner, the servers and load generators it started go with it.
process.on('exit', () => {
  for (const child of children) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {}
  }
});

/**
 * The argv that runs cmd pinned to cpus (taskset) inside network namespace netns (ip netns
 * exec). Both exec the command, so its pid is the one spawned.
 */
function wrap(cmd, args, cpus, netns) {
  const inNs = netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, args];
  return cpus === null || cpus === undefined ? inNs : ['taskset', ['-c', cpus, inNs[0], ...inNs[1]]];
}

/**
 * Starts a long-running process (a server) with stdout and stderr in logFile.
 * cpus: a taskset CPU list ("0", "1") or null for no pinning; netns: a network namespace to run in.
 * Returns { pid, proc, exited, stop(), logFile }.
 */
export function startProcess(cmd, args, { cpus = null, netns = null, logFile, env = process.env, cwd } = {}) {
  const out = openSync(logFile, 'a');
  const [file, argv] = wrap(cmd, args, cpus, netns);
  const proc = spawn(file, argv, { stdio: ['ignore', out, out], env, cwd });
  proc.on('error', () => {}); // reported through `exited`
  children.add(proc);
  let code = null;
  const exited = new Promise((resolve) => {
    proc.on('exit', (c, signal) => {
      children.delete(proc);
      code = c ?? signal;
      resolve(code);
    });
  });
  return {
    pid: proc.pid,
    proc,
    logFile,
    exited,
    get exitCode() {
      return code;
    },
    /** SIGTERM, then SIGKILL after graceMs. */
    async stop(graceMs = 5000) {
      if (code !== null) return code;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const c = await exited;
      clearTimeout(timer);
      return c;
    },
  };
}

/** Runs a command to completion; resolves { code, stdout, stderr }. */
export function run(cmd, args, { cpus = null, netns = null, input, env = process.env, timeoutMs = 0 } = {}) {
  const [file, argv] = wrap(cmd, args, cpus, netns);
  return new Promise((resolve, reject) => {
    const proc = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'], env });
    children.add(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
    });
    proc.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
    });
    proc.stdin.on('error', () => {});
    proc.stdin.end(input);
    const timer = timeoutMs > 0 ? setTimeout(() => proc.kill('SIGKILL'), timeoutMs) : null;
    proc.on('error', (err) => {
      children.delete(proc);
      reject(new Error(`${cmd}: ${err.message}`));
    });
    proc.on('close', (code, signal) => {
      children.delete(proc);
      if (timer) clearTimeout(timer);
      resolve({ code: code ?? signal, stdout, stderr });
    });
  });
}

/** Synchronous stdout + stderr of a command (version banners go to either), trimmed; '' if it cannot start. */
export function output(cmd, args) {
  const res = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return `${res.stdout ?? ''}${res.stderr ?? ''}`.trim();
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls check() every intervalMs until it returns a truthy value; throws after timeoutMs. */
export async function waitFor(what, check, { timeoutMs = 15_000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** The set of TCP ports listening in this network namespace, or in netns (from `ss`). */
export async function listeningPorts(netns = null) {
  const { stdout } = await run('ss', ['-Hltn'], { netns });
  const ports = new Set();
  for (const line of stdout.split('\n')) {
    const local = line.trim().split(/\s+/)[3];
    if (local) ports.add(Number(local.slice(local.lastIndexOf(':') + 1)));
  }
  return ports;
}

/** Waits until every port listens (in server.netns if set); fails early when the server exits. */
export async function waitListening(server, ports, timeoutMs = 30_000) {
  await waitFor(
    `${server.name} to listen on ${ports.length === 1 ? `port ${ports[0]}` : `${ports.length} ports`}`,
    async () => {
      if (server.process.exitCode !== null) {
        throw new Error(
          `${server.name} exited (${server.process.exitCode}):\n${tail(server.process.logFile)}`,
        );
      }
      const open = await listeningPorts(server.netns);
      return ports.every((p) => open.has(p));
    },
    { timeoutMs, intervalMs: 100 },
  );
}

/** The last lines of a log file, for error messages. */
export function tail(file, lines = 15) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Resident memory of a process in KiB (VmRSS from /proc/PID/status). */
export function rssKiB(pid) {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

const TICKS = Number(output('getconf', ['CLK_TCK'])) || 100;

/**
 * CPU seconds a process and its children (honeygate's workers) have used so far, all
 * threads, user + system (/proc/PID/stat). Children that exited in between are not counted.
 */
export function cpuSeconds(pid) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 0; // gone
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let total = (Number(fields[11]) + Number(fields[12])) / TICKS; // utime, stime (fields 14 and 15)
  for (const child of childPids(pid)) total += cpuSeconds(child);
  return total;
}

/** Busy and total jiffies per CPU so far (/proc/stat), for busyPercent(). */
export function cpuTimes() {
  const times = {};
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)/.exec(line);
    if (!m) continue;
    const v = m[2].split(' ').map(Number); // user nice system idle iowait irq softirq steal
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    times[m[1]] = { busy: total - v[3] - v[4], total };
  }
  return times;
}

/** Percent busy per CPU between two cpuTimes() readings, e.g. { 0: 98, 1: 95 }. */
export function busyPercent(before, after) {
  const out = {};
  for (const [cpu, a] of Object.entries(after)) {
    const b = before[cpu];
    if (b && a.total > b.total) out[cpu] = Math.round((100 * (a.busy - b.busy)) / (a.total - b.total));
  }
  return out;
}

function childPids(pid) {
  const pids = [];
  let tasks = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return pids;
  }
  for (const tid of tasks) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) pids.push(...text.split(/\s+/).map(Number));
    } catch {}
  }
  return pids;
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Best and median of a list of runs; higher is better unless lowerIsBetter. */
export function summarize(values, lowerIsBetter = false) {
  const ok = values.filter((v) => Number.isFinite(v));
  if (ok.length === 0) return { best: null, median: null };
  return { best: lowerIsBetter ? Math.min(...ok) : Math.max(...ok), median: median(ok) };
}

/** The p-th percentile (0-100) of sorted numbers, nearest rank. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** The order of targets for repeat r: rotated, so no target is always first or last. */
export function rotate(list, r) {
  const k = r % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}
