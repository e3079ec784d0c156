// JSON lines sink: one event per line, named after the Elastic Common Schema so that
// Filebeat (or Elastic Agent) can ship the file with no ingest pipeline. Our own fields
// live under `honeygate.*`.
//
// Writes are synchronous appends on one fd: a batch is a few kB into the page cache, and
// it makes reopen() (SIGUSR1 after logrotate renamed the file) exact: every line written
// before it is in the old file, every line after it in the new one, nothing in between.

import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { HoneygateError } from '../errors.js';
import { toEcs } from './ecs.js';
import type { FlowEvent, Sink } from './event.js';
import { safeJson } from './format.js';
import { withoutRecorded } from './writeahead.js';

/** How far back a recovered flow is looked for: the batches of the last loop turns before a kill. */
const RECOVERY_TAIL = 32 * 1024 * 1024;

export { type EcsDocument, toEcs } from './ecs.js';

export class JsonlSink implements Sink {
  readonly name = 'jsonl';
  readonly path: string;
  private fd: number | null;

  /** Opens (creating it and its directory) `path` for appending. Throws HG_ERR_SINK. */
  constructor(path: string) {
    this.path = path;
    this.fd = this.open();
  }

  write(batch: FlowEvent[]): void {
    if (batch.length === 0) return;
    if (this.fd === null) this.fd = this.open(); // a failed reopen gets another chance here
    const fd = this.fd;
    const size = fstatSync(fd).size;
    let tail: Set<string> | null = null;
    const events = withoutRecorded(batch, (id) => {
      tail ??= idsInTail(this.path, size);
      return tail.has(id);
    });
    if (events.length === 0) return;
    const lines = events.map((e) => line(e)).join('');
    try {
      writeAll(fd, Buffer.from(lines, 'utf8'));
    } catch (err) {
      // A full disk can stop us mid-line: cut the fragment, or it would swallow the next event.
      try {
        ftruncateSync(fd, size);
      } catch {
        // nothing more to do; the error below says what failed
      }
      throw err;
    }
  }

  /** Closes and reopens the path, so lines go to the new file after logrotate moved the old one. */
  reopen(): void {
    this.closeFd();
    this.fd = this.open();
  }

  close(): void {
    this.closeFd();
  }

  private open(): number {
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      return openSync(this.path, 'a', 0o640);
    } catch (err) {
      throw new HoneygateError('HG_ERR_SINK', `jsonl: cannot open ${this.path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  private closeFd(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    closeSync(fd);
  }
}

/** The ids of the flow events in the last RECOVERY_TAIL bytes of the file (update events share them). */
function idsInTail(path: string, size: number): Set<string> {
  const ids = new Set<string>();
  const start = Math.max(0, size - RECOVERY_TAIL);
  const buf = Buffer.alloc(size - start);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return ids;
  }
  try {
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, start + off);
      if (n === 0) break;
      off += n;
    }
  } finally {
    closeSync(fd);
  }
  // The id leads the line and the type follows the sensor's name: no attacker's byte comes between.
  const flow = /"event":\{"id":"([0-9a-f]{32})"[^\n]*?"honeygate":\{"type":"flow"/g;
  for (const m of buf.toString('latin1').matchAll(flow)) ids.add(m[1]!);
  return ids;
}

function line(e: FlowEvent): string {
  try {
    return `${JSON.stringify(toEcs(e))}\n`;
  } catch {
    // protocolFields JSON cannot hold (BigInt, a cycle): keep the event, flatten that field.
    const fields = JSON.parse(safeJson(e.protocolFields) ?? 'null') as FlowEvent['protocolFields'];
    return `${JSON.stringify(toEcs({ ...e, protocolFields: fields }))}\n`;
  }
}

// writeSync may write less than asked (signals, quotas); loop until all is out.
function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) {
    const n = writeSync(fd, buf, off, buf.length - off);
    if (n <= 0) throw new HoneygateError('HG_ERR_SINK', 'jsonl: the file accepted no bytes');
    off += n;
  }
}
