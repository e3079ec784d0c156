// Issue 19, item 5, the Docker cases of kernel routes: a real Docker Engine in the farm's
// gateway namespace (src/netns/docker.ts, as test/e2e/docker.test.ts starts it), honeygate's
// kernel route DNATing a decoy's port 80 to a busybox honeypot container, and a container's
// port Docker publishes itself (8080) on a port the same divert covers. Proved from the
// containers' side (the `peer IP:PORT` line their own accept() printed) and from the event
// store (the kernel flow event names the container as its server).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openDatabase } from '../../src/events/sqlite-driver.js';
import {
  type Container,
  DockerEngine,
  dockerMissing,
  peerEcho,
  staticBusybox,
} from '../../src/netns/docker.js';
import { buildFarm, type Farm } from '../../src/netns/topology.js';
import { type GatewayProcess, startManagedGateway } from '../helpers/farm-gateway.js';
import { BIN } from '../helpers/honeygate.js';
import { kernelSkip, storeAndLog } from '../helpers/kernel.js';
import { connectFrom, rootState } from '../helpers/netns.js';
import { waitFor } from '../helpers/wait.js';

const skip = kernelSkip(() => {
  const missing = dockerMissing();
  if (missing) return missing;
  try {
    staticBusybox();
  } catch (err) {
    return (err as Error).message;
  }
  return false;
});
const DECOY4 = '192.0.2.74';

function config(dir: string, hp: Container): string {
  return `
listeners:
  - name: att1
    tproxy: { port: 15001 }
    divert: { interface: att1, ports: ["80", "8080"] }
routes:
  - name: container
    match: { dstAddresses: ["${DECOY4}/32"], dstPorts: ["80"] }
    forward: hp
  - capture: { timeout: 2s }
backends:
  hp:
    servers: ["${hp.ip4}:7000"]
    engine: kernel
${storeAndLog(path.join(dir, 'events.db'))}`;
}

describe('kernel routes with a real Docker Engine in namespaces', { skip }, () => {
  let farm: Farm;
  let engine: DockerEngine;
  let hp: Container;
  let gateway: GatewayProcess;
  let dir = '';
  let rootBefore: Record<string, string>;

  before(async () => {
    rootBefore = rootState();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-kernel-docker-'));
    farm = await buildFarm();
    engine = await DockerEngine.start(farm.topology, farm.gateway.ns, { ipv6: false });
    await engine.importBusybox();
    hp = await engine.runContainer('hp', peerEcho(7000), { waitPort: 7000 });
    await engine.runContainer('published', peerEcho(80), { publish: '8080:80', waitPort: 80 });
    const configPath = path.join(dir, 'honeygate.yaml');
    fs.writeFileSync(configPath, config(dir, hp));
    // Docker sets FORWARD's policy to DROP when it turns forwarding on itself, as on most
    // hosts; the farm's gateway routed already, so set it as such a host has it. Then a
    // container that publishes no port needs an accept in DOCKER-USER for flows DNATed to it
    // (docs/kernel.md). doctor says so, with the fix...
    await farm.topology.run(farm.gateway.ns, ['iptables', '-P', 'FORWARD', 'DROP']);
    const doctor = async () =>
      (
        await farm.topology.exec(farm.gateway.ns, [
          process.execPath,
          BIN,
          'firewall',
          'doctor',
          '-c',
          configPath,
        ])
      ).stdout;
    const before = await doctor();
    assert.match(
      before,
      new RegExp(
        `WARN {2}kernel-path +iptables(-nft)? -t filter chain FORWARD has policy DROP, and no rule there accepts new flows to ${hp.ip4.replaceAll('.', '\\.')}:7000`,
      ),
      before,
    );
    assert.ok(
      before.includes(`fix: iptables -I DOCKER-USER -d ${hp.ip4} -m conntrack --ctstate DNAT -j ACCEPT`),
      before,
    );
    // ...and once an operator has added one, it is content.
    await farm.topology.exec(farm.gateway.ns, [
      'iptables',
      '-I',
      'DOCKER-USER',
      '-p',
      'tcp',
      '-d',
      hp.ip4,
      '--dport',
      '7000',
      '-j',
      'ACCEPT',
    ]);
    const after = await doctor();
    assert.ok(!after.includes('no rule there accepts'), after);
    gateway = startManagedGateway(farm, configPath);
    await gateway.ready();
  });

  after(async () => {
    await gateway?.stop();
    await farm?.destroy(); // stops dockerd and removes its containers and directories
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
  });

  test("a honeypot container sees the attacker's address on a kernel-routed port, and it is recorded", async () => {
    const since = Date.now();
    const c = await connectFrom(farm.topology, farm.attacker1.ns, DECOY4, 80);
    assert.equal(await c.line(), `peer ${c.local}`, "the container's accept() saw the attacker");
    assert.ok(c.local.startsWith(`${farm.attacker1.ip4}:`));
    const peers = await engine.peers('hp');
    assert.ok(peers.some((p) => `${p.peer.host}:${p.peer.port}` === c.local && p.local.port === 7000));
    await c.close();
    const row = await waitFor(
      'the kernel flow event',
      () => {
        const db = openDatabase(path.join(dir, 'events.db'), { readonly: true });
        try {
          return db
            .prepare(
              `SELECT server, route, src_ip, dst_ip, dst_port FROM events
               WHERE type = 'flow' AND detail LIKE 'kernel%' AND opened_at >= $since`,
            )
            .get({ since: since - 1000 });
        } finally {
          db.close();
        }
      },
      30_000,
      200,
    );
    assert.deepEqual(
      [row.server, row.route, row.src_ip, row.dst_ip, row.dst_port],
      [`${hp.ip4}:7000`, 'container', farm.attacker1.ip4, DECOY4, 80],
    );
  });

  test("a Docker-published port on a diverted port still reaches its container (Docker's DNAT first)", async () => {
    const rules = await farm.topology.exec(farm.gateway.ns, [
      'nft',
      'list',
      'chain',
      'inet',
      'honeygate',
      'kernel',
    ]);
    assert.match(rules.stdout, /dnat ip to/, "honeygate's kernel rules are in place");
    const c = await connectFrom(farm.topology, farm.attacker1.ns, farm.attacker1.gw4, 8080);
    assert.equal(await c.line(), `peer ${c.local}`, 'the published container answered, not the capture');
    assert.ok(c.local.startsWith(`${farm.attacker1.ip4}:`));
    const peers = await engine.peers('published');
    assert.ok(peers.some((p) => `${p.peer.host}:${p.peer.port}` === c.local && p.local.port === 80));
    await c.close();
  });
});
