// The SQLite sink on a thread of its own (what `run` opens for events.sqlite). A batch's
// transaction (the events rows and the rollup's upserts, ~10-20 us of CPU a row) ran on the
// event loop and held back every connection that arrived meanwhile: the latency tail at a
// fixed connection rate (docs/performance.md). Here the loop only clones the batch into a
// message (a worker's events go as their place in the pack they came in, which is transferred
// whole: row.ts packEvents); the thread runs the very same SqliteSink (sqlite.ts: retries of a busy or full
// store, `lost`, withoutRecorded, retention in time-boxed steps, the checkpoint thread) and
// answers when the transaction committed, so write() resolves only once the rows are in the
// store (the start journal settles a flow after that). Errors come back as HG_ERR_SINK with
// the thread's message. If the thread dies, the batches it held fail with HG_ERR_SINK and are
// counted in `lost`; the next write starts a new thread.
//
// The store is opened synchronously (the loop waits on a shared flag while the thread opens
// it and brings its schema up to date), so a store that cannot be opened fails the start
// with the same error as before, and openSinks stays all-or-nothing.
//
// The module is also the thread's entry point (workerData.role === 'store').
import { readFileSync } from 'node:fs';
import {
  isMainThread,
  MessageChannel,
  type MessagePort,
  parentPort,
  receiveMessageOnPort,
  Worker,
  workerData,
} from 'node:worker_threads';
import type { Retention } from '../config/types.js';
import { type ErrorCode, HoneygateError } from '../errors.js';
import type { Logger } from '../log.js';
import { idleThread } from '../net/native.js';
import type { FlowEvent, Sink } from './event.js';
import type { RetentionStats } from './retention.js';
import { packedOf, unpackRows, valuesToEvent } from './row.js';
import { SqliteSink, type SqliteSinkOptions } from './sqlite.js';

/** How long the thread may take to start running (not to open the store: a schema upgrade takes minutes). */
const START_MS = 30_000;
/** Stands for an event's first bytes while its batch is cloned (they go apart). */
const EMPTY = Buffer.alloc(0);
/** How often the thread sends retention's stats when they changed. */
const STATS_MS = 1000;

// flags[0]: 0 = nothing yet, 1 = the thread runs, 2 = the store is open (or failed): its answer is on the port.
// flags[1]: answers sent, for catchUp to wait on.
const STARTED = 1;
const OPENED = 2;
const ANSWERS = 1;

interface ThreadData {
  role: 'store';
  path: string;
  busyTimeoutMs?: number;
  retention: Retention | null;
  log: boolean; // send the sink's log lines to the loop's logger
  idle: boolean; // run at idle priority
  flags: Int32Array;
  port: MessagePort;
}

/**
 * A write carries the events without their first bytes (a Buffer is cloned with its whole
 * backing store: 8 KiB of Buffer's pool, or a socket read's 64 KiB, for a few bytes): those
 * travel in `bytes`, one transferred block, event i's at ends[i - 1]..ends[i]; -1: left in the event.
 */
type Request = Write | { id: number; op: 'trim' | 'close' };

/**
 * A batch: `order` has two numbers per event, in the batch's order: -1 and its place in
 * `events`, or its pack's place in `packs` and its row there (row.ts unpackEvents); `geo`:
 * what events.enrich found for events of packs.
 */
interface Write {
  id: number;
  op: 'write';
  events: FlowEvent[];
  bytes: Uint8Array;
  ends: Int32Array;
  order: Int32Array;
  packs: Uint8Array[];
  geo: [number, NonNullable<FlowEvent['geo']>][];
}

/** What the thread sends: an answer to a request, a log line, retention's stats, or the outcome of the open. */
interface Message {
  id?: number;
  error?: { code: ErrorCode | null; message: string };
  lost?: number; // the thread's sink's lost count
  kept?: number; // events in its retry buffer
  stats?: RetentionStats | null;
  log?: 'info' | 'warn' | 'error';
  obj?: Record<string, unknown>;
  msg?: string;
  open?: boolean;
  tid?: number; // with open: the thread's id, when it runs at idle priority (0: it does not)
}

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
  events: number;
}

export interface ThreadedSinkOptions extends SqliteSinkOptions {
  // The thread at idle priority (native idleThread): it writes when the loop is idle, and a
  // connection that arrives meanwhile preempts it at once instead of waiting for a slice.
  // For a process on one CPU, where the thread would otherwise compete with the loop.
  idle?: boolean;
}

export class ThreadedSqliteSink implements Sink {
  readonly name = 'sqlite';
  readonly path: string;
  private readonly opts: ThreadedSinkOptions;
  private worker: Worker | null = null;
  private port: MessagePort | null = null;
  private flags = new Int32Array(new SharedArrayBuffer(8));
  private tid = 0; // the thread's id while it runs at idle priority
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private lostBefore = 0; // lost by threads that died
  private threadLost = 0;
  private kept = 0;
  private retention: RetentionStats | null = null;
  private failure: string | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;

