// Remote sensors in network namespaces (issue 15, item 6): two attackers, two sensors on
// public addresses each catching every port with a tproxy listener, a NAT router that
// masquerades the sensors' tunnels to the hub, and the hub forwarding with `source:
// transparent` to a plain honeypot host and to a busybox container on a real Docker Engine
// in the hub's namespace. Certificates by `honeygate pki`. What an operator
// checks: the honeypot sees each attacker's own address through both sensors (IPv4 and
// IPv6); a hub killed and restarted, and a 30 s cut of the hub's link, end the open flows as
// `tunnel-lost`, the sensors capture while the hub is away and reconnect, and every flow is
// recorded; a certificate from another CA and an unlisted name are refused.
//
//   att1 198.51.100.10 ─┐                     ┌─ s1 198.51.100.130 / 2001:db8:1::130 ─┐
//        2001:db8:a::10 ├─ rt (routes; NAT ───┤                                      │
//   att2 203.0.113.10  ─┘  masquerade to hub) └─ s2 203.0.113.130 / 2001:db8:2::130 ──┘
//        2001:db8:b::10     │ 198.51.100.193
//                           └── hub 198.51.100.194:4443 ── hp 192.0.2.100 / 2001:db8:c::10
//                                  └ docker0 192.0.2.129/25 ── busybox container (port 2323 routes there)
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
import type { Farm } from '../../src/netns/topology.js';
import { Topology } from '../../src/netns/topology.js';
import { type GatewayProcess, startManagedGateway } from '../helpers/farm-gateway.js';
import { type EventRecord, runCli } from '../helpers/honeygate.js';
import { type Client, connectFrom, needsRoot, rootState, startPeerServer } from '../helpers/netns.js';
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

/** The honeypot container on the hub's Docker Engine: optional, its own test says why not. */
function dockerSkipReason(): string | false {
  if (skip) return skip;
  const missing = dockerMissing();
  if (missing) return missing;
  try {
    staticBusybox();
  } catch (err) {
    return (err as Error).message;
  }
  return false;
}
const dockerSkip = dockerSkipReason();
/** The port the sensors' attackers aim at to reach the container (the hub routes it there). */
const CONTAINER_PORT = 2323;

const HUB = '198.51.100.194';
const HUB_PORT = 4443;
const HP = { ip4: '192.0.2.100', ip6: '2001:db8:c::10', port: 7000 };
const ATTACKERS = {
  att1: { ip4: '198.51.100.10', ip6: '2001:db8:a::10' },
  att2: { ip4: '203.0.113.10', ip6: '2001:db8:b::10' },
} as const;
const SENSORS = {
  'sensor-1': { ns: 's1', ip4: '198.51.100.130', ip6: '2001:db8:1::130' },
  'sensor-2': { ns: 's2', ip4: '203.0.113.130', ip6: '2001:db8:2::130' },
} as const;
type SensorName = keyof typeof SENSORS;
type AttackerName = keyof typeof ATTACKERS;
/** The cut of the hub's link (issue 15: "a network cut of 30 s"). */
const CUT_MS = 30_000;

