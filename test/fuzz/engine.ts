// A small coverage-guided fuzzer in plain Node. Jazzer.js was the first choice: its 4.x
// prebuilt fuzzer needs glibc 2.38 (Debian 12 ships 2.36) and 2.x downloads from GitHub at
// install time. So the loop lives here: istanbul-lib-instrument adds statement and branch
// counters to a private copy of the compiled target modules; an input that lights a counter
// for the first time joins the corpus; inputs are mutations of corpus entries (bit flips,
// byte inserts and deletes, splices, dictionary tokens). A seeded PRNG makes a run
// reproducible: the same seed, corpus and build give the same inputs.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createInstrumenter } from 'istanbul-lib-instrument';

/** The repository root (this file runs as dist/test/fuzz/engine.js). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const COVERAGE_VAR = '__honeygateFuzzCoverage';

/** One input the target rejected for a reason we already know and track in an issue. */
export class KnownFinding {
  constructor(
    readonly issue: string,
    readonly message: string,
  ) {}
}

/**
 * Checks one input against the target's invariants. Throws on a fault (an exception of the
 * code under test, or a broken invariant); returns a KnownFinding for a tracked defect.
 * `deep`: also run the costlier checks (every prefix), done on a sample of the inputs.
 */
export type Check = (input: Buffer, deep: boolean) => KnownFinding | undefined;

export interface Target {
  name: string;
  /** Compiled modules under dist/src whose statements and branches guide the search. */
  covers: string[];
  maxLength: number;
  dictionary: Buffer[];
  /** Seeds besides the files in test/fuzz/corpus/<name>/. */
  seeds(): Buffer[];
  /** Says whether a slow input (over RunOptions.slowMs) is a tracked defect, not a fault. */
  knownSlow?(input: Buffer): KnownFinding | undefined;
  /** Imports the target's modules from `src` (an instrumented copy of dist/src). */
  prepare(src: string): Promise<Check>;
}

export interface RunOptions {
  runs: number; // stop after this many inputs
  seconds: number; // or after this long (Infinity: no limit)
  seed: number;
  slowMs?: number; // one input taking more CPU time is a fault; default 1000
  crashDir?: string; // default <root>/fuzz-crashes
  saveCorpus?: boolean; // write inputs that found new coverage into test/fuzz/corpus/<target>/
  log?: (line: string) => void;
}

export interface RunResult {
  target: string;
  inputs: number;
  seconds: number;
  corpus: number;
  seedCorpus: number;
  statements: { covered: number; total: number };
  branches: { covered: number; total: number };
  known: Map<string, { count: number; example: string }>;
  fault?: { message: string; crashFile: string; repro: string };
}

/** mulberry32: a small, fast, seedable PRNG; returns [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function corpusDir(target: string): string {
  return join(ROOT, 'test/fuzz/corpus', target);
}

/** The seed corpus: the files in test/fuzz/corpus/<target>/ and the target's own seeds. */
export function loadSeeds(target: Target): Buffer[] {
  const dir = corpusDir(target.name);
  const files = existsSync(dir) ? readdirSync(dir).sort() : [];
  return [...files.map((f) => readFileSync(join(dir, f))), ...target.seeds()];
}

interface Counters {
  statements: Array<Record<string, number>>;
  branches: Array<number[]>;
}

/**
 * Copies dist/src to a private directory and instruments the target's files in it, so each
 * target's counters are its own. Returns the directory and a function that removes it.
 */
