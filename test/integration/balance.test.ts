// Balancing across two honeypot servers that answer with their own name: source-hash
// keeps one attacker on one server; roundrobin alternates.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { exchange } from '../helpers/client.js';
import { type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { startBannerServer, type TcpServer } from '../helpers/peers.js';

const FLOWS = 20;

describe('balance', { timeout: 60_000 }, () => {
  let hg: Honeygate;
  let a: TcpServer;
  let b: TcpServer;

  before(async () => {
    a = await startBannerServer('A');
    b = await startBannerServer('B');
    const servers = `["127.0.0.1:${a.port}", "127.0.0.1:${b.port}"]`;
    hg = await startHoneygate(`
listeners:
  - name: hash
    bind: "127.0.0.1:0"
  - name: rr
    bind: "127.0.0.1:0"
routes:
  - match: { listeners: [hash] }
    forward: by-source
  - match: { listeners: [rr] }
    forward: in-turn
backends:
  by-source:
    servers: ${servers}
    balance: source-hash
  in-turn:
    servers: ${servers}
    balance: roundrobin
limits: { perSourceRate: 10000/s }
`);
  });
  after(async () => {
    await hg?.close();
    await a?.stop();
    await b?.stop();
  });

  /** Runs `FLOWS` flows one after another; returns which server answered each. */
  async function answers(port: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < FLOWS; i++) out.push((await exchange(port, 'hi')).data.toString());
    return out;
  }

  test('source-hash sends every flow from one source to the same server', async () => {
    const got = await answers(hg.port('hash'));
    assert.ok(got[0] === 'A' || got[0] === 'B', `answers: ${got.join(',')}`);
    assert.deepEqual(got, Array(FLOWS).fill(got[0]));
  });

  test('roundrobin alternates between the servers', async () => {
    const got = await answers(hg.port('rr'));
    for (const g of got) assert.ok(g === 'A' || g === 'B', `answers: ${got.join(',')}`);
    for (let i = 1; i < got.length; i++) assert.notEqual(got[i], got[i - 1], `answers: ${got.join(',')}`);

    const evs = await hg.waitForEvents((all) => all.filter((e) => e.backend === 'in-turn').length >= FLOWS);
    const servers = new Set(evs.filter((e) => e.backend === 'in-turn').map((e) => e.server));
    assert.deepEqual([...servers].sort(), [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`].sort());
  });
});
