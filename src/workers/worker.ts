// A worker process (`run -c FILE --worker N`, forked by the primary): one whole Gateway on
// sockets its siblings share (SO_REUSEPORT: the kernel spreads new flows over them). Its
// events go to the primary in the recorder's batches, and the primary alone writes the
// event files, so nothing interleaves and nothing needs a lock.
//
// A worker obeys the primary's messages. A SIGINT, SIGHUP or SIGUSR1 that reaches it (a
// terminal signals the whole process group) is left to the primary, which passes each on;
// SIGTERM stops it as the primary's stop would (and the primary starts a new one).

import { loadConfigFile } from '../config/load.js';
import { HoneygateError } from '../errors.js';
import type { FlowEvent, Sink } from '../events/event.js';
import { Recorder } from '../events/recorder.js';
import { packEvents } from '../events/row.js';
import { openJournal, recordRecovered } from '../events/writeahead.js';
import { Gateway } from '../gateway/gateway.js';
import { createLogger, logFatal } from '../log.js';
import { dropToUser } from '../privileges/drop.js';
import type { FromWorker, ToWorker } from './messages.js';

function send(m: FromWorker): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!process.send || !process.connected) {
      reject(new HoneygateError('HG_ERR_SINK', 'primary: the IPC channel is closed'));
      return;
    }
    process.send(m, undefined, {}, (err) =>
      err ? reject(new HoneygateError('HG_ERR_SINK', `primary: ${err.message}`, { cause: err })) : resolve(),
    );
  });
}

/**
 * The worker's only sink: each batch goes to the primary's recorder, and is written when
 * the primary says its sinks took it (events-written), not when it left the pipe.
 */
class PrimarySink implements Sink {
  readonly name = 'primary';
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  write(events: FlowEvent[]): Promise<void> {
    const id = this.nextId++;
    const written = new Promise<void>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    return send({ type: 'events', pack: packEvents(events), id }).then(
      () => written,
      (err) => {
        this.waiting.delete(id);
        throw err;
      },
    );
  }
  written(id: number): void {
    this.waiting.get(id)?.resolve();
    this.waiting.delete(id);
  }
  /** The primary is gone: no batch in flight will be confirmed. */
  abandon(): void {
    for (const w of this.waiting.values()) w.reject(new HoneygateError('HG_ERR_SINK', 'primary: gone'));
    this.waiting.clear();
  }
  reopen(): void {}
  close(): void {}
}

/** The end of a worker: let go of the channel, which is what keeps the process alive. */
function leave(code: number): number {
  if (process.connected) process.disconnect();
  // Should anything else hold the event loop, do not make the primary wait for its timeout.
  setTimeout(() => process.exit(code), 2000).unref();
  return code;
}

/** Runs until the primary says stop (or goes away); returns the exit code. */
export async function runWorker(path: string, index: number): Promise<number> {
  if (!process.send) {
    process.stderr.write('honeygate run --worker: internal; the primary process starts workers\n');
    return 2;
  }
  const loaded = loadConfigFile(path);
  if (!loaded.ok) {
    await send({ type: 'failed', message: loaded.errors.join('\n'), code: 'HG_ERR_CONFIG' }).catch(() => {});
    return leave(2);
  }
  const config = loaded.config;
  const log = createLogger(config.log.level, config.log.format).child({ worker: index });
  // Its own journal; a previous worker N's (killed while the primary ran on) is recovered
  // here. The primary recovered every journal before it forked the first workers.
  const { journal, recovered } = openJournal(config.events, `w${index}`, log, {
    recoverAll: false,
    own: true,
  });
  const primary = new PrimarySink();
  const recorder = new Recorder([primary], {
    queueSize: config.events.queueSize,
    batchMs: config.events.batchMs,
    log,
    journal,
  });
  const gateway = new Gateway(config, log, recorder, { shared: true });

  let stop!: (code: number) => void;
  const stopped = new Promise<number>((resolve) => {
    stop = resolve;
  });
  const ignore = () => {};
  const onTerm = () => stop(0);
  const onDisconnect = () => {
    log.warn('the primary process is gone: stopping (events not yet sent are lost)');
    primary.abandon();
    stop(1);
  };

  let reloading = Promise.resolve();
  const continues = new Map<number, () => void>();
  const reload = async (id: number) => {
    const next = loadConfigFile(path);
    if (!next.ok) return send({ type: 'reloaded', id, error: next.errors.join('\n') });
    try {
      await gateway.reload(
        next.config,
        () =>
          new Promise<void>((resolve) => {
            continues.set(id, resolve);
            void send({ type: 'reload-bound', id }).catch(() => {});
          }),
      );
    } catch (err) {
      return send({ type: 'reloaded', id, error: (err as Error).message });
    }
    log.level = next.config.log.level;
    return send({ type: 'reloaded', id });
  };
  // From the start: a stop may come while the sockets are still being bound.
  const onMessage = (m: ToWorker) => {
    switch (m.type) {
      case 'stats':
        void send({ type: 'stats', id: m.id, gateway: gateway.stats(), recorder: recorder.stats() }).catch(
          () => {},
        );
        break;
      case 'reload':
        reloading = reloading.then(() => reload(m.id)).catch(() => {});
        break;
      case 'reload-continue':
        continues.get(m.id)?.();
        continues.delete(m.id);
        break;
      case 'reopen':
        recorder.reopen();
        break;
      case 'events-written':
        primary.written(m.id);
        break;
      case 'stop':
        stop(0);
        break;
    }
  };
  process.on('message', onMessage);
  process.on('SIGINT', ignore);
  process.on('SIGHUP', ignore);
  process.on('SIGUSR1', ignore);
  process.on('SIGTERM', onTerm);
  process.on('disconnect', onDisconnect);
  const detach = () => {
    process.off('message', onMessage);
    process.off('disconnect', onDisconnect);
    process.off('SIGTERM', onTerm);
  };

  try {
    await recordRecovered(recorder, recovered, log);
    // Before binding: the kernel lets a socket join a SO_REUSEPORT group only if it was made
    // by the same effective uid, so a worker started again (by the primary, already
    // unprivileged) or a reload's new socket can join only sockets made as `user:`, never
    // root's. CAP_NET_ADMIN and CAP_NET_BIND_SERVICE are all binding needs. The primary holds
    // the event files and warns about root; a worker only drops.
    if (config.user) dropToUser(config, log, []);
    await gateway.start();
  } catch (err) {
    logFatal(log, err);
    const code = err instanceof HoneygateError ? err.code : undefined;
    await send({ type: 'failed', message: (err as Error).message, code }).catch(() => {});
    await gateway.stop();
    await recorder.close();
    detach();
    return leave(1);
  }
  log.info({ listeners: config.listeners.length }, 'worker ready');
  await send({ type: 'ready' }).catch(() => {});

  const code = await stopped;
  await gateway.stop();
  await recorder.close();
  log.info({ events: recorder.stats() }, 'worker stopped');
  await send({ type: 'stopped' }).catch(() => {});
  detach();
  return leave(code);
}
