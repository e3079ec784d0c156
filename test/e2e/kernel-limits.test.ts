// Issue 19, item 3: limits.perSource and limits.perSourceRate on kernel routes, enforced by
// nftables (`ct count over`, `limit rate over` in dynamic sets keyed by source) and tallied
// into `rejected` events from the kernel's per-source counters. Attackers reach a decoy whose
// port 80 a kernel route DNATs to a plain honeypot host; a refused connection is reset by the
// kernel (the client sees ECONNREFUSED) and the event store holds exactly the refusals the
// clients saw.
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
import { type Client, connectFrom, rootState, startPeerServer } from '../helpers/netns.js';
import { which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

const skip = kernelSkip(() => !which('curl') && 'curl not installed (Debian package curl)');
const DECOY4 = '192.0.2.74';
const HP4 = '192.0.2.100';
const PER_SOURCE = 3;
const RATE = 5; // per minute: no token comes back while a test runs, so the count is exact
const ADMIN_PORT = 9110; // in the gateway's own namespace

// Connects `n` times in a row to host:port; an accepted connection is reset at once by the
// client (so it never counts as open); prints {"ok": N, "refused": N, "other": N}.
const PROBE = `
const net = require('node:net');
const [host, port, n] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const r = { ok: 0, refused: 0, other: 0 };
const one = (i) => {
  if (i === n) return console.log(JSON.stringify(r));
  const s = net.connect({ host, port, timeout: 5000 });
  s.on('connect', () => { r.ok++; s.resetAndDestroy(); one(i + 1); });
  s.on('timeout', () => { r.other++; s.destroy(); one(i + 1); });
  s.on('error', (e) => { if (s.destroyed && r.ok + r.refused + r.other > i) return; e.code === 'ECONNREFUSED' ? r.refused++ : r.other++; one(i + 1); });
};
one(0);
`;

function config(dir: string, perSource = PER_SOURCE): string {
  return `
${decoysListener([`${DECOY4}/32`], '80')}routes:
  - name: web
    forward: hp
backends:
  hp:
    servers: ["${HP4}:2222"]
    engine: kernel
limits: { perSource: ${perSource}, perSourceRate: ${RATE}/m, rejectLogInterval: 500ms }
admin: { listen: "127.0.0.1:${ADMIN_PORT}" }
${storeAndLog(path.join(dir, 'events.db'))}`;
}

interface Rejected {
  src_ip: string;
  close_reason: string;
  count: number;
  dst_port: number;
  listener: string;
  detail: string;
}

describe('limits on kernel routes (engine: kernel) in namespaces', { skip }, () => {
  let farm: Farm;
  let gateway: GatewayProcess;
  let dir = '';
  let configPath = '';
  let rootBefore: Record<string, string>;
  const servers: ChildProcess[] = [];

  const rejected = (src: string, reason: string): Rejected[] => {
    const db = openDatabase(path.join(dir, 'events.db'), { readonly: true });
    try {
      return [
        ...db
          .prepare(
            `SELECT src_ip, close_reason, count, dst_port, listener, detail FROM events
           WHERE type = 'rejected' AND src_ip = $src AND close_reason = $reason`,
          )
          .iterate({ src, reason }),
      ] as unknown as Rejected[];
    } finally {
      db.close();
    }
  };
  const refusedIn = (src: string, reason: string) =>
    rejected(src, reason).reduce((n, e) => n + Number(e.count), 0);
  const nft = async (args: string[]) => (await farm.topology.exec(farm.gateway.ns, ['nft', ...args])).stdout;
  const probe = async (ns: string, n: number) => {
    const r = await farm.topology.exec(ns, [process.execPath, '-e', PROBE, DECOY4, '80', String(n)], {
      timeoutMs: 60_000,
    });
    return JSON.parse(r.stdout.trim()) as { ok: number; refused: number; other: number };
  };

  before(async () => {
    rootBefore = rootState();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-kernel-limits-'));
    configPath = path.join(dir, 'honeygate.yaml');
    fs.writeFileSync(configPath, config(dir));
    farm = await buildFarm({ honeypotHost: true });
    servers.push(await startPeerServer(farm.topology, farm.honeypot!.ns, 2222));
    gateway = startManagedGateway(farm, configPath);
    await gateway.ready();
  });

  after(async () => {
    for (const s of servers) s.kill();
    await gateway?.stop();
    await farm?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
  });

  test('firewall show: the limits are rules of the kernel chain, in words, and in place', async () => {
    const r = await farm.topology.exec(farm.gateway.ns, [
      process.execPath,
      BIN,
      'firewall',
      'show',
      '-c',
      configPath,
    ]);
    const show = r.stdout;
    assert.match(
      show,
      new RegExp(
        `add @kernel_sources_v4 \\{ ip saddr ct count over ${PER_SOURCE} \\} jump refuse_source_v4 comment "honeygate: limits.perSource ${PER_SOURCE} for route #0 web in the kernel`,
      ),
    );
    // nft leaves out a burst of 5, its default; the rendered rule names it
    assert.match(
      show,
      new RegExp(
        `update @kernel_rates_v4 \\{ ip saddr limit rate over ${RATE}/minute( burst ${RATE} packets)? \\} jump refuse_rate_v4`,
      ),
    );
    assert.match(show, /# in place: the live state matches the config/);
  });

  test(`perSource ${PER_SOURCE}: the next concurrent connection is reset in the kernel and tallied`, async () => {
    const ip = farm.attacker1.ip4;
    const open: Client[] = [];
    try {
      for (let i = 0; i < PER_SOURCE; i++) {
        const c = await connectFrom(farm.topology, farm.attacker1.ns, DECOY4, 80);
        open.push(c);
        assert.equal(await c.line(), `peer ${c.local}`, 'the honeypot sees the attacker');
      }
      await assert.rejects(connectFrom(farm.topology, farm.attacker1.ns, DECOY4, 80), {
        code: 'ECONNREFUSED',
      });
    } finally {
      for (const c of open) await c.close();
    }
    await waitFor(
      'the refusal in a rejected event',
      () => refusedIn(ip, 'limit-per-source') >= 1,
      15_000,
      100,
    );
    const [e] = rejected(ip, 'limit-per-source');
    assert.equal(e?.count, 1);
    assert.equal(e?.dst_port, 80);
    assert.equal(e?.listener, 'decoys');
    assert.match(e?.detail ?? '', /1 flows refused \(limit-per-source\) on port 80, by the kernel/);
  });

  // A reload first: SIGHUP swaps the kernel's limits with the table. Also keeps this test off
  // perSource: the kernel's ct count forgets a closed flow at its next garbage collection of the
  // source's list, at most once a jiffy, so back-to-back short flows may still count as open.
  test(`perSourceRate ${RATE}/m: the connections past the bucket are reset and each one tallied`, async () => {
    fs.writeFileSync(configPath, config(dir, 1000));
    gateway.proc.kill('SIGHUP');
    await gateway.waitForLog('the reload', (r) => r.msg === 'config reloaded');
    assert.match(await nft(['list', 'chain', 'inet', 'honeygate', 'kernel']), /ct count over 1000 /);
    const ip = farm.attacker2.ip4;
    const r = await probe(farm.attacker2.ns, RATE + 7);
    assert.deepEqual(r, { ok: RATE, refused: 7, other: 0 });
    await waitFor('7 refusals in rejected events', () => refusedIn(ip, 'limit-rate') >= 7, 15_000, 100);
    assert.equal(refusedIn(ip, 'limit-rate'), 7);
    // one more: the read that tallies it must not count the first 7 again
    assert.deepEqual(await probe(farm.attacker2.ns, 1), { ok: 0, refused: 1, other: 0 });
    await waitFor('the 8th refusal', () => refusedIn(ip, 'limit-rate') >= 8, 15_000, 100);
    assert.equal(refusedIn(ip, 'limit-rate'), 8);
    assert.equal(refusedIn(ip, 'limit-per-source'), 0);
    // the reload replaced the table: the earlier refusal of attacker1 was not counted again
    assert.equal(refusedIn(farm.attacker1.ip4, 'limit-per-source'), 1);
    // and /metrics counts what the events tally
    const metrics = await farm.topology.exec(farm.gateway.ns, [
      'curl',
      '-sS',
      `http://127.0.0.1:${ADMIN_PORT}/metrics`,
    ]);
    assert.match(metrics.stdout, /^honeygate_kernel_refused_flows_total\{reason="limit-rate"\} 8$/m);
    assert.match(metrics.stdout, /^honeygate_kernel_refused_flows_total\{reason="limit-per-source"\} 1$/m);
    assert.match(metrics.stdout, /^honeygate_conntrack_overruns_total 0$/m);
  });
});
