// `workers: 2`: a primary and two worker processes on the same SO_REUSEPORT sockets. Every
// flow is recorded once (the workers send their events to the primary, which alone writes
// SQLite and JSON lines), a reload reaches every worker, SIGTERM drains every worker, and
// a killed worker is started again.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { after, describe, test } from 'node:test';
import { nativeAvailable } from '../../src/net/native.js';
import { connect, exchange, readAll, readUntil } from '../helpers/client.js';
import { startHoneygate } from '../helpers/honeygate.js';
import { startBannerServer, startEchoServer } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

const native = nativeAvailable();
const skip = native.ok ? false : `needs the native addon (SO_REUSEPORT): ${native.reason}`;

const config = (port: number, admin: number, server: number, grace = '2s') => `
workers: 2
listeners:
  - name: pot
    bind: "127.0.0.1:${port}"
routes:
  - forward: pot
backends:
  pot:
    servers: ["127.0.0.1:${server}"]
limits: { perSourceRate: 100000/s, grace: ${grace} }
events: { sqlite: "{{dir}}/events.db", jsonl: "{{dir}}/events.jsonl", batch: 50ms }
admin: { listen: "127.0.0.1:${admin}" }
`;

interface Status {
  gateway: { openFlows: number };
  recorder: { queued: number; written: number; dropped: number };
  workers: {
    worker: number;
    pid: number | null;
    ready: boolean;
    restarts: number;
    openFlows: number | null;
  }[];
}

async function status(admin: number): Promise<Status> {
  const res = await fetch(`http://127.0.0.1:${admin}/api/status`);
  assert.equal(res.status, 200);
  return (await res.json()) as Status;
}

/** Opens n connections and has each echo one line; resolves to the open sockets. */
async function openEchoing(port: number, n: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = await connect(port);
    sockets.push(s);
    s.write(`hello ${i}`);
    await readUntil(s, (d) => d.toString() === `hello ${i}`);
  }
  return sockets;
}

/** Half-closes every socket and waits until the far side has closed each. */
async function closeAll(sockets: net.Socket[]): Promise<void> {
  await Promise.all(
    sockets.map((x) => {
      const closed = readAll(x);
      x.end();
      return closed;
    }),
  );
}

