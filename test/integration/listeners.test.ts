// Listeners beyond the basics: IPv6 end to end (PROXY v1 says TCP6), and a port range of
// a few thousand sockets, each recording the port it was reached on.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { exchange } from '../helpers/client.js';
import { startHoneygate } from '../helpers/honeygate.js';
import { startReplyOnEndServer } from '../helpers/peers.js';
import { freePortRange } from '../helpers/ports.js';

describe('listeners', { timeout: 60_000 }, () => {
  const cleanup: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('IPv6: a flow on [::1] reaches a PROXY v1 honeypot as TCP6', async () => {
    const pot = await startReplyOnEndServer((d) => d.toString('latin1').split('\r\n')[0]!);
    cleanup.push(() => pot.stop());
    const hg = await startHoneygate(`
listeners:
  - name: v6
    bind: "[::1]:0"
routes:
  - forward: pot
backends:
  pot: { servers: ["127.0.0.1:${pot.port}"], source: proxy-v1 }
`);
    cleanup.push(() => hg.close());
    const port = hg.port('v6');
    const reply = await exchange(port, 'x', { host: '::1' });
    assert.equal(reply.data.toString(), `PROXY TCP6 ::1 ::1 ${reply.localPort} ${port}`);
    const [flow] = await hg.waitForEvents((all) => all.some((e) => e.type === 'flow'));
    assert.deepEqual(flow!.src, { ip: '::1', port: reply.localPort });
    assert.deepEqual(flow!.dst, { ip: '::1', port });
  });

  test('a range of 2000 ports opens 2000 sockets and records the port each flow reached', async () => {
    const first = await freePortRange(2000);
    const last = first + 1999;
    const hg = await startHoneygate(
      `
listeners:
  - name: wide
    bind: "127.0.0.1:${first}-${last}"
routes:
  - capture: { timeout: 2s }
`,
      { readyTimeoutMs: 30_000 },
    );
    cleanup.push(() => hg.close());
    // One line for the range, not 2,000 (#13).
    const listening = hg.logs().filter((l) => l.msg === 'listening');
    assert.deepEqual(
      listening.map(({ listener, address, ports }) => ({ listener, address, ports })),
      [{ listener: 'wide', address: `127.0.0.1:${first}-${last}`, ports: 2000 }],
    );
    const probes = [first, first + 1, first + 1000, last];
    for (const port of probes) await exchange(port, `to ${port}`);
    const events = await hg.waitForEvents((all) => all.length >= probes.length);
    assert.deepEqual(events.map((e) => e.dst.port).sort(), [...probes].sort());
    for (const e of events) assert.equal(e.firstBytes.toString(), `to ${e.dst.port}`);
  });
});
