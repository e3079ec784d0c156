// The time limits of pumping flows (idle timeout, maximum duration) and their periodic
// update events, kept by one coarse sweep instead of three timers per flow: a flow holds
// a small record rather than three Timeout objects and their closures, and a chunk costs
// nothing (the sweep sees activity as a change in the flow's byte counters).
//
// A deadline fires between its time and one tick later; the tick is a tenth of the
// shortest limit in use (10 ms to 1 s), so a 5-minute idle timeout is late by at most 1 s.
import type { Flow } from './flow.js';
import { Slots } from './live.js';

const MAX_TICK_MS = 1000;
const MIN_TICK_MS = 10;

interface Deadline {
  flow: Flow;
  idleMs: number;
  endAt: number; // maximum duration
  updateMs: number;
  nextUpdateAt: number;
  bytes: number; // bytesIn + bytesOut at the last sweep
  activeAt: number; // when they last changed
}

const watched = new Slots<Deadline>();
let timer: NodeJS.Timeout | null = null;
let tickMs = MAX_TICK_MS;

/** Watches a flow from now until the returned release is called (flow.defer it). */
export function watchDeadlines(flow: Flow): () => void {
  const limits = flow.runtime.config.limits;
  const updateMs = flow.runtime.config.events.updateIntervalMs;
  const now = Date.now();
  const d: Deadline = {
    flow,
    idleMs: limits.idleTimeoutMs,
    endAt: now + limits.maxDurationMs,
    updateMs,
    nextUpdateAt: now + updateMs,
    bytes: flow.bytesIn + flow.bytesOut,
    activeAt: now,
  };
  const slot = watched.add(d);
  const need = Math.floor(Math.min(limits.idleTimeoutMs, limits.maxDurationMs, updateMs) / 10);
  const tick = Math.max(MIN_TICK_MS, Math.min(MAX_TICK_MS, need));
  if (timer === null || tick < tickMs) start(tick);
  return () => {
    watched.remove(slot, d);
    if (watched.size === 0 && timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  };
}

function start(tick: number): void {
  if (timer !== null) clearInterval(timer);
  tickMs = tick;
  timer = setInterval(sweep, tick);
  timer.unref();
}

function sweep(): void {
  const now = Date.now();
  for (const d of watched.values()) {
    const flow = d.flow;
    if (flow.closed) continue;
    flow.syncCounters();
    const bytes = flow.bytesIn + flow.bytesOut;
    if (bytes !== d.bytes) {
      d.bytes = bytes;
      d.activeAt = now;
    }
    if (now >= d.endAt) flow.finish('max-duration');
    else if (now - d.activeAt >= d.idleMs) flow.finish('idle-timeout');
    else if (now >= d.nextUpdateAt) {
      d.nextUpdateAt = now + d.updateMs;
      flow.runtime.recorder.record(flow.toEvent('update'));
    }
  }
}
