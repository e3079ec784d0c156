// The primary process of `run` when the config asks for more than one worker. It forks the
// workers (each a whole Gateway on SO_REUSEPORT sockets), starts a new one when one dies,
// passes signals on as messages, and owns what must exist once: the event files (workers
// send their events here in batches), the admin API (it asks every worker for its figures)
// and the firewall (--manage-firewall). It accepts no flows itself.
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startAdmin } from '../admin/server.js';
import { handleSignals } from '../cli/signals.js';
import { loadConfigFile } from '../config/load.js';
import { sinkPaths } from '../config/store-dirs.js';
import type { Config } from '../config/types.js';
import { Enricher } from '../enrich/mmdb.js';
import { HoneygateError } from '../errors.js';
import type { FlowEvent } from '../events/event.js';
import { Recorder, type RecorderStats } from '../events/recorder.js';
import { unpackEvents } from '../events/row.js';
import { openSinks } from '../events/sinks.js';
import { openJournal, recordRecovered } from '../events/writeahead.js';
import { FirewallWatch } from '../firewall/watch.js';
import { flowEnd } from '../gateway/flow.js';
import type { GatewayStats } from '../gateway/gateway.js';
import { KernelFlows } from '../kernel/conntrack.js';
import { type Logger, logFatal } from '../log.js';
import { dropToUser, eventFiles } from '../privileges/drop.js';
import { type FromWorker, type ToWorker, WORKER_FLAG } from './messages.js';

const BIN = fileURLToPath(new URL('../../../bin/honeygate.js', import.meta.url));
const ASK_TIMEOUT_MS = 2000; // a stats question; a worker that does not answer is left out
const RELOAD_TIMEOUT_MS = 30_000;
const FIRST_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
const HEALTHY_MS = 60_000; // a worker that ran this long before it died starts its backoff afresh

interface Worker {
  index: number;
  child: ChildProcess | null;
  ready: boolean;
  startedAt: number;
  failures: number; // deaths in a row, each within HEALTHY_MS of its start
  restarts: number;
  timer: NodeJS.Timeout | null;
  gone: Promise<void>; // resolves once the process exited and its channel is read to the end
  stats: Extract<FromWorker, { type: 'stats' }> | null; // the last answer
}

export interface WorkerStatus {
  worker: number;
  pid: number | null;
  ready: boolean;
  restarts: number;
  openFlows: number | null;
}

/** The workers of one primary. Their events go to `recorder`. */
export class WorkerPool {
  private readonly workers: Worker[] = [];
  private stopping = false;
  private nextId = 1;
  private readonly replies = new Map<string, (m: FromWorker | null) => void>();

  constructor(
    private readonly path: string,
    count: number,
    private readonly recorder: Recorder,
    private readonly log: Logger,
  ) {
    for (let index = 1; index <= count; index++) {
      this.workers.push({
        index,
        child: null,
        ready: false,
        startedAt: 0,
        failures: 0,
        restarts: 0,
        timer: null,
        gone: Promise.resolve(),
        stats: null,
      });
    }
  }

  /** Forks every worker; resolves once each has bound its sockets. Rejects with the first failure. */
  async start(): Promise<void> {
    await Promise.all(this.workers.map((w) => this.fork(w)));
  }

