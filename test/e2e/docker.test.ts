// A real Docker Engine in the farm's gateway namespace (the seed's situation, before honeygate
// stands in it): a published port reaches a busybox honeypot container through Docker's own
// DNAT with the attacker's address, the container is reachable on its bridge address, and
// stopping the engine leaves no process, mount, directory or root-namespace rule behind.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DockerEngine, dockerMissing, mountsUnder, peerEcho, staticBusybox } from '../../src/netns/docker.js';
import { alive, buildFarm, type Farm } from '../../src/netns/topology.js';
import { connectFrom, namespaces, needsRoot, rootState } from '../helpers/netns.js';
import { waitFor } from '../helpers/wait.js';

function skipReason(): string | false {
  const root = needsRoot();
  if (root) return root;
  const missing = dockerMissing();
  if (missing) return missing;
  try {
    staticBusybox();
  } catch (err) {
    return (err as Error).message;
  }
  return false;
}

const skip = skipReason();

// Skips are per test (not per suite) so that the test run counts them.
describe('Docker Engine in the gateway namespace', () => {
  let farm: Farm;
  let engine: DockerEngine;
  let rootBefore: Record<string, string>;
  let hostPathsBefore: string[];
  const timings: Record<string, number> = {};
  const started = Date.now();

  before(async () => {
    if (skip) return;
    rootBefore = rootState();
    hostPathsBefore = hostPaths();
    let t = Date.now();
    const lap = (name: string) => {
      timings[name] = Date.now() - t;
      t = Date.now();
    };
    farm = await buildFarm();
    lap('farm');
    engine = await DockerEngine.start(farm.topology, farm.gateway.ns);
    lap('dockerd');
    await engine.importBusybox();
    lap('image');
    await engine.runContainer('hp1', peerEcho(80), { publish: '8080:80', waitPort: 80 });
    lap('container');
  });

  after(async () => {
    await farm?.destroy();
  });

  test("a published port reaches the container through Docker's DNAT with the attacker's address", {
    skip,
  }, async () => {
    const client = await connectFrom(farm.topology, farm.attacker1.ns, farm.attacker1.gw4, 8080);
    assert.equal(await client.line(), `peer ${client.local}`);
    assert.ok(client.local.startsWith(`${farm.attacker1.ip4}:`));
    // The honeypot's own view: the connection it accepted, from the attacker.
    const peers = await waitFor('the connection in ss', async () => {
      const all = await engine.peers('hp1');
      return all.some((p) => `${p.peer.host}:${p.peer.port}` === client.local) && all;
    });
    assert.ok(peers.some((p) => p.local.port === 80 && p.peer.host === farm.attacker1.ip4));
    client.write('ping\n');
    assert.equal(await client.line(), 'ping');
    await client.close();
  });

  test("IPv6: the published port reaches the container with the attacker's address (ip6tables DNAT)", {
    skip,
  }, async () => {
    const client = await connectFrom(farm.topology, farm.attacker1.ns, farm.attacker1.gw6, 8080);
    assert.equal(await client.line(), `peer ${client.local}`);
    assert.ok(client.local.startsWith(`[${farm.attacker1.ip6}]:`));
    await client.close();
  });

  test('the container answers on its bridge addresses from the gateway namespace', { skip }, async () => {
    const hp1 = await engine.inspect('hp1');
    assert.match(hp1.ip4, /^192\.0\.2\.(1[3-9][0-9]|2[0-5][0-9])$/, 'inside --bip 192.0.2.129/25');
    assert.ok(hp1.ip6?.startsWith('2001:db8:e:'), `inside --fixed-cidr-v6: ${hp1.ip6}`);
    for (const [host, bridge] of [
      [hp1.ip4, '192.0.2.129'],
      [hp1.ip6!, '[2001:db8:e::1]'],
    ] as const) {
      const client = await connectFrom(farm.topology, farm.gateway.ns, host, 80);
      assert.equal(await client.line(), `peer ${client.local}`);
      assert.ok(client.local.startsWith(`${bridge}:`), client.local);
      await client.close();
    }
  });

  test('a container with a fixed address on a user-defined network (the free /26 of the plan)', {
    skip,
  }, async () => {
    await engine.createNetwork('farm');
    const hp2 = await engine.runContainer('hp2', peerEcho(2222), {
      network: 'farm',
      ip: '192.0.2.10',
      waitPort: 2222,
    });
    assert.equal(hp2.ip4, '192.0.2.10');
    const client = await connectFrom(farm.topology, farm.gateway.ns, '192.0.2.10', 2222);
    assert.equal(await client.line(), `peer ${client.local}`);
    assert.ok(client.local.startsWith('192.0.2.1:'), `from the network's bridge address: ${client.local}`);
    await client.close();
  });

  test('stop() leaves no engine process, mount, directory or root-namespace change', { skip }, async () => {
    const dockerdPid = Number(fs.readFileSync(`${engine.dir}/dockerd.pid`, 'utf8'));
    const t = Date.now();
    await farm.destroy();
    timings.teardown = Date.now() - t;
    assert.equal(alive(dockerdPid), false, 'dockerd is gone');
    const leftovers = fs
      .readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(engine.dir);
        } catch {
          return false;
        }
      });
    assert.deepEqual(leftovers, [], 'no process names the engine dir');
    assert.deepEqual(mountsUnder(engine.dir), []);
    assert.equal(fs.existsSync(engine.dir), false);
    assert.deepEqual(hostPaths(), hostPathsBefore, 'dockerd and containerd made nothing outside their dir');
    const cgroups = fs.readdirSync('/sys/fs/cgroup').flatMap((h) => {
      const dir = `/sys/fs/cgroup/${h}/${path.basename(engine.dir)}`;
      return fs.existsSync(dir) ? [dir] : [];
    });
    assert.deepEqual(cgroups, [], 'the cgroup parent is removed');
    assert.deepEqual(
      namespaces().filter((ns) => ns.startsWith(farm.topology.id)),
      [],
    );
    assert.deepEqual(rootState(), rootBefore);
    timings.total = Date.now() - started;
    console.log(`timings (ms): ${JSON.stringify(timings)}`);
  });
});

/** Where a Docker or containerd left to its defaults would write; which of them exist. */
function hostPaths(): string[] {
  return [
    '/etc/docker',
    '/run/docker',
    '/var/lib/docker',
    '/run/containerd',
    '/var/lib/containerd',
    '/opt/containerd',
  ].filter((p) => fs.existsSync(p));
}
