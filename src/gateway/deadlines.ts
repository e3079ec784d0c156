// The time limits of pumping flows (idle timeout, maximum duration) and their periodic
// update events, kept by one coarse sweep instead of three timers per flow: a flow holds
// a small record rather than three Timeout objects and their closures, and a chunk costs
// nothing (the sweep sees activity as a change in the flow's byte counters).
//
// A deadline fires between its time and one tick later; the tick is a tenth of the
// shortest limit in use (10 ms to 1 s), so a 5-minute idle timeout is late by at most 1 s.
import type { Config } from '../config/types.js';
import type { CloseReason, FlowEvent } from '../events/event.js';
import type { Recorder } from '../events/recorder.js';
import { Slots } from './live.js';

const MAX_TICK_MS = 1000;
const MIN_TICK_MS = 10;

/**
 * What the sweep needs of a flow (a Flow is one). Named here rather than imported from
 * flow.ts, which would make a cycle: a flow reaches the sweep through its runtime.
 */
export interface Watched {
  readonly closed: boolean;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly runtime: {
    readonly config: Pick<Config, 'limits' | 'events'>;
    readonly recorder: Pick<Recorder, 'record'>;
  };
  /** Brings bytesIn and bytesOut up to date (a relayed flow's are the relay's). */
  syncCounters(): void;
  finish(reason: CloseReason): void;
  toEvent(type: 'update'): FlowEvent;
}

interface Deadline {
  flow: Watched;
  idleMs: number;
  endAt: number; // maximum duration
  updateMs: number;
  nextUpdateAt: number;
  bytes: number; // bytesIn + bytesOut at the last sweep
  activeAt: number; // when they last changed
}

/** One sweep over the flows it watches; its timer runs only while it watches any. */
export class Deadlines {
  private readonly watched = new Slots<Deadline>();
  private timer: NodeJS.Timeout | null = null;
  private tickMs = MAX_TICK_MS;

  /** Watches a flow from now until the returned release is called (flow.defer it). */
  watch(flow: Watched): () => void {
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
    const slot = this.watched.add(d);
    const need = Math.floor(Math.min(limits.idleTimeoutMs, limits.maxDurationMs, updateMs) / 10);
    const tick = Math.max(MIN_TICK_MS, Math.min(MAX_TICK_MS, need));
    if (this.timer === null || tick < this.tickMs) this.start(tick);
    return () => {
      this.watched.remove(slot, d);
      if (this.watched.size === 0 && this.timer !== null) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
  }

  private start(tick: number): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.tickMs = tick;
    this.timer = setInterval(this.sweep, tick);
    this.timer.unref();
  }

  private readonly sweep = (): void => {
    const now = Date.now();
    for (const d of this.watched.values()) {
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
  };
}
