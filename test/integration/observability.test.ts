// What an operator watches: update events for long flows, the JSON lines file in ECS
// names (reopened on SIGUSR1 after logrotate moved it), and the admin API's metrics.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { connect, exchange, readUntil } from '../helpers/client.js';
import { startHoneygate } from '../helpers/honeygate.js';
import { startEchoServer } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

describe('observability', { timeout: 60_000 }, () => {
  const cleanup: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('long flows, JSON lines with logrotate, and metrics behind a token', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const adminPort = await freePort();
    const hg = await startHoneygate(
      `
listeners:
  - name: f
    bind: "127.0.0.1:0"
routes:
  - forward: e
backends:
  e: { servers: ["127.0.0.1:${echo.port}"], source: none }
events:
  sensor: test-sensor
  sqlite: "{{dir}}/events.db"
  jsonl: "{{dir}}/events.jsonl"
  updateInterval: 300ms
  batch: 50ms
admin:
  listen: "127.0.0.1:${adminPort}"
  token: "\${TEST_TOKEN}"
`,
      { env: { TEST_TOKEN: 's3cret' } },
    );
    cleanup.push(() => hg.close());

    // A long flow gets update events with counters so far, then one final flow event.
    const s = await connect(hg.port('f'));
    s.write('ping');
    await readUntil(s, (d) => d.toString() === 'ping');
    const withUpdates = await hg.waitForEvents((all) => all.filter((e) => e.type === 'update').length >= 2);
    const update = withUpdates.find((e) => e.type === 'update')!;
    assert.equal(update.bytesIn, 4);
    assert.equal(update.closedAt, null);
    s.end();
    const final = await hg.waitForEvents((all) => all.some((e) => e.type === 'flow'));
    const flow = final.find((e) => e.type === 'flow')!;
    assert.equal(flow.id, update.id, 'updates carry the flow id');

    // logrotate: move the file away, SIGUSR1, new lines go to a new file.
    const jsonl = path.join(hg.dir, 'events.jsonl');
    await waitFor('the flow event in events.jsonl', () => fs.readFileSync(jsonl, 'utf8').includes('"end"'));
    fs.renameSync(jsonl, `${jsonl}.1`);
    const mark = hg.lines.length;
    hg.signal('SIGUSR1');
    await hg.waitForLine((l) => l.msg === 'event files reopened', 5000, mark);
    const second = await exchange(hg.port('f'), 'again');
    assert.equal(second.data.toString(), 'again');
    await waitFor(
      'a line in the new events.jsonl',
      () => fs.existsSync(jsonl) && fs.readFileSync(jsonl, 'utf8') !== '',
    );
    const doc = JSON.parse(fs.readFileSync(jsonl, 'utf8').trim().split('\n').at(-1)!);
    assert.equal(doc.source.ip, '127.0.0.1');
    assert.equal(doc.source.port, second.localPort);
    assert.equal(doc.destination.port, hg.port('f'));
    assert.equal(doc.network.transport, 'tcp');
    assert.equal(doc.observer.name, 'test-sensor');
    assert.equal(doc.event.action, 'forward');
    assert.equal(typeof doc.event.duration, 'number');

    // Metrics: the token is required, and flows are counted.
    const admin = (await hg.waitForLine((l) => l.msg === 'admin listening')).address as string;
    const url = `http://${admin}/metrics`;
    assert.equal((await fetch(url)).status, 401);
    const res = await fetch(url, { headers: { authorization: 'Bearer s3cret' } });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /honeygate_flows_total\{[^}]*action="forward"[^}]*\} 2/);
    assert.match(text, /honeygate_server_up\{[^}]*backend="e"[^}]*\} 1/);
  });
});
