// Counting the stored events into a new rollup table without blocking the start: the
// schema step creates the table and records a job (the events up to the newest seq it
// must count); the sink counts every event written after that, as usual; the job counts
// the older ones in short steps on the loop (like retention), each one transaction that
// also records how far it got, so a restart carries on. Until a job is done, the views
// that need its rows answer from the events (src/admin/dashboard-stats.ts pendingJobs).
import type { Logger } from '../log.js';
import { fillSketches, ROLLUP_CHUNK } from './rollup.js';
import type { Database } from './sqlite-driver.js';

/** The jobs: 'rollup' (the counts of ROLLUP_VIEWS_SCHEMA) and 'sketch' (ROLLUP_SKETCH_SCHEMA). */
export type Job = 'rollup' | 'sketch';

/** The table of pending jobs: the next seq to count and the last one (newer ones the sink counted). */
export const BACKFILL_TABLE = `CREATE TABLE IF NOT EXISTS backfill (
     job TEXT PRIMARY KEY,
     next INTEGER NOT NULL,
     last INTEGER NOT NULL
   )`;

/** Records `job` over every stored event (nothing to do in an empty store). In the schema step's transaction. */
export function addJob(db: Database, job: Job): void {
  db.exec(BACKFILL_TABLE);
  db.prepare(
    // Each min() and max() alone: SQLite reads them off the rowid's ends (no scan).
    `INSERT OR REPLACE INTO backfill (job, next, last)
     SELECT @job, (SELECT min(seq) FROM events), (SELECT max(seq) FROM events)
     WHERE (SELECT max(seq) FROM events) IS NOT NULL`,
  ).run({ job });
}

/** The jobs not yet done (none in a store without the table). Works on a read-only connection. */
export function pendingJobs(db: Database): Job[] {
  if (!db.prepare("SELECT 1 AS x FROM sqlite_master WHERE name = 'backfill'").get()) return [];
  return [...db.prepare('SELECT job FROM backfill WHERE next <= last').iterate()].map((r) => r.job as Job);
}

/** Counts the events with seq in [lo, hi] for `job`. */
function count(db: Database, job: Job, lo: number, hi: number): void {
  if (job === 'sketch') fillSketches(db, lo, hi);
  else for (const sql of ROLLUP_CHUNK) db.prepare(sql).run({ lo, hi });
}

/** Runs every pending job to its end, blocking (bulk loads, an upgrade while stopped), `rows` seqs per transaction. */
export function finishJobs(
  db: Database,
  rows = 200_000,
  progress?: (job: Job, next: number, last: number) => void,
): void {
  for (const job of pendingJobs(db)) {
    const row = db.prepare('SELECT next, last FROM backfill WHERE job = @job').get({ job }) as {
      next: number;
      last: number;
    };
    const last = Number(row.last);
    for (let next = Number(row.next); next <= last; next += rows) {
      const hi = Math.min(last, next + rows - 1);
      db.transaction(() => {
        count(db, job, next, hi);
        db.prepare('UPDATE backfill SET next = @next WHERE job = @job').run({ next: hi + 1, job });
      })();
      progress?.(job, hi, last);
    }
    db.prepare('DELETE FROM backfill WHERE job = @job').run({ job });
  }
}

/** How long one step may hold the loop, and the pause after it (a step in ten turns of 100 ms at most). */
const STEP_MS = 20;
const PAUSE_MS = 80;
const MIN_ROWS = 500;
const MAX_ROWS = 200_000;

/** The pending jobs, run in steps of about STEP_MS on the loop until done or stopped. */
export class Backfill {
  private timer: NodeJS.Timeout | null = null;
  private rows = 5_000;
  private stopped = false;
  private readonly started = performance.now();

  constructor(
    private readonly db: Database,
    private readonly path: string,
    private readonly log?: Logger,
    // While true the connection is in the sink's transaction (a sliced write): the step waits.
    private readonly held: () => boolean = () => false,
  ) {}

  /** Starts the steps when a job is pending; resolves nothing, logs the end or a failure. */
  start(): this {
    const jobs = pendingJobs(this.db);
    if (jobs.length === 0) return this;
    this.log?.info(
      { store: this.path, jobs },
      `event store ${this.path}: counting the stored events into the rollup (${jobs.join(', ')}) in the background; the dashboard reads the events until it is done`,
    );
    this.schedule(0);
    return this;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** One step: the next `rows` seqs of the first pending job. True while work is left. */
  step(): boolean {
    const row = this.db
      .prepare('SELECT job, next, last FROM backfill WHERE next <= last ORDER BY job LIMIT 1')
      .get() as { job: Job; next: number; last: number } | undefined;
    if (!row) return false;
    const next = Number(row.next);
    const last = Number(row.last);
    const hi = Math.min(last, next + this.rows - 1);
    const t0 = performance.now();
    this.db.transaction(() => {
      count(this.db, row.job, next, hi);
      if (hi >= last) this.db.prepare('DELETE FROM backfill WHERE job = @job').run({ job: row.job });
      else
        this.db
          .prepare('UPDATE backfill SET next = @next WHERE job = @job')
          .run({ next: hi + 1, job: row.job });
    })();
    const ms = performance.now() - t0;
    // Size the next step after this one's time.
    const scaled = Math.round((this.rows * STEP_MS) / Math.max(ms, 1));
    this.rows = Math.max(MIN_ROWS, Math.min(MAX_ROWS, Math.min(scaled, this.rows * 2)));
    if (hi >= last) {
      const s = ((performance.now() - this.started) / 1000).toFixed(1);
      this.log?.info(
        { store: this.path, job: row.job },
        `event store ${this.path}: the rollup's ${row.job} backfill is done (${s} s)`,
      );
    }
    return true;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.stopped) return;
      if (this.held()) {
        this.schedule(PAUSE_MS);
        return;
      }
      let more: boolean;
      try {
        more = this.step();
      } catch (err) {
        // Busy (another writer) or full: try again later; the job's progress is where it was.
        this.log?.warn(
          { err, store: this.path },
          `event store ${this.path}: rollup backfill step failed, retrying: ${(err as Error).message}`,
        );
        this.schedule(5_000);
        return;
      }
      if (more) this.schedule(PAUSE_MS);
    }, ms);
    this.timer.unref();
  }
}