  /** Opens or creates the store at `path` on a new thread and waits until it is ready. Throws HG_ERR_SINK. */
  constructor(path: string, opts: ThreadedSinkOptions = {}) {
    this.path = path;
    this.opts = opts;
    this.start();
  }

  /** Events given up: the retry buffer was full, or the thread died with them. */
  get lost(): number {
    return this.lostBefore + this.threadLost;
  }

  /**
   * Hands the batch to the thread; resolves when its transaction committed, rejects with
   * HG_ERR_SINK as SqliteSink.write throws (busy or full: the rows are kept for the next batch).
   */
  write(events: FlowEvent[]): Promise<void> {
    if (this.closed) throw new HoneygateError('HG_ERR_SINK', `sqlite: ${this.path} is closed`);
    if (!this.worker) this.start(); // the last one died: its error was reported with its batches
    // Events read from a worker's pack go as their row's place in it (the pack is transferred
    // once); the others are cloned.
    const n = events.length;
    const order = new Int32Array(2 * n);
    const plain: FlowEvent[] = [];
    const packs: Uint8Array[] = [];
    const packNo = new Map<Uint8Array, number>();
    const geo: Write['geo'] = [];
    for (let i = 0; i < n; i++) {
      const e = events[i]!;
      const packed = packedOf(e);
      if (packed === undefined) {
        order[2 * i] = -1;
        order[2 * i + 1] = plain.length;
        plain.push(e);
        continue;
      }
      let k = packNo.get(packed.pack);
      if (k === undefined) {
        k = packs.length;
        packs.push(packed.pack);
        packNo.set(packed.pack, k);
      }
      order[2 * i] = k;
      order[2 * i + 1] = packed.index;
      if (e.geo) geo.push([i, e.geo]); // events.enrich, in the primary
    }
    const held: Buffer[] = new Array(plain.length);
    const ends = new Int32Array(plain.length);
    let total = 0;
    for (const e of plain) if (e.firstBytes instanceof Uint8Array) total += e.firstBytes.length;
    const bytes = new Uint8Array(total);
    let end = 0;
    for (let i = 0; i < plain.length; i++) {
      const e = plain[i]!;
      const b = e.firstBytes;
      if (b instanceof Uint8Array) {
        bytes.set(b, end);
        end += b.length;
        ends[i] = end;
        held[i] = b;
        e.firstBytes = EMPTY; // for the clone only: put back below
      } else ends[i] = -1;
    }
    // Copies, so that the packs stay readable here and each copy is one block to transfer.
    const blocks = packs.map((p) => new Uint8Array(p));
    try {
      return this.request({ id: 0, op: 'write', events: plain, bytes, ends, order, packs: blocks, geo }, n, [
        bytes.buffer,
        ends.buffer,
        order.buffer,
        ...blocks.map((b) => b.buffer as ArrayBuffer),
      ]);
    } finally {
      // (ends went with the message: held says which events to give their bytes back.)
      for (let i = 0; i < plain.length; i++) if (held[i] !== undefined) plain[i]!.firstBytes = held[i]!;
    }
  }

  /**
   * At idle priority the thread runs only while the loop sleeps, so a loop that never does (a
   * flood on one CPU) would starve it: the queue would fill and retention stall. The recorder
   * calls this on each tick: while the thread is runnable (it wants the CPU the loop holds,
   * not the disk or a lock), the loop sleeps, at most maxMs. True if a write was answered.
   */
  catchUp(maxMs: number): boolean {
    if (this.tid === 0 || !this.port) return false;
    const before = this.pending.size;
    const deadline = performance.now() + maxMs;
    for (;;) {
      const answers = Atomics.load(this.flags, ANSWERS);
      this.takeAnswers();
      if (!runnable(this.tid) || performance.now() >= deadline) break;
      Atomics.wait(this.flags, ANSWERS, answers, 1);
    }
    this.takeAnswers();
    return this.pending.size < before;
  }

  /** Rows deleted by retention and the store's size (as the thread last sent them); null without retention. */
  stats(): RetentionStats | null {
    return this.retention;
  }

  /** Runs a retention pass now and resolves when the bounds hold (tests, benchmarks). */
  trim(): Promise<void> {
    if (this.closed || !this.worker) return Promise.resolve();
    return this.request({ id: 0, op: 'trim' }, 0);
  }

  /** Nothing to do: SQLite keeps the file open by inode and logrotate must not move it. */
  reopen(): void {}

