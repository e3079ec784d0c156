import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { type EcsDocument, JsonlSink, toEcs } from '../../src/events/jsonl.js';
import { Recorder } from '../../src/events/recorder.js';
import { sampleEvent, tempDir } from '../helpers/events.js';

function readLines(path: string): EcsDocument[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
}

describe('toEcs', () => {
  it('names fields after the Elastic Common Schema, nested, with the duration in nanoseconds', () => {
    const e = sampleEvent({
      peer: { ip: '203.0.113.9', port: 7000 },
      proxyHeader: 'v1',
      firstBytes: Buffer.from('GET / HTTP/1.1\r\n\x00\xff\\', 'latin1'),
      protocol: 'HTTP',
      protocolFields: { path: '/' },
      detail: 'x',
    });
    const doc = toEcs(e);
    assert.equal(doc['@timestamp'], '2024-05-01T12:00:01.750Z');
    assert.deepEqual(doc.event, {
      id: e.id,
      kind: 'event',
      category: ['network'],
      type: ['connection', 'end'],
      action: 'forward',
      reason: 'client-closed',
      start: '2024-05-01T12:00:00.250Z',
      end: '2024-05-01T12:00:01.750Z',
      duration: 1_500_000_000,
      dataset: 'honeygate.flow',
      module: 'honeygate',
    });
    assert.deepEqual(doc.observer, {
      name: 'gw-test',
      product: 'honeygate',
      vendor: 'honeygate',
      type: 'proxy',
    });
    assert.deepEqual(doc.source, { ip: '198.51.100.7', port: 40001, bytes: 123 });
    assert.deepEqual(doc.destination, { ip: '192.0.2.1', port: 22, bytes: 4567 });
    assert.deepEqual(doc.network, {
      type: 'ipv4',
      transport: 'tcp',
      direction: 'inbound',
      protocol: 'http',
      community_id: '1:HwbKeRXDabjxRLpl4xqGzjFtbYs=',
      bytes: 4690,
    });
    assert.deepEqual(doc.honeygate, {
      type: 'flow',
      listener: 'all-ports',
      route: 'ssh',
      backend: 'cowrie',
      server: '192.0.2.10:2222',
      source_mode: 'transparent',
      proxy_header: 'v1',
      peer: { ip: '203.0.113.9', port: 7000 },
      first_bytes: e.firstBytes.toString('base64'),
      first_bytes_text: 'GET / HTTP/1.1\\r\\n\\x00\\xff\\\\',
      count: 1,
      detail: 'x',
    });
    assert.deepEqual(doc.url, { original: '/', path: '/' });
    assert.ok(!Object.keys(doc).some((k) => k.includes('.')), 'no dotted keys');
  });

  it('marks updates as info (timestamped at open + duration) and rejections as denied', () => {
    const update = toEcs(sampleEvent({ type: 'update', closedAt: null, closeReason: null }));
    assert.deepEqual(update.event.type, ['connection', 'info']);
    assert.equal(update['@timestamp'], '2024-05-01T12:00:01.750Z');
    assert.equal('end' in update.event, false);
    assert.equal('reason' in update.event, false);
    const rejected = toEcs(sampleEvent({ type: 'rejected', action: 'close', count: 9 }));
    assert.deepEqual(rejected.event.type, ['connection', 'denied']);
    assert.equal(rejected.event.action, 'close');
    assert.equal(rejected.honeygate.count, 9);
  });
});