async function instrumentedCopy(
  target: Target,
): Promise<{ src: string; counters: () => Counters; cleanup: () => void }> {
  const base = join(ROOT, 'dist/.fuzz', `${process.pid}-${target.name}`);
  rmSync(base, { recursive: true, force: true });
  mkdirSync(base, { recursive: true });
  const src = join(base, 'src');
  cpSync(join(ROOT, 'dist/src'), src, { recursive: true, filter: (f) => !f.endsWith('.map') });
  const instrumenter = createInstrumenter({ esModules: true, coverageVariable: COVERAGE_VAR, compact: true });
  const files = target.covers.map((rel) => join(src, rel));
  for (const file of files) {
    writeFileSync(file, instrumenter.instrumentSync(readFileSync(file, 'utf8'), file));
  }
  const counters = (): Counters => {
    const all = (globalThis as Record<string, unknown>)[COVERAGE_VAR] as
      | Record<string, { s: Record<string, number>; b: Record<string, number[]> }>
      | undefined;
    const out: Counters = { statements: [], branches: [] };
    for (const file of files) {
      const c = all?.[file];
      if (!c) throw new Error(`fuzz: no coverage counters for ${file}; was it imported?`);
      out.statements.push(c.s);
      out.branches.push(...Object.values(c.b));
    }
    return out;
  };
  return { src, counters, cleanup: () => rmSync(base, { recursive: true, force: true }) };
}

/** Counters not yet lit; `fresh()` says whether the last input lit any (and forgets those). */
class Frontier {
  private readonly objs: Array<Record<string, number> | number[]> = [];
  private readonly keys: Array<string | number> = [];
  private readonly isBranch: boolean[] = [];
  readonly total = { statements: 0, branches: 0 };
  readonly covered = { statements: 0, branches: 0 };

  constructor(c: Counters) {
    for (const s of c.statements) {
      for (const k of Object.keys(s)) this.add(s, k, false);
    }
    for (const b of c.branches) {
      for (let i = 0; i < b.length; i++) this.add(b, i, true);
    }
  }

  private add(obj: Record<string, number> | number[], key: string | number, branch: boolean): void {
    if (branch) this.total.branches++;
    else this.total.statements++;
    if ((obj as Record<string | number, number>)[key]! > 0) {
      if (branch) this.covered.branches++;
      else this.covered.statements++;
      return;
    }
    this.objs.push(obj);
    this.keys.push(key);
    this.isBranch.push(branch);
  }

  fresh(): boolean {
    let found = false;
    for (let i = this.objs.length - 1; i >= 0; i--) {
      if ((this.objs[i] as Record<string | number, number>)[this.keys[i]!]! > 0) {
        found = true;
        if (this.isBranch[i]) this.covered.branches++;
        else this.covered.statements++;
        const last = this.objs.length - 1;
        this.objs[i] = this.objs[last]!;
        this.keys[i] = this.keys[last]!;
        this.isBranch[i] = this.isBranch[last]!;
        this.objs.pop();
        this.keys.pop();
        this.isBranch.pop();
      }
    }
    return found;
  }
}

const INTERESTING = [0x00, 0x01, 0x0a, 0x0d, 0x20, 0x2f, 0x3a, 0x7f, 0x80, 0xfe, 0xff];

