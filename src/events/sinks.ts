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

export function openSinks(config: Config, log?: Logger): Sink[] {
  prepareStoreDirs(config.events);
  const sinks: Sink[] = [];
  try {
    if (config.events.sqlite)
      sinks.push(new SqliteSink(config.events.sqlite, { retention: config.events.retention ?? null, log }));
    if (config.events.jsonl) sinks.push(new JsonlSink(config.events.jsonl));
    // The fleet sink: an outbox on disk, published to NATS JetStream in the background (src/fleet).
    if (config.events.nats) {
      const natsLog = log ?? createLogger(config.log.level, config.log.format);
      sinks.push(
        new NatsSink(config.events.nats, config.events.sensor, natsLog, config.events.createDirectories),
      );
    }
  } catch (err) {
    for (const s of sinks.reverse()) void s.close();
    throw err;
  }
  return sinks;
}