describe('JsonlSink', () => {
  const tmp = tempDir();
  after(tmp.cleanup);

  it('appends one JSON object per line, creating the directory', () => {
    const path = join(tmp.dir, 'a', 'events.jsonl');
    const sink = new JsonlSink(path);
    sink.write([sampleEvent(), sampleEvent()]);
    sink.write([sampleEvent()]);
    sink.close();
    const again = new JsonlSink(path); // appends, never truncates
    again.write([sampleEvent()]);
    again.close();
    const lines = readLines(path);
    assert.equal(lines.length, 4);
    for (const l of lines) assert.equal(l.event.dataset, 'honeygate.flow');
  });

  it('after logrotate renames the file, reopen() sends new lines to a new file and loses nothing', async () => {
    const path = join(tmp.dir, 'rot', 'events.jsonl');
    const rotated = `${path}.1`;
    const rec = new Recorder([new JsonlSink(path)], {
      queueSize: 10_000,
      batchMs: 60_000,
      log: pino({ level: 'silent' }),
    });
    const before = Array.from({ length: 50 }, () => sampleEvent());
    const queued = Array.from({ length: 30 }, () => sampleEvent());
    for (const e of before) rec.record(e);
    await rec.flush();
    for (const e of queued) rec.record(e); // still queued when the file moves
    renameSync(path, rotated);
    rec.record(sampleEvent()); // recorded between the move and the signal
    await rec.flush(); // these lines follow the open fd into the rotated file
    rec.reopen();
    const afterIds = Array.from({ length: 20 }, () => sampleEvent());
    for (const e of afterIds) rec.record(e);
    await rec.close();
    assert.deepEqual(rec.stats().sinkErrors, 0);

    const old = readLines(rotated);
    const fresh = readLines(path);
    assert.equal(old.length + fresh.length, 101, 'every event is in one of the two files');
    assert.equal(old.length, 81);
    assert.deepEqual(
      fresh.map((l) => l.event.id),
      afterIds.map((e) => e.id),
    );
  });

  it('reopen with events still queued puts them in the new file', async () => {
    const path = join(tmp.dir, 'rot2', 'events.jsonl');
    const rec = new Recorder([new JsonlSink(path)], {
      queueSize: 100,
      batchMs: 60_000,
      log: pino({ level: 'silent' }),
    });
    rec.record(sampleEvent());
    await rec.flush();
    renameSync(path, `${path}.1`);
    const pending = [sampleEvent(), sampleEvent()];
    for (const e of pending) rec.record(e);
    rec.reopen();
    await rec.close();
    assert.equal(readLines(`${path}.1`).length, 1);
    assert.deepEqual(
      readLines(path).map((l) => l.event.id),
      pending.map((e) => e.id),
    );
  });

  it('writes a line for an event whose protocol fields JSON cannot hold', () => {
    const path = join(tmp.dir, 'odd.jsonl');
    const sink = new JsonlSink(path);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    sink.write([sampleEvent({ protocol: 'odd', protocolFields: cyclic })]);
    sink.close();
    const [line] = readLines(path);
    const self = line?.honeygate.protocol_fields?.self as Record<string, unknown> | undefined;
    assert.ok(self?._unserializable);
  });

  it('fails to open a path it cannot create, with HG_ERR_SINK', () => {
    const path = join(tmp.dir, 'odd.jsonl', 'below-a-file.jsonl');
    assert.throws(() => new JsonlSink(path), { code: 'HG_ERR_SINK', message: /jsonl: cannot open/ });
  });
});

// Regression: a write cut short by a full disk left half a line, and the next batch was
// appended to it, so two events became one unparseable line.
describe('JsonlSink on a full disk', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it('cuts a partly written line, so every line in the file parses', () => {
    const path = join(tmp.dir, 'full.jsonl');
    const sink = new URL('../../src/events/jsonl.js', import.meta.url).href;
    const fixture = new URL('../helpers/events.js', import.meta.url).href;
    // A file size limit (ulimit -f, in KiB) stands in for the full disk.
    const script = `
      const { JsonlSink } = await import(${JSON.stringify(sink)});
      const { sampleEvent } = await import(${JSON.stringify(fixture)});
      const s = new JsonlSink(${JSON.stringify(path)});
      let failed = 0;
      for (let i = 0; i < 20; i++) {
        try { s.write([sampleEvent({ bytesIn: i })]); } catch { failed++; }
      }
      console.log(failed);`;
    const r = spawnSync(
      'bash',
      ['-c', `ulimit -S -f 4; exec "$0" --input-type=module -e "$1"`, process.execPath, script],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.ok(Number(r.stdout) > 0, 'some writes hit the limit');
    const text = readFileSync(path, 'utf8');
    assert.ok(text.endsWith('\n'));
    for (const l of text.trim().split('\n')) JSON.parse(l);
  });
});
