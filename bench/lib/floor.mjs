// The recording floor: CPU per events row stored in SQLite from C (bench/sqlite-floor.c),
// with the schema and columns of the honeygate tree under test. It is the least any proxy
// pays per flow to keep each flow in SQLite; report.mjs sets it against the headroom
// between HAProxy and the relay alone.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { run, summarize } from './util.mjs';

const ROWS = 200_000;
// honeygate's transaction at its top rate: about 12,000 flows/s, events.batch 200 ms.
const ROWS_PER_TRANSACTION = 2_400;

const WRK_REQUEST = 'GET /1k HTTP/1.1\r\nHost: 127.0.0.1:9003\r\nConnection: close\r\n\r\n';

// A flow of the connection-rate runs as honeygate records it (seen in its SQLite file);
// "id", "time" and "port" change per row.
const SAMPLE = {
  id: 'id',
  type: 'text flow',
  opened_at: 'time',
  closed_at: 'time',
  sensor: 'text bench',
  listener: 'text bench',
  src_ip: 'text 127.0.0.1',
  src_port: 'port',
  dst_ip: 'text 127.0.0.1',
  dst_port: 'int 9003',
  peer_ip: 'null',
  peer_port: 'null',
  proxy_header: 'null',
  route: 'text #0',
  action: 'text forward',
  backend: 'text bench',
  server: 'text 127.0.0.1:9001',
  source_mode: 'text none',
  bytes_in: `int ${WRK_REQUEST.length}`,
  bytes_out: 'int 1259',
  duration_ms: 'int 3',
  close_reason: 'text server-closed',
  first_bytes: `blob ${Buffer.from(WRK_REQUEST).toString('hex')}`,
  protocol: 'text http',
  protocol_fields: 'text {"method":"GET","path":"/1k","version":"1.1","host":"127.0.0.1:9003"}',
  count: 'int 1',
  detail: 'null',
  // A TCP flow of the bench: no enrichment, tally, scan, UDP counts or recording.
  src_country: 'null',
  src_asn: 'null',
  src_as_org: 'null',
  targets: 'null',
  scan: 'null',
  transport: 'null',
  udp: 'null',
  recording: 'null',
};

/** Builds bench/sqlite-floor.c and runs it `repeats` times on `cpus`; µs of CPU per row. */
export async function measureRecordingFloor({ root, dir, cpus, repeats, log }) {
  mkdirSync(dir, { recursive: true });
  const source = join(dirname(fileURLToPath(import.meta.url)), '..', 'sqlite-floor.c');
  const binary = join(dir, 'sqlite-floor');
  execFileSync('cc', ['-O2', '-o', binary, source, '-lsqlite3'], { stdio: 'inherit' });
  const dist = (path) => import(pathToFileURL(join(root, 'dist', 'src', 'events', path)).href);
  const { INSERT, MIGRATIONS, STORE_PRAGMAS } = await dist('sqlite.js');
  const { COLUMNS } = await dist('row.js');
  const missing = COLUMNS.filter((c) => !(c in SAMPLE));
  if (missing.length) throw new Error(`recording floor: no sample value for column ${missing.join(', ')}`);
  const schema = join(dir, 'schema.sql');
  const rowFile = join(dir, 'row.txt');
  writeFileSync(schema, [...STORE_PRAGMAS.map((p) => `PRAGMA ${p}`), ...MIGRATIONS].join(';\n'));
  writeFileSync(rowFile, `${[INSERT, ...COLUMNS.map((c) => SAMPLE[c])].join('\n')}\n`);
  const raw = [];
  for (let r = 0; r < repeats; r++) {
    const db = join(dir, `floor-${r}.db`);
    const res = await run(binary, [db, schema, rowFile, String(ROWS), String(ROWS_PER_TRANSACTION)], {
      cpus,
    });
    for (const f of [db, `${db}-wal`, `${db}-shm`]) rmSync(f, { force: true });
    if (res.code !== 0) throw new Error(`sqlite-floor exited ${res.code}: ${res.stderr.trim()}`);
    const out = JSON.parse(res.stdout);
    const cpuUs = out.userUs + out.sysUs;
    log(`recording floor: ${cpuUs.toFixed(2)} µs CPU per row (SQLite ${out.sqlite})`);
    raw.push({ ...out, cpuUs });
  }
  return {
    sqlite: raw[0].sqlite,
    rows: ROWS,
    rowsPerTransaction: ROWS_PER_TRANSACTION,
    indexes: MIGRATIONS.join('\n').match(/CREATE INDEX/g)?.length ?? 0,
    cpuUs: summarize(
      raw.map((x) => x.cpuUs),
      true,
    ),
    raw,
  };
}