  /** Resolves when the worker is ready; rejects when it fails or exits first. */
  private fork(w: Worker): Promise<void> {
    const child = fork(BIN, ['run', '-c', this.path, WORKER_FLAG, String(w.index)], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    w.child = child;
    w.ready = false;
    w.stats = null;
    w.startedAt = Date.now();
    let failure: string | null = null;
    let settle: { resolve: () => void; reject: (err: Error) => void } | null = null;
    const started = new Promise<void>((resolve, reject) => {
      settle = { resolve, reject };
    });
    const fail = (why: string) => {
      settle?.reject(new HoneygateError('HG_ERR_WORKER', `worker ${w.index}: ${why}`));
      settle = null;
    };
    child.on('error', (err) => {
      failure ??= err.message;
      fail(err.message);
    });
    child.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'events': {
          let events: FlowEvent[] = [];
          try {
            events = unpackEvents(m.pack);
          } catch (err) {
            // (the worker runs this very code: never seen, but not worth the primary)
            this.log.error({ worker: w.index, err }, 'a batch of events from a worker could not be read');
          }
          for (const e of events) {
            this.recorder.record(e);
            if (e.type === 'flow' && flowEnd.hasSubscribers) flowEnd.publish(e);
          }
          // The worker's start journal settles these flows once the sinks took them.
          const id = m.id;
          void this.recorder.flush().then(() => this.tell(w, { type: 'events-written', id }));
          break;
        }
        case 'ready':
          w.ready = true;
          this.log.info(
            { worker: w.index, workerPid: child.pid },
            w.restarts ? 'worker restarted' : 'worker started',
          );
          settle?.resolve();
          settle = null;
          break;
        case 'failed':
          failure = m.message;
          fail(m.message);
          break;
        case 'stats':
          w.stats = m;
          this.answer(w, m.id, m);
          break;
        case 'reload-bound':
        case 'reloaded':
          this.answer(w, m.id, m);
          break;
        case 'stopped':
          break;
      }
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    // 'disconnect' comes after the last message: the worker's final events are in by then.
    const drained = new Promise<void>((resolve) => child.once('disconnect', () => resolve()));
    w.gone = Promise.all([exited, drained]).then(([{ code, signal }]) => {
      w.child = null;
      w.ready = false;
      for (const [key, reply] of this.replies) {
        if (key.startsWith(`${w.index}:`)) {
          this.replies.delete(key);
          reply(null);
        }
      }
      fail(failure ?? `exited (${signal ?? `code ${code}`}) before it was ready`);
      this.restart(w, child.pid, code, signal);
    });
    return started;
  }