/** Returns a mutation of `input`: 1, 2, 4 or 8 stacked edits, at most `max` bytes long. */
export function mutate(
  input: Buffer,
  corpus: Buffer[],
  dict: Buffer[],
  max: number,
  rand: () => number,
): Buffer {
  const int = (n: number): number => Math.floor(rand() * n);
  let out = Buffer.from(input);
  const edits = 1 << int(4);
  for (let e = 0; e < edits; e++) {
    const pos = int(out.length + 1);
    switch (int(12)) {
      case 0: // flip one bit
        if (out.length) {
          const p = int(out.length);
          out[p] = out[p]! ^ (1 << int(8));
        }
        break;
      case 1: // one random byte
        if (out.length) out[int(out.length)] = int(256);
        break;
      case 2: // one interesting byte
        if (out.length) out[int(out.length)] = INTERESTING[int(INTERESTING.length)]!;
        break;
      case 3: // insert random bytes
        out = Buffer.concat([
          out.subarray(0, pos),
          Buffer.from(Array.from({ length: 1 + int(8) }, () => int(256))),
          out.subarray(pos),
        ]);
        break;
      case 4: // delete a span
        out = Buffer.concat([out.subarray(0, pos), out.subarray(pos + 1 + int(16))]);
        break;
      case 5: // insert a dictionary token
        if (dict.length)
          out = Buffer.concat([out.subarray(0, pos), dict[int(dict.length)]!, out.subarray(pos)]);
        break;
      case 6: // overwrite with a dictionary token
        if (dict.length) {
          const t = dict[int(dict.length)]!;
          out = Buffer.concat([out.subarray(0, pos), t, out.subarray(pos + t.length)]);
        }
        break;
      case 7: {
        // splice: this input's head, another's tail
        const other = corpus[int(corpus.length)]!;
        out = Buffer.concat([out.subarray(0, pos), other.subarray(int(other.length + 1))]);
        break;
      }
      case 8: {
        // insert a span of another corpus entry
        const other = corpus[int(corpus.length)]!;
        const from = int(other.length + 1);
        out = Buffer.concat([
          out.subarray(0, pos),
          other.subarray(from, from + 1 + int(32)),
          out.subarray(pos),
        ]);
        break;
      }
      case 9: {
        // duplicate a span of this input elsewhere
        const from = int(out.length + 1);
        const span = out.subarray(from, from + 1 + int(32));
        out = Buffer.concat([out.subarray(0, pos), span, out.subarray(pos)]);
        break;
      }
      case 10: // a random 16-bit big-endian value (length fields)
        if (out.length >= 2) {
          const v = rand() < 0.5 ? int(65536) : [0, 1, 0xff, 0x100, 0x7fff, 0x8000, 0xffff][int(7)]!;
          out.writeUInt16BE(v, int(out.length - 1));
        }
        break;
      default: // truncate
        out = out.subarray(0, pos);
        break;
    }
  }
  return out.length > max ? out.subarray(0, max) : out;
}

function sha1(b: Buffer): string {
  return createHash('sha1').update(b).digest('hex');
}

