#!/usr/bin/env node
// What holds a loop for long stretches, from a V8 .cpuprofile (node --cpu-prof, best with
// --cpu-prof-interval 100): the runs of consecutive samples outside "(idle)" (the loop waiting
// in epoll), their lengths, and what the long ones ran. A connection that arrives during a run
// waits for its end, so the long runs are the latency tail's candidates.
//
//   node bench/lib/busy-runs.mjs FILE.cpuprofile [ROOT] [MIN_MS=1]
//
// Prints the runs' length distribution, then for the runs of at least MIN_MS: which task
// started each (its outermost frame below the root), and the functions with the most self time.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

export function busyRuns(prof, { root = process.cwd(), minMs = 1 } = {}) {
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (node) => {
    const cf = node.callFrame;
    const url = cf.url.startsWith('file://') ? relative(root, new URL(cf.url).pathname) : cf.url;
    return `${cf.functionName || '(anonymous)'}${url ? ` ${url}:${cf.lineNumber + 1}` : ''}`;
  };
  // The outermost frame below "(root)": the task the loop ran (a timer, an I/O callback, GC...).
  const taskOf = new Map();
  const task = (id) => {
    let t = taskOf.get(id);
    if (t !== undefined) return t;
    let at = id;
    while (parent.has(at) && parent.get(at) !== prof.nodes[0].id) at = parent.get(at);
    t = name(byId.get(at));
    taskOf.set(id, t);
    return t;
  };
  const runs = [];
  let current = null;
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = (prof.timeDeltas[i + 1] ?? 0) / 1000; // this sample's share: the time to the next one
    const node = byId.get(prof.samples[i]);
    if (node.callFrame.functionName === '(idle)') {
      if (current) runs.push(current);
      current = null;
      continue;
    }
    current ??= { ms: 0, samples: [] };
    current.ms += dt;
    current.samples.push([prof.samples[i], dt]);
  }
  if (current) runs.push(current);
  const lengths = runs.map((r) => r.ms).sort((a, b) => a - b);
  const total = lengths.reduce((a, b) => a + b, 0);
  const over = (ms) => lengths.filter((l) => l >= ms).length;
  const long = runs.filter((r) => r.ms >= minMs);
  const tasks = new Map();
  const self = new Map();
  for (const r of long) {
    const first = task(r.samples[0][0]);
    tasks.set(first, (tasks.get(first) ?? 0) + r.ms);
    for (const [id, dt] of r.samples) {
      const k = name(byId.get(id));
      self.set(k, (self.get(k) ?? 0) + dt);
    }
  }
  const top = (m, n) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, ms]) => ({ ms: Number(ms.toFixed(1)), what: k }));
  return {
    spanMs: Number(((prof.endTime - prof.startTime) / 1000).toFixed(0)),
    runs: runs.length,
    busyMs: Number(total.toFixed(1)),
    p50Ms: lengths[Math.floor(lengths.length / 2)] ?? null,
    p99Ms: lengths[Math.floor(lengths.length * 0.99)] ?? null,
    maxMs: lengths.at(-1) ?? null,
    over: { '0.5ms': over(0.5), '1ms': over(1), '2ms': over(2), '5ms': over(5) },
    longMs: Number(long.reduce((a, r) => a + r.ms, 0).toFixed(1)),
    longTasks: top(tasks, 10),
    longSelf: top(self, 20),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, root, minMs] = process.argv.slice(2);
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  console.log(JSON.stringify(busyRuns(prof, { root, minMs: Number(minMs ?? 1) }), null, 2));
}
