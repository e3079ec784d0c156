// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${VAR} in plain strings is the config syntax under test
// Loading configuration text: defaults, ${VAR} substitution, and the exact message for
// every class of mistake (file, line, key path, allowed values), all reported at once.
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';

const BASE = '/srv/honeygate';
const LISTENER = 'listeners:\n  - name: ssh\n    bind: "127.0.0.1:2222"\n';

function lines(...l: string[]): string {
  return `${l.join('\n')}\n`;
}

// The open-file limit of the machines these tests were written on, whatever this one's is.
const OPEN_FILES = 20_000;

function ok(
  text: string,
  env: NodeJS.ProcessEnv = {},
  openFiles: number | null = OPEN_FILES,
): { config: Config; warnings: string[] } {
  const r = loadConfigText(text, { env, baseDir: BASE, fileName: 'config.yaml', openFiles });
  if (!r.ok) assert.fail(`expected a valid config, got:\n${r.errors.join('\n')}`);
  return r;
}

function errors(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  const r = loadConfigText(text, { env, baseDir: BASE, fileName: 'config.yaml' });
  if (r.ok) assert.fail('expected errors, the config loaded');
  return r.errors;
}

test('a minimal file gets every default', () => {
  const { config, warnings } = ok(LISTENER);
  assert.deepEqual(config, {
    listeners: [
      {
        name: 'ssh',
        transport: 'tcp',
        bind: [{ host: '127.0.0.1', port: 2222 }],
        acceptProxy: null,
        originalDst: false,
        tproxy: null,
      },
    ],
    routes: [
      {
        index: 0,
        name: '#0',
        match: null,
        action: { type: 'capture', capture: { maxBytes: 4096, timeoutMs: 10_000, banner: null } },
      },
    ],
    backends: new Map(),
    limits: {
      maxConnections: 8000,
      perSource: 64,
      perSourceRate: { count: 50, perMs: 1000 },
      idleTimeoutMs: 300_000,
      maxDurationMs: 3_600_000,
      maxBytesIn: 10 * 1024 * 1024,
      maxBytesOut: 100 * 1024 * 1024,
      firstBytes: 4096,
      rejectLogIntervalMs: 10_000,
      graceMs: 10_000,
      udp: {
        idleTimeoutMs: 30_000,
        maxFlows: 20_000,
        amplification: {
          enabled: true,
          ratio: 1,
          allowance: 512,
          bytesPerSecond: 16_384,
          packetsPerSecond: 20,
          unanswered: 4,
        },
      },
    },
    events: {
      sensor: hostname(),
      sqlite: join(BASE, 'data/events.db'),
      jsonl: null,
      createDirectories: false,
      updateIntervalMs: 60_000,
      queueSize: 100_000,
      batchMs: 200,
      retention: null,
      scan: {
        enabled: true,
        ports: 10,
        addresses: 10,
        idleMs: 30_000,
        maxDurationMs: 600_000,
        maxAddresses: 256,
        maxSources: 4096,
      },
    },
    admin: null,
    firewall: {
      mark: 0x1000,
      mask: 0x1000,
      table: 4210,
      rulePriority: 10000,
      checkIntervalMs: 5000,
      kernelMark: 0x2000,
    },
    contain: null,
    log: { level: 'info', format: 'auto' },
    workers: 1,
    user: null,
  });
  assert.deepEqual(warnings, [
    'config.yaml:1: routes: no routes: every flow is captured (an implicit `- capture: {}`)',
  ]);
});

