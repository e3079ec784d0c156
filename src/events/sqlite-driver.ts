// One small SQLite surface over two drivers: Node's built-in node:sqlite where it exists
// without a flag (Node >= 22.13; no native addon to compile), else better-sqlite3 (Node 20).
// better-sqlite3 12 is also what Node 24.19+ must not load: its statements abort the
// process when garbage-collected there (node_object_wrap cleanup-hook change), and its
// fixed version 13 no longer runs on Node 20. So each Node gets the driver that works.
import { createRequire } from 'node:module';

export interface Statement {
  /** Named parameters, or positional ones (an array: cheaper to bind, for the hot insert). */
  run(params?: Record<string, unknown> | unknown[]): { changes: number };
  get(params?: Record<string, unknown> | unknown[]): Record<string, unknown> | undefined;
  iterate(params?: Record<string, unknown>): IterableIterator<Record<string, unknown>>;
}

export interface Database {
  readonly driver: 'node:sqlite' | 'better-sqlite3';
  exec(sql: string): void;
  prepare(sql: string): Statement;
  /** Runs a PRAGMA and returns the first column of its first row (undefined when none). */
  pragma(sql: string): unknown;
  /** Wraps fn in BEGIN / COMMIT, rolling back if it throws. */
  transaction<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void;
  close(): void;
}

export interface OpenOptions {
  readonly?: boolean; // also: the file must exist
}

const require = createRequire(import.meta.url);

// The slice of node:sqlite used here (@types/node follows Node 20, which has none).
interface NodeStatement {
  run(...params: unknown[]): unknown;
  get(...params: unknown[]): unknown;
  iterate(...params: unknown[]): IterableIterator<unknown>;
}
interface NodeSqlite {
  DatabaseSync: new (
    path: string,
    opts: { readOnly: boolean },
  ) => { exec(sql: string): void; prepare(sql: string): NodeStatement; close(): void };
}

function builtin(): NodeSqlite | null {
  if (process.env.HONEYGATE_SQLITE_DRIVER === 'better-sqlite3') return null;
  try {
    // getBuiltinModule answers undefined (Node 20) or throws where node:sqlite needs a flag.
    return (process.getBuiltinModule?.('node:sqlite') as NodeSqlite | undefined) ?? null;
  } catch {
    return null;
  }
}

export function openDatabase(path: string, opts: OpenOptions = {}): Database {
  const nodeSqlite = builtin();
  return nodeSqlite ? openBuiltin(nodeSqlite, path, opts) : openBetter(path, opts);
}

function openBuiltin(mod: NodeSqlite, path: string, opts: OpenOptions): Database {
  const db = new mod.DatabaseSync(path, { readOnly: opts.readonly ?? false });
  // node:sqlite returns BLOBs as Uint8Array; every caller here expects Buffers.
  const toBuffers = (row: Record<string, unknown> | undefined) => {
    if (!row) return row;
    for (const [k, v] of Object.entries(row)) {
      if (v instanceof Uint8Array && !Buffer.isBuffer(v))
        row[k] = Buffer.from(v.buffer, v.byteOffset, v.length);
    }
    return row;
  };
  const api: Database = {
    driver: 'node:sqlite',
    exec: (sql) => db.exec(sql),
    prepare(sql) {
      const st = db.prepare(sql);
      return {
        run: (p) => ({ changes: Number((st.run(...bind(p)) as { changes: number | bigint }).changes) }),
        get: (p) => toBuffers(st.get(...bind(p)) as Record<string, unknown> | undefined),
        *iterate(p) {
          for (const row of st.iterate(...bind(p))) yield toBuffers(row as Record<string, unknown>)!;
        },
      };
    },
    pragma: (sql) => firstColumn(db.prepare(`PRAGMA ${sql}`).get() as Record<string, unknown> | undefined),
    transaction: (fn) => transaction(api, fn),
    close: () => db.close(),
  };
  return api;
}

function openBetter(path: string, opts: OpenOptions): Database {
  let Better: typeof import('better-sqlite3');
  try {
    Better = require('better-sqlite3');
  } catch (err) {
    // An optional dependency: its build may have failed (no compiler) on a Node that has node:sqlite.
    throw new Error(
      `SQLite needs Node.js >= 22.13 (built-in node:sqlite) or the better-sqlite3 module (npm ci with a C++ compiler): ${(err as Error).message}`,
      { cause: err },
    );
  }
  const db = new Better(path, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
  return {
    driver: 'better-sqlite3',
    exec: (sql) => void db.exec(sql),
    prepare(sql) {
      const st = db.prepare(sql);
      return {
        run: (p) => ({ changes: st.run(...bind(p)).changes }),
        get: (p) => st.get(...bind(p)) as Record<string, unknown> | undefined,
        iterate: (p) => st.iterate(...bind(p)) as IterableIterator<Record<string, unknown>>,
      };
    },
    pragma: (sql) => db.pragma(sql, { simple: true }),
    transaction: (fn) => db.transaction(fn),
    close: () => db.close(),
  };
}

function transaction<A extends unknown[]>(db: Database, fn: (...args: A) => void): (...args: A) => void {
  return (...args) => {
    db.exec('BEGIN');
    try {
      fn(...args);
      db.exec('COMMIT');
    } catch (err) {
      try {
        db.exec('ROLLBACK');
      } catch {
        // SQLite already rolled back (full disk, I/O error): the first error is the one to tell
      }
      throw err;
    }
  };
}

/** Statement arguments: the named parameters, or none. */
function bind(params?: Record<string, unknown> | unknown[]): unknown[] {
  if (Array.isArray(params)) return params;
  return params ? [params] : [];
}

function firstColumn(row: Record<string, unknown> | undefined): unknown {
  return row ? Object.values(row)[0] : undefined;
}
