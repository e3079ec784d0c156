// The tunnel's config sections (docs/tunnel.md): a hub's tunnel listener, a sensor's tunnel
// backend, route match `sensors:`, what the loader refuses, and the hub's tunnel port in the
// firewall's lock-out list.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { protectedFrom } from '../../src/firewall/render.js';
import { certificateName } from '../../src/tunnel/session.js';

const BASE = '/etc/honeygate';
const HUB = `listeners:
  - name: sensors
    tunnel:
      listen: "0.0.0.0:4443"
      ca: pki/ca.pem
      cert: pki/hub.pem
      key: pki/hub-key.pem
      sensors: [fra1, nyc1, fra1]
routes:
  - match: { sensors: [fra1] }
    forward: web
backends:
  web: { servers: ["192.0.2.10:80"], source: transparent }
`;
const SENSOR = `listeners:
  - name: all
    bind: "0.0.0.0:80"
routes:
  - forward: farm
backends:
  farm:
    tunnel: { hub: "hub.example.net:4443", ca: /pki/ca.pem, cert: /pki/fra1.pem, key: /pki/fra1-key.pem }
`;

function load(text: string): Config {
  const r = loadConfigText(text, { baseDir: BASE, fileName: 'config.yaml', openFiles: 20_000 });
  if (!r.ok) assert.fail(r.errors.join('\n'));
  return r.config;
}

function errors(text: string): string[] {
  const r = loadConfigText(text, { baseDir: BASE, fileName: 'config.yaml' });
  if (r.ok) assert.fail('expected errors');
  return r.errors;
}

test("a hub's tunnel listener: paths against the config's directory, names once, header timeout 5s", () => {
  const c = load(HUB);
  assert.deepEqual(c.listeners[0]!.tunnel, {
    listen: { host: '0.0.0.0', port: 4443 },
    tls: {
      ca: '/etc/honeygate/pki/ca.pem',
      cert: '/etc/honeygate/pki/hub.pem',
      key: '/etc/honeygate/pki/hub-key.pem',
    },
    sensors: ['fra1', 'nyc1'],
    headerTimeoutMs: 5000,
  });
  assert.deepEqual(c.listeners[0]!.bind, []);
  assert.deepEqual(c.routes[0]!.match?.sensors, ['fra1']);
});

test("a sensor's tunnel backend: no servers, fallback capture, serverName the hub's host", () => {
  const b = load(SENSOR).backends.get('farm')!;
  assert.deepEqual(b.servers, []);
  assert.equal(b.fallback, 'capture');
  assert.deepEqual(b.tunnel, {
    hub: { host: 'hub.example.net', port: 4443 },
    tls: { ca: '/pki/ca.pem', cert: '/pki/fra1.pem', key: '/pki/fra1-key.pem' },
    serverName: 'hub.example.net',
  });
});

test('the loader refuses mixed and incomplete tunnel sections, naming the key', () => {
  const e = errors(
    `${HUB.replace('      sensors: [fra1, nyc1, fra1]\n', '      sensors: [fra1]\n    bind: "0.0.0.0:22"\n')}workers: 2\n`,
  );
  assert.ok(
    e.some((m) => m.includes('listeners[0].bind: a tunnel listener takes no bind')),
    e.join('\n'),
  );
  const w = errors(`${HUB}workers: 2\n`);
  assert.ok(
    w.some((m) => m.includes('listeners[0].tunnel: a tunnel listener needs workers: 1')),
    w.join('\n'),
  );
  const both = errors(SENSOR.replace('  farm:\n', '  farm:\n    servers: ["192.0.2.1:80"]\n'));
  assert.ok(
    both.some((m) => m.includes('backends.farm.servers: a tunnel backend takes no servers')),
    both.join('\n'),
  );
  const bad = errors(SENSOR.replace('hub.example.net:4443', 'hub.example.net'));
  assert.ok(
    bad.some((m) => m.includes('backends.farm.tunnel.hub: invalid hub')),
    bad.join('\n'),
  );
  const noName = errors(HUB.replace('[fra1, nyc1, fra1]', '["fra 1"]'));
  assert.ok(
    noName.some((m) => m.includes('invalid sensor name')),
    noName.join('\n'),
  );
});

test("the hub's tunnel port is in the firewall's lock-out list", () => {
  const ports = protectedFrom(load(HUB), [{ address: '0.0.0.0:22', port: 22 }]);
  assert.ok(
    ports.some((p) => p.port === 4443 && p.why.includes('tunnel listener sensors')),
    JSON.stringify(ports),
  );
});

test("a certificate's name: CN, else its first DNS subjectAltName", () => {
  const cert = (subject: object, san?: string) => ({ subject, subjectaltname: san }) as never;
  assert.equal(certificateName(cert({ CN: 'fra1' }, 'DNS:other')), 'fra1');
  assert.equal(certificateName(cert({ O: 'farm' }, 'IP Address:127.0.0.1, DNS:nyc1, DNS:x')), 'nyc1');
  assert.equal(certificateName(cert({ O: 'farm' })), null);
  assert.equal(certificateName({} as never), null);
});
