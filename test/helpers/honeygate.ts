// Runs the real gateway as a user would: `node bin/honeygate.js run -c FILE` in a child
// process (process.execPath, so a Node 24 test run runs a Node 24 gateway), reads its
// pino JSON log lines, and queries its events through `honeygate events --json`.
//
// Contract relied on (src/main.ts, src/cli):
//   - each listener logs {"msg":"listening","listener":NAME,"address":"IP:PORT","ports":1}
//     per run of consecutive ports ("IP:FROM-TO"), then {"msg":"ready"} once everything is up;
//   - SIGHUP reloads: "config reloaded" or "reload rejected" (with `errors`);
//   - SIGTERM: stop accepting, wait up to limits.grace, close the rest ("shutdown"),
//     flush the sinks, log "stopped", exit 0;
//   - `events --db FILE --json`: one FlowEvent per line, firstBytes in base64.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GiveUp, waitFor } from './wait.js';

/** The repository root: the nearest parent of this file with honeygate's package.json. */
function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'honeygate') return dir;
    } catch {
      // keep climbing
    }
    dir = path.dirname(dir);
  }
  throw new Error('cannot find the honeygate repository root above test/helpers');
}

export const ROOT = findRoot();
export const BIN = path.join(ROOT, 'bin', 'honeygate.js');

/** One parsed log line; `raw` is the line as printed (non-JSON lines have only `raw`). */
export type LogRecord = Record<string, unknown> & { raw: string };

/** A recorded event as the events CLI prints it, firstBytes decoded back to bytes. */
export interface EventRecord {
  id: string;
  type: 'flow' | 'update' | 'rejected' | 'scan';
  openedAt: number;
  closedAt: number | null;
  sensor: string;
  listener: string;
  src: { ip: string; port: number };
  dst: { ip: string; port: number };
  peer: { ip: string; port: number } | null;
  proxyHeader: 'v1' | 'v2' | 'local' | null;
  route: string | null;
  action: string | null;
  backend: string | null;
  server: string | null;
  sourceMode: string | null;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  closeReason: string | null;
  firstBytes: Buffer;
  protocol: string | null;
  protocolFields: Record<string, unknown> | null;
  count: number;
  detail: string | null;
  targets?: import('../../src/events/event.js').Targets; // rejected and scan events
  scan?: import('../../src/events/event.js').ScanFields;
}

export interface StartOptions {
  readyTimeoutMs?: number; // default 15000
  env?: Record<string, string>;
  openFiles?: number; // run under this RLIMIT_NOFILE (util-linux's prlimit)
  cpus?: string; // run on these CPUs only (util-linux's taskset -c), e.g. '0'
}