test('section defaults: backend, health, acceptProxy, capture/reject/drop shorthands, admin', () => {
  const { config } = ok(
    lines(
      'listeners:',
      '  - name: ssh',
      '    bind: ["127.0.0.1:2000-2002", "[::1]:0"]',
      '    acceptProxy: { from: 198.51.100.0/24 }',
      'routes:',
      '  - { match: { dstPorts: 22 }, forward: cowrie }',
      '  - { match: { dstPorts: 23 }, reject: true }',
      '  - { match: { dstPorts: 24 }, drop: {} }',
      '  - { match: {}, capture: true }',
      '  - capture:',
      'backends:',
      '  cowrie: { servers: "192.0.2.10:2222", health: {} }',
      'admin: {}',
      'events: { sqlite: false, jsonl: ./data/events.jsonl }',
    ),
  );
  const l = config.listeners[0]!;
  assert.deepEqual(
    l.bind.map((e) => `${e.host}:${e.port}`),
    ['127.0.0.1:2000', '127.0.0.1:2001', '127.0.0.1:2002', '::1:0'],
  );
  assert.equal(l.acceptProxy?.timeoutMs, 3000);
  assert.deepEqual(l.acceptProxy?.versions, ['v1', 'v2']);
  assert.equal(l.acceptProxy?.from[0]?.text, '198.51.100.0/24');
  assert.deepEqual(config.backends.get('cowrie'), {
    name: 'cowrie',
    servers: [{ host: '192.0.2.10', port: 2222 }],
    source: 'none',
    balance: 'roundrobin',
    health: { intervalMs: 5000, timeoutMs: 2000, rise: 2, fall: 3 },
    fallback: null,
    connectTimeoutMs: 3000,
    retries: 1,
    engine: 'user',
  });
  assert.deepEqual(
    config.routes.map((r) => [r.name, r.action.type]),
    [
      ['#0', 'forward'],
      ['#1', 'reject'],
      ['#2', 'drop'],
      ['#3', 'capture'],
      ['#4', 'capture'],
    ],
  );
  assert.deepEqual(config.routes[0]!.match?.dstPorts, [{ from: 22, to: 22 }]);
  assert.equal(config.routes[3]!.match, null, '`match: {}` is a default rule');
  assert.deepEqual(config.admin, { listen: { host: '127.0.0.1', port: 9100 }, token: null });
  assert.equal(config.events.sqlite, null);
  assert.equal(config.events.jsonl, join(BASE, 'data/events.jsonl'));
});

test('every duration, size and rate form is accepted in the file', () => {
  const { config } = ok(
    LISTENER +
      lines(
        'limits: { idleTimeout: 500ms, maxDuration: 1d, grace: 30, rejectLogInterval: 5m, perSourceRate: 600/m,',
        '          maxBytesIn: 4KiB, maxBytesOut: 1GiB, firstBytes: 2KB, maxConnections: 100, perSource: 5 }',
        'events: { updateInterval: 1h, batch: 1.5s, sensor: gw-1 }',
      ),
  );
  assert.equal(config.limits.idleTimeoutMs, 500);
  assert.equal(config.limits.maxDurationMs, 86_400_000);
  assert.equal(config.limits.graceMs, 30_000);
  assert.equal(config.limits.rejectLogIntervalMs, 300_000);
  assert.deepEqual(config.limits.perSourceRate, { count: 600, perMs: 60_000 });
  assert.equal(config.limits.maxBytesIn, 4096);
  assert.equal(config.limits.maxBytesOut, 1024 ** 3);
  assert.equal(config.limits.firstBytes, 2000);
  assert.equal(config.events.updateIntervalMs, 3_600_000);
  assert.equal(config.events.batchMs, 1500);
  assert.equal(config.events.sensor, 'gw-1');
});

test('${VAR} and ${VAR:-default} are substituted from the environment', () => {
  const { config } = ok(
    lines(
      'listeners:',
      '  - name: ${NAME}',
      '    bind: "${ADDR:-127.0.0.1}:${PORT}"',
      'backends:',
      '  b:',
      '    servers: "192.0.2.1:80"',
      '    retries: ${RETRIES:-2}', // unquoted, in block style: inside { } a $ { would end the flow map
      '    fallback: capture',
      'routes: [{ forward: b }]',
      'admin: { token: "${TOKEN}" }',
      'events: { sensor: "literal $${NOT_A_VAR}" }',
    ),
    { NAME: 'ssh', PORT: '2222', TOKEN: 's3cret' },
  );
  assert.equal(config.listeners[0]!.name, 'ssh');
  assert.deepEqual(config.listeners[0]!.bind, [{ host: '127.0.0.1', port: 2222 }]);
  assert.equal(config.backends.get('b')!.retries, 2, 'an unquoted number stays a number');
  assert.equal(config.admin?.token, 's3cret');
  assert.equal(config.events.sensor, 'literal ${NOT_A_VAR}');
});

