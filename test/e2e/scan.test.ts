// Issue 20: a SYN scan (`nmap -sS`) through a tproxy listener, in namespaces. The tproxy socket
// answers every diverted port's SYN with a SYN-ACK from the kernel, nmap resets, and the flow
// never reaches accept(): honeygate records nothing of it (docs/events.md, scans). Proved by
// contrast: the same ports scanned with -sT afterwards make exactly one scan event of exactly
// those flows, so the SYN scan added no flow, tally or scan of its own.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openDatabase } from '../../src/events/sqlite-driver.js';
import { buildFarm, type Farm } from '../../src/netns/topology.js';
import { type GatewayProcess, startManagedGateway } from '../helpers/farm-gateway.js';
import { needsRoot, rootState } from '../helpers/netns.js';
import { which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

function skipReason(): string | false {
  const root = needsRoot();
  if (root) return root;
  if (!which('nft')) return 'nft not installed (Debian package nftables)';
  if (!which('nmap')) return 'nmap not installed (Debian package nmap)';
  return false;
}

const skip = skipReason();
const DECOY4 = '192.0.2.74';
const FIRST = 1000;
const LAST = 1099;
const PORTS = LAST - FIRST + 1;

function config(dir: string): string {
  return `
listeners:
  - name: decoys
    tproxy: { port: 15001 }
    divert: { interface: [att1], addresses: ["${DECOY4}/32"], ports: "${FIRST}-${LAST}" }
routes:
  - name: catch-all
    capture: { timeout: 2s }
limits: { perSource: 1000, perSourceRate: 10000/s, rejectLogInterval: 500ms }
events:
  sqlite: ${path.join(dir, 'events.db')}
  batch: 50ms
  scan: { idle: 2s }
log: { format: json }
`;
}

describe('nmap -sS through a tproxy listener in namespaces', { skip }, () => {
  let farm: Farm;
  let gateway: GatewayProcess;
  let dir = '';
  let rootBefore: Record<string, string>;

  const rows = (sql: string): Record<string, unknown>[] => {
    const db = openDatabase(path.join(dir, 'events.db'), { readonly: true });
    try {
      return [...db.prepare(sql).iterate({ src: farm.attacker1.ip4 })];
    } finally {
      db.close();
    }
  };
  const nmap = async (technique: string) => {
    const r = await farm.topology.exec(
      farm.attacker1.ns,
      ['nmap', technique, '-Pn', '-n', '-p', `${FIRST}-${LAST}`, DECOY4],
      { timeoutMs: 90_000 },
    );
    return r.stdout;
  };

  before(async () => {
    rootBefore = rootState();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-scan-'));
    const configPath = path.join(dir, 'honeygate.yaml');
    fs.writeFileSync(configPath, config(dir));
    farm = await buildFarm();
    gateway = startManagedGateway(farm, configPath);
    await gateway.ready();
  });

  after(async () => {
    await gateway?.stop();
    await farm?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
  });

  test('-sS: every diverted port looks open, and honeygate records nothing of it', async () => {
    const syn = await nmap('-sS');
    assert.equal(syn.match(/^\d+\/tcp\s+open\b/gm)?.length, PORTS, syn);

    // the contrast: a connect scan of the same ports is recorded, flow by flow
    const connect = await nmap('-sT');
    assert.equal(connect.match(/^\d+\/tcp\s+open\b/gm)?.length, PORTS, connect);
    await waitFor(
      'the scan event of the connect scan',
      () => rows(`SELECT 1 FROM events WHERE type = 'scan' AND src_ip = $src`).length > 0,
      30_000,
      100,
    );
    const scans = rows(`SELECT count, targets FROM events WHERE type = 'scan' AND src_ip = $src`);
    assert.equal(scans.length, 1, 'one scan event');
    assert.equal(Number(scans[0]!.count), PORTS, 'the connect scan only: the SYN scan added nothing');
    const flows = rows(`SELECT dst_port FROM events WHERE type = 'flow' AND src_ip = $src`);
    assert.equal(flows.length, PORTS, 'one flow per port, all from the connect scan');
    assert.equal(new Set(flows.map((f) => f.dst_port)).size, PORTS);
    assert.equal(rows(`SELECT 1 FROM events WHERE type = 'rejected' AND src_ip = $src`).length, 0);
  });
});
