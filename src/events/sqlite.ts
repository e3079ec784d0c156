// The embedded event store: one SQLite file, written in batches by the recorder and read
// by `honeygate events` (query.ts) while the gateway runs (WAL lets both happen at once).
// Updates of a long flow are kept as their own rows next to the final 'flow' row, all
// under the flow's id, so a flow's history stays visible.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Retention } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import type { Logger } from '../log.js';
import { addJob, BACKFILL_TABLE, Backfill, pendingJobs } from './backfill.js';
import { Checkpointer } from './checkpointer.js';
import type { FlowEvent, Sink } from './event.js';
import { type RetentionStats, StoreRetention } from './retention.js';
import {
  ROLLUP_FOLD_SCHEMA,
  ROLLUP_REFUSED_SCHEMA,
  ROLLUP_SCHEMA,
  ROLLUP_SKETCH_SCHEMA,
  ROLLUP_VIEWS_SCHEMA,
  rollupSteps,
} from './rollup.js';
import { COLUMNS, eventValues } from './row.js';
import { type Database, openDatabase, type Statement } from './sqlite-driver.js';
import { withoutRecorded } from './writeahead.js';

/** PRAGMA application_id of a honeygate event store ("HGev"), so we never write into someone else's file. */
export const APPLICATION_ID = 0x48476576;