test('an unset variable without default names the variable, the key and the line', () => {
  assert.deepEqual(errors(LISTENER + lines('admin:', '  token: "${HONEYGATE_TOKEN}"')), [
    'config.yaml:5: admin.token: environment variable HONEYGATE_TOKEN is not set (write ${HONEYGATE_TOKEN:-default} to give a default, ${HONEYGATE_TOKEN:-} for an empty one)',
  ]);
});

// Regression: HONEYGATE_TOKEN= (set but empty) gave admin an empty token: no authentication.
test('a variable set but empty is an error unless the config allows it with :-', () => {
  const text = LISTENER + lines('admin:', '  token: "${HONEYGATE_TOKEN}"');
  assert.deepEqual(errors(text, { HONEYGATE_TOKEN: '' }), [
    'config.yaml:5: admin.token: environment variable HONEYGATE_TOKEN is empty (write ${HONEYGATE_TOKEN:-default} to give a default, ${HONEYGATE_TOKEN:-} for an empty one)',
  ]);
  const allowed = ok(LISTENER + lines('admin:', '  token: "${HONEYGATE_TOKEN:-}"'), { HONEYGATE_TOKEN: '' });
  assert.equal(allowed.config.admin?.token, null);
});

// Regression: with both sinks on one file, SQLite's checkpoint erased the JSON lines.
test('events.jsonl may not be the SQLite store or one of its side files', () => {
  for (const jsonl of ['/srv/e.db', '/srv/e.db-wal']) {
    assert.deepEqual(errors(LISTENER + lines('events:', '  sqlite: /srv/e.db', `  jsonl: ${jsonl}`)), [
      `config.yaml:6: events.jsonl: "${jsonl}" is the SQLite store's own file: give JSON lines a file of its own`,
    ]);
  }
});

// Regression: the checks on the sinks and on port 0 with workers ran only after the rest of
// the file had passed, so `check` showed two of these four problems, and the next run two more.
test('problems of every kind are reported at once, those on sinks and workers too', () => {
  const text = lines(
    'listeners:',
    '  - name: ssh',
    '    bind: "127.0.0.1:0"',
    'routes:',
    '  - forward: cowie',
    'limits:',
    '  maxConnections: -1',
    'events:',
    '  sqlite: ./data/events.db',
    '  jsonl: ./data/events.db-wal',
    'workers: 2',
  );
  assert.deepEqual(errors(text), [
    'config.yaml:3: listeners[0].bind: port 0 with workers: 2: every worker would get a port of its own (name the port)',
    'config.yaml:5: routes[0].forward: unknown backend "cowie" (none defined)',
    'config.yaml:7: limits.maxConnections: invalid value -1 (a whole number 1-1000000)',
    `config.yaml:10: events.jsonl: "${BASE}/data/events.db-wal" is the SQLite store's own file: give JSON lines a file of its own`,
  ]);
});

