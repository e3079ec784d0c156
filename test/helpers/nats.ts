// A real nats-server with JetStream on 127.0.0.1, its store in a directory of the test's,
// started and restarted on the same port (a broker coming back); and a running
// `honeygate collect`. Both wait for their readiness lines, never sleep.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import { openDatabase } from '../../src/events/sqlite-driver.js';
import { BIN } from './honeygate.js';
import { waitFor } from './wait.js';

export interface NatsServer {
  port: number;
  url: string;
  start(): Promise<void>;
  /** SIGTERM (SIGKILL with `kill`), wait for exit. */
  stop(kill?: boolean): Promise<void>;
}

export function natsServer(port: number, storeDir: string): NatsServer {
  let proc: ChildProcess | null = null;
  const server: NatsServer = {
    port,
    url: `nats://127.0.0.1:${port}`,
    async start() {
      let out = '';
      const p = spawn('nats-server', ['-js', '-sd', storeDir, '-a', '127.0.0.1', '-p', String(port)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      proc = p;
      p.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
      });
      p.stderr!.on('data', (c: Buffer) => {
        out += c.toString();
      });
      await waitFor(
        `nats-server ready (${out})`,
        () => {
          if (p.exitCode !== null) throw new Error(`nats-server exited ${p.exitCode}: ${out}`);
          return out.includes('Server is ready');
        },
        10_000,
        20,
      );
    },
    async stop(kill = false) {
      const p = proc;
      proc = null;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill(kill ? 'SIGKILL' : 'SIGTERM');
      await exited;
    },
  };
  return server;
}

export interface CollectProcess {
  proc: ChildProcess;
  output(): string;
  /** GET /metrics, as name -> value. */
  metrics(): Promise<Record<string, number>>;
  stop(): Promise<number | null>;
}

export async function startCollect(
  configPath: string,
  db: string,
  metricsPort: number,
  extraArgs: string[] = [],
): Promise<CollectProcess> {
  const proc = spawn(
    process.execPath,
    [BIN, 'collect', '-c', configPath, '--db', db, '--metrics', `127.0.0.1:${metricsPort}`, ...extraArgs],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  proc.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  await waitFor(
    'collect: "collecting"',
    () => {
      if (proc.exitCode !== null) throw new Error(`collect exited ${proc.exitCode}: ${out}`);
      return out.includes('"collecting"');
    },
    15_000,
    20,
  );
  return {
    proc,
    output: () => out,
    async metrics() {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const m: Record<string, number> = {};
      for (const line of text.split('\n')) {
        const hit = /^(honeygate_\w+) ([0-9.e+-]+)$/.exec(line);
        if (hit) m[hit[1]!] = Number(hit[2]);
      }
      return m;
    },
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode;
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
      proc.kill('SIGTERM');
      return exited;
    },
  };
}

/**
 * Ids of the flow events in a store (every row, with repeats), read straight from SQLite while
 * a gateway may be writing it. (Through `honeygate events --json`, 55,000 events outgrew the
 * 64 MiB an exec keeps, and the 60 s outage test failed on that alone.)
 */
export async function storeIds(db: string, sensor?: string): Promise<string[]> {
  if (!fs.existsSync(db)) return [];
  const store = openDatabase(db, { readonly: true });
  try {
    store.pragma('busy_timeout = 5000');
    const rows = sensor
      ? store.prepare("SELECT id FROM events WHERE type = 'flow' AND sensor = @sensor").iterate({ sensor })
      : store.prepare("SELECT id FROM events WHERE type = 'flow'").iterate();
    return [...rows].map((r) => r.id as string);
  } finally {
    store.close();
  }
}

/** Events waiting in a nats sink's outbox file. */
export function outboxLength(file: string): number {
  if (!fs.existsSync(file)) return 0;
  const db = openDatabase(file, { readonly: true });
  try {
    return (db.prepare('SELECT coalesce(sum(n), 0) AS n FROM outbox').get() as { n: number }).n;
  } finally {
    db.close();
  }
}