export interface Honeygate {
  proc: ChildProcess;
  dir: string; // temp dir holding honeygate.yaml, events.db and anything the test puts there
  configPath: string;
  dbPath: string;
  lines: string[]; // stdout lines so far
  stderr(): string;
  logs(from?: number): LogRecord[];
  /** Resolves to the first log record at index >= `from` matching `predicate`. */
  waitForLine(predicate: (r: LogRecord) => boolean, timeoutMs?: number, from?: number): Promise<LogRecord>;
  /** The (first) port a listener bound (from its "listening" line); throws if it logged none. */
  port(listener: string): number;
  events(filterArgs?: string[]): Promise<EventRecord[]>;
  /** Polls the event store every 50 ms until `predicate(all events)` holds; resolves to them. */
  waitForEvents(predicate: (events: EventRecord[]) => boolean, timeoutMs?: number): Promise<EventRecord[]>;
  /** Writes a new config file (same placeholders) for a later SIGHUP. */
  rewriteConfig(configYaml: string): void;
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM, wait for exit (SIGKILL after 15 s); resolves to the exit code (null if killed). */
  stop(): Promise<number | null>;
  /** stop() if still running, then removes the temp dir. For after/finally. */
  close(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/**
 * Fills in a test config: `{{dir}}` becomes the temp dir, and a config without an
 * `events:` section gets one writing SQLite to DIR/events.db with fast batches.
 */
export function completeConfig(configYaml: string, dir: string): string {
  let text = configYaml.replaceAll('{{dir}}', dir);
  if (!/^events:/m.test(text)) {
    text += `\nevents:\n  sqlite: ${dir}/events.db\n  batch: 50ms\n`;
  }
  return text;
}

function parseLine(raw: string): LogRecord {
  try {
    const v = JSON.parse(raw) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return { ...(v as Record<string, unknown>), raw };
  } catch {
    // not JSON: a stray print
  }
  return { raw };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `honeygate ARGS...` to completion (30 s at most). */
export function runCli(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: opts.cwd ?? ROOT, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Writes `configYaml` (see completeConfig) to a temp dir, runs honeygate on it, waits for "ready". */
export async function startHoneygate(configYaml: string, opts: StartOptions = {}): Promise<Honeygate> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-run-'));
  const configPath = path.join(dir, 'honeygate.yaml');
  const dbPath = path.join(dir, 'events.db');
  fs.writeFileSync(configPath, completeConfig(configYaml, dir));

  const argv = [process.execPath, BIN, 'run', '-c', configPath];
  if (opts.openFiles !== undefined) argv.unshift('prlimit', `--nofile=${opts.openFiles}`);
  if (opts.cpus !== undefined) argv.unshift('taskset', '-c', opts.cpus);
  const proc = spawn(argv[0]!, argv.slice(1), {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  running.add(proc);
  const lines: string[] = [];
  const records: LogRecord[] = [];
  let partial = '';
  let errText = '';
  proc.stdout!.on('data', (c: Buffer) => {
    const parts = (partial + c.toString()).split('\n');
    partial = parts.pop()!;
    for (const raw of parts) {
      if (raw === '') continue;
      lines.push(raw);
      records.push(parseLine(raw));
    }
  });
  proc.stderr!.on('data', (c: Buffer) => {
    errText += c.toString();
  });
  proc.on('error', (err) => {
    errText += `spawn error: ${err.message}\n`;
  });
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => {
      running.delete(proc);
      resolve(code);
    });
  });
  const isRunning = () => proc.exitCode === null && proc.signalCode === null;
  const output = () => `stdout:\n${lines.join('\n')}\n${partial}\nstderr:\n${errText}`;

  const waitForLine = (predicate: (r: LogRecord) => boolean, timeoutMs = 5000, from = 0) =>
    waitFor(
      'a matching log line',
      () => {
        for (let i = from; i < records.length; i++) if (predicate(records[i]!)) return records[i]!;
        if (!isRunning()) throw new GiveUp(`honeygate exited (${proc.exitCode ?? proc.signalCode})`);
        return undefined;
      },
      timeoutMs,
      20,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${output()}`);
    });

  const events = async (filterArgs: string[] = []): Promise<EventRecord[]> => {
    const r = await runCli(['events', '--db', dbPath, '--json', '--limit', '100000', ...filterArgs], {
      cwd: dir,
    });
    if (r.code !== 0) throw new Error(`honeygate events exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => {
        const e = JSON.parse(l) as EventRecord & { firstBytes: string };
        return { ...e, firstBytes: Buffer.from(e.firstBytes ?? '', 'base64') };
      });
  };

  let stopping: Promise<number | null> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      if (isRunning()) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
        const code = await exited;
        clearTimeout(timer);
        return code;
      }
      return proc.exitCode;
    })();
    return stopping;
  };

  const hg: Honeygate = {
    proc,
    dir,
    configPath,
    dbPath,
    lines,
    stderr: () => errText,
    logs: (from = 0) => records.slice(from),
    waitForLine,
    port(listener) {
      const r = records.find((x) => x.msg === 'listening' && x.listener === listener);
      const m = typeof r?.address === 'string' ? /:(\d+)(?:-\d+)?$/.exec(r.address) : null;
      if (!m) throw new Error(`listener "${listener}" logged no "listening" line\n${output()}`);
      return Number(m[1]);
    },
    events,
    async waitForEvents(predicate, timeoutMs = 5000) {
      let last: EventRecord[] = [];
      try {
        return await waitFor(
          'events matching the condition',
          async () => {
            last = await events();
            return predicate(last) ? last : undefined;
          },
          timeoutMs,
        );
      } catch (err) {
        const shown = last
          .map((e) => JSON.stringify({ ...e, firstBytes: e.firstBytes.toString() }))
          .join('\n');
        throw new Error(`${(err as Error).message}\nevents so far (${last.length}):\n${shown}\n${output()}`);
      }
    },
    rewriteConfig(configYaml) {
      fs.writeFileSync(configPath, completeConfig(configYaml, dir));
    },
    signal(sig) {
      proc.kill(sig);
    },
    stop,
    async close() {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    await waitForLine((r) => r.msg === 'ready', opts.readyTimeoutMs ?? 15_000);
  } catch (err) {
    await hg.close();
    throw err;
  }
  return hg;
}