// One case per class of mistake: the file and the exact messages it must produce.
const CASES: { name: string; text: string; errors: string[] }[] = [
  {
    name: 'unknown key lists the allowed keys',
    text: lines(LISTENER.trimEnd(), 'backends:', '  cowrie:', '    sevrers: ["192.0.2.10:2222"]'),
    errors: [
      'config.yaml:5: backends.cowrie.servers: required key is missing',
      "config.yaml:6: backends.cowrie: unknown key 'sevrers' (allowed: servers, tunnel, source, balance, health, fallback, connectTimeout, retries, record, engine)",
    ],
  },
  {
    name: 'invalid enum value lists the allowed values',
    text: lines(
      LISTENER.trimEnd(),
      'backends:',
      '  cowrie:',
      '    servers: 192.0.2.10:2222',
      '    balance: sourcehash',
    ),
    errors: [
      'config.yaml:7: backends.cowrie.balance: invalid value "sourcehash" (allowed: roundrobin, leastconn, source-hash)',
    ],
  },
  {
    name: 'forward names an unknown backend',
    text: lines(
      LISTENER.trimEnd(),
      'routes:',
      '  - forward: web',
      '  - forward: cowie',
      'backends:',
      '  cowrie: { servers: 192.0.2.10:2222 }',
      '  web: { servers: 192.0.2.20:80 }',
    ),
    errors: ['config.yaml:6: routes[1].forward: unknown backend "cowie" (known: cowrie, web)'],
  },
  {
    name: 'fallback names an unknown backend, and fallback cycles',
    text: lines(
      LISTENER.trimEnd(),
      'routes: [{ forward: a }]',
      'backends:',
      '  a: { servers: 192.0.2.1:80, fallback: b }',
      '  b: { servers: 192.0.2.2:80, fallback: c }',
      '  c: { servers: 192.0.2.3:80, fallback: a }',
      '  d: { servers: 192.0.2.4:80, fallback: nope }',
    ),
    errors: [
      'config.yaml:6: backends.a.fallback: fallback cycle: a -> b -> c -> a',
      'config.yaml:9: backends.d.fallback: unknown backend "nope" (known: a, b, c, d, capture)',
    ],
  },
  {
    name: 'duplicate listener names, unknown listener in a match',
    text: lines(
      LISTENER.trimEnd(),
      '  - name: ssh',
      '    bind: "127.0.0.1:2223"',
      'routes:',
      '  - match: { listeners: [ssh, telnet] }',
      '    capture: {}',
    ),
    errors: [
      'config.yaml:4: listeners[1].name: duplicate listener name "ssh" (also listeners[0])',
      'config.yaml:7: routes[0].match.listeners[1]: unknown listener "telnet" (known: ssh)',
    ],
  },
  {
    name: 'bad ports and ranges; port 0 only in bind',
    text: lines(
      'listeners:',
      '  - name: ssh',
      '    bind: ["127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:3000-2000"]',
      'routes:',
      '  - match: { dstPorts: ["0", "9-3", "22"] }',
      '    drop: true',
    ),
    errors: [
      'config.yaml:3: listeners[0].bind[1]: invalid port "70000" (a port 0-65535 or a range like 8000-8099)',
      'config.yaml:3: listeners[0].bind[2]: invalid port range "3000-2000" (the first port must not exceed the last)',
      'config.yaml:5: routes[0].match.dstPorts[0]: invalid port "0" (a port 1-65535 or a range like 8000-8099)',
      'config.yaml:5: routes[0].match.dstPorts[1]: invalid port range "9-3" (the first port must not exceed the last)',
    ],
  },
  {
    name: 'a bind range above 5000 ports',
    text: lines('listeners:', '  - name: wide', '    bind: ["0.0.0.0:1-5000", "0.0.0.0:6000"]'),
    errors: [
      'config.yaml:3: listeners[0].bind: binds 5001 ports; at most 5000 per listener (each is an open socket, and open files are limited)',
    ],
  },
  {
    name: 'acceptProxy.versions must not be empty',
    text: lines(
      'listeners:',
      '  - name: edge',
      '    bind: "127.0.0.1:8443"',
      '    acceptProxy: { versions: [], from: [127.0.0.1], timeout: 0s }',
    ),
    errors: [
      'config.yaml:4: listeners[0].acceptProxy.versions: needs at least one value',
      'config.yaml:4: listeners[0].acceptProxy.timeout: invalid duration "0s": must be more than 0',
    ],
  },
  {
    name: 'tproxy listeners: bind/acceptProxy do not mix, families must match (divert is optional)',
    text: lines(
      'listeners:',
      '  - name: a',
      '    tproxy: { port: 15001 }',
      '  - name: b',
      '    bind: "127.0.0.1:2222"',
      '    tproxy: { port: 15002, address: [127.0.0.1, 127.0.0.2] }',
      '    divert: { interface: eth0, addresses: [2001:db8::/32] }',
      '  - name: c',
      '    bind: "127.0.0.1:2223"',
      '    divert: { interface: [eth0, "toolonginterface0"] }',
      '  - name: d',
      '    tproxy: { port: 15003, address: 127.0.0.1 }',
      '    divert: { interface: eth0, addresses: 2001:db8::/32 }',
    ),
    errors: [
      "config.yaml:5: listeners[1].bind: a tproxy listener takes no bind (its connections arrive through the firewall's divert rules)",
      'config.yaml:6: listeners[1].tproxy.address: at most one IPv4 and one IPv6 address',
      'config.yaml:7: listeners[1].divert.addresses: 2001:db8::/32 is IPv6 but tproxy.address has no IPv6 address to receive it',
      'config.yaml:10: listeners[2].divert.interface[1]: invalid interface name "toolonginterface0" (up to 15 letters, digits, _.@:-; a trailing * matches a prefix)',
      'config.yaml:13: listeners[3].divert.addresses: 2001:db8::/32 is IPv6 but tproxy.address has no IPv6 address to receive it',
    ],
  },
  {
    // Review finding: a zone id reached nft as "[fe80::1%lo]" and the addon as a TypeError;
    // an IPv4-mapped divert block never matched and made every firewall check re-apply.
    name: 'tproxy: zone ids and IPv4-mapped divert blocks',
    text: lines(
      'listeners:',
      '  - name: a',
      '    tproxy: { port: 15001, address: ["fe80::1%lo"] }',
      '    divert: { interface: eth0, addresses: ["::ffff:198.51.100.0/120"] }',
    ),
    errors: [
      'config.yaml:3: listeners[0].tproxy.address[0]: "fe80::1%lo": a zone id (%IFACE) cannot be used here',
      'config.yaml:4: listeners[0].divert.addresses[0]: ::ffff:198.51.100.0/120 is IPv4-mapped: no packet carries such an address; write the IPv4 block instead',
    ],
  },
  {
    name: 'firewall: mark outside its mask',
    text: lines(LISTENER.trimEnd(), 'firewall:', '  mark: 0x3000', '  mask: 0x1000'),
    errors: ['config.yaml:5: firewall.mark: 0x3000 has bits outside mask 0x1000'],
  },
  {
    name: 'firewall: a kernel routing table',
    text: lines(LISTENER.trimEnd(), 'firewall: { table: 254 }'),
    errors: [
      "config.yaml:4: firewall.table: table 254 is one of the kernel's own (253 default, 254 main, 255 local)",
    ],
  },
  {
    name: 'a rule without an action, a rule with two',
    text: lines(
      LISTENER.trimEnd(),
      'routes:',
      '  - match: { dstPorts: 22 }',
      '  - capture: {}',
      '    drop: {}',
    ),
    errors: [
      'config.yaml:5: routes[0]: no action: a rule needs exactly one of forward, capture, reject, drop',
      'config.yaml:6: routes[1]: 2 actions (capture, drop): a rule needs exactly one of forward, capture, reject, drop',
    ],
  },
  {
    name: 'no listeners at all',
    text: lines('listeners: []', 'routes: [{ capture: {} }]'),
    errors: [
      'config.yaml:1: listeners: at least one listener is required (e.g. - name: ssh, bind: "0.0.0.0:2222")',
    ],
  },
  {
    name: 'an empty file',
    text: '# nothing here\n',
    errors: ['config.yaml:1: the configuration is empty (at least listeners: is needed)'],
  },
  {
    name: 'wrong shapes: a list where a mapping belongs, an unknown top-level key',
    text: lines(LISTENER.trimEnd(), 'limits: [1, 2]', 'dashboard: {}'),
    errors: [
      'config.yaml:4: limits: expected a mapping (keys: maxConnections, perSource, perSourceRate, idleTimeout, maxDuration, maxBytesIn, maxBytesOut, firstBytes, rejectLogInterval, grace, udp, amplification), got a list',
      "config.yaml:5: unknown key 'dashboard' (allowed: listeners, routes, backends, limits, events, admin, firewall, contain, log, workers, user, group)",
    ],
  },
  {
    name: 'YAML syntax errors carry line and column',
    text: lines(LISTENER.trimEnd(), 'log: { level: info', 'limits:', '  perSource: 3', '  perSource: 4'),
    errors: [
      'config.yaml:5:1: Flow map in block collection must be sufficiently indented and end with a }',
      'config.yaml:7:3: Map keys must be unique',
    ],
  },
];