/** Runs one target. Stops at the first fault (written to a crash file), or at runs/seconds. */
export async function fuzz(target: Target, opts: RunOptions): Promise<RunResult> {
  const log = opts.log ?? (() => {});
  const slowMs = opts.slowMs ?? 1000;
  const inst = await instrumentedCopy(target);
  try {
    const check = await target.prepare(inst.src);
    const rand = rng(opts.seed);
    const corpus: Buffer[] = [];
    const known = new Map<string, { count: number; example: string }>();
    const started = performance.now();
    let inputs = 0;
    let frontier: Frontier | undefined;
    const result = (fault?: RunResult['fault']): RunResult => ({
      target: target.name,
      inputs,
      seconds: (performance.now() - started) / 1000,
      corpus: corpus.length,
      seedCorpus: seeds.length,
      statements: { covered: frontier?.covered.statements ?? 0, total: frontier?.total.statements ?? 0 },
      branches: { covered: frontier?.covered.branches ?? 0, total: frontier?.total.branches ?? 0 },
      known,
      ...(fault ? { fault } : {}),
    });
    const onFault = (input: Buffer, message: string): RunResult => {
      const dir = opts.crashDir ?? join(ROOT, 'fuzz-crashes');
      mkdirSync(dir, { recursive: true });
      const crashFile = join(dir, `${target.name}-${sha1(input).slice(0, 16)}.bin`);
      writeFileSync(crashFile, input);
      const repro = `node dist/test/fuzz/run.js --target ${target.name} --repro ${crashFile}`;
      log(`FAULT in ${target.name} after ${inputs} inputs (seed ${opts.seed}): ${message}`);
      log(`  input: ${crashFile}`);
      log(`  reproduce: ${repro}`);
      return result({ message, crashFile, repro });
    };
    // Runs one input; returns a fault message, or undefined.
    // Without stack traces: the parsers under test build an Error for every rejected input,
    // and capturing its stack was a fifth of the config target's time. A fault is run again
    // with them, for the report.
    const stackTraceLimit = Error.stackTraceLimit;
    const runOne = (input: Buffer, deep: boolean): string | undefined => {
      // CPU time, not wall time: on a loaded machine a descheduled run looked slow (two
      // false faults of 1.3 s that took 20 ms when run again).
      const t0 = process.cpuUsage();
      let finding: KnownFinding | undefined;
      Error.stackTraceLimit = 0;
      try {
        finding = check(input, deep);
      } catch (first) {
        Error.stackTraceLimit = stackTraceLimit;
        let err = first;
        try {
          check(input, deep);
        } catch (again) {
          err = again;
        }
        return err instanceof Error ? (err.stack ?? err.message) : String(err);
      } finally {
        Error.stackTraceLimit = stackTraceLimit;
      }
      const used = process.cpuUsage(t0);
      const ms = (used.user + used.system) / 1000;
      if (ms > slowMs) {
        finding = target.knownSlow?.(input);
        if (!finding) return `one input took ${ms.toFixed(0)} ms of CPU (limit ${slowMs} ms)`;
      }
      if (finding) {
        const k = known.get(finding.issue);
        if (k) k.count++;
        else {
          known.set(finding.issue, { count: 1, example: finding.message });
          log(`known finding, not a fault until ${finding.issue} is fixed: ${finding.message}`);
        }
      }
      return undefined;
    };

    const seeds = loadSeeds(target);
    for (const s of seeds) {
      const input = s; // seeds run whole, even when longer than maxLength
      inputs++;
      const fault = runOne(input, true);
      if (fault) return onFault(input, fault);
      frontier ??= new Frontier(inst.counters());
      frontier.fresh();
      corpus.push(input);
    }
    if (!corpus.length) corpus.push(Buffer.alloc(0));
    frontier ??= new Frontier(inst.counters());
    const deadline = started + opts.seconds * 1000;
    let lastLog = performance.now();
    while (inputs < opts.runs) {
      const input = mutate(
        corpus[Math.floor(rand() * corpus.length)]!,
        corpus,
        target.dictionary,
        target.maxLength,
        rand,
      );
      inputs++;
      const fault = runOne(input, (inputs & 15) === 0);
      if (fault) return onFault(input, fault);
      if (frontier.fresh()) {
        const deepFault = runOne(input, true);
        if (deepFault) return onFault(input, deepFault);
        corpus.push(input);
        if (opts.saveCorpus) writeFileSync(join(corpusDir(target.name), sha1(input).slice(0, 16)), input);
      }
      if ((inputs & 63) === 0) {
        const now = performance.now();
        if (now >= deadline) break;
        if (now - lastLog > 30_000) {
          lastLog = now;
          const r = result();
          log(
            `${target.name}: ${r.inputs} inputs, ${r.seconds.toFixed(0)} s, corpus ${r.corpus}, ` +
              `branches ${r.branches.covered}/${r.branches.total}`,
          );
        }
      }
    }
    return result();
  } finally {
    inst.cleanup();
  }
}

/** Runs one saved input through a target; returns what went wrong, or undefined. */
export async function reproduce(target: Target, file: string): Promise<string | undefined> {
  const inst = await instrumentedCopy(target);
  try {
    const check = await target.prepare(inst.src);
    try {
      const finding = check(readFileSync(file), true);
      return finding ? `known finding (${finding.issue}): ${finding.message}` : undefined;
    } catch (err) {
      return err instanceof Error ? (err.stack ?? err.message) : String(err);
    }
  } finally {
    inst.cleanup();
  }
}

/** file:// URL of a module inside an instrumented copy of dist/src. */
export function moduleUrl(src: string, rel: string): string {
  return pathToFileURL(join(src, rel)).href;
}
