// engine: kernel in namespaces: attackers reach a decoy address whose port 80 a kernel route
// DNATs to a plain honeypot host. Proved from the honeypot's side (the `peer IP:PORT` line its
// own accept() printed) and from the event store (one kernel flow event per connection, from
// the addon's conntrack reader, for 10,000 connections). Also: a health check takes a dead
// server out of the kernel's map, SIGHUP swaps the kernel routes, and stopping leaves the
// gateway's firewall as it was.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openDatabase } from '../../src/events/sqlite-driver.js';
import { buildFarm, type Farm } from '../../src/netns/topology.js';
import { type GatewayProcess, startManagedGateway } from '../helpers/farm-gateway.js';
import { BIN } from '../helpers/honeygate.js';
import { decoysListener, kernelSkip, storeAndLog } from '../helpers/kernel.js';
import { connectFrom, rootState, startPeerServer } from '../helpers/netns.js';
import { waitFor } from '../helpers/wait.js';

const skip = kernelSkip();
const DECOY4 = '192.0.2.74';
const DECOY6 = '2001:db8:d::74';
const HP4 = '192.0.2.100';
const HP6 = '2001:db8:c::10';
// issue 19: events == connections for 10,000 connections (about 15 s of load here)
const CONNECTIONS = Number(process.env.HG_KERNEL_CONNECTIONS ?? 10_000);

// Connects `n` times (50 at a time) to host:port, reads the first line of each, closes;
// prints {"ok": N, "failed": N, "lines": {...distinct first lines' counts by prefix}}.
const LOADER = `
const net = require('node:net');
const [host, port, n] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
let started = 0, ok = 0, failed = 0, running = 0;
const next = () => {
  while (running < 50 && started < n) {
    started++; running++;
    const s = net.connect({ host, port });
    let done = false;
    const end = (good) => { if (done) return; done = true; good ? ok++ : failed++; running--; s.destroy(); if (ok + failed === n) console.log(JSON.stringify({ ok, failed })); else next(); };
    s.setTimeout(5000, () => end(false));
    s.on('error', () => end(false));
    s.on('data', (d) => { if (String(d).startsWith('peer ')) { s.end(); s.on('close', () => end(true)); } });
  }
};
next();
`;

function config(dir: string, extraRoute = ''): string {
  return `
${decoysListener([`${DECOY4}/32`, `${DECOY6}/128`], '80-81')}routes:
${extraRoute}  - name: web
    forward: hp
backends:
  hp:
    servers: ["${HP4}:2222", "${HP4}:2223", "[${HP6}]:2222"]
    engine: kernel
    health: { interval: 500ms, timeout: 2s, fall: 1, rise: 1 }
  other:
    servers: ["${HP4}:2224"]
    engine: kernel
# 10,000 connections from one source at over 1,000/s: above the default limits, which the kernel applies
limits: { perSource: 10000, perSourceRate: 1000000/s }
${storeAndLog(path.join(dir, 'events.db'))}`;
}