for (const c of CASES) {
  test(`error: ${c.name}`, () => {
    assert.deepEqual(errors(c.text), c.errors);
  });
}

test('a file with five mistakes gets five messages, in line order', () => {
  const text = lines(
    'listeners:',
    '  - name: ssh',
    '    bind: "127.0.0.1:2222"',
    '    backlog: 10', // 1: unknown key
    'routes:',
    '  - forward: cowie', // 2: unknown backend
    'backends:',
    '  cowrie:',
    '    servers: ["192.0.2.10:2222"]',
    '    balance: sourcehash', // 3: bad enum
    '    connectTimeout: 3 seconds', // 4: bad duration
    'limits: { perSourceRate: 50/sec }', // 5: bad rate
  );
  assert.deepEqual(errors(text), [
    "config.yaml:4: listeners[0]: unknown key 'backlog' (allowed: name, transport, bind, acceptProxy, originalDst, tproxy, divert, tunnel)",
    'config.yaml:6: routes[0].forward: unknown backend "cowie" (known: cowrie)',
    'config.yaml:10: backends.cowrie.balance: invalid value "sourcehash" (allowed: roundrobin, leastconn, source-hash)',
    'config.yaml:11: backends.cowrie.connectTimeout: invalid duration "3 seconds" (use 500ms, 5s, 5m, 1h, 1d or a number of seconds)',
    'config.yaml:12: limits.perSourceRate: invalid rate "50/sec" (use 50/s, 600/m or 1000/h)',
  ]);
});

