// WAL checkpoints on a thread of their own. SQLite's automatic checkpoint runs inside the
// commit that crosses 1000 WAL pages: it copies 16 MiB into the database file and fsyncs,
// all on the event loop, which stalled a commit for 100-1000 ms on a loaded disk (measured
// while retention deleted rows: docs/events.md). Here the sink's connection turns the
// automatic checkpoint off and this thread runs PASSIVE checkpoints on its own connection:
// a PASSIVE checkpoint takes no lock a writer waits for, so commits on the loop never wait.
//
// The module is also the thread's entry point (workerData.role === 'checkpointer').
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { openDatabase } from './sqlite-driver.js';

// Shared flags: [0] 1 = a checkpoint is running; [1] 1 = stop asked; [2] 1 = stopped.
const RUNNING = 0;
const STOP = 1;
const STOPPED = 2;

interface ThreadData {
  role: 'checkpointer';
  path: string;
  intervalMs: number;
  flags: Int32Array;
}

export class Checkpointer {
  private readonly worker: Worker;
  private readonly flags = new Int32Array(new SharedArrayBuffer(12));
  private failed: Error | null = null;

  /** Starts the thread; `onError` hears of its failure once (the caller turns automatic checkpoints back on). */
  constructor(path: string, intervalMs: number, onError: (err: Error) => void) {
    const data: ThreadData = { role: 'checkpointer', path, intervalMs, flags: this.flags };
    this.worker = new Worker(new URL(import.meta.url), { name: 'hg-checkpoint', workerData: data });
    this.worker.on('error', (err) => {
      if (this.failed) return;
      this.failed = err;
      Atomics.store(this.flags, STOPPED, 1);
      onError(err);
    });
    this.worker.unref(); // close() stops it; it must never keep the process alive
  }

  /**
   * Stops the thread after its current checkpoint (waits at most `waitMs`), so that the
   * caller's final checkpoint finds no other checkpointer. Synchronous, like the sink's close.
   */
  stop(waitMs = 5000): void {
    Atomics.store(this.flags, STOP, 1);
    const deadline = Date.now() + waitMs;
    while (Atomics.load(this.flags, STOPPED) === 0 && Atomics.load(this.flags, RUNNING) === 1) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      Atomics.wait(this.flags, RUNNING, 1, left);
    }
    void this.worker.terminate();
  }
}

function threadMain(data: ThreadData): void {
  const { flags } = data;
  const db = openDatabase(data.path);
  const timer = setInterval(() => {
    if (Atomics.load(flags, STOP) === 1) {
      clearInterval(timer);
      db.close();
      Atomics.store(flags, STOPPED, 1);
      Atomics.notify(flags, RUNNING);
      return;
    }
    Atomics.store(flags, RUNNING, 1);
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } finally {
      Atomics.store(flags, RUNNING, 0);
      Atomics.notify(flags, RUNNING);
    }
  }, data.intervalMs);
}

if (!isMainThread && (workerData as ThreadData | null)?.role === 'checkpointer') {
  threadMain(workerData as ThreadData);
  parentPort?.unref();
}
