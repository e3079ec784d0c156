// The configured sinks, opened at start: all of them, or none (a failure closes those
// already open and throws HG_ERR_SINK). Their directories must exist, or be created when
// events.createDirectories says so (config/store-dirs.ts).

import { availableParallelism } from 'node:os';
import { prepareStoreDirs } from '../config/store-dirs.js';
import type { Config } from '../config/types.js';
import { NatsSink } from '../fleet/sink.js';
import { createLogger, type Logger } from '../log.js';
import type { Sink } from './event.js';
import { JsonlSink } from './jsonl.js';
import { SqliteSink } from './sqlite.js';
import { ThreadedSqliteSink } from './store-thread.js';

/**
 * Whether the store writes on a thread of its own (store-thread.ts), off the event loop:
 * when the process may run on more than one CPU. Pinned to one, the thread only shares
 * that CPU and costs the rate (one core, quiet runs: 0.55x HAProxy's new connections/s
 * with it, 0.74x without; docs/performance.md). HONEYGATE_STORE_THREAD=on|off decides.
 */
export function storeThread(): boolean {
  const env = process.env.HONEYGATE_STORE_THREAD;
  if (env === 'on' || env === 'off') return env === 'on';
  return availableParallelism() > 1;
}

/**
 * On the loop (no store thread), a batch's transaction runs in slices of this many ms with
 * the loop free between them (sqlite.ts sliceMs): a connection arriving during a batch waits
 * one slice, not the batch (6-12 ms at 1,000 flows/s on one core). 0.25 rather than 1: the
 * p99 at 1,000 new connections/s 3.4 → 2.9 ms, the rate unchanged (docs/performance.md).
 */
export const LOOP_SLICE_MS = 0.25;

export function openSinks(config: Config, log?: Logger): Sink[] {
  prepareStoreDirs(config.events);
  const sinks: Sink[] = [];
  try {
    // The fleet sink first: a kill between two sinks' writes then leaves a batch in the outbox
    // but not in the store, and the next start records those flows from the start journal as
    // `crash` under the same ids, which the stream and the collector drop as repeats. The other
    // order would lose the batch from the fleet for good.
    if (config.events.nats) {
      const natsLog = log ?? createLogger(config.log.level, config.log.format);
      sinks.push(
        new NatsSink(
          config.events.nats,
          config.events.sensor,
          natsLog,
          config.events.createDirectories,
          // Directories it makes as root belong to the account run drops to.
          process.geteuid?.() === 0 ? config.user : null,
        ),
      );
    }
    if (config.events.sqlite) {
      const opts = { retention: config.events.retention ?? null, log };
      sinks.push(
        storeThread()
          ? new ThreadedSqliteSink(config.events.sqlite, opts)
          : new SqliteSink(config.events.sqlite, { ...opts, sliceMs: LOOP_SLICE_MS }),
      );
    }
    if (config.events.jsonl) sinks.push(new JsonlSink(config.events.jsonl));
  } catch (err) {
    for (const s of sinks.reverse()) void s.close();
    throw err;
  }
  return sinks;
}