test('warnings: unused backend, open admin without token, no sink, file descriptor budget', () => {
  const { warnings } = ok(
    lines(
      'listeners:',
      '  - name: wide',
      '    bind: "0.0.0.0:10000-14999"',
      'routes: [{ capture: {} }]',
      'backends:',
      '  spare: { servers: 192.0.2.9:22 }',
      'admin: { listen: "0.0.0.0:9100" }',
      'events: { sqlite: null }',
      'limits: { maxConnections: 8000 }',
    ),
  );
  assert.deepEqual(warnings, [
    'config.yaml:6: backends.spare: not used by any route or fallback',
    'config.yaml:7: admin.listen: 0.0.0.0:9100 is reachable from other hosts and admin.token is not set',
    'config.yaml:8: events: no event sink (sqlite and jsonl are both off): connections are not recorded',
    'config.yaml:9: limits.maxConnections: 8000 flows (2 sockets each) plus 5000 listening sockets and 64 in reserve need 21064 file descriptors; this process may hold 20000 (RLIMIT_NOFILE), so flows beyond 7468 are refused as limit-global. Raise the limit (systemd: LimitNOFILE=21064; a shell: ulimit -n 21064) or lower maxConnections',
  ]);
});

// Regression: the fd budget was a constant 20,000 while the process ran under `ulimit -n 2048`.
test('maxConnections is checked against the real open-file limit', () => {
  const text = lines(LISTENER.trimEnd(), 'routes: [{ capture: {} }]', 'limits: { maxConnections: 8000 }');
  assert.deepEqual(ok(text, {}, 2048).warnings, [
    'config.yaml:5: limits.maxConnections: 8000 flows (2 sockets each) plus 1 listening sockets and 64 in reserve need 16065 file descriptors; this process may hold 2048 (RLIMIT_NOFILE), so flows beyond 991 are refused as limit-global. Raise the limit (systemd: LimitNOFILE=16065; a shell: ulimit -n 16065) or lower maxConnections',
  ]);
  assert.deepEqual(ok(text, {}, null).warnings, [], 'no limit, no warning');
  assert.deepEqual(ok(text, {}, 16065).warnings, []);
});

test('hostile input never throws: alias bombs, deep nesting, odd scalars', () => {
  const bomb = lines(
    'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]',
    'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
    'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
    'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
    'e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]',
  );
  for (const text of [
    bomb,
    '['.repeat(5000),
    '- 1\n- 2',
    '"just text"',
    'listeners: 5',
    'listeners: [null, 3, {}]',
    '\0\x01',
  ]) {
    const r = loadConfigText(text, { env: {}, fileName: 'x' });
    assert.equal(r.ok, false);
  }
});

test('loadConfigFile names the path it could not read', () => {
  const r = loadConfigFile('/nonexistent/honeygate.yaml');
  assert.equal(r.ok, false);
  assert.match(
    (r as { errors: string[] }).errors[0]!,
    /^\/nonexistent\/honeygate.yaml: cannot read the configuration file: ENOENT/,
  );
});

