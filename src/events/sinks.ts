// The configured sinks, opened at start: all of them, or none (a failure closes those
// already open and throws HG_ERR_SINK). Their directories must exist, or be created when
// events.createDirectories says so (config/store-dirs.ts).
import { prepareStoreDirs } from '../config/store-dirs.js';
import type { Config } from '../config/types.js';
import { NatsSink } from '../fleet/sink.js';
import { createLogger, type Logger } from '../log.js';
import type { Sink } from './event.js';
import { JsonlSink } from './jsonl.js';
import { SqliteSink } from './sqlite.js';
import { ThreadedSqliteSink } from './store-thread.js';

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
      // The store writes on a thread of its own, off the event loop (store-thread.ts);
      // HONEYGATE_STORE_THREAD=off writes on the loop, as before (measurements).
      const Store = process.env.HONEYGATE_STORE_THREAD === 'off' ? SqliteSink : ThreadedSqliteSink;
      sinks.push(new Store(config.events.sqlite, { retention: config.events.retention ?? null, log }));
    }
    if (config.events.jsonl) sinks.push(new JsonlSink(config.events.jsonl));
  } catch (err) {
    for (const s of sinks.reverse()) void s.close();
    throw err;
  }
  return sinks;
}
