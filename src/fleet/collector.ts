// `honeygate collect`: the durable JetStream consumer that writes every sensor's events into
// one central SQLite store (the same schema as a gateway's, so `honeygate events` reads it).
// A batch of messages is written in one transaction and acknowledged only after it committed.
// Each message id is kept in `fleet_received`, so a redelivery (a collector killed before its
// acks, another collector on the same consumer, a retry older than the stream's duplicate
// window) is never stored twice. A message that is not a honeygate event is counted, logged
// and terminated (never redelivered, never stored).
//
// Each message's stream sequence is kept in `fleet_seq` too, until the consumer's ack floor
// has passed it: a message the floor passed that no collector of this store wrote was skipped
// by the broker, and is fetched from the stream by its sequence (`recovered`). A JetStream
// cluster restarted whole did that once (nats-server 2.9.10, a CI run of
// test/e2e/fleet-cluster.test.ts: one message of 44 events, in the stream and past the ack
// floor, never delivered).
//
// A whole-cluster restart of nats-server 2.9.10 also put a different message at a sequence
// the consumer had already delivered (a later CI run: the store had written sequence 40, the
// stream then held another message there, and the consumer, its floor past 40, never
// delivered that one). fleet_seq cannot see that. It shows as a stream holding more
// messages after the consumer's delivered sequence than the consumer counts as pending: the
// collector then reads the stream once from its first message (`audit`), writing what it
// never stored; event ids keep the rest from being stored twice.
//
// An id is kept for as long as the stream may hold its message, events.nats.maxAge (the
// stream's max_age): a message older than that is gone from the stream and cannot come
// again, so neither can its id. Pruned at start and every hour, in steps of PRUNE_STEP rows
// between batches. With maxAge 0 (the stream keeps everything) the ids are kept too.
import {
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { FlowEvent } from '../events/event.js';
import { rollupWriter } from '../events/rollup.js';
import { eventValues, valuesToEvent } from '../events/row.js';
import { INSERT, SqliteSink, STORE_PRAGMAS } from '../events/sqlite.js';
import { type Database, openDatabase } from '../events/sqlite-driver.js';
import { decodeMessage, recordKey } from './codec.js';
import type { NatsConfig } from './config.js';
import { connectNats } from './connect.js';
import { ensureConsumer } from './stream.js';

const BATCH = 1000;
const FLUSH_MS = 100;
const PULL_EXPIRES_MS = 5000;
const LAG_MS = 1000;
const WARN_INTERVAL_MS = 10_000;
const PRUNE_INTERVAL_MS = 3_600_000;
/** Rows one pruning transaction deletes at most: a few milliseconds, so fetches and acks are not held up. */
const PRUNE_STEP = 5000;
/** Sequences the recovery looks at per pass (one pass a second, with the lag). */
const RECOVER_STEP = 5000;

export interface CollectorStats {
  received: number; // messages fetched (redeliveries count again), each of one or more events
  stored: number; // events written to the store
  duplicates: number; // events whose id the store already had
  malformed: number; // messages that were not honeygate events: terminated, not stored
  lag: number; // messages in the stream the consumer has not yet had acknowledged (pending + unacked)
  pruned: number; // ids deleted from fleet_received, older than the stream's maxAge
  recovered: number; // messages the consumer passed without delivering, fetched from the stream
}

/** What the lag pass reads of the stream and the consumer (info, stream first). */
interface Positions {
  firstSeq: number; // the stream's
  lastSeq: number;
  delivered: number; // the consumer's last delivered stream sequence
  floor: number; // its ack floor
  pending: number; // messages after `delivered` it will deliver
  ackPending: number;
}

/** A message as the consumer delivers it or the stream returns it by sequence. */
interface StreamMessage {
  subject: string;
  seq: number; // the stream sequence
  data: Uint8Array;
}

export class Collector {
  private readonly db: Database;
  private readonly writeBatch: (rows: { id: string; values: unknown[] }[], seqs: number[]) => number;
  // Sequences up to `checked` are written or known gone (kept in fleet_checked); fleet_seq holds
  // those written above it.
  private checked = 0;
  private recovering = false;
  // The audit: the sequences still to read, and the skew (messages after the consumer's
  // delivered sequence it does not count) that started it; a skew no larger starts none.
  private auditNext = 0;
  private auditTo = -1;
  private skew = 0;
  private auditFound = 0;
  // Where this pass starts (another collector of the store may have checked further), where it
  // ends (RECOVER_STEP on at most), and the sequences written between.
  private readonly toCheck: (
    after: number,
    floor: number,
  ) => { from: number; upTo: number; written: Set<number> };
  private readonly saveChecked: (upTo: number) => void;
  private readonly savedChecked: () => number | null;
  private nc: NatsConnection | null = null;
  private stopping = false;
  private messages: ConsumerMessages | null = null;
  private readonly s: CollectorStats = {
    received: 0,
    stored: 0,
    duplicates: 0,
    malformed: 0,
    lag: 0,
    pruned: 0,
    recovered: 0,
  };
  private readonly pruneStep: (before: number) => number;
  private nextPrune = 0;
  private lastWarn = Number.NEGATIVE_INFINITY;

  /** Opens (or creates) the central store. Throws HG_ERR_SINK. */
  constructor(
    private readonly cfg: NatsConfig,
    readonly storePath: string,
    private readonly log: Logger,
  ) {
    // The schema and its migrations are the event store's own (an upgrade logs its progress).
    new SqliteSink(storePath, { log }).close();
    this.db = openDatabase(storePath);
    for (const p of STORE_PRAGMAS) this.db.pragma(p);
    this.db.pragma('busy_timeout = 5000');
    const changes = this.db.prepare('SELECT changes() AS n');
    this.db.exec(
      'CREATE TABLE IF NOT EXISTS fleet_received (msg_id TEXT PRIMARY KEY, received_at INTEGER) WITHOUT ROWID',
    );
    const columns = [...this.db.prepare('PRAGMA table_info(fleet_received)').iterate()].map((c) => c.name);
    if (!columns.includes('received_at')) {
      // A store from before pruning: its ids count as received now, and go one maxAge later.
      this.db.exec('ALTER TABLE fleet_received ADD COLUMN received_at INTEGER');
      this.db
        .prepare('UPDATE fleet_received SET received_at = ? WHERE received_at IS NULL')
        .run([Date.now()]);
    }
    this.db.exec('CREATE INDEX IF NOT EXISTS fleet_received_at ON fleet_received (received_at)');
    const mark = this.db.prepare('INSERT OR IGNORE INTO fleet_received (msg_id, received_at) VALUES (?, ?)');
    const prune = this.db.prepare(
      `DELETE FROM fleet_received WHERE msg_id IN
         (SELECT msg_id FROM fleet_received WHERE received_at < ? ORDER BY received_at LIMIT ${PRUNE_STEP})`,
    );
    this.pruneStep = (before) => prune.run([before]).changes;
    this.db.exec('CREATE TABLE IF NOT EXISTS fleet_seq (seq INTEGER PRIMARY KEY)');
    const markSeq = this.db.prepare('INSERT OR IGNORE INTO fleet_seq (seq) VALUES (?)');
    const written = this.db.prepare('SELECT seq FROM fleet_seq WHERE seq > @after AND seq <= @upTo');
    this.db.exec(
      'CREATE TABLE IF NOT EXISTS fleet_checked (stream TEXT PRIMARY KEY, seq INTEGER) WITHOUT ROWID',
    );
    const forget = this.db.prepare('DELETE FROM fleet_seq WHERE seq <= ?');
    const save = this.db.prepare(
      'INSERT INTO fleet_checked (stream, seq) VALUES (?, ?) ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq',
    );
    const saved = this.db.prepare('SELECT seq FROM fleet_checked WHERE stream = ?');
    const readSaved = (): number | null => {
      const v = saved.get([cfg.stream])?.seq;
      return v === null || v === undefined ? null : Number(v);
    };
    // In one transaction: another collector of this store may be saving its pass meanwhile.
    const toCheck = this.db.transaction(
      (after: number, floor: number, out: { from: number; upTo: number; written: Set<number> }) => {
        out.from = Math.max(after, readSaved() ?? 0);
        out.upTo = Math.min(floor, out.from + RECOVER_STEP);
        out.written = new Set(
          [...written.iterate({ after: out.from, upTo: out.upTo })].map((r) => Number(r.seq)),
        );
      },
    );
    this.toCheck = (after, floor) => {
      const out = { from: after, upTo: after, written: new Set<number>() };
      toCheck(after, floor, out);
      return out;
    };
    this.saveChecked = this.db.transaction((upTo: number) => {
      forget.run([upTo]);
      save.run([cfg.stream, upTo]);
    });
    this.savedChecked = readSaved;
    const insert = this.db.prepare(INSERT);
    // The counts only: the distinct-source sketches are not kept here.
    const counts = rollupWriter(this.db, { sketches: false });
    let stored = 0;
    const tx = this.db.transaction((rows: { id: string; values: unknown[] }[], seqs: number[]) => {
      stored = 0;
      for (const seq of seqs) markSeq.run([seq]);
      const now = Date.now();
      const added: FlowEvent[] = [];
      for (const m of rows) {
        mark.run([m.id, now]);
        if ((changes.get() as { n: number }).n === 0) continue;
        insert.run(m.values);
        added.push(valuesToEvent(m.values));
        stored++;
      }
      // The rollup's counts, as the sink keeps them (stats, the dashboard's views).
      counts(added);
    });
    this.writeBatch = (rows, seqs) => {
      tx(rows, seqs);
      return stored;
    };
  }

  stats(): CollectorStats {
    return { ...this.s };
  }

  /**
   * Deletes the ids received before `now` - events.nats.maxAge (none with maxAge 0), at most
   * `steps` × PRUNE_STEP of them; returns how many. Throws on a store error.
   */
  prune(now = Date.now(), steps = Number.POSITIVE_INFINITY): number {
    if (this.cfg.maxAgeMs === 0) return 0;
    const before = now - this.cfg.maxAgeMs;
    let total = 0;
    for (let i = 0; i < steps; i++) {
      const n = this.pruneStep(before);
      total += n;
      if (n < PRUNE_STEP) break;
    }
    this.s.pruned += total;
    return total;
  }

  /** One pruning step when due; logs a finished pass that deleted anything. */
  private pruneWhenDue(): void {
    const now = Date.now();
    if (now < this.nextPrune) return;
    const n = this.prune(now, 1);
    this.prunedThisPass += n;
    if (n === PRUNE_STEP) return; // more to do: another step at the next write
    if (this.prunedThisPass > 0) {
      this.log.info(
        { pruned: this.prunedThisPass, maxAge: `${this.cfg.maxAgeMs / 3_600_000}h` },
        'collect: pruned the ids of messages the stream no longer holds',
      );
    }
    this.prunedThisPass = 0;
    this.nextPrune = now + PRUNE_INTERVAL_MS;
  }
  private prunedThisPass = 0;

  /** Connects, makes sure the consumer exists, and writes batches until stop(). Rejects on a store error. */
  async run(): Promise<void> {
    this.nc = await connectNats(this.cfg, 'honeygate collect');
    const jsm = await jetstreamManager(this.nc);
    await ensureConsumer(jsm, this.cfg);
    const consumer = await jetstream(this.nc).consumers.get(this.cfg.stream, this.cfg.consumer);
    const floor = (await consumer.info()).ack_floor.stream_seq;
    // Resume the check where it stopped; a first start (or a stream made anew) begins at the floor.
    const saved = this.savedChecked();
    this.checked = saved === null || saved > floor ? floor : saved;
    this.log.info(
      {
        server: this.nc.getServer(),
        stream: this.cfg.stream,
        consumer: this.cfg.consumer,
        store: this.storePath,
      },
      'collecting',
    );
    // consume(), not a loop of fetch(): it pulls ahead and re-pulls by itself after a missed
    // heartbeat or a reconnect. A fetch that failed mid-batch (a cluster busy after a restart)
    // left its messages unacknowledged for the 30 s ack wait: a backlog drained at a batch a
    // minute. Messages are written in batches of BATCH, or every FLUSH_MS.
    //
    // The lag is a gauge: it keeps its last value while the broker is away.
    const readLag = async () => {
      let at: Positions;
      try {
        const state = (await jsm.streams.info(this.cfg.stream)).state;
        const info = await consumer.info();
        at = {
          firstSeq: state.first_seq,
          lastSeq: state.last_seq,
          delivered: info.delivered.stream_seq,
          floor: info.ack_floor.stream_seq,
          pending: info.num_pending,
          ackPending: info.num_ack_pending,
        };
      } catch {
        return;
      }
      this.s.lag = at.pending + at.ackPending;
      await this.recover(jsm, at);
    };
    await readLag();
    let batch: JsMsg[] = [];
    const flush = () => {
      if (batch.length === 0) return;
      const msgs = batch;
      batch = [];
      this.commit(msgs);
    };
    let failure: unknown = null; // a store error: ends run()
    const write = () => {
      try {
        flush();
        // At most one pruning step per write, between batches.
        this.pruneWhenDue();
      } catch (err) {
        failure ??= err;
        this.messages?.stop();
      }
    };
    const flusher = setInterval(write, FLUSH_MS);
    const lag = setInterval(readLag, LAG_MS);
    try {
      while (!this.stopping && failure === null) {
        try {
          this.messages = await consumer.consume({ max_messages: BATCH, expires: PULL_EXPIRES_MS });
          if (this.stopping) this.messages.stop();
          for await (const m of this.messages) {
            batch.push(m);
            if (batch.length >= BATCH) write();
          }
        } catch (err) {
          if (this.stopping || failure !== null) break;
          this.warn({ err: (err as Error).message }, 'collect: pulling failed; retrying');
        }
        // Ended without stop() (the consumer went away): pull again after a pause.
        if (!this.stopping && failure === null) await new Promise((r) => setTimeout(r, 1000));
      }
      if (failure === null) flush();
    } finally {
      clearInterval(flusher);
      clearInterval(lag);
    }
    if (failure !== null) throw failure;
    // Sends the acks still buffered, then closes.
    await this.nc.drain().catch(() => {});
  }

  /** Writes one batch, then acknowledges it. A store error leaves it unacknowledged (redelivered). */
  private commit(msgs: JsMsg[]): void {
    this.s.received += msgs.length;
    const good = this.store(msgs);
    good.forEach((ok, i) => {
      try {
        if (!ok) msgs[i]!.term();
        else msgs[i]!.ack();
      } catch {
        // the connection went: the batch is committed, its redelivery is found in fleet_received
      }
    });
  }

  /** A message's events as rows of the store, or why it is not a honeygate event. */
  private rowsOf(m: StreamMessage): { id: string; values: unknown[] }[] | string {
    const d = decodeMessage(m.data);
    if (!d.ok) return d.reason;
    const gateway = d.version === 1 ? null : subjectGateway(m.subject, this.cfg.subject);
    return d.events.map((e) => ({ id: recordKey(e, gateway), values: eventValues(e) }));
  }

  /** Decodes the messages and writes their events and sequences in one transaction; false for a malformed one. */
  private store(msgs: StreamMessage[]): boolean[] {
    const rows: { id: string; values: unknown[] }[] = [];
    const good = msgs.map((m) => {
      const own = this.rowsOf(m);
      if (typeof own === 'string') {
        this.s.malformed++;
        this.warn(
          { subject: m.subject, seq: m.seq, reason: own, malformed: this.s.malformed },
          `collect: skipped a message that is not a honeygate event (${own})`,
        );
        return false;
      }
      rows.push(...own);
      return true;
    });
    const stored = this.writeBatch(
      rows,
      msgs.map((m) => m.seq),
    );
    this.s.stored += stored;
    this.s.duplicates += rows.length - stored;
    return good;
  }

  /**
   * The sequences the consumer's ack floor has passed since the last pass that no collector of
   * this store wrote (fleet_seq): each still in the stream is fetched by its sequence and
   * written. A step of the audit first, if one is due. An error is logged, and the next pass
   * tries again.
   */
  private async recover(jsm: JetStreamManager, at: Positions): Promise<void> {
    if (this.recovering) return;
    this.recovering = true;
    try {
      await this.audit(jsm, at);
      const floor = at.floor;
      if (floor <= this.checked) return;
      const { from, upTo, written } = this.toCheck(this.checked, floor);
      if (upTo <= from) {
        this.checked = from; // another collector of this store checked that far
        return;
      }
      const found: StreamMessage[] = [];
      for (let seq = from + 1; seq <= upTo; seq++) {
        if (written.has(seq)) continue;
        // null: gone from the stream (maxAge, maxBytes), or never there
        const m = await jsm.streams.getMessage(this.cfg.stream, { seq });
        if (m?.subject.startsWith(`${this.cfg.subject}.`))
          found.push({ subject: m.subject, seq: m.seq, data: m.data });
      }
      if (found.length > 0) {
        this.store(found);
        this.s.recovered += found.length;
        this.log.warn(
          { seqs: found.slice(0, 20).map((m) => m.seq), recovered: this.s.recovered },
          `collect: the consumer passed ${found.length} messages it never delivered; fetched them from the stream`,
        );
      }
      this.saveChecked(upTo);
      this.checked = upTo;
    } catch (err) {
      this.warn({ err: (err as Error).message }, 'collect: checking for skipped messages failed; retrying');
    } finally {
      this.recovering = false;
    }
  }

  /**
   * Starts an audit when the consumer counts fewer messages pending than the stream holds
   * after its delivered sequence (nothing in flight): it has passed a message it will never
   * deliver. Each pass then reads up to RECOVER_STEP messages of the stream, from its first
   * to its last, and writes the events this store lacks.
   */
  private async audit(jsm: JetStreamManager, at: Positions): Promise<void> {
    const skew = at.lastSeq - at.delivered - at.pending;
    if (at.ackPending === 0 && skew > this.skew) {
      this.skew = skew;
      this.auditNext = Math.max(at.firstSeq, 1);
      this.auditTo = at.lastSeq;
      this.auditFound = 0;
      this.log.warn(
        { stream: this.cfg.stream, lastSeq: at.lastSeq, delivered: at.delivered, pending: at.pending },
        `collect: the consumer will not deliver ${skew} of the stream's messages; reading the stream from sequence ${this.auditNext} to ${this.auditTo}`,
      );
    }
    if (this.auditNext > this.auditTo) return;
    const upTo = Math.min(this.auditTo, this.auditNext + RECOVER_STEP - 1);
    for (let seq = this.auditNext; seq <= upTo; seq++) {
      this.auditNext = seq; // an error: the next pass starts here
      // null: gone from the stream (maxAge, maxBytes), or never there
      const m = await jsm.streams.getMessage(this.cfg.stream, { seq });
      if (!m?.subject.startsWith(`${this.cfg.subject}.`)) continue;
      const rows = this.rowsOf({ subject: m.subject, seq: m.seq, data: m.data });
      if (typeof rows === 'string') continue; // counted as malformed when it was delivered
      const stored = this.writeBatch(rows, [m.seq]);
      if (stored === 0) continue;
      this.s.stored += stored;
      this.s.recovered++;
      this.auditFound++;
      this.log.warn(
        { seq: m.seq, events: stored, recovered: this.s.recovered },
        'collect: the stream held a message the consumer passed; wrote it',
      );
    }
    this.auditNext = upTo + 1;
    if (this.auditNext > this.auditTo)
      this.log.info(
        { upTo: this.auditTo, found: this.auditFound },
        'collect: read the stream through; the audit is done',
      );
  }

  /** Ends the pulling; run() writes what it holds, flushes the acks and resolves. */
  stop(): void {
    this.stopping = true;
    this.messages?.stop();
  }

  close(): void {
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // another reader holds it: the WAL stays, which SQLite handles
    }
    this.db.close();
  }

  private warn(fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.lastWarn < WARN_INTERVAL_MS) return;
    this.lastWarn = now;
    this.log.warn(fields, msg);
  }
}

/** The sending gateway's token: its subject after the stream's prefix (sink.ts publishes on PREFIX.<token>). */
function subjectGateway(subject: string, prefix: string): string {
  return subject.startsWith(`${prefix}.`) ? subject.slice(prefix.length + 1) : subject;
}
