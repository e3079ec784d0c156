import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatDuration, localTime, parseTime, tableTime } from '../../src/cli/events.js';
import { SqliteSink } from '../../src/events/sqlite.js';
import { sampleEvent, tempDir } from '../helpers/events.js';

const BIN = fileURLToPath(new URL('../../../bin/honeygate.js', import.meta.url));

function honeygate(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('honeygate events', () => {
  const tmp = tempDir();
  const db = join(tmp.dir, 'events.db');
  const now = Date.now();
  const ssh = sampleEvent({
    openedAt: now - 60_000,
    closedAt: now - 59_000,
    firstBytes: Buffer.from([0x53, 0x53, 0x48, 0x2d, 0x00, 0x1b, 0xff, ...Buffer.from('x'.repeat(60))]),
  });
  const web = sampleEvent({
    openedAt: now - 3 * 3600_000,
    closedAt: now - 3 * 3600_000 + 2000,
    src: { ip: '2001:db8::9', port: 5555 },
    dst: { ip: '192.0.2.1', port: 8080 },
    route: 'web',
    action: 'capture',
    backend: null,
    server: null,
    protocol: 'http',
  });

  before(() => {
    const sink = new SqliteSink(db);
    sink.write([web, ssh]);
    sink.close();
  });
  after(tmp.cleanup);

  it('--json prints one FlowEvent per line with firstBytes in base64', async () => {
    const r = await honeygate(['events', '--db', db, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 2);
    assert.equal(lines[0].id, ssh.id);
    assert.equal(Buffer.from(lines[0].firstBytes, 'base64').equals(ssh.firstBytes), true);
    assert.deepEqual(lines[1], { ...web, firstBytes: web.firstBytes.toString('base64') });
  });

  it('filters with --since (relative), --src CIDR, --dst-port, --route, --action and --limit', async () => {
    const only = async (args: string[]) => {
      const r = await honeygate(['events', '--db', db, '--json', ...args]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l).id);
    };
    assert.deepEqual(await only(['--since', '1h']), [ssh.id]);
    assert.deepEqual(await only(['--until', '2h']), [web.id]);
    assert.deepEqual(await only(['--src', '2001:db8::/32']), [web.id]);
    assert.deepEqual(await only(['--dst-port', '22']), [ssh.id]);
    assert.deepEqual(await only(['--dst-port', '20-8080']), [ssh.id, web.id]);
    assert.deepEqual(await only(['--dst-port', '23,8000-8099']), [web.id]);
    assert.deepEqual(await only(['--route', 'web', '--action', 'capture']), [web.id]);
    assert.deepEqual(await only(['--type', 'update']), []);
    assert.deepEqual(await only(['--limit', '1']), [ssh.id]);
  });

  it('prints an aligned table with an escaped preview of the first bytes', async () => {
    const r = await honeygate(['events', '--db', db, '--wide']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.match(
      lines[0]!,
      /^TIME \(UTC[^)]*\)\s+TYPE\s+SRC\s+DST\s+LISTENER\s+ROUTE\s+ACTION\s+SERVER\s+IN\/OUT/,
    );
    const col = (name: string) => lines[0]!.indexOf(name);
    assert.equal(lines[1]!.indexOf('198.51.100.7:40001'), col('SRC'));
    assert.equal(lines[2]!.indexOf('[2001:db8::9]:5555'), col('SRC'));
    assert.ok(lines[1]!.includes(tableTime(ssh.openedAt, Date.now())));
    assert.ok(lines[1]!.includes('cowrie/192.0.2.10:2222'));
    assert.ok(lines[1]!.includes('123/4567'));
    assert.ok(lines[1]!.includes('SSH-\\x00\\x1b\\xff'), 'non-printables are escaped');
    assert.equal(/[\x00-\x08\x1b]/.test(r.stdout), false, 'no control characters reach the terminal');
    const preview = lines[1]!.slice(col('FIRST BYTES'));
    assert.ok(preview.length <= 43 && preview.endsWith('...'), `preview capped: ${preview}`);
  });

  it('fits the table in 120 columns, shows the zone, and says when nothing matched', async () => {
    const r = await honeygate(['events', '--db', db]);
    assert.equal(r.code, 0, r.stderr);
    for (const l of r.stdout.trimEnd().split('\n')) assert.ok(l.length <= 120, `${l.length}: ${l}`);
    assert.match(r.stdout, /^TIME \(UTC/);
    const none = await honeygate(['events', '--db', db, '--route', 'nope']);
    assert.equal(none.code, 0);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /^no events \(route nope\) in /);
  });

  it('--summary counts sources, ports, protocols; --format ecs prints ECS documents', async () => {
    const r = await honeygate(['events', '--db', db, '--summary', '--since', '24h']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^2 flows, 0 refused, from 2 sources since /);
    assert.match(r.stdout, /TOP PORTS\n {2}1 {2}22\n {2}1 {2}8080\n/);
    assert.match(r.stdout, /TOP SSH CLIENTS\n {2}2 {2}SSH-2.0-Go\n/);
    const e = await honeygate(['events', '--db', db, '--json', '--format', 'ecs', '--limit', '1']);
    assert.equal(e.code, 0, e.stderr);
    const doc = JSON.parse(e.stdout);
    assert.equal(doc.event.id, ssh.id);
    assert.equal(doc.ecs.version, '8.17.0');
  });

  it('--follow prints the last events, then each new one as it is recorded', async () => {
    const own = join(tmp.dir, 'follow.db'); // its own store: new rows would change the other tests
    const first = new SqliteSink(own);
    first.write([web, ssh]);
    first.close();
    const child = spawn(process.execPath, [BIN, 'events', '--db', own, '--follow', '--json', '--limit', '1']);
    let out = '';
    const seen = (n: number) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (out.split('\n').filter(Boolean).length >= n) resolve();
        };
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          check();
        });
        child.once('exit', () => reject(new Error(`exited early: ${out}`)));
        check();
      });
    try {
      await seen(1);
      assert.equal(JSON.parse(out.split('\n')[0]!).id, ssh.id);
      const fresh = sampleEvent({ openedAt: Date.now() });
      const sink = new SqliteSink(own);
      sink.write([fresh]);
      sink.close();
      await seen(2);
      assert.equal(JSON.parse(out.split('\n')[1]!).id, fresh.id);
    } finally {
      child.kill('SIGINT');
    }
  });

  it('reads the store path from --config', async () => {
    const config = join(tmp.dir, 'honeygate.yaml');
    writeFileSync(
      config,
      'listeners:\n  - name: l\n    bind: "127.0.0.1:0"\nroutes:\n  - capture: {}\nevents:\n  sqlite: ./events.db\n',
    );
    // Relative sink paths resolve against the config file's directory, as for `run`.
    const r = await honeygate(['events', '-c', config, '--json'], tmp.dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, 2);
  });

  it('prints a bad --config as check does: a line per problem, a count, exit 2', async () => {
    const config = join(tmp.dir, 'broken.yaml');
    writeFileSync(
      config,
      'listeners:\n  - name: l\n    bind: "127.0.0.1:0"\nevents:\n  sqlit: ./events.db\n',
    );
    const r = await honeygate(['events', '-c', config], tmp.dir);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      `${config}:5: events: unknown key 'sqlit' (allowed: sensor, sqlite, jsonl, createDirectories, updateInterval, queueSize, batch, retention, nats, enrich, recordings, scan)\nhoneygate events: 1 problem in ${config}\n`,
    );
  });

  it('exits 2 with "honeygate events: ..." on bad arguments', async () => {
    for (const args of [
      ['--since', 'yesterday'],
      ['--src', '10.0.0.0/40'],
      ['--dst-port', '70000'],
      ['--action', 'explode'],
      ['--type', 'flows'],
      ['--limit', '0'],
    ]) {
      const r = await honeygate(['events', '--db', db, ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^honeygate events: ${args[0]}: `));
    }
  });

  it('exits 1 when there is no event store', async () => {
    const r = await honeygate(['events', '--db', join(tmp.dir, 'nope.db')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^honeygate events: .*no event store at .*nope\.db/);
    const d = await honeygate(['events'], tmp.dir); // default ./data/events.db
    assert.equal(d.code, 1);
    assert.match(d.stderr, /no event store at \.\/data\/events\.db/);
  });
});

describe('events verb helpers', () => {
  it('parses ISO times and durations ago', () => {
    const now = Date.UTC(2024, 0, 10);
    assert.equal(parseTime('--since', '15m', now), now - 15 * 60_000);
    assert.equal(parseTime('--since', '2h', now), now - 2 * 3600_000);
    assert.equal(parseTime('--since', '7d', now), now - 7 * 86400_000);
    assert.equal(parseTime('--since', '2024-01-01T00:00:00Z', now), Date.UTC(2024, 0, 1));
    assert.throws(() => parseTime('--since', '5 minutes', now), /--since: "5 minutes" is not an ISO time/);
  });

  it('formats durations and local times for the table', () => {
    assert.equal(formatDuration(250), '250ms');
    assert.equal(formatDuration(1500), '1.5s');
    assert.equal(formatDuration(125_000), '2m05s');
    assert.equal(formatDuration(3_780_000), '1h03m');
    assert.match(localTime(Date.UTC(2024, 4, 1, 12)), /^2024-05-0[12]T\d\d:\d\d:00$/);
  });
});

// Regression: a bare date was read as UTC midnight while the table shows local times.
test('--since with a bare date means local midnight', () => {
  assert.equal(parseTime('--since', '2026-11-25', 0), new Date(2026, 10, 25).getTime());
  assert.equal(parseTime('--since', '2026-11-25T10:00:00Z', 0), Date.UTC(2026, 10, 25, 10));
});

// Regression: `--since 2024-13-45` silently became 2025-02-14 (Date rolls impossible days over).
test('--since and --until refuse a day that is not in the calendar', () => {
  for (const text of [
    '2024-13-45',
    '2024-02-30',
    '2023-02-29T10:00:00Z',
    '2024-00-10',
    '2024-04-31T00:00:00+02:00',
  ]) {
    assert.throws(
      () => parseTime('--since', text, 0),
      /--since: ".*" is not a date: \d{4}-\d\d-\d\d is not a day/,
    );
  }
  assert.equal(parseTime('--until', '2024-02-29', 0), new Date(2024, 1, 29).getTime());
  assert.equal(parseTime('--until', '2024-02-29T23:00:00Z', 0), Date.UTC(2024, 1, 29, 23));
});
