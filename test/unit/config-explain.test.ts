// The routing table in words, and rules that can never match because an earlier rule
// already takes every flow they would.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  explainBackends,
  explainListeners,
  explainRoutes,
  findUnreachableRoutes,
  formatDuration,
} from '../../src/config/explain.js';
import { loadConfigText } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';

const HEAD = `
listeners:
  - name: ssh
    bind: ["0.0.0.0:2222", "127.0.0.1:2300-2310"]
    acceptProxy: { versions: [v2], from: ["198.51.100.0/24"] }
  - name: web
    bind: "[::]:8080"
backends:
  cowrie:
    servers: ["192.0.2.10:2222", "192.0.2.11:2222"]
    source: proxy-v2
    balance: source-hash
    health: { interval: 5s }
    fallback: capture
  web: { servers: "192.0.2.20:80", fallback: cowrie, retries: 0 }
`;

function load(routes: string): Config {
  const r = loadConfigText(`${HEAD}routes:\n${routes}`, { env: {}, fileName: 't' });
  if (!r.ok) assert.fail(r.errors.join('\n'));
  return r.config;
}

test('routes, listeners and backends in words', () => {
  const config = load(`
  - name: ssh
    match: { listeners: ssh, dstPorts: ["22", "2222"] }
    forward: cowrie
  - match: { dstPorts: "8000-8099", protocol: [http, tls], srcAddresses: 203.0.113.0/24, dstAddresses: 192.0.2.0/24 }
    forward: web
  - { match: { dstPorts: 23 }, reject: true }
  - { match: { dstPorts: 24 }, drop: true }
  - capture: { banner: "SSH-2.0-x\\r\\n", maxBytes: 1KiB, timeout: 1m }
`);
  assert.deepEqual(explainRoutes(config), [
    '#0 ssh: flows on listener ssh to port 22 or 2222 -> forward to backend cowrie (2 servers, source-hash, PROXY v2; if all down: capture)',
    '#1: flows from 203.0.113.0/24 to 192.0.2.0/24 port 8000-8099 speaking http or tls -> forward to backend web (1 server, roundrobin, plain; if all down: backend cowrie)',
    '#2: flows to port 23 -> reject (RST)',
    '#3: flows to port 24 -> drop (close, send nothing)',
    '#4: every other flow -> send a banner (11 bytes), capture up to 1024 bytes for 1m, then close',
  ]);
  assert.deepEqual(explainListeners(config), [
    'ssh: 0.0.0.0:2222, 127.0.0.1:2300-2310 (12 sockets); accepts PROXY v2 headers from 198.51.100.0/24 (within 3s)',
    'web: [::]:8080',
  ]);
  assert.deepEqual(explainBackends(config), [
    'cowrie: 192.0.2.10:2222, 192.0.2.11:2222; source-hash, PROXY v2; health check every 5s (timeout 2s, up after 2, down after 3); connect timeout 3s, 1 retry; if all down: capture',
    'web: 192.0.2.20:80; roundrobin, plain; no health check (servers always up); connect timeout 3s, 0 retries; if all down: backend cowrie',
  ]);
  assert.deepEqual(findUnreachableRoutes(config), []);
});

test('durations print in the largest whole unit', () => {
  assert.deepEqual([0, 200, 1500, 10_000, 300_000, 3_600_000, 86_400_000].map(formatDuration), [
    '0s',
    '200ms',
    '1.5s',
    '10s',
    '5m',
    '1h',
    '1d',
  ]);
});

const SHADOW_CASES: { name: string; routes: string; unreachable: { index: number; shadowedBy: number }[] }[] =
  [
    {
      name: 'everything after a default rule',
      routes: '  - capture: {}\n  - { match: { dstPorts: 22 }, drop: true }\n  - reject: true\n',
      unreachable: [
        { index: 1, shadowedBy: 0 },
        { index: 2, shadowedBy: 0 },
      ],
    },
    {
      name: 'port ranges: a union of earlier ranges covers a later one',
      routes:
        '  - { match: { dstPorts: ["1-100", "101-200"] }, drop: true }\n' +
        '  - { match: { dstPorts: "50-150" }, reject: true }\n' +
        '  - { match: { dstPorts: "150-250" }, reject: true }\n' +
        '  - capture: {}\n',
      unreachable: [{ index: 1, shadowedBy: 0 }],
    },
    {
      name: 'CIDR containment, per family',
      routes:
        '  - { match: { srcAddresses: ["203.0.113.0/24", "2001:db8::/32"] }, drop: true }\n' +
        '  - { match: { srcAddresses: ["203.0.113.7", "2001:db8:1::/48"] }, reject: true }\n' +
        '  - { match: { srcAddresses: "198.51.100.0/24" }, reject: true }\n' +
        '  - { match: { srcAddresses: "203.0.0.0/16" }, reject: true }\n',
      unreachable: [{ index: 1, shadowedBy: 0 }],
    },
    {
      name: 'listener sets; a rule naming every listener covers one naming none',
      routes:
        '  - { match: { listeners: [ssh, web], dstPorts: 22 }, drop: true }\n' +
        '  - { match: { dstPorts: 22 }, reject: true }\n' +
        '  - { match: { listeners: ssh, dstPorts: 22 }, capture: {} }\n',
      unreachable: [
        { index: 1, shadowedBy: 0 },
        { index: 2, shadowedBy: 0 },
      ],
    },
    {
      name: 'protocol sets: a restricted earlier rule never covers an unrestricted later one',
      routes:
        '  - { match: { protocol: [http, tls] }, drop: true }\n' +
        '  - { match: { protocol: http, dstPorts: 80 }, reject: true }\n' +
        '  - { match: { dstPorts: 80 }, reject: true }\n' +
        '  - { match: { protocol: ssh }, reject: true }\n',
      unreachable: [{ index: 1, shadowedBy: 0 }],
    },
    {
      name: 'every port written out covers a rule without ports',
      routes:
        '  - { match: { dstPorts: "1-65535", listeners: web }, drop: true }\n  - { match: { listeners: web }, capture: {} }\n',
      unreachable: [{ index: 1, shadowedBy: 0 }],
    },
    {
      name: 'the first covering rule is named',
      routes:
        '  - { match: { dstPorts: 22 }, drop: true }\n' +
        '  - { match: { dstPorts: "1-1000" }, drop: true }\n' +
        '  - { match: { dstPorts: 22, listeners: ssh }, drop: true }\n',
      unreachable: [{ index: 2, shadowedBy: 0 }],
    },
  ];

for (const c of SHADOW_CASES) {
  test(`unreachable rules: ${c.name}`, () => {
    assert.deepEqual(findUnreachableRoutes(load(c.routes)), c.unreachable);
  });
}
