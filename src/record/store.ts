// The recordings on disk: one file per recorded flow, in events.recordings.path. The store
// keeps the files' total within maxSize (the oldest finished recordings are deleted first)
// and the file system's free space above minFree. When neither can be had, recording
// stops (a warning, a metric) and the flows go on unrecorded: the gateway never stops for it.
//
// Writes are asynchronous (one writev per flow at a time); the data path only queues buffers.
import fs from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/types.js';
import { ERRORS } from '../errors.js';
import type { Logger } from '../log.js';
import type { RecordingsConfig, RecordOptions } from './config.js';
import { encodeHead, encodeHeader, KIND, type Kind, RECORD_HEAD, type RecordingHeader } from './format.js';

export const EXT = '.hgrec';
const FREE_CHECK_MS = 1000;
const WARN_EVERY_MS = 60_000;

export interface RecordStats {
  files: number; // recordings on disk, open ones included
  bytes: number; // their size, with what is queued to be written
  active: number; // flows being recorded now
  evicted: number; // files deleted for the budget or free space since start
  skipped: number; // flows not recorded (or cut short) for want of budget or space since start
  suspended: boolean; // recording stopped: the file system is short of minFree, or the directory is unusable
}

/** True when a route or backend of `config` records sessions. */
export function recordsAnything(config: Config): boolean {
  return config.routes.some((r) => r.record) || [...config.backends.values()].some((b) => b.record);
}

/** Where recording `id` lives. */
export function recordingPath(dir: string, id: string): string {
  return join(dir, `${id}${EXT}`);
}

export class RecordStore {
  private readonly finished: { id: string; size: number }[] = []; // oldest first
  private used = 0;
  private active = 0;
  private evicted = 0;
  private skipped = 0;
  private free = Number.POSITIVE_INFINITY; // bytes available to us, from the last statfs
  private suspended: string | null = 'starting';
  private timer: NodeJS.Timeout | null = null;
  private lastWarn = 0;

  constructor(
    readonly config: RecordingsConfig,
    private readonly log: Logger,
  ) {}

  private starting: Promise<void> | null = null;

  /** Starts the store once (the first caller); later calls wait for the same start. */
  ready(): Promise<void> {
    this.starting ??= this.start();
    return this.starting;
  }