// Schema steps; step i brings user_version from i to i + 1. Append new steps (e.g.
// ALTER TABLE events ADD COLUMN ...), never edit shipped ones.
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE events (
     seq INTEGER PRIMARY KEY,
     id TEXT NOT NULL,
     type TEXT NOT NULL,
     opened_at INTEGER NOT NULL,
     closed_at INTEGER,
     sensor TEXT NOT NULL,
     listener TEXT NOT NULL,
     src_ip TEXT NOT NULL,
     src_port INTEGER NOT NULL,
     dst_ip TEXT NOT NULL,
     dst_port INTEGER NOT NULL,
     peer_ip TEXT,
     peer_port INTEGER,
     proxy_header TEXT,
     route TEXT,
     action TEXT,
     backend TEXT,
     server TEXT,
     source_mode TEXT,
     bytes_in INTEGER NOT NULL,
     bytes_out INTEGER NOT NULL,
     duration_ms INTEGER NOT NULL,
     close_reason TEXT,
     first_bytes BLOB NOT NULL,
     protocol TEXT,
     protocol_fields TEXT,
     count INTEGER NOT NULL,
     detail TEXT
   );
   CREATE INDEX events_id ON events (id);
   CREATE INDEX events_opened_at ON events (opened_at);
   CREATE INDEX events_src_ip ON events (src_ip);
   CREATE INDEX events_dst_port ON events (dst_port);`,
  // events.enrich: the source's country and AS (src/enrich), for `events --country/--asn`.
  `ALTER TABLE events ADD COLUMN src_country TEXT;
   ALTER TABLE events ADD COLUMN src_asn INTEGER;
   ALTER TABLE events ADD COLUMN src_as_org TEXT;
   CREATE INDEX events_src_country ON events (src_country) WHERE src_country IS NOT NULL;
   CREATE INDEX events_src_asn ON events (src_asn) WHERE src_asn IS NOT NULL;`,
  // The destinations of rejected tallies and scan events (src/scan), as JSON.
  `ALTER TABLE events ADD COLUMN targets TEXT;
   ALTER TABLE events ADD COLUMN scan TEXT;`,
  // Queries at scale: each filter of \`honeygate events\` with the time order it is read in,
  // and the hourly and daily counts of \`honeygate stats\` (rollup.ts), filled from the
  // events already stored. On a store of 10 million events this step takes minutes, once
  // (docs/performance.md).
  `DROP INDEX events_src_ip;
   DROP INDEX events_dst_port;
   CREATE INDEX events_src_ip ON events (src_ip, opened_at);
   CREATE INDEX events_dst_port ON events (dst_port, opened_at);
   CREATE INDEX events_type ON events (type, opened_at);
   CREATE INDEX events_route ON events (route, opened_at);
   CREATE INDEX events_action ON events (action, opened_at);
   CREATE INDEX events_sensor ON events (sensor, opened_at);
   ${ROLLUP_SCHEMA}`,
  // UDP flows (src/gateway/udp): null transport is tcp.
  `ALTER TABLE events ADD COLUMN transport TEXT;
   ALTER TABLE events ADD COLUMN udp TEXT;`,
  // The session recording's id (src/record), for `honeygate replay` and `pcap`.
  'ALTER TABLE events ADD COLUMN recording TEXT;',
  // The dashboard's views from the rollup (src/admin/dashboard-stats.ts): minute rows and
  // the dimensions they group by (rollup.ts DIM_SPANS), counted from the stored events.
  ROLLUP_VIEWS_SCHEMA,
  // The refusals view's top sources from the rollup (rollup.ts DIM_SPANS rsrc).
  ROLLUP_REFUSED_SCHEMA,
  // The distinct sources per bucket (rollup.ts SKETCH_SPANS), counted from the stored
  // events by a backfill job (backfill.ts) after the start.
  ROLLUP_SKETCH_SCHEMA,
  // The daily source rows summed from the hourly ones once an hour is over (rollup.ts
  // foldSteps), not upserted per event.
  ROLLUP_FOLD_SCHEMA,
];

/** How the store is set up before its schema, in this order (the benchmark's recording floor takes them too). */
export const STORE_PRAGMAS = [
  // Takes effect only on a new file (before WAL and the first table): 16 KiB pages make an
  // insert cheaper than 4 KiB ones (fewer page splits and WAL frames).
  'page_size = 16384',
  // Also only on a new file, and after page_size (set first, it left 4 KiB pages): freed
  // pages can be given back in steps (events.retention, retention.ts). Costs one
  // pointer-map page per ~3,000 pages, and nothing without deletes.
  'auto_vacuum = INCREMENTAL',
  'journal_mode = WAL',
  'synchronous = NORMAL',
] as const;

/** The insert of one events row, its values in COLUMNS order. */
export const INSERT = `INSERT INTO events (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map(() => '?').join(', ')})`;

export interface SqliteSinkOptions {
  busyTimeoutMs?: number; // how long a write waits for a reader's checkpoint lock
  retention?: Retention | null; // events.retention: delete the oldest rows beyond an age or size
  log?: Logger; // retention's warnings
  // On the event loop (no store thread): write() runs a batch's transaction in slices of
  // about this many ms and lets the loop run between them, so connections arriving meanwhile
  // wait one slice, not the whole batch. write() then returns a promise. Unset: in one go.
  sliceMs?: number;
}

/** How often the checkpoint thread folds the WAL into the store (with retention). */
const CHECKPOINT_MS = 1000;
/** The WAL is cut back to this after a checkpoint (with retention; SQLite keeps its largest size otherwise). */
const WAL_LIMIT = 64 * 1024 * 1024;

/** Errors that pass: another writer's lock, a full disk, an I/O hiccup. Others would recur. */
const TRANSIENT = /busy|locked|full|disk|I\/O|ioerr/i;
const MAX_RETRY = 100_000;

export class SqliteSink implements Sink {
  readonly name = 'sqlite';
  readonly path: string;
  private readonly db: Database;
  private readonly insertBatch: (events: FlowEvent[]) => void;
  private readonly batchSteps: (events: FlowEvent[]) => Generator<void>;
  private readonly holdsFlow: Statement;
  private closed = false;
  private retry: FlowEvent[] = [];
  private readonly retention: StoreRetention | null = null;
  private checkpointer: Checkpointer | null = null;
  private backfill: Backfill | null = null;
  private readonly sliceMs: number | null;
  private writing: Promise<void> | null = null; // a sliced write in flight
  /** Events given up because the retry buffer was full. */
  lost = 0;

  /** Opens or creates the store at `path` and brings its schema up to date. Throws HG_ERR_SINK. */
  constructor(path: string, opts: SqliteSinkOptions = {}) {
    this.path = path;
    this.sliceMs = opts.sliceMs && opts.sliceMs > 0 ? opts.sliceMs : null;
    try {
      mkdirSync(dirname(path), { recursive: true });
      this.db = openDatabase(path);
    } catch (err) {
      throw new HoneygateError('HG_ERR_SINK', `sqlite: cannot open ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      for (const pragma of STORE_PRAGMAS) this.db.pragma(pragma);
      this.db.pragma(`busy_timeout = ${Math.floor(opts.busyTimeoutMs ?? 100)}`);
      migrate(this.db, path, opts.log);
      const insert = this.db.prepare(INSERT);
      this.holdsFlow = this.db.prepare("SELECT 1 FROM events WHERE id = @id AND type = 'flow' LIMIT 1");
      const rollup = rollupSteps(this.db);
      // The rollup's counts go in the events' transaction: both or neither.
      this.batchSteps = function* (events: FlowEvent[]) {
        for (const e of events) {
          insert.run(eventValues(e));
          yield;
        }
        yield* rollup(events);
      };
      this.insertBatch = this.db.transaction((events: FlowEvent[]) => {
        for (const _ of this.batchSteps(events));
      });
      const held = () => this.writing !== null;
      this.backfill = new Backfill(this.db, path, opts.log, held).start();
      // Checkpoints off the loop: retention writes as much WAL as the events do, and on the
      // loop (sliceMs) the automatic checkpoint in a commit held it for 30-50 ms, unsliced.
      if (opts.retention || this.sliceMs !== null) {
        this.db.pragma(`journal_size_limit = ${WAL_LIMIT}`);
        this.checkpointer = new Checkpointer(path, CHECKPOINT_MS, (err) => {
          this.checkpointer = null;
          if (!this.closed) this.db.pragma('wal_autocheckpoint = 1000');
          opts.log?.warn(
            { err },
            `event store checkpoint thread failed, checkpoints back on the loop: ${err.message}`,
          );
        });
        this.db.pragma('wal_autocheckpoint = 0');
      }
      if (opts.retention) {
        this.retention = new StoreRetention(this.db, path, opts.retention, { log: opts.log, held });
        this.retention.start();
      }
    } catch (err) {
      this.backfill?.stop();
      this.checkpointer?.stop();
      this.db.close();
      if (err instanceof HoneygateError) throw err;
      throw new HoneygateError('HG_ERR_SINK', `sqlite: cannot set up ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /**
   * Inserts the batch in one transaction: all rows or none. When the database is busy
   * (another writer holds the lock) or full, the rows are kept and go first in the next
   * batch, up to MAX_RETRY events; beyond that the oldest are lost and counted.
   */
  write(events: FlowEvent[]): void | Promise<void> {
    if (this.closed) throw new HoneygateError('HG_ERR_SINK', `sqlite: ${this.path} is closed`);
    if (this.sliceMs !== null) {
      // One sliced write at a time: the next waits for the last (and its retries go first).
      const sliceMs = this.sliceMs;
      const run = (this.writing ?? Promise.resolve()).then(() => this.writeSliced(events, sliceMs));
      const settled = run.then(
        () => {},
        () => {},
      );
      this.writing = settled;
      void settled.then(() => {
        if (this.writing === settled) this.writing = null;
      });
      return run;
    }
    const batch = this.batchOf(events);
    if (batch.length === 0) return;
    try {
      this.insertBatch(batch);
      this.retry = [];
    } catch (err) {
      throw this.failed(batch, err);
    }
  }

  /** The retried events, then `events`, without the flows the store already holds. */
  private batchOf(events: FlowEvent[]): FlowEvent[] {
    return withoutRecorded(
      this.retry.length ? [...this.retry, ...events] : events,
      (id) => this.holdsFlow.get({ id }) !== undefined,
    );
  }

  /** A batch's transaction failed: busy or full keeps its events for the next batch (the oldest lost beyond MAX_RETRY). */
  private failed(batch: FlowEvent[], err: unknown): HoneygateError {
    const message = (err as Error).message;
    if (TRANSIENT.test(message)) {
      const keep = batch.slice(-MAX_RETRY);
      this.lost += batch.length - keep.length;
      this.retry = keep;
    }
    const kept = this.retry.length ? `; ${this.retry.length} events kept for the next batch` : '';
    return new HoneygateError('HG_ERR_SINK', `sqlite: ${this.path}: ${message}${kept}`, { cause: err });
  }

  /**
   * write() with sliceMs: the batch's transaction as write() makes it, its work (each row,
   * each rollup upsert and sketch) cut into slices of about `sliceMs`, the loop free between
   * them. Nothing else uses the connection meanwhile: the backfill and retention steps wait
   * while a sliced write is in flight (`held`). Resolves once the transaction committed.
   */
  private async writeSliced(events: FlowEvent[], sliceMs: number): Promise<void> {
    if (this.closed) throw new HoneygateError('HG_ERR_SINK', `sqlite: ${this.path} is closed`);
    const batch = this.batchOf(events);
    if (batch.length === 0) return;
    try {
      this.db.exec('BEGIN');
      try {
        const steps = this.batchSteps(batch);
        while (!this.slice(steps, sliceMs)) await new Promise<void>((resolve) => setImmediate(resolve));
        this.db.exec('COMMIT');
      } catch (err) {
        try {
          this.db.exec('ROLLBACK');
        } catch {
          // SQLite already rolled back (full disk, I/O error): the first error is the one to tell
        }
        throw err;
      }
      this.retry = [];
    } catch (err) {
      throw this.failed(batch, err);
    }
  }

  /** Runs `steps` for about `ms`; true when they are done. (A method: bench/lib/loop-probe.mjs times each slice.) */
  protected slice(steps: Iterator<void>, ms: number): boolean {
    const t0 = performance.now();
    do {
      if (steps.next().done) return true;
    } while (performance.now() - t0 < ms);
    return false;
  }

  /** Events waiting in the retry buffer for the next batch. */
  get kept(): number {
    return this.retry.length;
  }

  /** Rows deleted by retention and the store's size; null without retention. */
  stats(): RetentionStats | null {
    return this.retention?.stats() ?? null;
  }

  /** Runs a retention pass now and resolves when the bounds hold (tests, benchmarks). */
  trim(): Promise<void> {
    return this.retention?.run() ?? Promise.resolve();
  }

  /** Nothing to do: SQLite keeps the file open by inode and logrotate must not move it. */
  reopen(): void {}

  close(): void | Promise<void> {
    // A sliced write in flight finishes first (its rows are committed, or kept and retried below).
    if (this.writing) return this.writing.then(() => this.close());
    if (this.closed) return;
    if (this.retry.length) {
      try {
        this.insertBatch(this.batchOf([]));
        this.retry = [];
      } catch {
        // still busy or full: those events are lost, as the last error said
      }
    }
    this.closed = true;
    this.backfill?.stop();
    this.retention?.close();
    this.checkpointer?.stop();
    try {
      // Fold the WAL back in so the file is complete on its own (copies, backups).
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      this.db.close();
    }
  }
}

/** Applies the missing schema steps, one transaction each. Throws HG_ERR_SINK on a foreign or newer file. */
function migrate(db: Database, path: string, log?: Logger): void {
  const appId = db.pragma('application_id') as number;
  let version = db.pragma('user_version') as number;
  if (appId !== 0 && appId !== APPLICATION_ID) {
    throw new HoneygateError('HG_ERR_SINK', `sqlite: ${path} is not a honeygate event store`);
  }
  if (appId === 0) {
    // A new file has neither a version nor tables; anything else belongs to someone else.
    const tables = db.prepare('SELECT count(*) AS n FROM sqlite_master').get() as unknown as { n: number };
    if (version !== 0 || tables.n !== 0) {
      throw new HoneygateError('HG_ERR_SINK', `sqlite: ${path} is not a honeygate event store`);
    }
  }
  if (version > MIGRATIONS.length) {
    throw new HoneygateError(
      'HG_ERR_SINK',
      `sqlite: ${path} has schema version ${version}, newer than this honeygate knows (${MIGRATIONS.length})`,
    );
  }
  // A store with events: a step that counts them takes minutes on millions. The rollup's
  // steps leave that to a backfill job (backfill.ts) that the sink runs in steps after the
  // start; the others (index builds) block it: say so, and how far it is.
  const rows =
    version > 0
      ? Number((db.prepare('SELECT max(seq) AS n FROM events').get() as { n: number | null }).n ?? 0)
      : 0;
  while (version < MIGRATIONS.length) {
    const next = version + 1;
    const [step, job] = deferred(db, MIGRATIONS[version]!);
    const statements = rows > 0 ? splitStatements(step) : [step];
    const t0 = performance.now();
    if (rows > 0) {
      log?.info(
        { store: path, step: next, statements: statements.length },
        `event store ${path}: upgrading the schema to version ${next} (${rows.toLocaleString('en')} events${job ? '; they are counted into the rollup after the start' : ''})`,
      );
    }
    db.transaction(() => {
      statements.forEach((sql, i) => {
        if (sql) db.exec(sql);
        if (rows > 0 && statements.length > 1) {
          const s = ((performance.now() - t0) / 1000).toFixed(1);
          log?.info(
            { store: path, step: next },
            `event store schema step ${next}: ${i + 1} of ${statements.length} statements, ${s} s`,
          );
        }
      });
      if (job) addJob(db, job);
      db.pragma(`application_id = ${APPLICATION_ID}`);
      db.pragma(`user_version = ${next}`);
    })();
    if (rows > 0) {
      const s = ((performance.now() - t0) / 1000).toFixed(1);
      log?.info({ store: path, step: next }, `event store ${path}: schema version ${next} in ${s} s`);
    }
    version = next;
  }
}

/**
 * What a schema step runs now, and the backfill job that counts the stored events for it
 * later. The rollup's views step (7) counted every event in the step (1,662 s at 10
 * million, the start blocked): its table is made anew and a job counts them instead. Its
 * refused sources (step 8) are in that job's counts. The sketches (step 9) are a job.
 */
function deferred(db: Database, step: string): [string, 'rollup' | 'sketch' | null] {
  if (step === ROLLUP_VIEWS_SCHEMA) {
    // The table and its index as ROLLUP_SCHEMA makes them, without its counts.
    return [['DROP TABLE rollup;', ...splitStatements(ROLLUP_SCHEMA).slice(0, 2)].join('\n'), 'rollup'];
  }
  if (step === ROLLUP_REFUSED_SCHEMA && pendingJobs(db).includes('rollup')) return ['', null];
  if (step === ROLLUP_SKETCH_SCHEMA) return [`${step}\n${BACKFILL_TABLE};`, 'sketch'];
  return [step, null];
}

/** `sql`'s statements, cut at each `;` outside quotes and `--` comments. */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quote: string | null = null;
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i]!;
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end;
    } else if (c === ';') {
      if (sql.slice(start, i).trim()) out.push(sql.slice(start, i + 1).trim());
      start = i + 1;
    }
  }
  if (sql.slice(start).trim()) out.push(sql.slice(start).trim());
  return out;
}