  /** Starts a dead worker again after a backoff that doubles while it keeps dying young. */
  private restart(
    w: Worker,
    pid: number | undefined,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    if (this.stopping) return;
    w.failures = Date.now() - w.startedAt >= HEALTHY_MS ? 0 : w.failures + 1;
    const delay = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** Math.max(0, w.failures - 1));
    w.restarts++;
    this.log.warn(
      { code: 'HG_ERR_WORKER', worker: w.index, workerPid: pid, exitCode: code, signal, restartInMs: delay },
      `worker ${w.index} exited (${signal ?? `code ${code}`}); starting it again in ${delay} ms`,
    );
    w.timer = setTimeout(() => {
      w.timer = null;
      this.fork(w).catch(() => {}); // a failed start exits, and the exit comes back here
    }, delay);
  }

  private live(): Worker[] {
    return this.workers.filter((w) => w.child !== null && w.ready);
  }

  private tell(w: Worker, m: ToWorker): void {
    try {
      w.child?.send(m, (err) => {
        if (err) this.log.debug({ worker: w.index, err }, 'message to worker lost');
      });
    } catch {
      // the channel closed under us: the worker is on its way out and 'gone' deals with it
    }
  }

  /** Sends `m` (with a fresh id) and resolves to the worker's reply carrying that id; null on timeout or exit. */
  private ask(w: Worker, m: ToWorker & { id: number }, timeoutMs: number): Promise<FromWorker | null> {
    const reply = this.expect(w, m.id, timeoutMs);
    this.tell(w, m);
    return reply;
  }

  private expect(w: Worker, id: number, timeoutMs: number): Promise<FromWorker | null> {
    const key = `${w.index}:${id}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.replies.delete(key);
        resolve(null);
      }, timeoutMs);
      this.replies.set(key, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  }

  private answer(w: Worker, id: number, m: FromWorker): void {
    const key = `${w.index}:${id}`;
    const reply = this.replies.get(key);
    this.replies.delete(key);
    reply?.(m);
  }

  /** Asks every worker for its figures (the admin API calls this before it answers). */
  async refresh(): Promise<void> {
    await Promise.all(
      this.live().map((w) => this.ask(w, { type: 'stats', id: this.nextId++ }, ASK_TIMEOUT_MS)),
    );
  }

  /** The workers' gateways as one: flows and refusals summed, a server up when every worker sees it up. */
  gatewayStats(): GatewayStats {
    const all = this.live().flatMap((w) => (w.stats ? [w.stats.gateway] : []));
    const servers = new Map<string, { backend: string; server: string; up: boolean; active: number }>();
    for (const g of all) {
      for (const b of g.backends) {
        for (const s of b.servers) {
          const key = `${b.backend}\n${s.server}`;
          const sum = servers.get(key);
          if (sum) {
            sum.up &&= s.up;
            sum.active += s.active;
          } else servers.set(key, { backend: b.backend, server: s.server, up: s.up, active: s.active });
        }
      }
    }
    const backends = new Map<string, GatewayStats['backends'][number]>();
    for (const s of servers.values()) {
      const b = backends.get(s.backend) ?? { backend: s.backend, servers: [] };
      b.servers.push({ server: s.server, up: s.up, active: s.active });
      backends.set(s.backend, b);
    }
    return {
      openFlows: all.reduce((n, g) => n + g.openFlows, 0),
      refused: all.reduce((n, g) => n + g.refused, 0),
      refusedBy: sumBy(all.map((g) => g.refusedBy ?? {})),
      ...sumRecordings(all),
      listeners: all[0]?.listeners ?? [],
      backends: [...backends.values()],
    };
  }

  /** The primary's recorder (it writes the files) plus what the workers hold or dropped. */
  recorderStats(own: RecorderStats): RecorderStats {
    const all = this.live().flatMap((w) => (w.stats ? [w.stats.recorder] : []));
    return {
      queued: own.queued + all.reduce((n, r) => n + r.queued, 0),
      writing: (own.writing ?? 0) + all.reduce((n, r) => n + (r.writing ?? 0), 0),
      written: own.written,
      dropped: own.dropped + all.reduce((n, r) => n + r.dropped, 0),
      sinkErrors: own.sinkErrors + all.reduce((n, r) => n + r.sinkErrors, 0),
      store: own.store ?? null, // the store is the primary's
      ...(own.scan ? { scan: own.scan } : {}), // so is scan detection
    };
  }

  status(): WorkerStatus[] {
    return this.workers.map((w) => ({
      worker: w.index,
      pid: w.child?.pid ?? null,
      ready: w.ready,
      restarts: w.restarts,
      openFlows: w.ready && w.stats ? w.stats.gateway.openFlows : null,
    }));
  }

  get restarts(): number {
    return this.workers.reduce((n, w) => n + w.restarts, 0);
  }

  get running(): number {
    return this.live().length;
  }

  /**
   * Reloads every running worker from the config file, in two steps like Gateway.reload:
   * all bind their new sockets, then `beforeClosing` runs once (the firewall moves to them),
   * then all close their old ones. Resolves to the workers' errors (none: every one reloaded).
   */
  async reload(beforeClosing: () => Promise<void>): Promise<string[]> {
    const live = this.live();
    const ids = live.map(() => this.nextId++);
    const bound = await Promise.all(
      live.map((w, i) => this.ask(w, { type: 'reload', id: ids[i]! }, RELOAD_TIMEOUT_MS)),
    );
    const errors: string[] = [];
    const waiting: Promise<FromWorker | null>[] = [];
    live.forEach((w, i) => {
      const m = bound[i];
      if (m?.type === 'reload-bound') return;
      errors.push(`worker ${w.index}: ${m?.type === 'reloaded' ? m.error : 'no answer to reload'}`);
    });
    await beforeClosing();
    live.forEach((w, i) => {
      if (bound[i]?.type !== 'reload-bound') return;
      const done = this.expect(w, ids[i]!, RELOAD_TIMEOUT_MS);
      this.tell(w, { type: 'reload-continue', id: ids[i]! });
      waiting.push(
        done.then((m) => {
          if (m?.type === 'reloaded' && m.error) errors.push(`worker ${w.index}: ${m.error}`);
          else if (m === null) errors.push(`worker ${w.index}: no answer to reload`);
          return m;
        }),
      );
    });
    await Promise.all(waiting);
    return errors;
  }

  reopen(): void {
    for (const w of this.live()) this.tell(w, { type: 'reopen' });
  }

  /**
   * Tells every worker to stop (each drains its flows within graceMs and sends its last
   * events), waits for all to exit; one that outlasts graceMs by 15 s is killed.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    for (const w of this.workers) {
      if (w.timer) clearTimeout(w.timer);
      w.timer = null;
      if (w.child) this.tell(w, { type: 'stop' });
    }
    const all = Promise.all(this.workers.map((w) => w.gone));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), graceMs + 15_000);
    });
    if ((await Promise.race([all, late])) === 'late') {
      for (const w of this.workers) {
        if (!w.child) continue;
        this.log.warn(
          { code: 'HG_ERR_WORKER', worker: w.index, workerPid: w.child.pid },
          'worker did not stop: killed',
        );
        w.child.kill('SIGKILL');
      }
      await all;
    }
    clearTimeout(timer);
  }
}

/** Counts by key, summed over the workers. */
function sumBy<K extends string>(all: Partial<Record<K, number>>[]): Partial<Record<K, number>> {
  const sum: Partial<Record<K, number>> = {};
  for (const counts of all) {
    for (const [k, n] of Object.entries(counts) as [K, number][]) sum[k] = (sum[k] ?? 0) + n;
  }
  return sum;
}

/** `run` with workers > 1: the primary's whole life; returns the exit code. */
export async function runPrimary(
  path: string,
  config: Config,
  log: Logger,
  opts: { manageFirewall?: boolean },
): Promise<number> {
  let recorder: Recorder;
  try {
    recorder = new Recorder(openSinks(config, log), {
      queueSize: config.events.queueSize,
      batchMs: config.events.batchMs,
      log,
      scan: config.events.scan ?? null,
    });
    recorder.enricher = Enricher.open(config.events.enrich); // the primary writes the events: it enriches them
  } catch (err) {
    logFatal(log, err);
    return 1;
  }
  const pool = new WorkerPool(path, config.workers, recorder, log);
  const firewall = opts.manageFirewall ? new FirewallWatch(config, log, recorder) : null;
  const kernelFlows = new KernelFlows(log, recorder); // one conntrack subscription per namespace
  let current = config;
  let admin: Awaited<ReturnType<typeof startAdmin>> | null = null;

  let started!: () => void;
  const reload = async () => {
    const loaded = loadConfigFile(path);
    if (!loaded.ok) return log.error({ config: path, errors: loaded.errors }, 'reload rejected');
    let enricher: Enricher | null;
    try {
      enricher = Enricher.open(loaded.config.events.enrich);
    } catch (err) {
      return log.error({ config: path, errors: [(err as Error).message] }, 'reload rejected');
    }
    let firewallError: unknown = null;
    const errors = await pool.reload(async () => {
      try {
        await kernelFlows.settle(); // the old table's refusal counters go with it
        await firewall?.reload(loaded.config);
      } catch (err) {
        firewallError = err;
      }
    });
    if (errors.length) return log.error({ config: path, errors }, 'reload rejected');
    recorder.enricher = enricher;
    if (firewallError) {
      const why = (firewallError as Error).message;
      log.error({ code: 'HG_ERR_FIREWALL' }, `config reloaded, but its firewall rules failed: ${why}`);
    }
    await kernelFlows
      .apply(loaded.config)
      .catch((err: Error) => log.error({ code: 'HG_ERR_FIREWALL' }, err.message));
    log.level = loaded.config.log.level;
    for (const w of loaded.warnings) log.warn({ config: path }, w);
    const kept = (['events', 'admin', 'workers', 'user'] as const).filter((k) => {
      const before = k === 'events' ? { ...current.events, sensor: '', enrich: null } : current[k];
      const after = k === 'events' ? { ...loaded.config.events, sensor: '', enrich: null } : loaded.config[k];
      return JSON.stringify(before) !== JSON.stringify(after);
    });
    if (kept.length)
      log.warn({ config: path, sections: kept }, `changes to ${kept.join(' and ')} take effect on restart`);
    current = {
      ...loaded.config,
      events: current.events,
      admin: current.admin,
      workers: current.workers,
      user: current.user,
    };
    log.info({ config: path, workers: pool.running }, 'config reloaded');
  };
  const { stopped, detach } = handleSignals(
    new Promise<void>((resolve) => {
      started = resolve;
    }),
    reload,
    () => {
      recorder.reopen();
      pool.reopen();
      log.info(current.events.jsonl ? 'event files reopened' : 'event files reopened (none configured)');
    },
    log,
  );

  try {
    // Every journal a killed previous run left (its workers', or a single process's), before
    // any worker starts one of its own.
    await recordRecovered(
      recorder,
      openJournal(config.events, 'primary', log, { recoverAll: true, own: false }).recovered,
      log,
    );
    await pool.start();
    await kernelFlows.apply(config);
    // Rules after the sockets: a diverted flow needs a tproxy socket to land on.
    await firewall?.start();
    if (config.admin) {
      admin = await startAdmin(config.admin, {
        gateway: { stats: () => pool.gatewayStats() },
        recorder: { stats: () => pool.recorderStats(recorder.stats()) },
        workers: { running: () => pool.running, restarts: () => pool.restarts },
        refresh: () => pool.refresh(),
        status: () => ({ workers: pool.status() }),
        store: () => current.events.sqlite,
        log,
      });
    }
    // Last: the workers drop on their own once bound; a worker started again later inherits
    // this process's ambient capabilities.
    dropToUser(config, log, eventFiles(config), path);
  } catch (err) {
    logFatal(log, err);
    await admin?.close();
    await pool.stop(0);
    await firewall?.stop();
    await kernelFlows.stop();
    await recorder.close();
    detach();
    return 1;
  }
  log.info(
    {
      config: path,
      workers: config.workers,
      listeners: config.listeners.length,
      routes: config.routes.length,
      events: sinkPaths(config.events),
      admin: admin?.address ?? 'off',
    },
    'ready',
  );
  started();
  await stopped;
  log.info('stopping');
  await admin?.close();
  await pool.stop(current.limits.graceMs);
  // Rules last: open transparent flows need them for their packets until the grace period ends.
  await kernelFlows.settle(); // the kernel's last refusals, while its table still counts them
  await firewall?.stop();
  await kernelFlows.stop();
  await recorder.close();
  detach();
  log.info({ events: recorder.stats() }, 'stopped');
  return 0;
}

/** The workers' session recording counts together (each worker records its own flows). */
function sumRecordings(all: GatewayStats[]): Pick<GatewayStats, 'recordings'> {
  const rs = all.flatMap((g) => (g.recordings ? [g.recordings] : []));
  if (rs.length === 0) return {};
  const sum = (k: 'files' | 'bytes' | 'active' | 'evicted' | 'skipped') => rs.reduce((n, r) => n + r[k], 0);
  return {
    recordings: {
      files: sum('files'),
      bytes: sum('bytes'),
      active: sum('active'),
      evicted: sum('evicted'),
      skipped: sum('skipped'),
      suspended: rs.some((r) => r.suspended),
    },
  };
}
