// The namespace farm the e2e tests and `honeygate demo` stand on: attackers reach the gateway
// and the honeypot host by plain routing (no honeygate yet), v4 and v6, and destroy() leaves
// the root namespace exactly as it was, also when the farm was half built or the process was
// killed by a signal.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { alive, buildFarm, type Farm, Topology } from '../../src/netns/topology.js';
import { connectFrom, namespaces, needsRoot, rootState, startPeerServer } from '../helpers/netns.js';
import { waitFor } from '../helpers/wait.js';

const skip = needsRoot();

describe('namespace farm', () => {
  let farm: Farm;
  let rootBefore: Record<string, string>;
  let namespacesBefore: string[];

  before(async () => {
    if (skip) return;
    rootBefore = rootState();
    namespacesBefore = namespaces();
    farm = await buildFarm({ honeypotHost: true });
    await startPeerServer(farm.topology, farm.gateway.ns, 7001);
    await startPeerServer(farm.topology, farm.honeypot!.ns, 7002);
  });

  after(async () => {
    await farm?.destroy();
  });

  test('namespaces are named after the topology id, and ip_forward is on in the gateway only', {
    skip,
  }, async () => {
    const mine = namespaces().filter((ns) => ns.startsWith(`${farm.topology.id}-`));
    assert.deepEqual(
      mine.sort(),
      [farm.attacker1.ns, farm.attacker2.ns, farm.gateway.ns, farm.honeypot!.ns].sort(),
    );
    assert.equal(await farm.topology.readSysctl(farm.gateway.ns, 'net.ipv4.ip_forward'), '1');
    assert.equal(await farm.topology.readSysctl(farm.gateway.ns, 'net.ipv6.conf.all.forwarding'), '1');
    assert.equal(rootState()['net/ipv4/ip_forward'], rootBefore['net/ipv4/ip_forward']);
  });

  for (const family of [4, 6] as const) {
    const ip = (h: { ip4: string; ip6: string }) => (family === 4 ? h.ip4 : h.ip6);
    const fmt = (host: string, port: string) => (family === 6 ? `[${host}]:${port}` : `${host}:${port}`);

    test(`IPv${family}: attacker1 reaches the gateway's own address`, { skip }, async () => {
      const client = await connectFrom(
        farm.topology,
        farm.attacker1.ns,
        family === 4 ? farm.attacker1.gw4 : farm.attacker1.gw6,
        7001,
      );
      assert.equal(await client.line(), `peer ${client.local}`);
      assert.ok(client.local.startsWith(fmt(ip(farm.attacker1), '')), client.local);
      client.write('hello\n');
      assert.equal(await client.line(), 'hello');
      await client.close();
    });

    test(`IPv${family}: both attackers reach the honeypot host through the gateway, unNATed`, {
      skip,
    }, async () => {
      for (const attacker of [farm.attacker1, farm.attacker2]) {
        const client = await connectFrom(farm.topology, attacker.ns, ip(farm.honeypot!), 7002);
        assert.equal(await client.line(), `peer ${client.local}`);
        assert.ok(client.local.startsWith(fmt(ip(attacker), '')), client.local);
        await client.close();
      }
    });

    test(`IPv${family}: decoys are routed to the gateway, where nothing owns them`, { skip }, async () => {
      const decoy = family === 4 ? farm.decoys.ip4 : farm.decoys.ip6;
      // The gateway has no route for them: it answers with ICMP unreachable, at once.
      await assert.rejects(
        connectFrom(farm.topology, farm.attacker1.ns, decoy, 80),
        (err: Error & { code?: string }) => {
          assert.match(err.code ?? '', /^(EHOSTUNREACH|ENETUNREACH|EACCES)$/);
          return true;
        },
      );
    });
  }

  test('destroy() leaves the root namespace as it was', { skip }, async () => {
    await farm.destroy();
    await farm.destroy(); // idempotent
    assert.deepEqual(
      namespaces().filter((ns) => ns.startsWith(farm.topology.id)),
      [],
    );
    // Namespaces of other tests may come and go meanwhile; none of those present before went.
    for (const ns of namespacesBefore) assert.ok(namespaces().includes(ns), `${ns} vanished`);
    assert.deepEqual(rootState(), rootBefore);
  });
});

describe('teardown', () => {
  test('destroy() removes a half-built topology', { skip }, async () => {
    const topology = new Topology();
    try {
      const a = await topology.namespace('a');
      // The peer namespace does not exist: the veth is not made, the first namespace stays.
      await assert.rejects(topology.veth({ ns: a, dev: 'x0' }, { ns: `${topology.id}-nope`, dev: 'x1' }), {
        code: 'HG_ERR_NETNS',
      });
      await topology.address(a, 'lo', '192.0.2.1/32');
    } finally {
      await topology.destroy();
    }
    assert.deepEqual(
      namespaces().filter((ns) => ns.startsWith(topology.id)),
      [],
    );
  });

  test('refuses sysctls that are not per namespace', { skip }, async () => {
    const topology = new Topology();
    try {
      const a = await topology.namespace('a');
      await assert.rejects(topology.sysctl(a, 'kernel.panic', '0'), { code: 'HG_ERR_NETNS' });
    } finally {
      await topology.destroy();
    }
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`destroyOnExit: ${signal} to the process removes its farm and its processes`, { skip }, async () => {
      const here = path.dirname(fileURLToPath(import.meta.url));
      const module = path.join(here, '../../src/netns/topology.js');
      // A farm with a long-running process in the gateway, then wait for the signal.
      const script = `
        const { buildFarm } = await import(${JSON.stringify(module)});
        const farm = await buildFarm();
        const sleeper = farm.topology.spawn(farm.gateway.ns, ['sleep', '60'], { stdio: 'ignore' });
        console.log(farm.topology.id + ' ' + sleeper.pid);
        setInterval(() => {}, 1000);
      `;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      const line = await waitFor(
        'the child to build its farm',
        () => out.includes('\n') && out.trim(),
        20_000,
      );
      const [id, sleeper] = line.split(' ') as [string, string];
      assert.equal(namespaces().filter((ns) => ns.startsWith(`${id}-`)).length, 3);
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        child.on('exit', (_code, sig) => resolve(sig)),
      );
      child.kill(signal);
      assert.equal(await exited, signal, 'the signal still ends the process');
      assert.deepEqual(
        namespaces().filter((ns) => ns.startsWith(id)),
        [],
      );
      await waitFor('the process it spawned to be gone', () => !alive(Number(sleeper)));
    });
  }
});
