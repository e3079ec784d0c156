// The configured sinks, opened at start: all of them, or none (a failure closes those
// already open and throws HG_ERR_SINK). Their directories must exist, or be created when
// events.createDirectories says so (config/store-dirs.ts).

import { availableParallelism } from 'node:os';
import { prepareStoreDirs } from '../config/store-dirs.js';
import type { Config } from '../config/types.js';
import { NatsSink } from '../fleet/sink.js';
import { createLogger, type Logger } from '../log.js';
import { nativeAvailable } from '../net/native.js';
import type { Sink } from './event.js';
import { JsonlSink } from './jsonl.js';
import { SqliteSink } from './sqlite.js';
import { ThreadedSqliteSink } from './store-thread.js';

/**
 * Where the store writes (store-thread.ts): on a thread of its own when the process may run on
 * more than one CPU ('on'). Pinned to one, the thread would share that CPU with the loop and
 * hold back the connections that arrive meanwhile; there it runs at idle priority ('idle'),
 * so a waking loop preempts it at once and it writes while the loop sleeps: p99 at 1,000 new
 * connections/s on one core 2.65 → 2.35 ms (median of 12 runs each), the rate unchanged
 * (docs/performance.md). Without the native addon ('off'), the store writes on the loop in
 * slices. HONEYGATE_STORE_THREAD=on|idle|off decides instead.
 */
export function storeThread(): 'on' | 'idle' | 'off' {
  const env = process.env.HONEYGATE_STORE_THREAD;
  if (env === 'on' || env === 'off' || env === 'idle') return env;
  if (availableParallelism() > 1) return 'on';
  return nativeAvailable().ok ? 'idle' : 'off';
}

/**
 * On the loop (HONEYGATE_STORE_THREAD=off, or no addon), a batch's transaction runs in slices
 * of this many ms with the loop free between them (sqlite.ts sliceMs): a connection arriving
 * during a batch waits one slice, not the batch (6-12 ms at 1,000 flows/s on one core). 0.25
 * rather than 1: the p99 at 1,000 new connections/s 3.4 → 2.9 ms, the rate unchanged.
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
      const where = storeThread();
      sinks.push(
        where !== 'off'
          ? new ThreadedSqliteSink(config.events.sqlite, { ...opts, idle: where === 'idle' })
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
