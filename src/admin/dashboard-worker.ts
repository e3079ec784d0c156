// The dashboard's aggregates off the main thread. SQLite's drivers are synchronous: a view
// over a week of a large store takes seconds, and on the main thread every flow of the
// gateway would wait for it. One worker thread runs the view queries one at a time; a
// query past its time is ended by ending the worker (SQLite cannot be interrupted from
// another thread), and the next request starts a new one.
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { openStore } from '../events/query.js';
import { runView, type ViewRequest, warmTopLists } from './dashboard-stats.js';

type Job = { id: number; dbPath: string; req: ViewRequest } | { warm: string; now: number };
type Reply = { id: number; ok: true; body: unknown } | { id: number; ok: false; message: string };

/** A view that failed: `status` 400 for bad input or an unreadable store, 503 when it took too long. */
export class ViewError extends Error {
  constructor(
    message: string,
    readonly status: 400 | 503,
  ) {
    super(message);
  }
}

export interface ViewRunner {
  /** Resolves to the view's body; rejects with a ViewError. */
  run(dbPath: string, req: ViewRequest): Promise<unknown>;
  /** Reads ahead the top lists of the day and week ending `now` (warmTopLists), between requests. */
  warm(dbPath: string, now: number): void;
  close(): void;
}

/** A runner with one worker thread, started on first use; a query longer than `timeoutMs` fails. */
export function createViewRunner(timeoutMs = 30_000): ViewRunner {
  let worker: Worker | null = null;
  let next = 1;
  const pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();

  const failAll = (err: Error) => {
    for (const [id, p] of pending) {
      clearTimeout(p.timer);
      pending.delete(id);
      p.reject(err);
    }
  };
  const start = (): Worker => {
    const w = new Worker(new URL(import.meta.url), { name: 'hg-dashboard' });
    w.unref(); // the dashboard never keeps the gateway alive
    w.on('message', (m: Reply) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.body);
      else p.reject(new ViewError(m.message, 400));
    });
    w.on('error', (err) => {
      if (worker === w) worker = null;
      failAll(new ViewError(`dashboard query worker failed: ${err.message}`, 503));
    });
    w.on('exit', () => {
      if (worker === w) worker = null;
      failAll(new ViewError('dashboard query worker stopped', 503));
    });
    return w;
  };

  return {
    run(dbPath, req) {
      worker ??= start();
      const w = worker;
      const id = next++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(
            new ViewError(
              `the ${req.view} view over ${req.range ?? '24h'} took more than ${timeoutMs / 1000} s: try a shorter range`,
              503,
            ),
          );
          // The queries behind it fail too; the next request gets a fresh worker.
          if (worker === w) worker = null;
          void w.terminate();
        }, timeoutMs);
        pending.set(id, { resolve, reject, timer });
        w.postMessage({ id, dbPath, req } satisfies Job);
      });
    },
    warm(dbPath, now) {
      worker ??= start();
      worker.postMessage({ warm: dbPath, now } satisfies Job);
    },
    close() {
      failAll(new ViewError('admin server closing', 503));
      void worker?.terminate();
      worker = null;
    },
  };
}

/** How often a store's top lists are read ahead (warmTopLists), and for how long at a time. */
const WARM_EVERY_MS = 60_000;
const WARM_SLICE_MS = 20;
const warmedAt = new Map<string, number>();
let warming = false;

/**
 * Reads ahead what the top lists of the day and week ending `now` need from the store at `dbPath`,
 * in slices between requests (a request waits for one bucket's read at most), so that a
 * week's top sources answer from kept buckets rather than seconds of flows.
 */
function warm(dbPath: string, now: number): void {
  const at = Date.now();
  if (warming || at - (warmedAt.get(dbPath) ?? Number.NEGATIVE_INFINITY) < WARM_EVERY_MS) return;
  warming = true;
  warmedAt.set(dbPath, at);
  let db: ReturnType<typeof openStore> | null = null;
  let steps: Generator<void, void> | null = null;
  const stop = () => {
    db?.close();
    warming = false;
  };
  const slice = () => {
    try {
      if (!db) {
        db = openStore(dbPath);
        db.pragma('mmap_size = 1073741824');
        steps = warmTopLists(db, now);
      }
      const end = Date.now() + WARM_SLICE_MS;
      while (Date.now() < end) {
        if (steps!.next().done) return stop();
      }
      setImmediate(slice);
    } catch {
      stop(); // the store went or cannot be read: the views say so when asked
    }
  };
  setImmediate(slice);
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  port.on('message', (job: Job) => {
    if ('warm' in job) return warm(job.warm, job.now);
    let reply: Reply;
    try {
      reply = { id: job.id, ok: true, body: runView(job.dbPath, job.req) };
    } catch (err) {
      reply = { id: job.id, ok: false, message: (err as Error).message };
    }
    port.postMessage(reply);
    if (reply.ok) warm(job.dbPath, job.req.now);
  });
}
