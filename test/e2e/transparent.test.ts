// Transparent mode in the seed's exact situation: a gateway running a real Docker Engine with
// honeypot containers on docker0 and one container with a published port (8080:80), and
// `honeygate run --manage-firewall` with a tproxy listener diverting att1/att2 and
// `source: transparent` backends aimed at the containers' own bridge addresses. Everything
// is proved from the honeypot's side: the `peer IP:PORT` line its own accept() printed, and
// `ss -tn` in the container's network namespace.
//
// One farm, one engine and one honeygate for the whole suite (startup time is most of the
// cost); the tests run in order and the later ones stop honeygate and compare the gateway's
// firewall with what it was before honeygate started.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { nativeAvailable } from '../../src/net/native.js';
import {
  type Container,
  DockerEngine,
  dockerMissing,
  peerEcho,
  staticBusybox,
} from '../../src/netns/docker.js';
import { buildFarm, type Farm, type Host } from '../../src/netns/topology.js';
import { type GatewayProcess, startManagedGateway } from '../helpers/farm-gateway.js';
import { BIN, type EventRecord, runCli } from '../helpers/honeygate.js';
import { type Client, connectFrom, needsRoot, rootState } from '../helpers/netns.js';
import { which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

function skipReason(): string | false {
  const root = needsRoot();
  if (root) return root;
  if (!which('nft')) return 'nft not installed (Debian package nftables)';
  const native = nativeAvailable();
  if (!native.ok) return `transparent mode needs the native addon: ${native.reason}`;
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

const MARK = '0x1000';
const TABLE = '4210';
const PRIORITY = '10000';
const CHECK_INTERVAL_MS = 1000;

/** "IP:PORT", IPv6 in brackets: how the peer line, the client and ss agree to print an endpoint. */
function endpoint(host: string, port: number | string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function hostOf(ep: string): string {
  return ep.slice(0, ep.lastIndexOf(':')).replace(/^\[|\]$/g, '');
}

function portOf(ep: string): number {
  return Number(ep.slice(ep.lastIndexOf(':') + 1));
}

describe('transparent mode beside a real Docker Engine', () => {
  let farm: Farm;
  let engine: DockerEngine;
  let gateway: GatewayProcess;
  let dir = '';
  let configPath = '';
  let dbPath = '';
  let hp: Container; // the honeypot: every diverted port it is routed reaches its port 2222
  let web: Container; // published 8080:80
  let down: Container; // a honeypot the tests take away
  let rootBefore: Record<string, string>;
  let firewallBefore: Record<string, string>;
  const timings: Record<string, number> = {};
  const started = Date.now();

  /** A command inside the gateway namespace; resolves whatever its exit status. */
  const inGateway = (argv: string[]) => farm.topology.exec(farm.gateway.ns, argv, { timeoutMs: 30_000 });
  const honeygate = (...args: string[]) => inGateway([process.execPath, BIN, ...args]);
  const sh = async (...argv: string[]) => {
    const r = await inGateway(argv);
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  /**
   * What honeygate's firewall may touch in the gateway, as text: Docker's own tables included.
   * Counters change with traffic, and IPv6 routes of container veths (link-local, multicast)
   * come and go with the containers the tests remove; neither is honeygate's.
   */
  const firewallState = async (): Promise<Record<string, string>> => ({
    'nft list ruleset': (await sh('nft', 'list', 'ruleset')).replace(
      /counter packets \d+ bytes \d+/g,
      'counter',
    ),
    'ip rule': await sh('ip', 'rule'),
    'ip -6 rule': await sh('ip', '-6', 'rule'),
    'ip -4 route show table all': await sh('ip', '-4', 'route', 'show', 'table', 'all'),
    'ip -6 route show table all': (await sh('ip', '-6', 'route', 'show', 'table', 'all'))
      .split('\n')
      .filter((line) => !/ dev veth/.test(line))
      .join('\n'),
  });

  /** One assertion per command: a diff of one text reads better than a diff of the whole record. */
  const assertFirewallAsBefore = async () => {
    const now = await firewallState();
    for (const [what, text] of Object.entries(firewallBefore)) assert.equal(now[what], text, what);
  };

  const events = async (): Promise<EventRecord[]> => {
    const r = await runCli(['events', '--db', dbPath, '--json', '--limit', '100000']);
    if (r.code !== 0) throw new Error(`honeygate events exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as EventRecord);
  };

  const waitForEvent = async (what: string, predicate: (e: EventRecord) => boolean, timeoutMs = 10_000) => {
    let last: EventRecord[] = [];
    try {
      return await waitFor(
        what,
        async () => {
          last = await events();
          return last.find(predicate);
        },
        timeoutMs,
        100,
      );
    } catch (err) {
      const shown = last.map((e) => JSON.stringify({ ...e, firstBytes: undefined })).join('\n');
      throw new Error(`${(err as Error).message}\nevents (${last.length}):\n${shown}\n${gateway.output()}`);
    }
  };

  /**
   * Waits until the container's own `ss -tn` lists an established connection from each client
   * on `port`, and checks that it accepted each on its own bridge address `local`.
   */
  const seenByContainer = async (
    name: string,
    clients: Array<Pick<Client, 'local'>>,
    port: number,
    local?: string,
  ) => {
    const estab = await waitFor(
      `${name} to list ${clients.map((c) => c.local).join(', ')} in ss -tn`,
      async () => {
        const pairs = (await engine.peers(name)).filter((p) => p.state === 'ESTAB' && p.local.port === port);
        return (
          clients.every((c) => pairs.some((p) => endpoint(p.peer.host, p.peer.port) === c.local)) && pairs
        );
      },
    );
    if (local === undefined) return;
    for (const c of clients) {
      const pair = estab.find((p) => endpoint(p.peer.host, p.peer.port) === c.local);
      assert.equal(pair?.local.host, local, `${name} accepted ${c.local} on its own address`);
    }
  };

  /** Connects and checks that the honeypot's peer line is the attacker's own address and port. */
  const throughHoneypot = async (attacker: Host, host: string, port: number): Promise<Client> => {
    const client = await connectFrom(farm.topology, attacker.ns, host, port);
    const line = await client.line();
    assert.equal(line, `peer ${client.local}`, `${attacker.ns} -> ${endpoint(host, port)}`);
    const family = host.includes(':') ? 6 : 4;
    assert.equal(hostOf(client.local), family === 4 ? attacker.ip4 : attacker.ip6);
    return client;
  };

  before(async () => {
    if (skip) return;
    rootBefore = rootState();
    let t = Date.now();
    const lap = (name: string) => {
      timings[name] = Date.now() - t;
      t = Date.now();
    };
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-transparent-'));
    configPath = path.join(dir, 'honeygate.yaml');
    dbPath = path.join(dir, 'events.db');
    farm = await buildFarm();
    lap('farm');
    engine = await DockerEngine.start(farm.topology, farm.gateway.ns);
    lap('dockerd');
    await engine.importBusybox();
    lap('image');
    [hp, web, down] = await Promise.all([
      engine.runContainer('hp', peerEcho(2222), { waitPort: 2222 }),
      engine.runContainer('web', peerEcho(80), { publish: '8080:80', waitPort: 80 }),
      engine.runContainer('down', peerEcho(2222), { waitPort: 2222 }),
    ]);
    lap('containers');
    assert.ok(hp.ip6 && web.ip6, 'Docker runs with --ipv6: the containers have IPv6 addresses');
    firewallBefore = await firewallState();
    const { devs } = farm.gateway;
    fs.writeFileSync(
      configPath,
      `listeners:
  - name: every-port
    tproxy: { port: 15001 }
    # 22 named alone: diverted although sshd's port is otherwise protected
    divert: { interface: [${devs.attacker1}, ${devs.attacker2}], ports: [22, 1-65535] }
routes:
  - name: published
    match: { dstPorts: [9090] }
    forward: published
  - name: doomed
    match: { dstPorts: [2323] }
    forward: doomed
  - name: honeypot
    match: { dstPorts: [22, 80, 443, 2222, 3306, 8080, 31337] }
    forward: ssh
  - name: rest
    capture: { timeout: 2s }
backends:
  ssh:
    servers: ["${hp.ip4}:2222", "[${hp.ip6}]:2222"]
    source: transparent
    fallback: capture
  doomed:
    servers: ["${down.ip4}:2222"]
    source: transparent
    fallback: capture
    connectTimeout: 1s
    health: { interval: 1s, timeout: 500ms, rise: 1, fall: 1 }
  # The trap of issue 3, item 3: the container's PUBLISHED port on the gateway's own address,
  # which Docker DNATs in its OUTPUT chain (honeygate's output-chain ct mark brings the replies home).
  published:
    servers: ["${farm.attacker1.gw4}:8080", "[${farm.attacker1.gw6}]:8080"]
    source: transparent
firewall: { mark: ${MARK}, table: ${TABLE}, rulePriority: ${PRIORITY}, checkInterval: ${CHECK_INTERVAL_MS}ms }
limits: { grace: 1s }
events: { sqlite: ${dbPath}, batch: 50ms }
`,
    );
    gateway = startManagedGateway(farm, configPath);
    await gateway.waitForLog('honeygate to be ready', (r) => r.msg === 'ready');
    lap('honeygate');
  });

  after(async () => {
    await gateway?.stop();
    await farm?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test("flows to many ports and addresses reach the honeypot container with the attacker's ip and port", {
    skip,
  }, async () => {
    const a1 = farm.attacker1;
    const targets: Array<[string, number]> = [
      [farm.decoys.ip4, 22],
      [farm.decoys.ip4, 80],
      [farm.decoys.ip4, 443],
      [farm.decoys.ip4, 2222],
      [farm.decoys.ip4, 3306],
      [farm.decoys.ip4, 8080], // 8080 on an address Docker does not publish on: honeygate's
      [farm.decoys.ip4, 31337],
      ['192.0.2.90', 443], // another address of the decoy block: nobody owns any of them
      [a1.gw4, 22], // the gateway's own att1 address
      [a1.gw4, 31337],
      [farm.attacker2.gw4, 443], // the gateway's att2 address, reached through att1
    ];
    // Two of these clients may leave from the same port (towards different destinations): the
    // honeypot then sees one of them from another port, which its event must say (the next test
    // makes that happen on purpose). One after another: the honeypot, busybox's `nc -ll`, listens
    // with a backlog of 2, so a burst of 11 overflows its accept queue, and the SYNs the kernel
    // drops are sent again after 1, 3 and 7 s, past the line's timeout.
    const conns: Array<{ client: Client; seen: string }> = [];
    for (const [host, port] of targets) {
      const client = await connectFrom(farm.topology, a1.ns, host, port);
      const line = await client.line().catch((err: Error) => {
        throw new Error(`${client.local} -> ${endpoint(host, port)}: ${err.message}\n${gateway.output()}`);
      });
      conns.push({ client, seen: line.replace(/^peer /, '') });
    }
    const clients = conns.map((c) => c.client);
    for (const { client, seen } of conns) {
      assert.equal(hostOf(seen), a1.ip4, `${client.local}: the honeypot saw ${seen}`);
      if (seen === client.local) continue;
      const shared = clients.filter((c) => c.local === client.local).length;
      assert.ok(
        shared > 1,
        `${client.local}: the honeypot saw ${seen}, yet no other flow left from that port`,
      );
    }
    await seenByContainer(
      'hp',
      conns.map((c) => ({ local: c.seen })),
      2222,
      hp.ip4,
    );
    for (const c of clients) {
      c.write('ping\n');
      assert.equal(await c.line(), 'ping');
    }
    await Promise.all(clients.map((c) => c.close()));
    // honeygate's record of the same flows: forwarded, transparent, the original dst kept.
    const recorded = await waitFor('an event for every flow', async () => {
      const all = await events();
      const mine = conns.map(({ client }, i) =>
        all.find(
          (e) =>
            e.type === 'flow' &&
            e.src.port === portOf(client.local) &&
            e.dst.ip === targets[i]![0] &&
            e.dst.port === targets[i]![1],
        ),
      );
      return mine.every(Boolean) && (mine as EventRecord[]);
    });
    recorded.forEach((e, i) => {
      assert.equal(e.src.ip, a1.ip4);
      assert.equal(e.action, 'forward');
      assert.equal(e.backend, 'ssh');
      assert.equal(e.sourceMode, 'transparent');
      const { client, seen } = conns[i]!;
      if (seen !== client.local)
        assert.match(e.detail ?? '', new RegExp(`sees source port ${portOf(seen)}:`));
    });
  });

  test('two flows from one attacker port: the second reaches the honeypot from another port, and its event says which', {
    skip,
  }, async () => {
    const a1 = farm.attacker1;
    const port = 40123;
    const from = endpoint(a1.ip4, port);
    // socat, for SO_REUSEADDR: both clients bind the same address and port.
    const socatFrom = async (dstPort: number) => {
      const child = farm.topology.spawn(
        a1.ns,
        ['socat', '-', `TCP:${farm.decoys.ip4}:${dstPort},bind=${from},reuseaddr`],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      let out = '';
      let exited = false;
      child.stdout!.on('data', (d) => {
        out += d;
      });
      child.on('exit', () => {
        exited = true;
      });
      const close = async () => {
        child.stdin!.end();
        await waitFor(`socat to port ${dstPort} to exit`, () => exited, 5_000);
      };
      try {
        const line = await waitFor(`the honeypot's peer line through port ${dstPort}`, () =>
          out.includes('\n') ? out.slice(0, out.indexOf('\n')) : exited && `exited: ${out}`,
        );
        return { line, close };
      } catch (err) {
        child.kill();
        throw err;
      }
    };
    const first = await socatFrom(22);
    const second = await socatFrom(80).catch(async (err) => {
      await first.close();
      throw err;
    });
    await Promise.all([first.close(), second.close()]);
    assert.equal(first.line, `peer ${from}`);
    assert.equal(hostOf(second.line.replace(/^peer /, '')), a1.ip4, second.line);
    const seenPort = portOf(second.line);
    assert.notEqual(seenPort, port, 'the 4-tuple towards the honeypot was taken by the first flow');
    const flowTo = (dstPort: number) =>
      waitForEvent(
        `the flow to port ${dstPort}`,
        (e) => e.type === 'flow' && e.src.port === port && e.dst.port === dstPort,
      );
    assert.equal((await flowTo(22)).detail, null);
    assert.equal(
      (await flowTo(80)).detail,
      `the honeypot sees source port ${seenPort}: ${port} was in use towards ${hp.ip4}:2222`,
    );
  });

  test('a port no route names is accepted and captured', { skip }, async () => {
    const client = await connectFrom(farm.topology, farm.attacker1.ns, farm.decoys.ip4, 5555);
    client.write('HELLO\n');
    await client.close();
    const e = await waitForEvent('the captured flow', (x) => x.src.port === portOf(client.local));
    assert.equal(e.action, 'capture');
    assert.equal(e.dst.ip, farm.decoys.ip4);
    assert.equal(e.dst.port, 5555);
  });

  test('two attackers at once keep their own addresses', { skip }, async () => {
    const [c1, c2, c3] = await Promise.all([
      throughHoneypot(farm.attacker1, farm.decoys.ip4, 22),
      throughHoneypot(farm.attacker2, farm.decoys.ip4, 22),
      throughHoneypot(farm.attacker2, farm.attacker2.gw4, 2222),
    ]);
    await seenByContainer('hp', [c1!, c2!, c3!], 2222, hp.ip4);
    assert.equal(hostOf(c1!.local), farm.attacker1.ip4);
    assert.equal(hostOf(c2!.local), farm.attacker2.ip4);
    await Promise.all([c1!, c2!, c3!].map((c) => c.close()));
  });

  test("the Docker-published port still reaches its container with the client's address, untouched by honeygate", {
    skip,
  }, async () => {
    const client = await throughHoneypot(farm.attacker1, farm.attacker1.gw4, 8080);
    // On its own address, from the attacker: Docker's DNAT, not docker-proxy (which would hide the client).
    await seenByContainer('web', [client], 80, web.ip4);
    client.write('ping\n');
    assert.equal(await client.line(), 'ping');
    await client.close();
    // A flow opened after that one closed: once its event is in, the published one's would be too.
    const marker = await connectFrom(farm.topology, farm.attacker1.ns, farm.decoys.ip4, 5556);
    await marker.close();
    await waitForEvent('the marker flow', (e) => e.src.port === portOf(marker.local));
    const taken = (await events()).filter((e) => e.dst.port === 8080 && e.dst.ip === farm.attacker1.gw4);
    assert.deepEqual(taken, [], 'honeygate recorded no flow to the published port');
  });

  test("the trap: a transparent upstream aimed at the Docker-published port keeps the attacker's address", {
    skip,
  }, async () => {
    // attacker -> decoy:9090 -> honeygate -> (from the attacker's address) gateway:8080 ->
    // Docker's OUTPUT DNAT -> the web container; its replies are un-DNATed only on local input.
    const client = await throughHoneypot(farm.attacker1, farm.decoys.ip4, 9090);
    await seenByContainer('web', [client], 80, web.ip4);
    client.write('ping\n');
    assert.equal(await client.line(), 'ping');
    await client.close();
    const e = await waitForEvent('the published flow', (x) => x.src.port === portOf(client.local));
    assert.equal(e.action, 'forward');
    assert.equal(e.backend, 'published');
    assert.equal(e.server, endpoint(farm.attacker1.gw4, 8080));
  });

  test("IPv6: decoys and gateway addresses reach the container with the attackers' addresses, two at once", {
    skip,
  }, async () => {
    const a1 = farm.attacker1;
    const a2 = farm.attacker2;
    // Each attacker's flows one after another, the two attackers at once: two at a time fit the
    // honeypot's accept queue (see the first test).
    const inTurn = async (attacker: Host, targets: Array<[string, number]>) => {
      const out: Client[] = [];
      for (const [host, port] of targets) out.push(await throughHoneypot(attacker, host, port));
      return out;
    };
    const clients = (
      await Promise.all([
        inTurn(a1, [
          [farm.decoys.ip6, 22],
          ['2001:db8:d::99', 31337],
          [a1.gw6, 443],
        ]),
        inTurn(a2, [
          [farm.decoys.ip6, 22],
          [a1.gw6, 80],
        ]),
      ])
    ).flat();
    await seenByContainer('hp', clients, 2222, hp.ip6!);
    await Promise.all(clients.map((c) => c.close()));
  });

  test("IPv6: the published port reaches its container with the client's address", { skip }, async () => {
    const client = await throughHoneypot(farm.attacker2, farm.attacker2.gw6, 8080);
    await seenByContainer('web', [client], 80, web.ip6!);
    await client.close();
  });

  test('IPv6: the trap too (ip6tables DNAT in OUTPUT)', { skip }, async () => {
    const client = await throughHoneypot(farm.attacker1, farm.decoys.ip6, 9090);
    await seenByContainer('web', [client], 80, web.ip6!);
    client.write('ping\n');
    assert.equal(await client.line(), 'ping');
    await client.close();
  });

  test('a honeypot that goes down falls back to capture: accepted and recorded', { skip }, async () => {
    const before = await throughHoneypot(farm.attacker1, farm.decoys.ip4, 2323);
    await seenByContainer('down', [before], 2222, down.ip4);
    await before.close();
    await engine.docker(['rm', '-f', 'down']);
    const client = await connectFrom(farm.topology, farm.attacker1.ns, farm.decoys.ip4, 2323);
    client.write('SSH-2.0-scanner\r\n');
    await client.close();
    const e = await waitForEvent('the fallback capture', (x) => x.src.port === portOf(client.local));
    assert.equal(e.src.ip, farm.attacker1.ip4);
    assert.equal(e.action, 'capture');
    assert.match(e.detail ?? '', /^backend doomed: /);
  });

  test('firewall doctor: exit 0 when all is well, exit 1 naming src_valid_mark when it is set', {
    skip,
  }, async () => {
    const well = await honeygate('firewall', 'doctor', '-c', configPath);
    assert.equal(well.code, 0, `doctor:\n${well.stdout}${well.stderr}`);
    const key = `net.ipv4.conf.${farm.gateway.devs.attacker1}.src_valid_mark`;
    await farm.topology.sysctl(farm.gateway.ns, key, '1');
    try {
      const broken = await honeygate('firewall', 'doctor', '-c', configPath);
      assert.equal(broken.code, 1, `doctor:\n${broken.stdout}${broken.stderr}`);
      assert.match(broken.stdout, /^FAIL\s+src_valid_mark\s.*att1/m);
    } finally {
      await farm.topology.sysctl(farm.gateway.ns, key, '0');
    }
  });

  test('rules flushed from outside come back within a few check intervals, with a firewall event', {
    skip,
  }, async () => {
    // One deletion at a time, each until its re-apply: a check that fell between two
    // deletions would re-apply both and name only the first (the second was not yet missing).
    const reapplied = async () =>
      (await events()).filter((x) => (x.type as string) === 'firewall' && /re-applied/.test(x.detail ?? ''));
    const cases: [string, string[], RegExp][] = [
      [
        'table inet honeygate',
        ['nft', 'delete', 'table', 'inet', 'honeygate'],
        /table inet honeygate is missing/,
      ],
      [
        'the IPv4 rule',
        ['ip', 'rule', 'del', 'pref', PRIORITY, 'fwmark', `${MARK}/${MARK}`, 'lookup', TABLE],
        /ip -4 rule add pref 10000 /,
      ],
      [
        'the IPv6 rule',
        ['ip', '-6', 'rule', 'del', 'pref', PRIORITY, 'fwmark', `${MARK}/${MARK}`, 'lookup', TABLE],
        /ip -6 rule add pref 10000 /,
      ],
    ];
    const t = Date.now();
    for (const [what, deletion, named] of cases) {
      const earlier = new Set((await reapplied()).map((x) => x.id));
      await sh(...deletion);
      let details = '';
      await waitFor(
        `${what} back, with a firewall event naming it`,
        async () => {
          const table = await inGateway(['nft', 'list', 'table', 'inet', 'honeygate']);
          const rules = `${await sh('ip', 'rule')}${await sh('ip', '-6', 'rule')}`;
          details = (await reapplied())
            .filter((x) => !earlier.has(x.id))
            .map((x) => x.detail)
            .join('\n');
          return table.code === 0 && rules.split(`${PRIORITY}:`).length === 3 && named.test(details);
        },
        5 * CHECK_INTERVAL_MS,
        100,
      ).catch((err) => {
        throw new Error(`${(err as Error).message}\nre-applied: ${details}\n${gateway.output()}`);
      });
    }
    timings.firewallBack = Date.now() - t;
    // and diversion works again
    const client = await throughHoneypot(farm.attacker2, farm.decoys.ip4, 22);
    await client.close();
  });

  test("stopping run --manage-firewall leaves nft and ip rules exactly as before (Docker's included)", {
    skip,
  }, async () => {
    assert.notDeepEqual(await firewallState(), firewallBefore, 'honeygate had added its rules');
    assert.equal(await gateway.stop(), 0, gateway.output());
    await assertFirewallAsBefore();
  });

  test('firewall apply, a deleted local route that doctor names, firewall remove: as before again', {
    skip,
  }, async () => {
    const applied = await honeygate('firewall', 'apply', '-c', configPath);
    assert.equal(applied.code, 0, applied.stderr);
    await sh('ip', 'route', 'del', 'local', 'default', 'dev', 'lo', 'table', TABLE);
    const broken = await honeygate('firewall', 'doctor', '-c', configPath);
    assert.equal(broken.code, 1, `doctor:\n${broken.stdout}${broken.stderr}`);
    assert.match(broken.stdout, /^FAIL\s+ip-route\s+IPv4: .*local default dev lo/m);
    const removed = await honeygate('firewall', 'remove', '-c', configPath);
    assert.equal(removed.code, 0, removed.stderr);
    await assertFirewallAsBefore();
  });

  test('teardown leaves the root namespace as it was', { skip }, async () => {
    const t = Date.now();
    await farm.destroy();
    timings.teardown = Date.now() - t;
    assert.deepEqual(rootState(), rootBefore);
    timings.total = Date.now() - started;
    console.log(`timings (ms): ${JSON.stringify(timings)}`);
  });
});