describe('kernel routes (engine: kernel) in namespaces', { skip }, () => {
  let farm: Farm;
  let gateway: GatewayProcess;
  let dir = '';
  let configPath = '';
  let rootBefore: Record<string, string>;
  let firewallBefore = '';
  const servers: ChildProcess[] = [];

  /** Kernel flow events of flows opened at or after `since` (epoch ms). */
  const kernelFlows = (since = 0): number => {
    const db = openDatabase(path.join(dir, 'events.db'), { readonly: true });
    try {
      const row = db
        .prepare(
          `SELECT count(*) AS n FROM events WHERE type = 'flow' AND detail LIKE 'kernel%' AND opened_at >= $since`,
        )
        .get({ since });
      return Number(row?.n ?? 0);
    } finally {
      db.close();
    }
  };
  const nft = async (args: string[]) => (await farm.topology.exec(farm.gateway.ns, ['nft', ...args])).stdout;
  const load = async (n: number, host = DECOY4): Promise<{ ok: number; failed: number }> => {
    const r = await farm.topology.exec(
      farm.attacker1.ns,
      [process.execPath, '-e', LOADER, host, '80', String(n)],
      { timeoutMs: 90_000 },
    );
    return JSON.parse(r.stdout.trim()) as { ok: number; failed: number };
  };

  before(async () => {
    rootBefore = rootState();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-kernel-'));
    configPath = path.join(dir, 'honeygate.yaml');
    fs.writeFileSync(configPath, config(dir));
    farm = await buildFarm({ honeypotHost: true });
    firewallBefore = await nft(['list', 'ruleset']);
    const hp = farm.honeypot!;
    servers.push(await startPeerServer(farm.topology, hp.ns, 2222));
    servers.push(await startPeerServer(farm.topology, hp.ns, 2224));
    // nothing on 2223: its health check fails and it leaves the map
    gateway = startManagedGateway(farm, configPath);
    await gateway.ready();
    await waitFor(
      'the dead server 2223 out of the kernel map',
      async () => {
        const map = await nft(['list', 'map', 'inet', 'honeygate', 'kernel_hp_v4']);
        return /192\.0\.2\.100 \. 2222/.test(map) && !/2223/.test(map);
      },
      15_000,
      100,
    );
  });

  after(async () => {
    for (const s of servers) s.kill();
    await gateway?.stop();
    await farm?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
  });

  test('a plain honeypot host sees the attacker address on a kernel-routed port (IPv4 and IPv6)', async () => {
    const c4 = await connectFrom(farm.topology, farm.attacker1.ns, DECOY4, 80);
    assert.equal(await c4.line(), `peer ${c4.local}`);
    await c4.close();
    const c6 = await connectFrom(farm.topology, farm.attacker2.ns, DECOY6, 80);
    assert.equal(await c6.line(), `peer ${c6.local}`);
    await c6.close();
    const rules = await nft(['list', 'chain', 'inet', 'honeygate', 'kernel']);
    assert.match(rules, /dnat ip to numgen inc mod 24 map @kernel_hp_v4/);
  });

  test('the dead server is out of the map: every flow reaches a live one', async () => {
    const map = await nft(['list', 'map', 'inet', 'honeygate', 'kernel_hp_v4']);
    assert.doesNotMatch(map, /2223/);
    assert.match(map, /192\.0\.2\.100 \. 2222/);
    const r = await load(200);
    assert.deepEqual(r, { ok: 200, failed: 0 });
  });

  // Issue 19: a kernel flow's record comes from conntrack's DESTROY, sent when the entry goes.
  // With the system's 120 s TIME_WAIT (then 5 s of honeygate's own) the 65,535-port burst took
  // 16.5 s to record; the kernel_close_v4 timeout policy (time_wait 1 s) and the sweep bring a
  // closed flow's record within about a second of its close.
  test('a closed flow is recorded within a few seconds, with its bytes', async () => {
    const payload = `${'x'.repeat(9_999)}\n`;
    const c = await connectFrom(farm.topology, farm.attacker1.ns, DECOY4, 80);
    const peerLine = `peer ${c.local}\n`;
    assert.equal(`${await c.line()}\n`, peerLine);
    c.write(payload);
    assert.equal(`${await c.line()}\n`, payload, 'the honeypot echoes');
    await c.close(); // both FINs: the client exits on the honeypot's end
    const closed = Date.now();
    const port = Number(c.local.slice(c.local.lastIndexOf(':') + 1));
    const find = () => {
      const db = openDatabase(path.join(dir, 'events.db'), { readonly: true });
      try {
        return db
          .prepare(`SELECT * FROM events WHERE detail LIKE 'kernel%' AND src_port = $port AND src_ip = $ip`)
          .get({ port, ip: farm.attacker1.ip4 });
      } finally {
        db.close();
      }
    };
    const e = await waitFor('the closed flow in the event store', find, 10_000, 25);
    const ms = Date.now() - closed;
    console.log(`# a closed kernel flow recorded ${ms} ms after its close`);
    assert.ok(ms < 4_000, `recorded ${ms} ms after the close, want about 1 s`);
    // conntrack counts IP bytes: each packet's payload plus 20 bytes of IPv4 and 20-60 of TCP header
    const m = /(\d+) packets in, (\d+) out/.exec(String(e.detail));
    assert.ok(m, String(e.detail));
    const [pin, pout] = [Number(m[1]), Number(m[2])];
    const within = (bytes: number, payloadBytes: number, packets: number, what: string) =>
      assert.ok(
        bytes >= payloadBytes + 40 * packets && bytes <= payloadBytes + 80 * packets,
        `${what}: ${bytes} IP bytes in ${packets} packets for ${payloadBytes} payload bytes`,
      );
    within(Number(e.bytes_in), payload.length, pin, 'bytes in');
    within(Number(e.bytes_out), peerLine.length + payload.length, pout, 'bytes out');
    assert.match(String(e.detail), /ended in (TIME_WAIT|CLOSE)/);
  });

  // Issue 19: `conntrack -E` through a pipe lost records (485 of 500, 1036 of 2000); the
  // addon's netlink reader (native/conntrack_reader.cc) must record every one.
  test(`events == connections for ${CONNECTIONS} connections`, async () => {
    // the flows of the earlier tests end meanwhile: count this test's by their open time
    const started = Date.now();
    const r = await load(CONNECTIONS);
    assert.deepEqual(r, { ok: CONNECTIONS, failed: 0 });
    const loadMs = Date.now() - started;
    await waitFor(
      'a kernel flow event per connection',
      () => kernelFlows(started) >= CONNECTIONS,
      30_000,
      200,
    ).catch(async (err: Error) => {
      const ct = await farm.topology
        .exec(farm.gateway.ns, ['conntrack', '-L', '-m', '0x2000/0x2000'])
        .catch((e: Error) => ({ stdout: '', stderr: e.message }));
      throw new Error(
        `${err.message}: ${kernelFlows(started)} recorded; conntrack now:\n${ct.stdout.split('\n').slice(0, 5).join('\n')}\n${ct.stderr}\n${gateway
          .output()
          .split('\n')
          .filter((l) => /conntrack|WARN|level":[45]/.test(l))
          .slice(-10)
          .join('\n')}`,
      );
    });
    const recordedMs = Date.now() - started - loadMs;
    assert.equal(kernelFlows(started), CONNECTIONS);
    const db = openDatabase(path.join(dir, 'events.db'), { readonly: true });
    try {
      const e = db
        .prepare(
          `SELECT * FROM events WHERE detail LIKE 'kernel%' AND src_ip = '198.51.100.10' ORDER BY seq DESC LIMIT 1`,
        )
        .get()!;
      assert.equal(e.action, 'forward');
      assert.equal(e.listener, 'decoys');
      assert.equal(e.route, 'web');
      assert.equal(e.backend, 'hp');
      assert.equal(e.server, `${HP4}:2222`);
      assert.equal(e.dst_ip, DECOY4);
      assert.equal(e.dst_port, 80);
      assert.ok(Number(e.bytes_in) > 0 && Number(e.bytes_out) > 0, 'conntrack accounting gives bytes');
    } finally {
      db.close();
    }
    const overruns = gateway.records.filter((x) => String(x.msg).includes('conntrack events lost')).length;
    assert.equal(overruns, 0, 'the 64 MiB receive buffer never overran');
    console.log(
      `# ${CONNECTIONS} kernel-routed connections in ${loadMs} ms (${Math.round((CONNECTIONS * 1000) / loadMs)}/s), ` +
        `all recorded ${recordedMs} ms after the last`,
    );
  });

  test('SIGHUP swaps the kernel routes in one transaction', async () => {
    fs.writeFileSync(
      configPath,
      config(dir, '  - name: other\n    match: { dstPorts: ["80"] }\n    forward: other\n'),
    );
    gateway.proc.kill('SIGHUP');
    await gateway.waitForLog('the reload', (r) => r.msg === 'config reloaded');
    const rules = await nft(['list', 'chain', 'inet', 'honeygate', 'kernel']);
    assert.match(rules, /route #0 other to backend other in the kernel/);
    const since = Date.now();
    assert.deepEqual(await load(20), { ok: 20, failed: 0 });
    await waitFor('the 20 flows recorded', () => kernelFlows(since) >= 20, 30_000, 200);
    const db = openDatabase(path.join(dir, 'events.db'), { readonly: true });
    try {
      const e = db
        .prepare(`SELECT server, route FROM events WHERE detail LIKE 'kernel%' ORDER BY seq DESC LIMIT 1`)
        .get()!;
      assert.equal(e.server, `${HP4}:2224`);
      assert.equal(e.route, 'other');
    } finally {
      db.close();
    }
  });

  // doctor read iptables' FORWARD only: a native nftables forward chain that drops went unnoticed.
  test('doctor names a native nftables forward chain that drops the DNATed flows, and its fix works', async () => {
    const gw = farm.gateway.ns;
    const doctor = async () =>
      (
        await farm.topology.exec(gw, [process.execPath, BIN, 'firewall', 'doctor', '-c', configPath], {
          timeoutMs: 60_000,
        })
      ).stdout;
    await farm.topology.run(gw, ['nft', 'add', 'table', 'inet', 'k4_fwd']);
    try {
      await farm.topology.run(gw, [
        'nft',
        'add chain inet k4_fwd forward { type filter hook forward priority 0; policy drop; }',
      ]);
      await farm.topology.run(gw, [
        'nft',
        'add rule inet k4_fwd forward ct state established,related accept',
      ]);
      await assert.rejects(
        connectFrom(farm.topology, farm.attacker1.ns, DECOY4, 80).then((c) => c.line()),
        'the new flow is dropped in forward',
      );
      const before = await doctor();
      assert.match(
        before,
        /WARN {2}kernel-path +table inet k4_fwd chain forward has policy drop, and no rule there accepts new flows to 192\.0\.2\.100:222[24]/,
        before,
      );
      const fixes = [...before.matchAll(/fix: (nft insert rule inet k4_fwd forward .*)$/gm)].map(
        (m) => m[1]!,
      );
      assert.ok(
        fixes.includes('nft insert rule inet k4_fwd forward ip daddr 192.0.2.100 ct status dnat accept'),
        before,
      );
      for (const fix of fixes) await farm.topology.run(gw, fix.split(' '));
      const c = await connectFrom(farm.topology, farm.attacker1.ns, DECOY4, 80);
      assert.equal(await c.line(), `peer ${c.local}`);
      await c.close();
      const after = await doctor();
      assert.ok(!after.includes('no rule there accepts'), after);
    } finally {
      await farm.topology.run(gw, ['nft', 'delete', 'table', 'inet', 'k4_fwd']);
    }
  });

  test('stopping removes every rule, the close timeouts too: the firewall is as before', async () => {
    const policy = await nft(['list', 'ct', 'timeout', 'inet', 'honeygate', 'kernel_close_v4']);
    assert.match(policy, /last_ack : 1, time_wait : 1, close : 1/);
    assert.equal(await gateway.stop(), 0);
    assert.equal(await nft(['list', 'ruleset']), firewallBefore);
    const rules = await farm.topology.exec(farm.gateway.ns, ['ip', 'rule']);
    assert.doesNotMatch(rules.stdout, /4210/);
  });
});
