// Capture: honeygate accepts, records the attacker's first bytes and closes; a port range
// listener records one flow per port scanned; a config typo is refused with its key path.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exchange } from '../helpers/client.js';
import { type Honeygate, runCli, startHoneygate } from '../helpers/honeygate.js';
import { needs } from '../helpers/peers.js';
import { freePortRange } from '../helpers/ports.js';

describe('capture', { timeout: 60_000 }, () => {
  let hg: Honeygate;
  let rangeStart: number;
  const RANGE = 20;

  before(async () => {
    rangeStart = await freePortRange(RANGE);
    hg = await startHoneygate(`
listeners:
  - name: single
    bind: "127.0.0.1:0"
  - name: range
    bind: "127.0.0.1:${rangeStart}-${rangeStart + RANGE - 1}"
routes:
  - name: catch-all
    capture: { timeout: 5s }
limits: { perSourceRate: 10000/s }
`);
  });
  after(() => hg?.close());

  test('a flow that sends "hello" is recorded with its addresses and first bytes', async () => {
    const port = hg.port('single');
    const reply = await exchange(port, 'hello');
    assert.equal(reply.data.length, 0, 'capture sends nothing without a banner');
    const evs = await hg.waitForEvents((all) => all.some((e) => e.src.port === reply.localPort));
    const flow = evs.find((e) => e.src.port === reply.localPort)!;
    assert.equal(flow.type, 'flow');
    assert.equal(flow.listener, 'single');
    assert.deepEqual(flow.src, { ip: '127.0.0.1', port: reply.localPort });
    assert.deepEqual(flow.dst, { ip: '127.0.0.1', port });
    assert.equal(flow.action, 'capture');
    assert.equal(flow.route, 'catch-all');
    assert.equal(flow.firstBytes.toString(), 'hello');
    assert.equal(flow.bytesIn, 5);
    assert.equal(flow.closeReason, 'capture-done');
    assert.ok(flow.closedAt !== null && flow.closedAt >= flow.openedAt);
  });

  test('an nmap connect scan of a port range gives one event per port', { skip: needs('nmap') }, async () => {
    const last = rangeStart + RANGE - 1;
    const nmap = await new Promise<string>((resolve, reject) => {
      execFile(
        'nmap',
        ['-sT', '-Pn', '-n', '-p', `${rangeStart}-${last}`, '127.0.0.1'],
        { timeout: 60_000, env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/usr/bin` } },
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      );
    });
    const open = nmap.split('\n').filter((l) => /^\d+\/tcp\s+open/.test(l));
    assert.equal(open.length, RANGE, nmap);

    const inRange = (evs: Awaited<ReturnType<Honeygate['events']>>) =>
      evs.filter((e) => e.type === 'flow' && e.listener === 'range');
    const events = inRange(await hg.waitForEvents((evs) => inRange(evs).length >= RANGE, 10_000));
    const perPort = new Map<number, number>();
    for (const e of events) perPort.set(e.dst.port, (perPort.get(e.dst.port) ?? 0) + 1);
    for (let p = rangeStart; p <= last; p++) assert.equal(perPort.get(p), 1, `events for port ${p}`);
    assert.equal(events.length, RANGE);
    for (const e of events) assert.equal(e.action, 'capture');
  });
});

describe('check', () => {
  test('a typo in a key makes `check` exit 2 and name the key path', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-check-'));
    try {
      const file = path.join(dir, 'typo.yaml');
      fs.writeFileSync(
        file,
        `listeners:
  - name: ssh
    bind: "127.0.0.1:2222"
routes:
  - forward: web
backends:
  web:
    sevrers: ["127.0.0.1:8080"]
events: { sqlite: null }
`,
      );
      const r = await runCli(['check', '-c', file]);
      assert.equal(r.code, 2, `exit code; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
      const out = r.stdout + r.stderr;
      assert.match(out, /backends\.web/, out);
      assert.match(out, /sevrers/, out);
      assert.match(out, /servers/, 'names the allowed key');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
