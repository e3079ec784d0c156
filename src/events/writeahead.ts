// The start journal: a write-ahead of flow starts, so that a crash (SIGKILL, OOM, power
// loss of the process) loses no flow without a trace. The recorder writes events in
// batches (events.batch, 200 ms by default): a kill between a flow's accept and its batch
// lost the flow. Now every accepted flow leaves a start line first, appended with one
// write() per event-loop turn (every accept of a turn in one call; no fsync: the page cache
// survives the process), and an end line once the sinks have taken its event. At the next
// start, `run` turns every start without an end into a `crash`-closed flow event before it
// accepts anything.
//
// Files: beside the event store, `<store>.starts.<owner>.<generation>` (owner `main`, or
// `w<N>` for worker N). A generation is closed once it holds GENERATION_BYTES or is
// GENERATION_MS old, and deleted once every flow it started has its event taken by the
// sinks; a clean stop deletes them all. So the files hold only what is in flight.
//
// Lines (tab-separated; the last one may be torn by a crash and is skipped):
//   S <id> <openedAt ms> <listener> <src ip> <src port> <dst ip> <dst port>
//   E <id>
import { closeSync, openSync, readdirSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { EventsConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { type Address, blankEvent, type FlowEvent } from './event.js';

const GENERATION_BYTES = 4 * 1024 * 1024;
const GENERATION_MS = 60_000;
const WARN_INTERVAL_MS = 10_000;

/** The journal's files sit beside the first file sink; null when events go nowhere. */
export function journalBase(events: EventsConfig): string | null {
  return events.sqlite ?? events.jsonl;
}

/** Whether the journal is on: HONEYGATE_JOURNAL=off turns it off (the benchmark's "before"). */
export function journalWanted(): boolean {
  return process.env.HONEYGATE_JOURNAL !== 'off';
}

/** The journal files under `base`, of `owner` when given (else every owner's). */
function journalFiles(base: string, owner?: string): string[] {
  const dir = dirname(base);
  const prefix = `${basename(base)}.starts.${owner === undefined ? '' : `${owner}.`}`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith(prefix) && /\.\d+$/.test(n))
    .sort()
    .map((n) => join(dir, n));
}

/** A field of a line: tabs and newlines cannot occur in addresses, names are guarded. */
function field(text: string): string {
  return /[\t\n]/.test(text) ? text.replace(/[\t\n]/g, ' ') : text;
}

export interface Recovered {
  events: FlowEvent[]; // one crash-closed flow event per start without an end
  files: string[]; // to delete once those events are written
}

/**
 * Reads the journals a previous run left under `base` (of `owner`, or all) and returns a
 * `crash`-closed flow event for every flow started and never ended. Each event closes at
 * its file's last modification: the last moment the process is known to have run.
 */
export function recoverJournal(base: string, sensor: string, owner?: string): Recovered {
  const files = journalFiles(base, owner);
  const starts = new Map<string, { line: string[]; lastSeen: number }>();
  const ended = new Set<string>();
  for (const file of files) {
    let text: string;
    let lastSeen: number;
    try {
      text = readFileSync(file, 'latin1');
      lastSeen = statSync(file).mtimeMs;
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const f = line.split('\t');
      if (f[0] === 'S' && f.length === 8 && /^[0-9a-f]{32}$/.test(f[1]!))
        starts.set(f[1]!, { line: f, lastSeen });
      else if (f[0] === 'E' && f.length === 2) ended.add(f[1]!);
    }
  }
  const events: FlowEvent[] = [];
  for (const [id, { line, lastSeen }] of starts) {
    if (ended.has(id)) continue;
    const openedAt = Number(line[2]);
    if (!Number.isFinite(openedAt)) continue;
    const closedAt = Math.max(openedAt, Math.floor(lastSeen));
    const address = (ip: string, port: string): Address => ({ ip, port: Number(port) || 0 });
    events.push(
      blankEvent({
        id,
        type: 'flow',
        openedAt,
        closedAt,
        sensor,
        listener: line[3]!,
        src: address(line[4]!, line[5]!),
        dst: address(line[6]!, line[7]!),
        closeReason: 'crash',
        detail:
          'honeygate stopped without recording this flow (killed or crashed); recovered from its start journal',
      }),
    );
  }
  return { events, files };
}

/**
 * `events` without the recovered (`crash`) ones a sink already holds as flows. The sinks
 * write a batch before the journal's end lines for it go out (one loop turn later), so a
 * kill between the two leaves flows that are both recorded and recovered; each file sink
 * drops those repeats itself (JetStream and the collector drop them by message id).
 */
export function withoutRecorded(events: FlowEvent[], recorded: (id: string) => boolean): FlowEvent[] {
  if (!events.some((e) => e.closeReason === 'crash')) return events;
  return events.filter((e) => e.closeReason !== 'crash' || !recorded(e.id));
}

/** What a process needs at start: the previous run's flows recovered, and its own journal. */
export interface JournalStart {
  journal: StartJournal | null;
  recovered: Recovered | null;
}

/**
 * Reads what a previous run left (of `owner`, or every owner's with `recoverAll`), then
 * opens this process's journal. Both null without file sinks or with HONEYGATE_JOURNAL=off.
 */
export function openJournal(
  events: EventsConfig,
  owner: string,
  log: Logger,
  opts: { recoverAll: boolean; own: boolean },
): JournalStart {
  const base = journalWanted() ? journalBase(events) : null;
  if (base === null) return { journal: null, recovered: null };
  const recovered = recoverJournal(base, events.sensor, opts.recoverAll ? undefined : owner);
  return { journal: opts.own ? new StartJournal(base, owner, log) : null, recovered };
}

/**
 * Records the recovered flows through `recorder` (its sinks) and deletes the old journals
 * once they are written; kept when a sink failed, so the next start tries again.
 */
export async function recordRecovered(
  recorder: { record(e: FlowEvent): void; flush(): Promise<void>; stats(): { sinkErrors: number } },
  recovered: Recovered | null,
  log: Logger,
): Promise<void> {
  if (recovered === null || recovered.files.length === 0) return;
  const errors = recorder.stats().sinkErrors;
  for (const e of recovered.events) recorder.record(e);
  await recorder.flush();
  if (recorder.stats().sinkErrors !== errors) return;
  removeJournalFiles(recovered.files);
  if (recovered.events.length > 0) {
    log.warn(
      { recovered: recovered.events.length },
      `the last run ended without recording ${recovered.events.length} flows (killed or crashed): recorded them as crash`,
    );
  }
}

/** Deletes journal files whose flows are now recorded. */
export function removeJournalFiles(files: string[]): void {
  for (const f of files) {
    try {
      unlinkSync(f);
    } catch {
      // already gone
    }
  }
}

/**
 * The journal of one process (the recorder's): start() on the data path, settled() when
 * the sinks took a batch. start() only appends to a string; the write happens once per
 * event-loop turn.
 */
export class StartJournal {
  private fd = -1;
  private generation = 0;
  private bytes = 0;
  private openedAt = 0;
  private pending = '';
  private scheduled = false;
  private failures = 0;
  private lastWarn = Number.NEGATIVE_INFINITY;
  /** Flows started and not yet settled, by generation (a few generations at most). */
  private readonly unsettled = new Map<number, number>();
  private readonly files = new Map<number, string>();
  private closed = false;
  /** Names this run's files apart from those a previous run left for recovery. */
  private readonly run = Date.now().toString(36);

  constructor(
    private readonly base: string,
    private readonly owner: string,
    private readonly log: Logger,
  ) {
    this.rotate();
  }

  /** Records a flow's start; returns its generation, which settled() takes back. Never throws. */
  start(id: string, openedAt: number, listener: string, src: Address, dst: Address): number {
    if (this.closed) return -1;
    this.pending += `S\t${id}\t${openedAt}\t${field(listener)}\t${src.ip}\t${src.port}\t${dst.ip}\t${dst.port}\n`;
    this.unsettled.set(this.generation, (this.unsettled.get(this.generation) ?? 0) + 1);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
    return this.generation;
  }

  /**
   * The flows whose events the sinks have now taken (or that leave none): their end lines,
   * in one write. A generation no flow is left in is deleted.
   */
  settled(ids: readonly string[], generations: readonly number[]): void {
    if (ids.length === 0 || this.closed) return;
    let text = '';
    for (let i = 0; i < ids.length; i++) {
      text += `E\t${ids[i]}\n`;
      const g = generations[i]!;
      this.unsettled.set(g, (this.unsettled.get(g) ?? 1) - 1);
    }
    this.pending += text;
    this.flush();
    for (const [g, n] of this.unsettled) {
      if (n <= 0 && g !== this.generation) this.drop(g);
    }
    if (this.bytes >= GENERATION_BYTES || Date.now() - this.openedAt >= GENERATION_MS) this.rotate();
  }

  /** A clean stop: every flow is settled, so nothing needs recovering; deletes the files. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    const open = [...this.unsettled.values()].reduce((n, k) => n + Math.max(0, k), 0);
    if (open === 0) removeJournalFiles([...this.files.values()]);
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const text = this.pending;
    this.pending = ''; // without a file (it could not be opened), the lines go: never pile up
    if (text === '' || this.fd < 0) return;
    try {
      this.bytes += writeSync(this.fd, text);
    } catch (err) {
      this.failed(err);
    }
  };

  private rotate(): void {
    this.flush();
    const previous = this.generation;
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
      this.generation++;
    }
    if ((this.unsettled.get(previous) ?? 0) <= 0 && this.files.has(previous) && previous !== this.generation)
      this.drop(previous);
    const file = `${this.base}.starts.${this.owner}.${this.run}.${this.generation}`;
    try {
      this.fd = openSync(file, 'a', 0o600);
      this.files.set(this.generation, file);
    } catch (err) {
      this.failed(err);
    }
    this.bytes = 0;
    this.openedAt = Date.now();
  }

  private drop(generation: number): void {
    const file = this.files.get(generation);
    this.unsettled.delete(generation);
    this.files.delete(generation);
    if (file) removeJournalFiles([file]);
  }

  private failed(err: unknown): void {
    this.failures++;
    const now = Date.now();
    if (now - this.lastWarn < WARN_INTERVAL_MS) return;
    this.lastWarn = now;
    try {
      this.log.warn(
        { code: 'HG_ERR_SINK', err, failures: this.failures, journal: this.base },
        'cannot write the start journal: a crash now could lose flows without a trace',
      );
    } catch {
      // a broken logger must not break the data path
    }
  }
}