test('a protocol name the classifiers do not know is an error, not a rule that never matches', () => {
  assert.deepEqual(errors(`${LISTENER}routes:\n  - match: { protocol: [htttp] }\n    drop: {}\n`), [
    'config.yaml:5: routes[0].match.protocol[0]: invalid value "htttp" (allowed: tls, http, ssh, rdp, smb, redis, telnet, sip, ssdp, memcached, dns, snmp, cldap, ntp, unknown)',
  ]);
});

// A list item indented one space too little used to give a bogus "unknown key '[ { name: ...'"
// before the real syntax error, and yaml printed a Node warning to stderr.
test('a mis-indented list item gives the syntax error alone, and no stray warning', async () => {
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  try {
    const text = lines(
      'listeners:',
      '  - name: ssh',
      '    bind: "127.0.0.1:2222"',
      ' - name: telnet',
      '    bind: "127.0.0.1:2323"',
    );
    assert.deepEqual(errors(text), [
      'config.yaml:4:1: A block sequence may not be used as an implicit map key',
    ]);
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    assert.deepEqual(warnings, []);
  } finally {
    process.off('warning', onWarning);
  }
});

// Regression: `check` accepted an admin.token with a space, which no client can ever present
// (the header takes one token), so everyone was locked out of the admin API.
test('admin.token with a space or a control character is refused, without echoing it', () => {
  const problems = errors(LISTENER + lines('admin:', '  token: "open sesame"'));
  assert.deepEqual(problems, [
    'config.yaml:5: admin.token: the token has a space at position 5: a Bearer token is visible ASCII only (no spaces)',
  ]);
  assert.ok(!problems[0]!.includes('sesame'), 'the message does not echo the token');
  assert.match(errors(LISTENER + lines('admin:', '  token: "a\\tb"'))[0]!, /character "\\t" at position 2/);
  assert.equal(ok(LISTENER + lines('admin:', '  token: "b64+/token=="')).config.admin?.token, 'b64+/token==');
});

// Regression: a 5,000-deep YAML reported "Maximum call stack size exceeded" instead of its fault.
test('a document nested too deep says so at its line, flow or block style', () => {
  const flow = `${LISTENER}x: ${'['.repeat(5000)}${']'.repeat(5000)}\n`;
  assert.deepEqual(errors(flow).length, 1);
  assert.match(
    errors(flow)[0]!,
    /^config\.yaml:4(?::\d+)?: nesting too deep: at most 64 levels of maps and lists$/,
  );
  const block = `${LISTENER}x:\n${Array.from({ length: 3000 }, (_, i) => `${' '.repeat(i + 1)}a:`).join('\n')} 1\n`;
  assert.match(errors(block).join('\n'), /^config\.yaml:\d+(?::\d+)?: nesting too deep/);
  assert.match(
    errors(`${LISTENER}x: ${'['.repeat(80)}${']'.repeat(80)}\n`)[0]!,
    /^config\.yaml:4(?::\d+)?: nesting too deep/,
  );
});

// Regression (found by the fuzzer): `- - - … x` 5,000 deep, or `[[[…` loaded a few times,
// aborted the process (a stack overflow inside V8's regex compiler cannot be caught), and a
// map used as a key made yaml's toJS() take seconds or throw "Invalid string length".
test('text too deep to parse, and collection keys, are refused before anything recurses', () => {
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(errors(`${'- '.repeat(5000)}x\n`), [
      'config.yaml:1: nesting too deep: at most 64 levels of maps and lists',
    ]);
    assert.deepEqual(errors('['.repeat(2000)), [
      'config.yaml:1: nesting too deep: at most 64 levels of maps and lists',
    ]);
  }
  const block70 = `x:\n${Array.from({ length: 70 }, (_, i) => `${' '.repeat(i + 1)}a:`).join('\n')} 1\n`;
  assert.deepEqual(errors(block70), [
    'config.yaml:66:66: nesting too deep: at most 64 levels of maps and lists',
  ]);
  assert.deepEqual(errors(`${'? '.repeat(60)}x\n`), ['config.yaml:1:3: a map or list used as a key']);
  assert.deepEqual(errors(`${LISTENER}[a, b]: 1\n`), ['config.yaml:4:1: a map or list used as a key']);
});
