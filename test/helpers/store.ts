// A store of many events made fast: one INSERT ... SELECT, the indexes built after (the
// retention test and bench/retention.mjs). Not through the gateway: 2,000,000 rows take
// about 30 s on a loaded 2-core machine this way, hours one flow at a time.
import { fillSketches, ROLLUP_BACKFILL } from '../../src/events/rollup.js';
import { SqliteSink } from '../../src/events/sqlite.js';
import { openDatabase } from '../../src/events/sqlite-driver.js';

export const DAY = 86_400_000;
const PORTS = [22, 23, 80, 443, 445, 1433, 2222, 3306, 3389, 5900, 6379, 8080, 8443, 9200, 25565];

/** Fills a new store at `path` with `rows` events opened evenly over `span` ms up to `now`, oldest first. */
export function makeStore(path: string, rows: number, now: number, span: number): void {
  new SqliteSink(path).close(); // the schema, the pragmas of a new store
  const db = openDatabase(path);
  try {
    // A bulk load: no journal, the indexes built once at the end (each sorted, not row by row).
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    db.pragma('cache_size = -262144');
    db.pragma('temp_store = MEMORY'); // the index sorts, in memory rather than in temporary files
    const indexes = [
      ...db
        .prepare(
          "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL",
        )
        .iterate(),
    ];
    const create = indexes.map((r) => String(r.sql));
    for (const r of indexes) db.exec(`DROP INDEX ${String(r.name)}`);
    const ports = `json_extract('${JSON.stringify(PORTS)}', '$[' || (abs(random()) % ${PORTS.length}) || ']')`;
    db.exec(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows - 1})
      INSERT INTO events (id, type, opened_at, closed_at, sensor, listener, src_ip, src_port, dst_ip, dst_port,
        route, action, backend, server, source_mode, bytes_in, bytes_out, duration_ms, close_reason,
        first_bytes, protocol, protocol_fields, count)
      SELECT printf('%012x%s', t, lower(hex(randomblob(10)))), 'flow', t, t + 1500, 'gw-bulk', 'all-ports',
        printf('198.51.%d.%d', abs(random()) % 200, abs(random()) % 256), 1024 + abs(random()) % 60000,
        '192.0.2.1', ${ports}, 'ssh', 'forward', 'cowrie', '192.0.2.10:2222', 'transparent',
        120, 4567, 1500, 'client-closed', randomblob(24), 'ssh', '{"clientVersion":"SSH-2.0-Go"}', 1
      FROM (SELECT ${now - span} + (i * ${span} / ${rows}) AS t FROM n)`);
    for (const sql of create) db.exec(sql);
    db.exec(ROLLUP_BACKFILL); // what the sink would have counted, row by row
    fillSketches(db, 0, Number.MAX_SAFE_INTEGER);
    db.pragma('journal_mode = WAL');
  } finally {
    db.close();
  }
}
