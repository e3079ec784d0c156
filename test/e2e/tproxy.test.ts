// A tproxy listener in the standard farm (attacker1 -> gateway, decoy addresses nobody
// owns; no Docker): honeygate runs with `run --manage-firewall`, a tproxy listener diverting
// att1 and an ordinary listener on the gateway's port 2222. What reaches which listener, a
// source port reused at once, and the tproxy socket's backlog.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { nativeAvailable } from '../../src/net/native.js';
import { farmSuite, inGateway, startManagedGateway } from '../helpers/farm-gateway.js';
import { type EventRecord, runCli } from '../helpers/honeygate.js';
import { connectFrom, needsRoot } from '../helpers/netns.js';
import { which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

function skipReason(): string | false {
  const root = needsRoot();
  if (root) return root;
  if (!which('nft')) return 'nft not installed (Debian package nftables)';
  const native = nativeAvailable();
  return native.ok ? false : `transparent mode needs the native addon: ${native.reason}`;
}
const skip = skipReason();

const TPROXY_PORT = 15001;

/** A tproxy listener on att1 (every port) and an ordinary listener on the gateway's 2222. */
function configText(dir: string, extra = ''): string {
  return `
listeners:
  - name: every-port
    tproxy: { port: ${TPROXY_PORT} }
    divert: { interface: att1 }
  - name: direct
    bind: "0.0.0.0:2222"
routes:
  - capture: { timeout: 5s }
events: { sqlite: ${dir}/events.db, batch: 50ms }
log: { level: info }
${extra}`;
}

async function events(dbPath: string): Promise<EventRecord[]> {
  const r = await runCli(['events', '--db', dbPath, '--json', '--limit', '1000']);
  if (r.code !== 0) throw new Error(`honeygate events exited ${r.code}: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as EventRecord);
}

describe('a tproxy listener', { skip }, () => {
  const s = farmSuite('hg-tproxy-', configText);

  // Bug: tproxy took every connection arriving on att1, also those to the gateway's own address
  // on the port of honeygate's own `bind` listener (an inbound-PROXY listener would see its load
  // balancer's connections land on the tproxy listener, header and all).
  test("a bind listener's port on the gateway's address reaches it; a decoy on that port is diverted", async () => {
    const g = startManagedGateway(s.farm, s.configPath);
    try {
      await g.ready();
      const db = path.join(s.dir, 'events.db');
      for (const host of [s.farm.attacker1.gw4, s.farm.decoys.ip4]) {
        const c = await connectFrom(s.farm.topology, s.farm.attacker1.ns, host, 2222);
        c.write('hello\n');
        await waitFor(
          `the event of ${host}:2222`,
          async () => (await events(db)).find((e) => e.dst.ip === host && e.dst.port === 2222),
          10_000,
          100,
        );
        await c.close();
      }
      const all = await events(db);
      const listenerOf = (host: string) =>
        all.find((e) => e.dst.ip === host && e.dst.port === 2222)?.listener;
      assert.equal(listenerOf(s.farm.attacker1.gw4), 'direct');
      assert.equal(listenerOf(s.farm.decoys.ip4), 'every-port');
    } finally {
      await g.stop();
    }
  });

  // Bug (found by the transparent benchmark): rule 2 (`socket transparent 1`) also took a new
  // SYN that met the TIME_WAIT socket of the previous flow from the same source port; the
  // kernel answered with an ACK instead of a SYN-ACK, the attacker reset and tried again. A
  // client reusing ports at a high rate (wrk, scanners with a fixed source port) lost a
  // retry per connection. New SYNs now go to tproxy, which ends the TIME_WAIT.
  test('an attacker reusing its source port at once gets a SYN-ACK, not an ACK to reset', async () => {
    const g = startManagedGateway(s.farm, s.configPath);
    try {
      await g.ready();
      const resets = () => {
        const out = spawnSync('ip', ['netns', 'exec', s.farm.attacker1.ns, 'nstat', '-az', 'TcpOutRsts']);
        return Number(/TcpOutRsts\s+(\d+)/.exec(out.stdout.toString())?.[1] ?? Number.NaN);
      };
      // Each round: connect from port 40404, send capture's 4096 bytes, read until honeygate
      // closes first (so the gateway keeps the TIME_WAIT), close.
      const script = `
        const net = require('node:net');
        const [host, port] = process.argv.slice(1);
        let round = 0;
        const once = () => {
          const s = net.connect({ host, port: Number(port), localPort: 40404 });
          s.on('connect', () => s.write(Buffer.alloc(4096, 120)));
          s.on('error', (e) => { console.log('round ' + round + ': ' + e.code); process.exit(0); });
          s.on('end', () => s.end());
          s.on('close', (hadError) => {
            if (hadError) return;
            console.log('round ' + round + ': ok');
            if (++round < 3) once();
          });
        };
        once();`;
      const before = resets();
      const client = s.farm.topology.spawn(
        s.farm.attacker1.ns,
        [process.execPath, '-e', script, s.farm.decoys.ip4, '8081'],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const lines: string[] = [];
      createInterface({ input: client.stdout! }).on('line', (l) => lines.push(l));
      const exited = new Promise((r) => client.on('exit', r));
      await waitFor(
        'three rounds or a failure',
        () => lines.length === 3 || lines.some((l) => !l.endsWith('ok')),
        20_000,
      );
      client.kill();
      await exited;
      assert.deepEqual(lines, ['round 0: ok', 'round 1: ok', 'round 2: ok']);
      assert.equal(resets() - before, 0, 'the attacker never had to reset a stray ACK');
    } finally {
      await g.stop();
    }
  });

  // Bug (src/gateway/listener.ts): `server.listen({ fd, backlog })` ignores `backlog` for an fd
  // (Node 20 and 24 read it only from the positional argument), so the tproxy socket, which
  // receives every diverted port, listened with Node's default 511 instead of 4096.
  test('the tproxy socket listens with a backlog of 4096', async () => {
    const g = startManagedGateway(s.farm, s.configPath);
    try {
      await g.ready();
      const ss = inGateway(s.farm, ['ss', '-tlnH', `sport = :${TPROXY_PORT}`]);
      const backlogs = ss
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => Number(l.trim().split(/\s+/)[2]));
      assert.deepEqual(backlogs, [4096, 4096], ss);
    } finally {
      await g.stop();
    }
  });
});