describe('remote sensors behind NAT, a hub, a honeypot', { skip, timeout: 240_000 }, () => {
  let t: Topology;
  let dir: string;
  let rootBefore: Record<string, string>;
  const ns: Record<string, string> = {};
  let hub: GatewayProcess;
  const sensors = {} as Record<SensorName, GatewayProcess>;
  const extra: GatewayProcess[] = [];
  let container: Container | null = null;

  /** startManagedGateway for any namespace of the topology. */
  const run = (where: string, config: string): GatewayProcess =>
    startManagedGateway({ topology: t, gateway: { ns: where } } as unknown as Farm, config);

  const pki = async (args: string[]) => {
    const r = await runCli(['pki', ...args]);
    assert.equal(r.code, 0, `pki ${args.join(' ')}: ${r.stderr}`);
  };

  function hubConfig(): string {
    const file = path.join(dir, 'hub.yaml');
    fs.writeFileSync(
      file,
      `
listeners:
  - name: sensors
    tunnel:
      listen: "${HUB}:${HUB_PORT}"
      ca: ${dir}/pki/ca.crt
      cert: ${dir}/pki/hub.crt
      key: ${dir}/pki/hub.key
      sensors: [sensor-1, sensor-2]
routes:${
        container
          ? `
  - match: { dstPorts: [${CONTAINER_PORT}] }
    forward: container`
          : ''
      }
  - forward: pots
backends:
  pots:
    servers: ["${HP.ip4}:${HP.port}", "[${HP.ip6}]:${HP.port}"]
    source: transparent${
      container
        ? `
  container:
    servers: ["${container.ip4}:7000"${container.ip6 ? `, "[${container.ip6}]:7000"` : ''}]
    source: transparent`
        : ''
    }
events: { sqlite: ${dir}/hub.db, batch: 50ms, sensor: hub }
admin: { listen: "127.0.0.1:9100" }
log: { level: info }
`,
    );
    return file;
  }

  /** A sensor's config: every port of eth0 by tproxy (or, `bind`, one port on loopback), the hub over the tunnel. */
  function sensorConfig(
    name: string,
    certDir: string,
    opts: { file?: string; ca?: string; bind?: boolean } = {},
  ): string {
    const file = opts.file ?? name;
    const out = path.join(dir, `${file}.yaml`);
    const listener = opts.bind
      ? 'bind: "127.0.0.1:2222"'
      : 'tproxy: { port: 15001 }\n    divert: { interface: eth0, ports: [22, 1-65535] }';
    fs.writeFileSync(
      out,
      `
listeners:
  - name: every-port
    ${listener}
routes:
  - forward: farm
backends:
  farm:
    tunnel:
      hub: "${HUB}:${HUB_PORT}"
      ca: ${opts.ca ?? `${certDir}/ca.crt`}
      cert: ${certDir}/${name}.crt
      key: ${certDir}/${name}.key
events: { sqlite: ${dir}/${file}.db, batch: 50ms, sensor: ${name} }
log: { level: info }
`,
    );
    return out;
  }

  /** How often a sensor has said its tunnel went down. */
  const tunnelsLost = (g: GatewayProcess) =>
    g.records.filter((r) => r.code === 'HG_ERR_TUNNEL' && /lost/.test(String(r.msg))).length;

  /** Waits until every sensor has said its tunnel is lost (more often than `before`). */
  async function allLost(before: Record<string, number>): Promise<void> {
    for (const [name, g] of Object.entries(sensors))
      await g.waitForLog(`${name}: tunnel lost`, () => tunnelsLost(g) > before[name]!, 15_000);
  }
  const lostCounts = () => Object.fromEntries(Object.entries(sensors).map(([n, g]) => [n, tunnelsLost(g)]));

  async function events(db: string): Promise<EventRecord[]> {
    const r = await runCli(['events', '--db', path.join(dir, db), '--json', '--limit', '100000']);
    if (r.code !== 0) throw new Error(`honeygate events: ${r.stderr}`);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as EventRecord);
  }

  const srcOf = (e: EventRecord) =>
    e.src.ip.includes(':') ? `[${e.src.ip}]:${e.src.port}` : `${e.src.ip}:${e.src.port}`;

  /** The flow events a store holds for clients' connections (by their addresses), once all are recorded. */
  async function recordedAll(db: string, cs: Client[], ms = 20_000): Promise<Map<Client, EventRecord>> {
    return waitFor(
      `the events of ${cs.map((c) => c.local).join(', ')} in ${db}`,
      async () => {
        const bySrc = new Map((await events(db)).filter((e) => e.type === 'flow').map((e) => [srcOf(e), e]));
        return cs.every((c) => bySrc.has(c.local)) && new Map(cs.map((c) => [c, bySrc.get(c.local)!]));
      },
      ms,
      200,
    );
  }

  /** The flow event a store holds for one client's connection, once recorded. */
  const recorded = async (db: string, c: Client, _what?: string, ms = 20_000) =>
    (await recordedAll(db, [c], ms)).get(c)!;

  const tunnelsUp = (g: GatewayProcess) => g.records.filter((r) => r.msg === 'tunnel up').length;

  /** An attacker's connection to a sensor's public address; `line`: what it got first (the honeypot's view). */
  async function attack(from: AttackerName, to: SensorName, family: 4 | 6, port = 22): Promise<Client> {
    const s = SENSORS[to];
    return connectFrom(t, ns[from]!, family === 4 ? s.ip4 : s.ip6, port);
  }

  before(async () => {
    if (skip) return;
    rootBefore = rootState();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-sensors-'));
    // Certificates: the farm's CA, the hub (by its address), both sensors; another CA with a
    // sensor-1 of its own, and a listed-CA certificate for a name the hub does not list.
    const farmPki = path.join(dir, 'pki');
    await pki(['init', '--dir', farmPki]);
    await pki(['issue', 'hub', '--role', 'hub', '--dir', farmPki, '--san', HUB]);
    for (const n of ['sensor-1', 'sensor-2', 'sensor-9'])
      await pki(['issue', n, '--role', 'sensor', '--dir', farmPki]);
    await pki(['init', '--dir', path.join(dir, 'rogue')]);
    await pki(['issue', 'sensor-1', '--role', 'sensor', '--dir', path.join(dir, 'rogue')]);

    t = new Topology('hgs1');
    t.destroyOnExit();
    for (const role of ['rt', 'att1', 'att2', 's1', 's2', 'hub', 'hp']) ns[role] = await t.namespace(role);
    const rt = ns.rt!;
    await t.sysctl(rt, 'net.ipv4.ip_forward', '1');
    await t.sysctl(rt, 'net.ipv6.conf.all.forwarding', '1');
    const link = async (
      a: string,
      aDev: string,
      b: string,
      bDev: string,
      v4: [string, string, number],
      v6?: [string, string],
    ) => {
      await t.veth({ ns: a, dev: aDev }, { ns: b, dev: bDev });
      await t.address(a, aDev, `${v4[0]}/${v4[2]}`);
      await t.address(b, bDev, `${v4[1]}/${v4[2]}`);
      await t.route(b, 'default', v4[0]);
      if (v6) {
        await t.address(a, aDev, `${v6[0]}/64`);
        await t.address(b, bDev, `${v6[1]}/64`);
        await t.route(b, 'default', v6[0]);
      }
    };
    await link(
      rt,
      'a1',
      ns.att1!,
      'eth0',
      ['198.51.100.1', ATTACKERS.att1.ip4, 26],
      ['2001:db8:a::1', ATTACKERS.att1.ip6],
    );
    await link(
      rt,
      'a2',
      ns.att2!,
      'eth0',
      ['203.0.113.1', ATTACKERS.att2.ip4, 26],
      ['2001:db8:b::1', ATTACKERS.att2.ip6],
    );
    await link(
      rt,
      's1',
      ns.s1!,
      'eth0',
      ['198.51.100.129', SENSORS['sensor-1'].ip4, 26],
      ['2001:db8:1::1', SENSORS['sensor-1'].ip6],
    );
    await link(
      rt,
      's2',
      ns.s2!,
      'eth0',
      ['203.0.113.129', SENSORS['sensor-2'].ip4, 26],
      ['2001:db8:2::1', SENSORS['sensor-2'].ip6],
    );
    await link(rt, 'hub', ns.hub!, 'eth0', ['198.51.100.193', HUB, 26]);
    await link(ns.hub!, 'hp0', ns.hp!, 'eth0', ['192.0.2.97', HP.ip4, 27], ['2001:db8:c::1', HP.ip6]);
    // The sensors sit behind masquerade: their tunnels reach the hub from the router's address.
    await t.run(rt, ['nft', '-f', '-'], {
      input:
        'table ip hgs1nat {\n chain post {\n  type nat hook postrouting priority srcnat;\n  oifname "hub" masquerade\n }\n}\n',
    });

    await startPeerServer(t, ns.hp!, HP.port);
    if (!dockerSkip) {
      // A real Docker Engine in the hub's namespace (docker0 192.0.2.129/25), a busybox honeypot on it.
      const started = Date.now();
      const engine = await DockerEngine.start(t, ns.hub!);
      await engine.importBusybox();
      container = await engine.runContainer('hp-container', peerEcho(7000), { waitPort: 7000 });
      process.stdout.write(`# Docker Engine and the honeypot container up in ${Date.now() - started} ms\n`);
    }
    hub = run(ns.hub!, hubConfig());
    await hub.ready();
    for (const name of Object.keys(SENSORS) as SensorName[]) {
      sensors[name] = run(ns[SENSORS[name].ns]!, sensorConfig(name, farmPki));
    }
    for (const g of Object.values(sensors)) {
      await g.ready();
      await g.waitForLog('the tunnel up', (r) => r.msg === 'tunnel up', 15_000);
    }
  });

  after(async () => {
    for (const g of [...extra, ...Object.values(sensors), hub]) await g?.stop();
    t?.destroySync();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    if (rootBefore) assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
  });

  test("the honeypot sees each attacker's own address through both sensors, IPv4 and IPv6", async () => {
    const clients: { c: Client; from: AttackerName; to: SensorName }[] = [];
    for (const from of Object.keys(ATTACKERS) as AttackerName[]) {
      for (const to of Object.keys(SENSORS) as SensorName[]) {
        // IPv4 to port 22, IPv6 to a port nothing listens on: the sensor catches every port
        for (const [family, port] of [
          [4, 22],
          [6, 31337],
        ] as const) {
          const c = await attack(from, to, family, port);
          const seen = await c.line();
          const ip = family === 4 ? ATTACKERS[from].ip4 : `[${ATTACKERS[from].ip6}]`;
          assert.ok(c.local.startsWith(`${ip}:`), c.local);
          // The honeypot's accept(): the attacker's own address, through the sensor, the NAT and the hub.
          assert.match(seen, new RegExp(`^peer ${ip.replace(/[.[\]]/g, '\\$&')}:\\d+$`), `${from} -> ${to}`);
          c.write('hello\n');
          assert.equal(await c.line(), 'hello');
          clients.push({ c, from, to });
        }
      }
    }
    for (const { c } of clients) await c.close();
    const atHub = await recordedAll(
      'hub.db',
      clients.map((x) => x.c),
    );
    for (const to of Object.keys(SENSORS) as SensorName[]) {
      const mine = clients.filter((x) => x.to === to).map((x) => x.c);
      const atSensor = await recordedAll(`${to}.db`, mine);
      for (const c of mine) {
        const s = atSensor.get(c)!;
        const h = atHub.get(c)!;
        assert.equal(h.id, s.id, 'one id at both ends');
        assert.equal(h.sensor, to, "the hub's event names the sensor (from its certificate)");
        assert.equal(s.sensor, to);
        assert.equal(s.sourceMode, 'tunnel');
        assert.equal(s.action, 'forward');
        assert.equal(h.sourceMode, 'transparent');
        assert.equal(h.dst.ip, s.dst.ip, "the hub's event has the address the attacker reached");
        // The tunnel came through the NAT: the hub sees the router's address as the sensor's end.
        assert.equal(h.peer?.ip, '198.51.100.193');
      }
    }
  });

  test("a honeypot container on the hub's Docker Engine sees each attacker's own address through both sensors", {
    skip: dockerSkip,
  }, async () => {
    for (const from of Object.keys(ATTACKERS) as AttackerName[]) {
      for (const to of Object.keys(SENSORS) as SensorName[]) {
        const family = from === 'att1' ? 4 : container!.ip6 ? 6 : 4;
        const c = await attack(from, to, family, CONTAINER_PORT);
        const ip = family === 4 ? ATTACKERS[from].ip4 : `[${ATTACKERS[from].ip6}]`;
        // The container's own accept() (busybox nc: its /proc/net/tcp), through sensor, NAT and hub.
        assert.equal(await c.line(), `peer ${c.local}`, `${from} -> ${to} -> container`);
        assert.ok(c.local.startsWith(`${ip}:`));
        await c.close();
        const h = await recorded('hub.db', c);
        assert.equal(h.sensor, to);
        assert.equal(
          h.server?.startsWith(family === 4 ? container!.ip4 : `[${container!.ip6}]`),
          true,
          h.server ?? '',
        );
      }
    }
  });

  test('the hub killed and restarted: the open flow ends as tunnel-lost, the sensors capture, then reconnect', async () => {
    const open = await attack('att1', 'sensor-1', 4);
    assert.match(await open.line(), /^peer 198\.51\.100\.10:/);
    const before = Object.fromEntries(Object.entries(sensors).map(([n, g]) => [n, tunnelsUp(g)]));
    const lostBefore = lostCounts();
    hub.proc.kill('SIGKILL');
    await hub.exited;
    await allLost(lostBefore);
    const lost = await recorded('sensor-1.db', open, 'the open flow recorded by sensor-1');
    assert.equal(lost.closeReason, 'tunnel-lost');
    await open.close();
    // While the hub is away: attackers still meet a live service (the fallback, capture).
    const away: { c: Client; to: SensorName }[] = [];
    for (const [from, to] of [
      ['att1', 'sensor-2'],
      ['att2', 'sensor-1'],
    ] as const) {
      const c = await attack(from, to, 4, 8080);
      c.write('GET / HTTP/1.0\r\n\r\n');
      away.push({ c, to });
    }
    for (const { c, to } of away) {
      const e = await recorded(`${to}.db`, c);
      assert.equal(e.action, 'capture', `${c.local}: the fallback`);
      assert.match(e.detail ?? '', /no tunnel/);
    }
    for (const { c } of away) await c.close();
    hub = run(ns.hub!, hubConfig());
    await hub.ready();
    for (const [name, g] of Object.entries(sensors))
      await g.waitForLog(
        `${name} reconnects`,
        (r) => r.msg === 'tunnel up' && tunnelsUp(g) > before[name]!,
        20_000,
      );
    // The killed hub's open flow is recovered from its start journal at the restart.
    const crashed = await recorded('hub.db', open, "the killed hub's record of the open flow");
    assert.equal(crashed.id, lost.id);
    assert.equal(crashed.closeReason, 'crash');
    for (const to of Object.keys(SENSORS) as SensorName[]) {
      const c = await attack('att2', to, 6);
      assert.match(await c.line(), /^peer \[2001:db8:b::10\]:/, `through ${to} again`);
      await c.close();
    }
  });

  test('the hub link cut for 30 s: open flows end as tunnel-lost at both ends, every new flow is captured, then forwarded', async () => {
    const before = Object.fromEntries(Object.entries(sensors).map(([n, g]) => [n, tunnelsUp(g)]));
    const open = await attack('att2', 'sensor-2', 4);
    assert.match(await open.line(), /^peer 203\.0\.113\.10:/);
    const lostBefore = lostCounts();
    const cutAt = Date.now();
    await t.ip(ns.rt!, ['link', 'set', 'hub', 'down']);
    try {
      // PING finds the dead tunnel within 7.5 s (docs/tunnel.md): the time of sensor-2's warning.
      const s2 = sensors['sensor-2'];
      await s2.waitForLog('sensor-2: tunnel lost', () => tunnelsLost(s2) > lostBefore['sensor-2']!, 15_000);
      const warned = s2.records
        .filter((r) => r.code === 'HG_ERR_TUNNEL' && /lost/.test(String(r.msg)))
        .at(-1)!;
      const foundIn = Date.parse(String(warned.time)) - cutAt;
      assert.ok(foundIn < 10_000, `found within 10 s (${foundIn} ms)`);
      process.stdout.write(`# the cut: sensor-2 found its tunnel dead after ${foundIn} ms\n`);
      const lost = await recorded('sensor-2.db', open, 'the open flow ends on sensor-2');
      assert.equal(lost.closeReason, 'tunnel-lost');
      await open.close();
      await allLost(lostBefore); // sensor-1 too (no open flow: its PING alone)
      // Flows during the cut, from both attackers to both sensors, until the 30 s are up.
      const during: { c: Client; to: SensorName }[] = [];
      let round = 0;
      while (Date.now() - cutAt < CUT_MS - 2000 && round < 50) {
        for (const from of Object.keys(ATTACKERS) as AttackerName[]) {
          for (const to of Object.keys(SENSORS) as SensorName[]) {
            const c = await attack(from, to, round % 2 === 0 ? 4 : 6, 1000 + round);
            c.write('hi\n');
            during.push({ c, to });
          }
        }
        round++;
        await waitFor('the next round', () => Date.now() - cutAt > (CUT_MS * round) / 4, CUT_MS, 200);
      }
      for (const to of Object.keys(SENSORS) as SensorName[]) {
        const mine = during.filter((x) => x.to === to).map((x) => x.c);
        for (const [c, e] of await recordedAll(`${to}.db`, mine))
          assert.equal(e.action, 'capture', `${c.local} -> ${to} during the cut`);
      }
      for (const { c } of during) await c.close();
      process.stdout.write(`# the cut: ${during.length} flows during it, each captured and recorded\n`);
      await waitFor('30 s of cut', () => Date.now() - cutAt >= CUT_MS, CUT_MS + 5000, 200);
    } finally {
      await t.ip(ns.rt!, ['link', 'set', 'hub', 'up']);
    }
    const backAt = Date.now();
    for (const [name, g] of Object.entries(sensors))
      await g.waitForLog(`${name} reconnects`, () => tunnelsUp(g) > before[name]!, 20_000);
    process.stdout.write(
      `# the cut: both sensors reconnected ${Date.now() - backAt} ms after the link came back\n`,
    );
    // The hub ended its side of the open flow as tunnel-lost too (its own PING).
    const hubSide = await recorded('hub.db', open, "the hub's record of the open flow");
    assert.equal(hubSide.closeReason, 'tunnel-lost');
    for (const to of Object.keys(SENSORS) as SensorName[]) {
      const c = await attack('att1', to, 6, 443);
      assert.match(await c.line(), /^peer \[2001:db8:a::10\]:/);
      await c.close();
    }
  });

  test('every attacker connection is recorded once by its sensor', async () => {
    for (const name of Object.keys(SENSORS) as SensorName[]) {
      const all = (await events(`${name}.db`)).filter((e) => e.type === 'flow');
      assert.equal(new Set(all.map((e) => e.id)).size, all.length, `${name}: no id twice`);
      const keys = all.map(srcOf);
      assert.equal(new Set(keys).size, keys.length, `${name}: one event per connection`);
    }
  });

  test('a certificate from another CA is refused, and so is a listed-CA certificate with an unlisted name', async () => {
    const metrics = async () => {
      const r = await t.exec(ns.hub!, [
        process.execPath,
        '-e',
        "fetch('http://127.0.0.1:9100/metrics').then(r => r.text()).then(t => process.stdout.write(t))",
      ]);
      return Object.fromEntries(
        [...r.stdout.matchAll(/^(honeygate_hub_\w+)(?:\{[^}]*\})? ([0-9.e+-]+)$/gm)].map((m) => [
          m[1]!,
          Number(m[2]),
        ]),
      );
    };
    const refusedBefore = (await metrics()).honeygate_hub_refused_total ?? 0;
    // Each from an attacker's host, with a loopback listener of its own. The right name
    // signed by another CA (that trusts the farm's CA: the hub is not at fault) ...
    const wrongCa = run(
      ns.att1!,
      sensorConfig('sensor-1', path.join(dir, 'rogue'), {
        file: 'rogue-ca',
        ca: path.join(dir, 'pki', 'ca.crt'),
        bind: true,
      }),
    );
    // ... and a certificate of the farm's CA for a name the hub does not list.
    const unlisted = run(
      ns.att2!,
      sensorConfig('sensor-9', path.join(dir, 'pki'), { file: 'unlisted', bind: true }),
    );
    extra.push(wrongCa, unlisted);
    for (const g of [wrongCa, unlisted])
      await g.waitForLog('the tunnel refused', (r) => r.code === 'HG_ERR_TUNNEL', 20_000);
    const m = await waitFor(
      'the hub counts both refusals',
      async () => {
        const now = await metrics();
        return (now.honeygate_hub_refused_total ?? 0) >= refusedBefore + 2 && now;
      },
      15_000,
      200,
    );
    assert.equal(m.honeygate_hub_sensors, 2, 'only sensor-1 and sensor-2 are connected');
    assert.ok(
      hub.records.some((r) => r.code === 'HG_ERR_TUNNEL' && /refused a tunnel/.test(String(r.msg))),
      'the hub says it refused a tunnel',
    );
  });
});