  /** Writes what the thread still holds, checkpoints, closes the store and ends the thread. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    const worker = this.worker;
    this.closing = worker
      ? this.request({ id: 0, op: 'close' }, 0).finally(() => {
          this.worker = null;
          this.port?.close();
          void worker.terminate();
        })
      : Promise.resolve();
    return this.closing;
  }

  private request(req: Request, events: number, transfer: ArrayBuffer[] = []): Promise<void> {
    const id = this.nextId++;
    req.id = id;
    return new Promise<void>((resolve, reject) => {
      try {
        this.worker!.postMessage(req, transfer);
      } catch (err) {
        // A value that cannot be cloned: the batch never left the loop.
        throw new HoneygateError('HG_ERR_SINK', `sqlite: ${this.path}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      this.pending.set(id, { resolve, reject, events });
      // Waiting for an answer keeps the process alive (a shutdown's last batch); an idle thread does not.
      if (this.pending.size === 1) this.port!.ref();
    });
  }

  private start(): void {
    const flags = new Int32Array(new SharedArrayBuffer(8));
    const { port1, port2 } = new MessageChannel();
    const data: ThreadData = {
      role: 'store',
      path: this.path,
      busyTimeoutMs: this.opts.busyTimeoutMs,
      retention: this.opts.retention ?? null,
      log: this.opts.log !== undefined,
      idle: this.opts.idle === true,
      flags,
      port: port2,
    };
    let worker: Worker;
    try {
      worker = new Worker(new URL(import.meta.url), {
        name: 'hg-store',
        workerData: data,
        transferList: [port2],
      });
    } catch (err) {
      port1.close();
      throw new HoneygateError(
        'HG_ERR_SINK',
        `sqlite: ${this.path}: cannot start the store thread: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    // The thread's start is bounded; the open is not (a schema upgrade of a large store takes minutes).
    const deadline = Date.now() + START_MS;
    while (Atomics.load(flags, 0) < STARTED && Date.now() < deadline) Atomics.wait(flags, 0, 0, 100);
    if (Atomics.load(flags, 0) >= STARTED)
      while (Atomics.load(flags, 0) < OPENED) Atomics.wait(flags, 0, STARTED, 1000);
    let opened: Message | null = null;
    for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) {
      const msg = m.message as Message;
      if (msg.open !== undefined) opened = msg;
      else this.onMessage(msg);
    }
    if (!opened?.open) {
      void worker.terminate();
      port1.close();
      if (opened?.error) throw threadError(opened.error);
      throw new HoneygateError(
        'HG_ERR_SINK',
        `sqlite: ${this.path}: the store thread did not start in ${START_MS / 1000} s`,
      );
    }
    this.retention = opened.stats ?? null;
    this.tid = opened.tid ?? 0;
    this.flags = flags;
    this.failure = null;
    this.threadLost = 0;
    this.kept = 0;
    this.worker = worker;
    this.port = port1;
    port1.on('message', (msg: Message) => this.onMessage(msg));
    port1.unref();
    worker.unref();
    worker.on('error', (err) => {
      this.failure = err.message;
    });
    worker.on('exit', (code) => this.onExit(worker, code));
  }

  private takeAnswers(): void {
    for (let m = receiveMessageOnPort(this.port!); m; m = receiveMessageOnPort(this.port!))
      this.onMessage(m.message as Message);
  }

  private onMessage(msg: Message): void {
    if (msg.log) {
      try {
        this.opts.log?.[msg.log](msg.obj ?? {}, msg.msg ?? '');
      } catch {
        // a broken logger must not lose an answer
      }
      return;
    }
    if (msg.stats !== undefined) this.retention = msg.stats;
    if (msg.lost !== undefined) this.threadLost = msg.lost;
    if (msg.kept !== undefined) this.kept = msg.kept;
    if (msg.id === undefined) return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (this.pending.size === 0) this.port?.unref();
    if (msg.error) p.reject(threadError(msg.error));
    else p.resolve();
  }

  /** The thread ended: expected after close(); otherwise its batches (and retries) are lost, and said so. */
  private onExit(worker: Worker, code: number): void {
    if (worker !== this.worker) return;
    this.worker = null;
    this.tid = 0;
    // Answers it sent before dying are still in the port.
    this.takeAnswers();
    this.port?.close();
    let events = 0;
    for (const p of this.pending.values()) events += p.events;
    const lost = events + this.kept;
    this.lostBefore += this.threadLost + lost;
    this.threadLost = 0;
    this.kept = 0;
    const why = this.failure ?? `exit code ${code}`;
    const err = new HoneygateError(
      'HG_ERR_SINK',
      `sqlite: ${this.path}: the store thread stopped (${why}): ${lost} events not written`,
    );
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
    if (pending.length === 0 && !this.closed && this.opts.log) {
      this.opts.log.warn({ err }, err.message);
    }
  }
}

