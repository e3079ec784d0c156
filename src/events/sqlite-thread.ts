// The SQLite sink on a thread of its own (worker_threads), so the gateway's event loop
// never waits for an insert: it only hands the batch over (a structured clone, ~1 µs an
// event, against ~8 µs for the insert itself). The thread runs the same SqliteSink, so
// batches, transactions, the retry of busy or full batches and the error messages are
// exactly those of the in-process sink; the recorder still awaits each batch before the
// next and close() returns once the thread has written everything and closed the file.
import { Worker } from 'node:worker_threads';
import { HoneygateError } from '../errors.js';
import type { FlowEvent, Sink } from './event.js';
import type { SqliteSinkOptions } from './sqlite.js';

/** Messages from the thread (sqlite-worker.ts). */
export type FromThread =
  | { type: 'ready' }
  | { type: 'done'; id: number; error?: string }
  | { type: 'closed'; error?: string };

/** Messages to the thread. */
export type ToThread = { type: 'write'; id: number; events: FlowEvent[] } | { type: 'close' };

const THREAD = new URL('./sqlite-worker.js', import.meta.url);

export class ThreadedSqliteSink implements Sink {
  readonly name = 'sqlite';
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private closing: Promise<void> | null = null;
  private onClosed: ((error?: string) => void) | null = null;
  private exited: string | null = null; // why the thread is gone, once it is

  private constructor(
    readonly path: string,
    private readonly worker: Worker,
  ) {
    worker.on('message', (m: FromThread) => this.onMessage(m));
    worker.on('error', (err) => this.gone(`sqlite: writer thread failed: ${err.message}`));
    worker.on('exit', (code) => this.gone(`sqlite: writer thread exited (${code})`));
  }

  /** Starts the thread and opens the store there; rejects with the sink's own HG_ERR_SINK. */
  static open(path: string, opts: SqliteSinkOptions = {}): Promise<ThreadedSqliteSink> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(THREAD, { workerData: { path, opts } });
      const fail = (message: string) => {
        worker.removeAllListeners();
        worker.on('error', () => {});
        void worker.terminate();
        reject(new HoneygateError('HG_ERR_SINK', message));
      };
      worker.once('message', (m: FromThread | { type: 'error'; message: string }) => {
        if (m.type === 'ready') {
          worker.removeAllListeners();
          resolve(new ThreadedSqliteSink(path, worker));
        } else fail(m.type === 'error' ? m.message : `sqlite: unexpected ${m.type} from the writer thread`);
      });
      worker.once('error', (err) => fail(`sqlite: cannot start the writer thread: ${err.message}`));
      worker.once('exit', (code) => fail(`sqlite: the writer thread exited (${code}) while opening ${path}`));
    });
  }

  write(events: FlowEvent[]): Promise<void> {
    if (this.exited) return Promise.reject(new HoneygateError('HG_ERR_SINK', this.exited));
    if (this.closing)
      return Promise.reject(new HoneygateError('HG_ERR_SINK', `sqlite: ${this.path} is closed`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'write', id, events } satisfies ToThread);
    });
  }

  /** Nothing to do: SQLite keeps the file open by inode. */
  reopen(): void {}

  /** Waits for the batches in flight, closes the store (WAL checkpoint) and ends the thread. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve, reject) => {
      if (this.exited) return resolve();
      this.onClosed = (error) => {
        void this.worker.terminate();
        if (error) reject(new HoneygateError('HG_ERR_SINK', error));
        else resolve();
      };
      this.worker.postMessage({ type: 'close' } satisfies ToThread);
    });
    return this.closing;
  }

  private onMessage(m: FromThread): void {
    if (m.type === 'done') {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(new HoneygateError('HG_ERR_SINK', m.error));
      else p?.resolve();
    } else if (m.type === 'closed') {
      const done = this.onClosed;
      this.onClosed = null;
      done?.(m.error);
    }
  }

  /** The thread died (a bug, or out of memory): batches in flight and later ones fail. */
  private gone(why: string): void {
    if (this.exited) return;
    this.exited = why;
    for (const p of this.pending.values()) p.reject(new HoneygateError('HG_ERR_SINK', why));
    this.pending.clear();
    const done = this.onClosed;
    this.onClosed = null;
    done?.(why);
  }
}
