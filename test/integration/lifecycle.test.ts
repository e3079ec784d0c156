// The process lifecycle: SIGHUP reloads without touching open flows (also when it renames a
// listener), a broken config on SIGHUP is refused while the old one keeps serving, SIGTERM
// exits 0 with every flow stored, and signals during the grace period change nothing.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { connect, exchange, readAll, readUntil } from '../helpers/client.js';
import { runCli, startHoneygate } from '../helpers/honeygate.js';
import { startBannerServer, startEchoServer } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

/** Forward everything on a fixed port (a reload keeps it bound) to `backend`. */
const config = (port: number, backend: string, servers: Record<string, number>) => `
listeners:
  - name: pot
    bind: "127.0.0.1:${port}"
routes:
  - forward: ${backend}
backends:
${Object.entries(servers)
  .map(([name, p]) => `  ${name}:\n    servers: ["127.0.0.1:${p}"]`)
  .join('\n')}
limits: { perSourceRate: 10000/s, grace: 2s }
events: { sqlite: "{{dir}}/events.db", batch: 50ms }
`;

describe('lifecycle', { timeout: 60_000 }, () => {
  const cleanup: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('SIGHUP: an open flow keeps working, new flows follow the new routes', async () => {
    const echo = await startEchoServer();
    const banner = await startBannerServer('B');
    cleanup.push(
      () => echo.stop(),
      () => banner.stop(),
    );
    const port = await freePort();
    const servers = { one: echo.port, two: banner.port };
    const hg = await startHoneygate(config(port, 'one', servers));
    cleanup.push(() => hg.close());

    const open = await connect(port);
    cleanup.push(() => {
      open.destroy();
    });
    open.write('ping1');
    await readUntil(open, (d) => d.toString() === 'ping1');

    hg.rewriteConfig(config(port, 'two', servers));
    const mark = hg.lines.length;
    hg.signal('SIGHUP');
    await hg.waitForLine((r) => r.msg === 'config reloaded' || r.msg === 'reload rejected', 5000, mark);
    assert.ok(
      hg.logs(mark).some((r) => r.msg === 'config reloaded'),
      'reload accepted',
    );

    open.write('ping2');
    await readUntil(open, (d) => d.toString() === 'ping2');
    const fresh = await exchange(port, 'hi');
    assert.equal(fresh.data.toString(), 'B', 'a new flow takes the new route');
  });

  test('SIGHUP with an invalid config: reload rejected, the old config still serves', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const port = await freePort();
    const hg = await startHoneygate(config(port, 'one', { one: echo.port }));
    cleanup.push(() => hg.close());

    hg.rewriteConfig(`${config(port, 'one', { one: echo.port })}\nbogus: true\n`);
    const mark = hg.lines.length;
    hg.signal('SIGHUP');
    const line = await hg.waitForLine(
      (r) => r.msg === 'reload rejected' || r.msg === 'config reloaded',
      5000,
      mark,
    );
    assert.equal(line.msg, 'reload rejected');
    assert.match(JSON.stringify(line.errors), /bogus/, 'the errors name the problem');

    const reply = await exchange(port, 'still here');
    assert.equal(reply.data.toString(), 'still here');
  });

  test('SIGTERM after N flows: exit 0, and the store holds N flows', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const port = await freePort();
    const hg = await startHoneygate(config(port, 'one', { one: echo.port }));
    cleanup.push(() => hg.close());

    const N = 7;
    for (let i = 0; i < N; i++)
      assert.equal((await exchange(port, `flow ${i}`)).data.toString(), `flow ${i}`);
    const code = await hg.stop();
    assert.equal(code, 0, `exit code\nstderr:\n${hg.stderr()}`);
    assert.ok(
      hg.logs().some((r) => r.msg === 'stopped'),
      'logs "stopped"',
    );
    const r = await runCli(['events', '--db', hg.dbPath, '--json', '--type', 'flow', '--limit', '1000']);
    assert.equal(r.code, 0, r.stderr);
    const flows = r.stdout.split('\n').filter((l) => l.trim() !== '');
    assert.equal(flows.length, N);
  });

  test('SIGTERM with a flow still open: closed after the grace period as "shutdown", exit 0', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const port = await freePort();
    const hg = await startHoneygate(
      config(port, 'one', { one: echo.port }).replace('grace: 2s', 'grace: 300ms'),
    );
    cleanup.push(() => hg.close());

    const open = await connect(port);
    cleanup.push(() => {
      open.destroy();
    });
    const localPort = open.localPort!;
    open.write('still talking');
    await readUntil(open, (d) => d.toString() === 'still talking');
    const closed = readAll(open, 10_000);
    assert.equal(await hg.stop(), 0, `exit code\nstderr:\n${hg.stderr()}`);
    await closed;
    const r = await runCli(['events', '--db', hg.dbPath, '--json', '--type', 'flow']);
    const flows = r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as { src: { port: number }; closeReason: string });
    assert.equal(flows.find((f) => f.src.port === localPort)?.closeReason, 'shutdown', r.stdout + r.stderr);
  });

  // Bug: a reload that renamed a listener re-bound its address while the old socket held it:
  // EADDRINUSE, reload rejected.
  test('a reload may rename the listener that owns an address', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const port = await freePort();
    const cfg = (name: string) => `
listeners:
  - name: ${name}
    bind: "127.0.0.1:${port}"
routes:
  - capture: { timeout: 1s }
`;
    const hg = await startHoneygate(cfg('before'));
    cleanup.push(() => hg.close());
    hg.rewriteConfig(cfg('after'));
    const mark = hg.lines.length;
    hg.signal('SIGHUP');
    const r = await hg.waitForLine(
      (l) => l.msg === 'config reloaded' || l.msg === 'reload rejected',
      5000,
      mark,
    );
    assert.equal(r.msg, 'config reloaded', JSON.stringify(r));
    const flow = await exchange(port, 'hi');
    await hg.waitForEvents((all) => all.some((e) => e.src.port === flow.localPort && e.listener === 'after'));
  });

  // Bug: SIGHUP or SIGUSR1 during the grace period took their default action and killed the
  // process before the events were flushed.
  test('signals during the grace period neither kill honeygate nor lose events', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.stop());
    const hg = await startHoneygate(`
listeners:
  - name: f
    bind: "127.0.0.1:0"
routes:
  - forward: e
backends:
  e: { servers: ["127.0.0.1:${echo.port}"] }
limits: { grace: 2s }
`);
    cleanup.push(() => hg.close());
    const open = await connect(hg.port('f'));
    cleanup.push(() => open.destroy());
    await waitFor('the flow to reach the honeypot', () => echo.open === 1);
    const mark = hg.lines.length;
    hg.signal('SIGTERM');
    await hg.waitForLine((l) => l.msg === 'stopping', 5000, mark);
    hg.signal('SIGHUP');
    hg.signal('SIGUSR1');
    assert.equal(await hg.stop(), 0);
    const events = await hg.events();
    assert.equal(events.filter((e) => e.type === 'flow').length, 1);
    assert.equal(events[0]!.closeReason, 'shutdown');
  });
});
