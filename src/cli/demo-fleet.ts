// `honeygate demo --fleet`: the demo's farm with a remote sensor (docs/tunnel.md). The
// attackers hit the sensor, which catches every port with tproxy and forwards each flow over
// its mutual-TLS HTTP/2 tunnel (dialed out, certificates made by `honeygate pki`) to a hub,
// which forwards with `source: transparent` to the honeypot host behind it. Prints what the
// honeypot saw (the attackers' own addresses) and the hub's events (the sensor's name, the
// sensor's ids), then tears it all down and says what it removed. With --keep the farm stays
// up until Ctrl-C, the sensor and the hub running, the hub's dashboard open in the root
// namespace (the hub's store holds every sensor's flows), attacked again every 15 s.
//
//   attacker1, attacker2 -> sensor (the farm's gateway) 192.0.2.1 ══ tunnel ══> hub 192.0.2.2
//                                                                  -> honeypot 192.0.2.100
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FlowEvent } from '../events/event.js';
import { queryEvents } from '../events/query.js';
import { buildFarm, type Farm, PLAN } from '../netns/topology.js';
import { initCa, issueCert } from '../pki/ca.js';
import {
  ADMIN_PORT,
  attackUntilCtrlC,
  BIN,
  DEMO,
  honeypotRouting,
  missingPrerequisite,
  openDashboard,
  ownNamespaces,
  reportCleanup,
  say,
  startHoneypot,
  waitForLine,
} from './demo-shared.js';

/** The sensor <-> hub link (farm side) and the names in the certificates. */
const SENSOR_IP = '192.0.2.1';
const HUB_IP = '192.0.2.2';
const HUB_PORT = 4443;
const SENSOR_NAME = 'demo-sensor';
const HUB_NAME = 'demo-hub';
/** With --keep, how long the report waits for the hub to hold every flow the sensor recorded. */
const KEEP_SETTLE_MS = 5000;

/** The hub's config; `token`: its admin server (the dashboard of --keep) with this token. */
function hubConfig(dir: string, token: string | null): string {
  const hp = PLAN.honeypot;
  return `# written by honeygate demo --fleet: the hub
listeners:
  - name: sensors
    tunnel:
      listen: "${HUB_IP}:${HUB_PORT}"
      ca: ${dir}/pki/ca.crt
      cert: ${dir}/pki/${HUB_NAME}.crt
      key: ${dir}/pki/${HUB_NAME}.key
      sensors: [${SENSOR_NAME}]
${honeypotRouting(hp, false)}events: { sqlite: ${dir}/hub.db, sensor: ${HUB_NAME}, batch: 50ms }
${token ? `admin: { listen: "127.0.0.1:${ADMIN_PORT}", token: ${token} }\n` : ''}log: { level: info }
`;
}

function sensorConfig(farm: Farm, dir: string): string {
  const { devs } = farm.gateway;
  return `# written by honeygate demo --fleet: the sensor
listeners:
  - name: every-port
    tproxy: { port: 15001 }
    divert: { interface: [${devs.attacker1}, ${devs.attacker2}], ports: [22, 1-65535] }
routes:
  - forward: farm
backends:
  farm:
    tunnel:
      hub: "${HUB_IP}:${HUB_PORT}"
      ca: ${dir}/pki/ca.crt
      cert: ${dir}/pki/${SENSOR_NAME}.crt
      key: ${dir}/pki/${SENSOR_NAME}.key
    fallback: capture
events: { sqlite: ${dir}/sensor.db, sensor: ${SENSOR_NAME}, batch: 50ms }
log: { level: info }
`;
}

/**
 * What `honeygate pki init` and `pki issue` make, called here rather than spawned: three
 * more Node processes cost 2-8 s of the demo on a busy machine.
 */
async function makePki(pki: string): Promise<void> {
  await initCa({ dir: pki });
  await issueCert({ dir: pki, name: HUB_NAME, role: 'hub', sans: [{ type: 'ip', value: HUB_IP }] });
  await issueCert({ dir: pki, name: SENSOR_NAME, role: 'sensor' });
}

/** What `honeygate events --db DB --type flow [--sensor NAME]` prints, read in this process. */
function recorded(db: string, sensor?: string): FlowEvent[] {
  return queryEvents(db, { type: 'flow', limit: 1000, ...(sensor ? { sensor } : {}) });
}

