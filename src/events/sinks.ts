// The configured sinks, opened at start: all of them, or none (a failure closes those
// already open and throws HG_ERR_SINK). Their directories must exist, or be created when
// events.createDirectories says so (config/store-dirs.ts).

import { availableParallelism } from 'node:os';
import { prepareStoreDirs } from '../config/store-dirs.js';
import type { Config } from '../config/types.js';
import { NatsSink } from '../fleet/sink.js';
import { createLogger, type Logger } from '../log.js';
import { canLeaveIdle } from '../net/native.js';
import type { Sink } from './event.js';
import { JsonlSink } from './jsonl.js';
import { SqliteSink } from './sqlite.js';
import { ThreadedSqliteSink } from './store-thread.js';

/**
 * Where the store writes. 'idle': on a thread of its own in SCHED_IDLE, which runs while the
 * loop waits and yields to it at once, put back to normal only while it falls behind
 * (store-thread.ts): a batch never delays a connection, on one CPU or many. It needs a way
 * back from SCHED_IDLE for as long as it runs (native canLeaveIdle(): RLIMIT_NICE, or
 * CAP_SYS_NICE kept). Without it: 'thread' on more than one CPU; 'loop' on one, where a thread at
 * normal priority only shares that CPU and costs the rate (one core, quiet runs: 0.55x
 * HAProxy's new connections/s with it, 0.74x without; docs/performance.md).
 * HONEYGATE_STORE_THREAD=idle|on|off decides instead.
 */
export function storeMode(config: Pick<Config, 'user'>): 'idle' | 'thread' | 'loop' {
  const env = process.env.HONEYGATE_STORE_THREAD;
  if (env === 'on' || env === 'off') return env === 'on' ? 'thread' : 'loop';
  // Capabilities are gone after run drops to user: (privileges/drop.ts).
  const idle = canLeaveIdle(!(process.geteuid?.() === 0 && config.user));
  if (idle) return 'idle';
  if (env === 'idle') return 'thread';
  return availableParallelism() > 1 ? 'thread' : 'loop';
}

/**
 * On the loop (no store thread), a batch's transaction runs in slices of this many ms with
 * the loop free between them (sqlite.ts sliceMs): a connection arriving during a batch waits
 * one slice, not the batch (6-12 ms at 1,000 flows/s on one core; docs/performance.md).
 */
export const LOOP_SLICE_MS = 1;

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
      const mode = storeMode(config);
      sinks.push(
        mode === 'loop'
          ? new SqliteSink(config.events.sqlite, { ...opts, sliceMs: LOOP_SLICE_MS })
          : new ThreadedSqliteSink(config.events.sqlite, { ...opts, idle: mode === 'idle' }),
      );
    }
    if (config.events.jsonl) sinks.push(new JsonlSink(config.events.jsonl));
  } catch (err) {
    for (const s of sinks.reverse()) void s.close();
    throw err;
  }
  return sinks;
}
