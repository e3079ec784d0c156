// The tunnel figures (issue 15, item 7): attacker -> sensor -> hub -> nginx through
// honeygate's tunnel (mutual TLS 1.3, HTTP/2, one stream per flow), side by side with the
// pair HAProxy users build for the same job: HAProxy -> HAProxy over TLS (`send-proxy-v2 ssl
// verify none` on the front, `accept-proxy ssl crt` on the back), one TLS connection per
// flow. Both back ends send PROXY v2 to nginx's `proxy_protocol` port, so the attacker's
// address reaches the honeypot on both paths. Certificates come from `honeygate pki` into
// the run's temp directory; HAProxy uses the same hub certificate and key.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { honeygateCommonYaml, honeygateStatus, launchHoneygate, PORTS, startHaproxy } from './servers.mjs';
import { run, waitFor } from './util.mjs';

export const SENSOR_NAME = 'bench-sensor';
const HUB_NAME = 'bench-hub';

/** `honeygate pki init` and a hub and a sensor certificate in dir/pki; also the hub's PEM for HAProxy. */
export async function makePki(dir, { root, node }) {
  const pki = join(dir, 'pki');
  const hg = (args) => run(node, [join(root, 'bin', 'honeygate.js'), 'pki', ...args], { timeoutMs: 60_000 });
  for (const args of [
    ['init', '--dir', pki],
    ['issue', HUB_NAME, '--role', 'hub', '--dir', pki, '--san', '127.0.0.1'],
    ['issue', SENSOR_NAME, '--role', 'sensor', '--dir', pki],
  ]) {
    const r = await hg(args);
    if (r.code !== 0) throw new Error(`honeygate pki ${args.join(' ')}: ${r.stderr}`);
  }
  const files = {
    ca: join(pki, 'ca.crt'),
    hubCert: join(pki, `${HUB_NAME}.crt`),
    hubKey: join(pki, `${HUB_NAME}.key`),
    sensorCert: join(pki, `${SENSOR_NAME}.crt`),
    sensorKey: join(pki, `${SENSOR_NAME}.key`),
    haproxyPem: join(pki, 'haproxy-back.pem'),
  };
  // The PEM files end without a newline: one between them, or the two blocks run together.
  const pem = (f) => `${readFileSync(f, 'utf8').trimEnd()}\n`;
  writeFileSync(files.haproxyPem, pem(files.hubCert) + pem(files.hubKey));
  return files;
}

/**
 * The honeygate pair: a hub (tunnel listener, one route to nginx's PROXY port, `source:
 * proxy-v2`) and a sensor (one bind listener, one route to the tunnel backend), each with
 * its events in SQLite; resolves once the sensor's tunnel is up. { hub, sensor }. nodeArgs:
 * for both node processes, `{side}` replaced by hub or sensor (e.g. a --cpu-prof-dir).
 */
export async function startTunnelPair(dir, name, { root, node, cpus, pki, maxFlows, nodeArgs = [] }) {
  const hubDb = join(dir, `${name}-hub.db`);
  const hub = await launchHoneygate(dir, `${name}-hub`, {
    root,
    node,
    cpus,
    nodeArgs: nodeArgs.map((a) => a.replace('{side}', 'hub')),
    db: hubDb,
    admin: PORTS.admin + 6,
    ports: [PORTS.tunnelHub],
    yaml: `
listeners:
  - name: sensors
    tunnel:
      listen: "127.0.0.1:${PORTS.tunnelHub}"
      ca: ${JSON.stringify(pki.ca)}
      cert: ${JSON.stringify(pki.hubCert)}
      key: ${JSON.stringify(pki.hubKey)}
      sensors: [${SENSOR_NAME}]
routes:
  - name: nginx
    forward: nginx
backends:
  nginx:
    servers: ["127.0.0.1:${PORTS.nginxProxy}"]
    source: proxy-v2
    retries: 0
${honeygateCommonYaml({ maxFlows, db: hubDb, admin: PORTS.admin + 6 })}`,
  });
  const sensorDb = join(dir, `${name}-sensor.db`);
  let sensor;
  try {
    sensor = await launchHoneygate(dir, `${name}-sensor`, {
      root,
      node,
      cpus,
      nodeArgs: nodeArgs.map((a) => a.replace('{side}', 'sensor')),
      db: sensorDb,
      admin: PORTS.admin + 5,
      ports: [PORTS.tunnelSensor],
      yaml: `
listeners:
  - name: attackers
    bind: "127.0.0.1:${PORTS.tunnelSensor}"
routes:
  - name: hub
    forward: hub
backends:
  hub:
    tunnel:
      hub: "127.0.0.1:${PORTS.tunnelHub}"
      ca: ${JSON.stringify(pki.ca)}
      cert: ${JSON.stringify(pki.sensorCert)}
      key: ${JSON.stringify(pki.sensorKey)}
${honeygateCommonYaml({ maxFlows, db: sensorDb, admin: PORTS.admin + 5, sensor: SENSOR_NAME })}`,
    });
    // Until its first tunnel is up a sensor captures (the fallback): wait for it.
    await waitFor(
      `${name}: the sensor's tunnel to be up`,
      async () => (await honeygateStatus(sensor)).gateway.tunnels?.every((t) => t.up),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  } catch (err) {
    await sensor?.process.stop();
    await hub.process.stop();
    throw err;
  }
  return { hub, sensor };
}

/**
 * The HAProxy pair: the front (as the sensor) sends each flow over its own TLS connection
 * with a PROXY v2 header first; the back (as the hub) takes the header and the TLS and
 * sends PROXY v2 to nginx. nbthread `threads` each. { front, back }.
 */
export async function startHaproxyTlsPair(dir, name, { cpus, threads, pki, maxconn }) {
  const back = await startHaproxy(dir, `${name}-back`, {
    cpus,
    threads,
    ...(maxconn ? { maxconn } : {}),
    listens: [
      {
        name: 'hub',
        port: PORTS.haproxyTlsBack,
        bindOptions: `accept-proxy ssl crt ${pki.haproxyPem}`,
        server: PORTS.nginxProxy,
        sendProxy: true,
      },
    ],
  });
  try {
    const front = await startHaproxy(dir, `${name}-front`, {
      cpus,
      threads,
      ...(maxconn ? { maxconn } : {}),
      listens: [
        {
          name: 'sensor',
          port: PORTS.haproxyTlsFront,
          server: PORTS.haproxyTlsBack,
          sendProxy: true,
          serverOptions: 'ssl verify none',
        },
      ],
    });
    return { front, back };
  } catch (err) {
    await back.process.stop();
    throw err;
  }
}