/** Whether the thread is running or waiting for a CPU (state R), not sleeping on I/O or a lock. */
function runnable(tid: number): boolean {
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'latin1');
    // pid (comm) state ...: comm may hold spaces and parentheses, so after the last ')'.
    return stat.charCodeAt(stat.lastIndexOf(')') + 2) === 82; // 'R'
  } catch {
    return false; // the thread is gone
  }
}

/** The thread's error as the loop's: same code and message. */
function threadError(e: { code: ErrorCode | null; message: string }): Error {
  const err = new HoneygateError('HG_ERR_SINK');
  err.message = e.code ? e.message : `${err.message}: ${e.message}`;
  return err;
}

function errorOf(err: unknown): { code: ErrorCode | null; message: string } {
  return {
    code: err instanceof HoneygateError ? err.code : null,
    message: err instanceof Error ? err.message : String(err),
  };
}

/** A logger that sends its lines to the loop (the sink logs with info and warn; errors go as messages). */
function threadLogger(port: MessagePort): Logger {
  const line =
    (level: 'info' | 'warn' | 'error') =>
    (obj: Record<string, unknown> | string, msg?: string): void => {
      const fields: Record<string, unknown> = {};
      if (typeof obj === 'string') msg = obj;
      else
        for (const [k, v] of Object.entries(obj ?? {}))
          fields[k] = v instanceof Error ? { type: v.name, message: v.message, stack: v.stack } : v;
      port.postMessage({ log: level, obj: fields, msg: msg ?? '' } satisfies Message);
    };
  const log = { info: line('info'), warn: line('warn'), error: line('error'), debug() {}, trace() {} };
  return log as unknown as Logger;
}

function threadMain(data: ThreadData): void {
  const { flags, port } = data;
  const signal = (state: number) => {
    Atomics.store(flags, 0, state);
    Atomics.notify(flags, 0);
  };
  signal(STARTED);
  // However the thread ends, the loop waiting for the open must not wait forever.
  process.on('exit', () => signal(OPENED));
  let sink: SqliteSink;
  try {
    sink = new SqliteSink(data.path, {
      busyTimeoutMs: data.busyTimeoutMs,
      retention: data.retention,
      log: data.log ? threadLogger(port) : undefined,
    });
  } catch (err) {
    port.postMessage({ open: false, error: errorOf(err) } satisfies Message);
    signal(OPENED);
    port.close();
    return;
  }
  let tid = 0;
  if (data.idle) {
    try {
      tid = idleThread();
    } catch (err) {
      port.postMessage({
        log: 'warn',
        obj: { err: (err as Error).message },
        msg: 'the store thread runs at normal priority: it could not take idle priority',
      } satisfies Message);
    }
  }
  port.postMessage({ open: true, stats: sink.stats(), tid } satisfies Message);
  signal(OPENED);

  let sent = JSON.stringify(sink.stats());
  const sendStats = () => {
    const stats = sink.stats();
    const json = JSON.stringify(stats);
    if (json === sent) return;
    sent = json;
    port.postMessage({ stats } satisfies Message);
  };
  const timer = setInterval(sendStats, STATS_MS);
  timer.unref();

  const answer = (id: number, err?: unknown) => {
    const msg: Message = { id, lost: sink.lost, kept: sink.kept };
    if (err !== undefined) msg.error = errorOf(err);
    port.postMessage(msg);
    Atomics.add(flags, ANSWERS, 1);
    Atomics.notify(flags, ANSWERS);
  };
  parentPort!.on('message', (req: Request) => {
    if (req.op === 'write') {
      const { events: plain, bytes, ends, order } = req;
      let start = 0;
      for (let i = 0; i < plain.length; i++) {
        const end = ends[i]!;
        if (end === -1) continue;
        plain[i]!.firstBytes = Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start);
        start = end;
      }
      try {
        const rows = req.packs.map(unpackRows);
        const events: FlowEvent[] = new Array(order.length / 2);
        for (let i = 0; i < events.length; i++) {
          const k = order[2 * i]!;
          const j = order[2 * i + 1]!;
          events[i] = k === -1 ? plain[j]! : valuesToEvent(rows[k]![j]!);
        }
        for (const [i, geo] of req.geo) events[i]!.geo = geo;
        sink.write(events);
        answer(req.id);
      } catch (err) {
        answer(req.id, err);
      }
    } else if (req.op === 'trim') {
      sink.trim().then(
        () => {
          sendStats();
          answer(req.id);
        },
        (err) => answer(req.id, err),
      );
    } else {
      clearInterval(timer);
      try {
        sink.close();
        answer(req.id);
      } catch (err) {
        answer(req.id, err);
      }
      parentPort!.removeAllListeners('message');
    }
  });
}

if (!isMainThread && (workerData as ThreadData | null)?.role === 'store') {
  threadMain(workerData as ThreadData);
}