  /** Creates the directory, counts what earlier runs left. Never throws: a failure suspends recording. */
  private async start(): Promise<void> {
    const dir = this.config.path;
    try {
      await fs.promises.mkdir(dir, { recursive: true, mode: 0o750 });
      const names = (await fs.promises.readdir(dir)).filter((n) => n.endsWith(EXT));
      const files: { id: string; size: number; mtime: number }[] = [];
      for (const n of names) {
        try {
          const st = await fs.promises.stat(join(dir, n));
          files.push({ id: n.slice(0, -EXT.length), size: st.size, mtime: st.mtimeMs });
        } catch {
          // deleted meanwhile (another worker's eviction)
        }
      }
      files.sort((a, b) => a.mtime - b.mtime);
      for (const f of files) {
        this.finished.push({ id: f.id, size: f.size });
        this.used += f.size;
      }
      this.suspended = null;
      await this.checkFree();
      while (this.used > this.config.maxSizeBytes && this.evictOldest());
    } catch (err) {
      this.suspend(`cannot use the recordings directory ${dir}: ${(err as Error).message}`);
    }
    this.timer = setInterval(() => void this.checkFree(), FREE_CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  stats(): RecordStats {
    return {
      files: this.finished.length + this.active,
      bytes: this.used,
      active: this.active,
      evicted: this.evicted,
      skipped: this.skipped,
      suspended: this.suspended !== null,
    };
  }

  /** Starts recording a flow; null (counted as skipped) while recording is suspended or out of budget. */
  open(header: Omit<RecordingHeader, 'startedAt'>, opts: RecordOptions): Recording | null {
    const head = encodeHeader({ ...header, startedAt: Date.now() });
    if (!this.reserve(head.length)) {
      this.skipped++;
      return null;
    }
    this.active++;
    return new Recording(this, recordingPath(this.config.path, header.id), header.id, head, opts.maxBytes);
  }

  /**
   * Takes `n` bytes of the budget: evicts the oldest finished recordings as needed. False
   * when even that is not enough (the budget is held by open recordings, or the disk is short).
   */
  reserve(n: number): boolean {
    if (this.suspended !== null) return false;
    while (this.used + n > this.config.maxSizeBytes && this.evictOldest());
    while (this.free - n < this.config.minFreeBytes && this.evictOldest());
    if (this.free - n < this.config.minFreeBytes) {
      this.suspend(
        `the file system of ${this.config.path} has less than events.recordings.minFree (${this.config.minFreeBytes} bytes) free`,
      );
      return false;
    }
    if (this.used + n > this.config.maxSizeBytes) {
      this.warnThrottled('events.recordings.maxSize is taken by open recordings: new data is not recorded');
      return false;
    }
    this.used += n;
    this.free -= n;
    return true;
  }

  /** A recording's data cut short for want of budget or space. */
  cutShort(): void {
    this.skipped++;
  }

  /** A recording closed: it becomes the newest candidate for eviction. `size` is what reached the disk. */
  closed(id: string, reserved: number, size: number): void {
    this.active--;
    this.used += size - reserved;
    this.finished.push({ id, size });
  }

  /** A write failed (ENOSPC, EIO, EDQUOT): stop recording until the free space check says otherwise. */
  writeFailed(err: NodeJS.ErrnoException): void {
    this.suspend(`cannot write a recording in ${this.config.path}: ${err.message}`);
  }

  private evictOldest(): boolean {
    const f = this.finished.shift();
    if (!f) return false;
    this.used -= f.size;
    this.free += f.size;
    this.evicted++;
    fs.unlink(recordingPath(this.config.path, f.id), () => {});
    return true;
  }

  private suspend(why: string): void {
    if (this.suspended !== null) return;
    this.suspended = why;
    this.log.warn({ code: 'HG_ERR_RECORD' }, `${ERRORS.HG_ERR_RECORD}: ${why}; flows go on unrecorded`);
  }

  private warnThrottled(why: string): void {
    const now = Date.now();
    if (now - this.lastWarn < WARN_EVERY_MS) return;
    this.lastWarn = now;
    this.log.warn({ code: 'HG_ERR_RECORD' }, `${ERRORS.HG_ERR_RECORD}: ${why}`);
  }

  /** Reads the free space; resumes a suspended store once minFree is there again (evicting to get it). */
  private async checkFree(): Promise<void> {
    let st: Awaited<ReturnType<typeof fs.promises.statfs>>;
    try {
      st = await fs.promises.statfs(this.config.path);
    } catch (err) {
      this.suspend(`cannot read the free space of ${this.config.path}: ${(err as Error).message}`);
      return;
    }
    this.free = Number(st.bavail) * Number(st.bsize);
    while (this.free < this.config.minFreeBytes && this.evictOldest());
    if (this.suspended !== null && this.suspended !== 'starting' && this.free >= this.config.minFreeBytes) {
      this.suspended = null;
      this.log.info(`recording resumed: ${this.free} bytes free in ${this.config.path}`);
    }
  }
}

/** One flow's recording. The data path calls in/out/fin*; close() when the flow ends. */
export class Recording {
  private readonly t0 = performance.now();
  private queue: Buffer[] = [];
  private fd: number | null = null;
  private writing = false;
  private closing = false;
  private stopped = false; // nothing more is kept: truncated, or failed
  private payload = 0;
  private reserved: number;
  private written = 0;

  constructor(
    private readonly store: RecordStore,
    readonly path: string,
    readonly id: string,
    head: Buffer,
    private readonly maxBytes: number,
  ) {
    this.reserved = head.length;
    this.queue.push(head);
    fs.open(path, 'wx', 0o640, (err, fd) => {
      if (err) return this.fail(err);
      this.fd = fd;
      this.flush();
    });
  }

  in(chunk: Buffer): void {
    this.data(KIND.in, chunk);
  }

  out(chunk: Buffer): void {
    this.data(KIND.out, chunk);
  }

  finIn(): void {
    this.add(KIND.finIn, null);
  }

  finOut(): void {
    this.add(KIND.finOut, null);
  }

  /** Flushes what is queued and closes the file. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.flush();
  }

  private data(kind: Kind, chunk: Buffer): void {
    if (this.stopped || chunk.length === 0) return;
    const room = this.maxBytes - this.payload;
    if (chunk.length > room) {
      if (room > 0) this.add(kind, chunk.subarray(0, room));
      this.truncate('maxBytes');
      return;
    }
    this.payload += chunk.length;
    this.add(kind, chunk);
  }

  private truncate(why: string): void {
    if (this.stopped) return;
    const note = Buffer.from(why, 'latin1');
    // The marker itself is taken even past the budget: a few bytes, so a reader knows why.
    this.queue.push(encodeHead(KIND.truncated, this.now(), note.length), note);
    this.reserved += RECORD_HEAD + note.length;
    this.stopped = true;
    this.flush();
  }

  private add(kind: Kind, data: Buffer | null): void {
    if (this.stopped || this.closing) return;
    const len = data ? data.length : 0;
    if (!this.store.reserve(RECORD_HEAD + len)) {
      this.store.cutShort();
      return this.truncate('disk');
    }
    this.reserved += RECORD_HEAD + len;
    this.queue.push(encodeHead(kind, this.now(), len));
    if (data) this.queue.push(data);
    this.flush();
  }

  private now(): number {
    return (performance.now() - this.t0) / 1000;
  }

  private flush(): void {
    if (this.writing || this.fd === null) return;
    if (this.queue.length === 0) {
      if (this.closing) this.finish();
      return;
    }
    const bufs = this.queue;
    this.queue = [];
    this.writing = true;
    fs.writev(this.fd, bufs, (err, n) => {
      this.writing = false;
      if (err) return this.fail(err);
      this.written += n;
      this.flush();
    });
  }

  private fail(err: NodeJS.ErrnoException): void {
    this.store.writeFailed(err);
    this.stopped = true;
    this.closing = true;
    this.queue = [];
    this.finish();
  }

  private finish(): void {
    const fd = this.fd;
    this.fd = null;
    const done = () => this.store.closed(this.id, this.reserved, this.written);
    if (fd === null) return done();
    fs.close(fd, done);
  }
}