describe('workers: 2', { skip, timeout: 90_000 }, () => {
  const cleanup: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('both workers take flows; every flow is recorded exactly once in SQLite and JSON lines', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const [port, admin] = [await freePort(), await freePort()];
    const hg = await startHoneygate(config(port, admin, echo.port));
    cleanup.push(() => hg.close());
    assert.equal(hg.logs().filter((r) => r.msg === 'worker started').length, 2, 'two workers started');

    // Held open, 40 flows spread over both workers (the kernel hashes each 4-tuple).
    const held = await openEchoing(port, 40);
    const s = await status(admin);
    assert.equal(s.gateway.openFlows, 40, 'open flows summed over the workers');
    assert.equal(s.workers.length, 2);
    for (const w of s.workers)
      assert.ok((w.openFlows ?? 0) > 0, `worker ${w.worker} has flows: ${JSON.stringify(s)}`);
    const heldPorts = held.map((x) => x.localPort!);
    await closeAll(held);

    const N = 200;
    const ports: number[] = [...heldPorts];
    for (let i = 0; i < N; i += 20) {
      const batch = await Promise.all(Array.from({ length: 20 }, (_, k) => exchange(port, `flow ${i + k}`)));
      for (const [k, r] of batch.entries()) assert.equal(r.data.toString(), `flow ${i + k}`);
      ports.push(...batch.map((r) => r.localPort));
    }
    assert.equal(await hg.stop(), 0, `exit code\nstderr:\n${hg.stderr()}`);

    const flows = await hg.events(['--type', 'flow']);
    assert.equal(flows.length, N + 40, 'one flow event per connection in SQLite');
    assert.equal(new Set(flows.map((e) => e.id)).size, flows.length, 'no event twice');
    assert.deepEqual(
      flows.map((e) => e.src.port).sort((a, b) => a - b),
      ports.sort((a, b) => a - b),
      'each client connection is the source of exactly one event',
    );
    const lines = readFileSync(`${hg.dir}/events.jsonl`, 'utf8').trimEnd().split('\n');
    const docs = lines.map((l) => JSON.parse(l) as { event: { id: string; type: string[] } });
    const jsonFlows = docs.filter((d) => d.event.type.includes('end'));
    assert.equal(jsonFlows.length, N + 40, 'every line parses and every flow is there once');
    assert.equal(new Set(jsonFlows.map((d) => d.event.id)).size, N + 40);
  });

  test('SIGHUP reaches every worker: new flows on both take the new route', async () => {
    const echo = await startEchoServer();
    const banner = await startBannerServer('B');
    cleanup.push(
      () => echo.stop(),
      () => banner.stop(),
    );
    const [port, admin] = [await freePort(), await freePort()];
    const hg = await startHoneygate(config(port, admin, echo.port));
    cleanup.push(() => hg.close());

    hg.rewriteConfig(config(port, admin, banner.port));
    const mark = hg.lines.length;
    hg.signal('SIGHUP');
    const line = await hg.waitForLine(
      (r) => r.msg === 'config reloaded' || r.msg === 'reload rejected',
      10_000,
      mark,
    );
    assert.equal(line.msg, 'config reloaded', JSON.stringify(line));

    // 40 flows reach both workers (held open: the honeypot has closed, the client not yet;
    // honeygate passes the FIN on at once, so the client must not answer it by itself),
    // and every one gets the new honeypot.
    const held: net.Socket[] = [];
    const replies: Promise<{ data: Buffer }>[] = [];
    for (let i = 0; i < 40; i++) {
      const s = await connect(port, { allowHalfOpen: true });
      held.push(s);
      replies.push(readAll(s));
    }
    const s = await status(admin);
    for (const w of s.workers)
      assert.ok((w.openFlows ?? 0) > 0, `worker ${w.worker} has flows: ${JSON.stringify(s)}`);
    for (const x of held) x.end();
    for (const r of await Promise.all(replies)) assert.equal(r.data.toString(), 'B');
    await hg.waitForEvents(
      (ev) => ev.filter((e) => e.server === `127.0.0.1:${banner.port}`).length === 40,
      10_000,
    );
  });

  test('SIGTERM drains every worker: open flows on both finish within the grace period, then exit 0', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const [port, admin] = [await freePort(), await freePort()];
    const hg = await startHoneygate(config(port, admin, echo.port, '5s'));
    cleanup.push(() => hg.close());

    const held = await openEchoing(port, 20);
    const s = await status(admin);
    for (const w of s.workers)
      assert.ok((w.openFlows ?? 0) > 0, `worker ${w.worker} has flows: ${JSON.stringify(s)}`);
    const mark = hg.lines.length;
    const stopped = hg.stop();
    await hg.waitForLine((r) => r.msg === 'stopping', 5000, mark);
    // Draining, not cut: every held flow still echoes, on whichever worker it is.
    for (const [i, x] of held.entries()) {
      x.write(`bye ${i}`);
      await readUntil(x, (d) => d.toString() === `bye ${i}`);
    }
    await closeAll(held);
    assert.equal(await stopped, 0, `exit code\nstderr:\n${hg.stderr()}`);
    assert.equal(hg.logs(mark).filter((r) => r.msg === 'worker stopped').length, 2, 'both workers stopped');
    const flows = await hg.events(['--type', 'flow']);
    assert.equal(flows.length, 20, 'every drained flow recorded');
    assert.ok(
      flows.every((f) => f.closeReason === 'client-closed'),
      flows.map((f) => f.closeReason).join(', '),
    );
  });

  test('a killed worker is started again and serves; its sibling never stopped', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const [port, admin] = [await freePort(), await freePort()];
    const hg = await startHoneygate(config(port, admin, echo.port));
    cleanup.push(() => hg.close());

    const before = (await status(admin)).workers;
    const victim = before[0]!;
    const sibling = before[1]!;
    assert.ok(victim.pid && sibling.pid);
    const mark = hg.lines.length;
    process.kill(victim.pid, 'SIGKILL');
    await hg.waitForLine((r) => r.msg === 'worker restarted' && r.worker === victim.worker, 15_000, mark);
    const after = await waitFor(
      'both workers ready again',
      async () => {
        const w = (await status(admin)).workers;
        return w.every((x) => x.ready) ? w : undefined;
      },
      10_000,
    );
    const again = after.find((w) => w.worker === victim.worker)!;
    assert.notEqual(again.pid, victim.pid, 'a new process');
    assert.equal(again.restarts, 1);
    assert.equal(
      after.find((w) => w.worker === sibling.worker)!.pid,
      sibling.pid,
      'the sibling kept running',
    );
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    assert.match(metrics, /^honeygate_workers 2$/m);
    assert.match(metrics, /^honeygate_worker_restarts_total 1$/m);

    // Both serve: 40 flows, all answered, and the new worker holds some of them.
    const held = await openEchoing(port, 40);
    const s = await status(admin);
    assert.ok((s.workers.find((w) => w.worker === victim.worker)?.openFlows ?? 0) > 0, JSON.stringify(s));
    await closeAll(held);
  });

  // #14 crash window, with workers: a killed worker's flows are in its start journal, and
  // the worker started in its place records them as crash before it accepts.
  test("a killed worker's open flows are recorded as crash by the worker started again", async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const [port, admin] = [await freePort(), await freePort()];
    const hg = await startHoneygate(config(port, admin, echo.port).replace('batch: 50ms', 'batch: 10s'));
    cleanup.push(() => hg.close());
    const held = await openEchoing(port, 40);
    const ports = held.map((s) => s.localPort!);
    const victim = (await status(admin)).workers.find((w) => (w.openFlows ?? 0) > 0)!;
    const mark = hg.lines.length;
    process.kill(victim.pid!, 'SIGKILL');
    await hg.waitForLine((r) => r.msg === 'worker restarted' && r.worker === victim.worker, 15_000, mark);
    await closeAll(held.filter((s) => !s.destroyed && !s.readableEnded));
    for (const s of held) s.destroy();
    assert.equal(await hg.stop(), 0);
    const events = await hg.events();
    const missing = ports.filter((p) => !events.some((e) => e.src.port === p));
    assert.deepEqual(missing, [], 'every flow a client saw has an event');
    assert.equal(
      events.filter((e) => e.closeReason === 'crash').length,
      victim.openFlows,
      "the killed worker's open flows, as crash",
    );
  });
});
