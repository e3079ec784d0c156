// The nats sink's outbox: every event, encoded into messages (codec.ts), in a SQLite file of
// its own, in order, until JetStream has acknowledged the message. Written once per recorder batch (one transaction), so a
// SIGKILL loses at most the batch still in the recorder's memory; read and trimmed by the
// publisher. Bounded: beyond `maxEvents` events the oldest messages are deleted, counted and logged.
import { chownSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, relative, resolve, sep } from 'node:path';
import { HoneygateError } from '../errors.js';
import { type Database, openDatabase, type Statement } from '../events/sqlite-driver.js';
import type { Message } from './codec.js';

/** PRAGMA application_id of an outbox file ("HGob"). */
const OUTBOX_ID = 0x48476f62;

export interface OutboxRow extends Message {
  seq: number;
  queuedAt: number;
}

/** Chowns `first` (the first directory mkdir made) and each one below it down to `last`. */
function chownMade(first: string, last: string, owner: { uid: number; gid: number }): void {
  const steps = relative(resolve(first), resolve(last)).split(sep).filter(Boolean);
  let dir = resolve(first);
  chownSync(dir, owner.uid, owner.gid);
  for (const step of steps) {
    dir = resolve(dir, step);
    chownSync(dir, owner.uid, owner.gid);
  }
}

export class Outbox {
  readonly path: string;
  private readonly db: Database;
  private readonly insert: Statement;
  private readonly select: Statement;
  private readonly add: (rows: Message[], now: number) => void;
  private dropped = 0; // by the last add()
  private readonly del: (rows: OutboxRow[]) => void;
  private size: number; // events, not messages
  private oldest: number | null;
  /** Events deleted unsent because the outbox was full. */
  overflowed = 0;

  /**
   * Opens or creates the outbox at `path`. With `createDirectory`, makes its missing
   * directories, and hands those it made to `owner` (the `user:` run drops to; the files
   * themselves are chowned with the event files, src/privileges/drop.ts). Throws HG_ERR_SINK.
   */
  constructor(
    path: string,
    private readonly maxEvents: number,
    createDirectory = false,
    owner: { uid: number; gid: number } | null = null,
  ) {
    this.path = path;
    try {
      // As for the event store (events.createDirectories): a typo must not become a directory tree.
      if (createDirectory) {
        const first = mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
        if (first !== undefined && owner) chownMade(first, dirname(path), owner);
      } else if (!existsSync(dirname(path))) {
        throw new Error(
          `directory ${dirname(path)} does not exist (create it, or set events.createDirectories: true)`,
        );
      }
      this.db = openDatabase(path);
      const appId = this.db.pragma('application_id') as number;
      const tables = this.db.prepare('SELECT count(*) AS n FROM sqlite_master').get() as { n: number };
      if (appId !== OUTBOX_ID && !(appId === 0 && tables.n === 0)) {
        this.db.close();
        throw new Error('not a honeygate nats outbox');
      }
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 1000');
      this.db.exec(
        `CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL,
           data BLOB NOT NULL, queued_at INTEGER NOT NULL, n INTEGER NOT NULL DEFAULT 1)`,
      );
      // An outbox from before messages carried several events: each of its rows is one event.
      const columns = [...this.db.prepare('PRAGMA table_info(outbox)').iterate()].map((c) => c.name);
      if (!columns.includes('n')) this.db.exec('ALTER TABLE outbox ADD COLUMN n INTEGER NOT NULL DEFAULT 1');
      this.db.pragma(`application_id = ${OUTBOX_ID}`);
    } catch (err) {
      throw new HoneygateError(
        'HG_ERR_SINK',
        `nats: cannot open the outbox ${path}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    this.insert = this.db.prepare('INSERT INTO outbox (msg_id, data, queued_at, n) VALUES (?, ?, ?, ?)');
    this.select = this.db.prepare(
      'SELECT seq, msg_id, data, queued_at, n FROM outbox WHERE seq > @after ORDER BY seq LIMIT @n',
    );
    const oldestRows = this.db.prepare('SELECT seq, n FROM outbox ORDER BY seq');
    const trim = this.db.prepare('DELETE FROM outbox WHERE seq <= ?');
    this.add = this.db.transaction((rows: Message[], now: number) => {
      let added = 0;
      for (const r of rows) {
        this.insert.run([r.msgId, r.data, now, r.n]);
        added += r.n;
      }
      // Over the bound: the oldest whole messages go, as many as it takes.
      let over = this.size + added - this.maxEvents;
      let dropped = 0;
      let last = -1;
      if (over > 0) {
        for (const r of oldestRows.iterate()) {
          if (over <= 0) break;
          last = r.seq as number;
          over -= r.n as number;
          dropped += r.n as number;
        }
        trim.run([last]);
      }
      this.size += added - dropped;
      this.dropped = dropped;
    });
    const delete1 = this.db.prepare('DELETE FROM outbox WHERE seq = ?');
    this.del = this.db.transaction((rows: OutboxRow[]) => {
      for (const r of rows) if (delete1.run([r.seq]).changes > 0) this.size -= r.n;
    });
    this.size = (this.db.prepare('SELECT coalesce(sum(n), 0) AS n FROM outbox').get() as { n: number }).n;
    this.oldest = this.readOldest();
  }

  /** Appends messages (one transaction); drops the oldest beyond the bound and returns how many events. Throws on I/O errors. */
  append(rows: Message[]): number {
    if (rows.length === 0) return 0;
    const now = Date.now();
    this.add(rows, now);
    const over = this.dropped;
    this.overflowed += over;
    if (this.oldest === null || over > 0) this.oldest = over > 0 ? this.readOldest() : now;
    return over;
  }

  /** Up to `n` messages after seq `after`, oldest first. */
  peek(n: number, after = 0): OutboxRow[] {
    const out: OutboxRow[] = [];
    for (const r of this.select.iterate({ after, n })) {
      out.push({
        seq: r.seq as number,
        msgId: r.msg_id as string,
        data: r.data as Uint8Array,
        queuedAt: r.queued_at as number,
        n: r.n as number,
      });
    }
    return out;
  }

  /** Deletes the messages acknowledged (any order). */
  remove(rows: OutboxRow[]): void {
    if (rows.length === 0) return;
    this.del(rows);
    this.oldest = this.readOldest();
  }

  /** Events waiting. */
  get length(): number {
    return this.size;
  }

  /** When the oldest waiting event was queued (epoch ms), or null when empty. */
  get oldestQueuedAt(): number | null {
    return this.oldest;
  }

  close(): void {
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      this.db.close();
    }
  }

  private readOldest(): number | null {
    const r = this.db.prepare('SELECT queued_at FROM outbox ORDER BY seq LIMIT 1').get();
    return r ? (r.queued_at as number) : null;
  }
}