/** `keep`: leave it all up until Ctrl-C, the hub's dashboard open, the attack repeated. */
export async function demoFleet(keep: boolean): Promise<number> {
  const missing = missingPrerequisite();
  if (missing) {
    process.stderr.write(`${missing}\n`);
    return 1;
  }
  say(
    `building the farm: attacker1 198.51.100.10, attacker2 203.0.113.10, a sensor, a hub ${HUB_IP}, honeypot ${PLAN.honeypot.ip4} ...`,
  );
  let farm: Farm;
  try {
    farm = await buildFarm(); // removes what it made when it fails
  } catch (err) {
    process.stderr.write(`honeygate demo: ${(err as Error).message}\n`);
    return 1;
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'honeygate-demo-'));
  farm.topology.onDestroy(() => rmSync(dir, { recursive: true, force: true }));
  const t = farm.topology;
  // What the farm is made of, taken once it is complete: on Ctrl-C the farm's own exit hooks
  // have removed it before this handler runs, so asking `ip netns` then finds nothing.
  let made: string[] = [];
  const onInterrupt = (signal: NodeJS.Signals) => {
    if (made.length === 0) made = ownNamespaces(t.id);
    void farm.destroy();
    process.exit(reportCleanup(t.id, made, dir, signal, 'configs, certificates, events') ? 130 : 1);
  };
  process.once('SIGINT', onInterrupt);
  process.once('SIGTERM', onInterrupt);
  const node = process.execPath;
  let dashboard: net.Server | null = null;
  try {
    // The hub and the honeypot behind it; the farm's gateway is the sensor. The certificates
    // are made meanwhile: each of these steps is a process of its own, and they do not depend
    // on one another.
    const pki = path.join(dir, 'pki');
    const certificates = makePki(pki);
    certificates.catch(() => {}); // awaited below; a failure meanwhile must not go unhandled
    const [hub, hpNs] = await Promise.all([t.namespace('hub'), t.namespace('hp')]);
    const sensorNs = farm.gateway.ns;
    const hp = PLAN.honeypot;
    await Promise.all([
      (async () => {
        await t.veth({ ns: sensorNs, dev: 'hub0' }, { ns: hub, dev: 'eth0' });
        await Promise.all([
          t.address(sensorNs, 'hub0', `${SENSOR_IP}/30`),
          t.address(hub, 'eth0', `${HUB_IP}/30`),
        ]);
      })(),
      (async () => {
        await t.veth({ ns: hub, dev: 'hp0' }, { ns: hpNs, dev: 'eth0' });
        await Promise.all([
          t.address(hub, 'hp0', `${hp.gw4}/27`),
          t.address(hub, 'hp0', `${hp.gw6}/64`),
          t.address(hpNs, 'eth0', `${hp.ip4}/27`),
          t.address(hpNs, 'eth0', `${hp.ip6}/64`),
        ]);
        await Promise.all([t.route(hpNs, 'default', hp.gw4), t.route(hpNs, 'default', hp.gw6)]);
      })(),
    ]);
    made = ownNamespaces(t.id);

    say(`\ncertificates (honeygate pki, in ${pki}):`);
    await certificates;
    say(`  a CA, the hub's certificate (${HUB_NAME}, ${HUB_IP}), the sensor's (${SENSOR_NAME})`);

    const { seen, ready: honeypotReady } = startHoneypot(t, hpNs);
    const hubFile = path.join(dir, 'hub.yaml');
    const sensorFile = path.join(dir, 'sensor.yaml');
    const token = keep ? randomBytes(16).toString('hex') : null;
    writeFileSync(hubFile, hubConfig(dir, token));
    writeFileSync(sensorFile, sensorConfig(farm, dir));
    // Both start at once: the sensor redials (backoff from 200 ms) until the hub is up.
    say(`hub:    honeygate run -c ${hubFile} --manage-firewall`);
    const hubProc = t.spawn(hub, [node, BIN, 'run', '-c', hubFile, '--manage-firewall'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    say(`sensor: honeygate run -c ${sensorFile} --manage-firewall`);
    const sensor = t.spawn(sensorNs, [node, BIN, 'run', '-c', sensorFile, '--manage-firewall'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await Promise.all([
      honeypotReady,
      waitForLine(hubProc, /"msg":"ready"/, 'the hub'),
      waitForLine(sensor, /"msg":"tunnel up"/, 'the sensor (its tunnel to the hub)'),
    ]);
    say(`  the sensor dialed out to the hub: tunnel up (mutual TLS, HTTP/2)`);
    if (keep) {
      dashboard = await openDashboard(t, hub, dir);
      const { port } = dashboard.address() as net.AddressInfo;
      say(`dashboard of the hub: http://127.0.0.1:${port}/  (token ${token})`);
    }

    say(
      '\nattacking the sensor: a connect scan of 14 ports, an SSH banner grab and an HTTP request, attacker1 on IPv4, attacker2 on IPv6',
    );
    const attack = () =>
      Promise.all(
        [farm.attacker1, farm.attacker2].map((a, i) =>
          t.exec(a.ns, [node, path.join(DEMO, 'attack.js'), i === 0 ? farm.decoys.ip4 : farm.decoys.ip6], {
            timeoutMs: 60_000,
          }),
        ),
      );
    const results = await attack();
    results.forEach((r, i) => {
      const who = i === 0 ? 'attacker1' : 'attacker2';
      for (const line of r.stdout.split('\n').filter((l) => l.startsWith('{'))) {
        const { target, result } = JSON.parse(line) as { target: string; result: string };
        if (!/^(open \(no answer\)|ECONNREFUSED|open, closed at once)$/.test(result))
          say(`  ${who} -> ${target.padEnd(24)} ${result}`);
      }
    });

    say('\nwhat the honeypot behind the hub saw (its own accept(), on the wire):');
    for (const s of seen) say(`  connection from ${s.peer.padEnd(26)} to ${s.local}`);
    const real = seen.filter((s) => /^(198\.51\.100\.10|\[?2001:db8:b::10\]?):/.test(s.peer)).length;
    say(`  ${real} of ${seen.length} connections came from the attackers' real addresses`);

    // Stopped, both have written every flow; with --keep they go on, and the report waits
    // (at most KEEP_SETTLE_MS) until the hub holds each flow the sensor has recorded.
    if (!keep)
      await Promise.all(
        [sensor, hubProc].map((p) => {
          const exited = new Promise((r) => p.once('exit', r));
          p.kill('SIGTERM');
          return exited;
        }),
      );
    const read = () => {
      const atSensor = recorded(path.join(dir, 'sensor.db'));
      const atHub = recorded(path.join(dir, 'hub.db'), SENSOR_NAME).reverse();
      const hubTotal = recorded(path.join(dir, 'hub.db')).length;
      return { atSensor, atHub, hubTotal };
    };
    let { atSensor, atHub, hubTotal } = read();
    for (let waited = 0; keep && waited < KEEP_SETTLE_MS; waited += 100) {
      const ids = new Set(atHub.map((e) => e.id));
      if (atSensor.length > 0 && atSensor.length === hubTotal && atSensor.every((e) => ids.has(e.id))) break;
      await new Promise((r) => setTimeout(r, 100));
      ({ atSensor, atHub, hubTotal } = read());
    }
    say(
      `\nthe hub's events of the forwarded flows (honeygate events --db hub.db --sensor ${SENSOR_NAME} --json):`,
    );
    const ep = (a: { ip: string; port: number }) =>
      a.ip.includes(':') ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`;
    for (const e of atHub.filter((x) => x.action === 'forward'))
      say(`  id ${e.id}  sensor ${e.sensor}  ${ep(e.src).padEnd(24)} -> ${ep(e.dst).padEnd(20)} ${e.route}`);
    say(
      `  (and ${atHub.filter((x) => x.action !== 'forward').length} flows to other ports, captured by the hub)`,
    );
    const ids = new Set(atSensor.map((e) => e.id));
    const named = atHub.filter((e) => e.sensor === SENSOR_NAME).length;
    const same = atHub.filter((e) => ids.has(e.id)).length;
    say(
      `  ${named} of ${hubTotal} hub events carry sensor ${SENSOR_NAME} (its certificate's name); ` +
        `${same} have the id the sensor recorded the flow under (${atSensor.length} sensor events)`,
    );
    const ok =
      real > 0 && real === seen.length && atHub.length > 0 && named === hubTotal && same === hubTotal;
    if (keep) await attackUntilCtrlC(t.id, attack);
    return ok ? 0 : 1;
  } catch (err) {
    process.stderr.write(`honeygate demo: ${(err as Error).message}\n`);
    return 1;
  } finally {
    dashboard?.close();
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onInterrupt);
    if (made.length === 0) made = ownNamespaces(t.id);
    await farm.destroy();
    if (!reportCleanup(t.id, made, dir, undefined, 'configs, certificates, events')) process.exitCode = 1;
  }
}
