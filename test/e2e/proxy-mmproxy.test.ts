// The go-mmproxy recipe of docs/proxy-protocol.md, run as written in a farm's gateway
// namespace (its `ip rule`/`ip route` lines, its allowed-subnets file, its go-mmproxy
// command, and the honeygate YAML beside it): an attacker in attacker1 connects to
// honeygate on port 22 over IPv4 and IPv6, honeygate sends PROXY v2 to go-mmproxy, and
// go-mmproxy connects to the "Cowrie" on 127.0.0.1:2222 ([::1]:2222) from the attacker's
// own address. Cowrie is not installed: the stand-in prints the peer address its accept()
// returned, which is what Cowrie logs.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { buildFarm, type Farm } from '../../src/netns/topology.js';
import { BIN, completeConfig, type EventRecord, runCli } from '../helpers/honeygate.js';
import { connectFrom, needsRoot, rootState, startPeerServer } from '../helpers/netns.js';
import { needs } from '../helpers/peers.js';
import { snippet, substitute } from '../helpers/snippets.js';
import { waitFor } from '../helpers/wait.js';

const DOC = 'docs/proxy-protocol.md';

function skipReason(): string | false {
  return needsRoot() || needs('go-mmproxy', 'ss');
}

/** Collects a child's output lines; `text()` for failure messages. */
function collect(child: ChildProcess) {
  const lines: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
  createInterface({ input: child.stderr! }).on('line', (l) => lines.push(l));
  return { lines, text: () => lines.join('\n') };
}

test('go-mmproxy in front of Cowrie: Cowrie sees the attacker, honeygate records it', {
  skip: skipReason(),
  timeout: 90_000,
}, async () => {
  const rootBefore = rootState();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-n4-mmproxy-'));
  let farm: Farm | undefined;
  try {
    farm = await buildFarm();
    const { topology } = farm;
    const gw = farm.gateway.ns;

    // go-mmproxy's routing and allowed subnets, then go-mmproxy itself, as the doc says.
    const script = substitute(snippet(DOC, 'go-mmproxy.sh'), { '/etc/go-mmproxy': dir });
    const lines = script.split('\n');
    const start = lines.findIndex((l) => l.startsWith('go-mmproxy '));
    assert.ok(start > 0, 'the snippet ends with the go-mmproxy command');
    await topology.run(gw, ['sh', '-ec', lines.slice(0, start).join('\n')]);
    assert.match(await topology.ip(gw, ['rule']), /from 127\.0\.0\.1\/8 iif lo lookup 123/);

    const cowrie = await startPeerServer(topology, gw, 2222);
    const mmproxy = topology.spawn(gw, ['sh', '-c', `exec ${lines.slice(start).join('\n')}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const mmLog = collect(mmproxy);
    await waitFor('go-mmproxy to listen on 127.0.0.1:2223', async () => {
      if (mmproxy.exitCode !== null) throw new Error(`go-mmproxy exited: ${mmLog.text()}`);
      const r = await topology.exec(gw, ['ss', '-Hltn', 'sport = :2223']);
      return r.stdout.includes('127.0.0.1:2223');
    });

    // honeygate with the doc's YAML, events in the temp dir.
    const configPath = path.join(dir, 'honeygate.yaml');
    const dbPath = path.join(dir, 'events.db');
    fs.writeFileSync(configPath, completeConfig(snippet(DOC, 'go-mmproxy-honeygate.yaml'), dir));
    const hg = topology.spawn(gw, [process.execPath, BIN, 'run', '-c', configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const hgLog = collect(hg);
    await waitFor(
      'honeygate to be ready',
      () => {
        if (hg.exitCode !== null) throw new Error(`honeygate exited: ${hgLog.text()}`);
        return hgLog.lines.some((l) => l.includes('"msg":"ready"'));
      },
      15_000,
    );

    // The attacker connects to port 22, over IPv4 and IPv6 (go-mmproxy's -4 and -6, and
    // the ip -6 rules); Cowrie's side says who connected.
    const attacker = farm.attacker1;
    for (const [ip, gwIp] of [
      [attacker.ip4, attacker.gw4],
      [attacker.ip6, attacker.gw6],
    ] as const) {
      const client = await connectFrom(topology, attacker.ns, gwIp, 22);
      const local = ip.includes(':') ? `[${ip}]` : ip;
      assert.ok(client.local.startsWith(`${local}:`), client.local);
      const seen = await client.line().catch((err: Error) => {
        throw new Error(`${err.message}\ngo-mmproxy:\n${mmLog.text()}\nhoneygate:\n${hgLog.text()}`);
      });
      assert.equal(seen, `peer ${client.local}`, 'Cowrie accepted the attacker address and port');
      client.write('SSH-2.0-Go\r\n');
      assert.equal(await client.line(), 'SSH-2.0-Go\r', 'bytes go both ways through go-mmproxy');
      await client.close();

      const port = Number(client.local.slice(client.local.lastIndexOf(':') + 1));
      const flow = await waitFor(`the flow from ${client.local} in honeygate events`, async () => {
        const r = await runCli(['events', '--db', dbPath, '--json']);
        const evs = r.stdout
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as EventRecord);
        return evs.find((e) => e.src.ip === ip && e.src.port === port && e.closedAt !== null);
      });
      assert.equal(flow.route, 'ssh-to-cowrie-via-mmproxy');
      assert.equal(flow.backend, 'cowrie');
      assert.equal(flow.sourceMode, 'proxy-v2');
      assert.deepEqual(flow.dst, { ip: gwIp, port: 22 });
    }

    hg.kill('SIGTERM');
    await waitFor('honeygate to exit', () => hg.exitCode !== null || hg.signalCode !== null, 15_000);
    cowrie.kill('SIGTERM');
  } finally {
    await farm?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
});
