// UDP listeners in the configuration: the key, its defaults, and the combinations `check`
// refuses because they cannot work for datagrams.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';

function load(text: string) {
  return loadConfigText(text, { env: {}, baseDir: '/tmp', fileName: 'config.yaml' });
}

function errors(text: string): string[] {
  const r = load(text);
  if (r.ok) assert.fail('expected errors, the config loaded');
  return r.errors;
}

const UDP = 'listeners:\n  - name: dns\n    transport: udp\n    bind: "127.0.0.1:5353"\n';

test('transport defaults to tcp; udp listeners get flow and guard defaults', () => {
  const r = load(`${UDP}  - name: ssh\n    bind: "127.0.0.1:2222"\n`);
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  assert.deepEqual(
    r.config.listeners.map((l) => [l.name, l.transport]),
    [
      ['dns', 'udp'],
      ['ssh', 'tcp'],
    ],
  );
  assert.deepEqual(r.config.limits.udp, {
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
  });
});

test('a capture reply is hex bytes', () => {
  const r = load(`${UDP}routes:\n  - capture: { reply: "00 01 ab" }\n`);
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  const a = r.config.routes[0]!.action;
  assert.equal(a.type, 'capture');
  assert.deepEqual(a.type === 'capture' ? a.capture.reply : null, Buffer.from([0, 1, 0xab]));
  assert.match(
    errors(`${UDP}routes:\n  - capture: { reply: "0g" }\n`)[0]!,
    /capture\.reply: expected hex bytes/,
  );
});

test('check refuses what cannot work for datagrams', () => {
  assert.deepEqual(
    errors(
      [
        'listeners:',
        '  - name: dns',
        '    transport: udp',
        '    bind: "127.0.0.1:5353"',
        '    acceptProxy: { from: ["198.51.100.0/24"] }',
        '    originalDst: true',
        '  - name: snmp',
        '    transport: udp',
        '    bind: "127.0.0.1:1161"',
        '  - name: any',
        '    transport: quic',
        '    bind: "127.0.0.1:4433"',
        'routes:',
        '  - match: { listeners: [dns, snmp], protocol: [ssh, http] }',
        '    drop: {}',
        '  - match: { listeners: [snmp], protocol: [snmp, ssh] }',
        '    drop: {}',
        '  - forward: old',
        'backends:',
        '  old: { servers: ["192.0.2.10:53"], source: proxy-v1 }',
        '',
      ].join('\n'),
    ),
    [
      'config.yaml:5: listeners[0].acceptProxy: a UDP listener takes no acceptProxy (a PROXY header opens a TCP connection; UDP has no connection to open)',
      'config.yaml:6: listeners[0].originalDst: a UDP listener takes no originalDst (SO_ORIGINAL_DST is for TCP; use tproxy for diverted UDP)',
      'config.yaml:11: listeners[2].transport: invalid value "quic" (allowed: tcp, udp)',
      'config.yaml:14: routes[0].match.protocol: ssh, http are TCP protocols: this rule sees only UDP listeners (UDP protocols: sip, ssdp, memcached, dns, snmp, cldap, ntp, unknown)',
      'config.yaml:18: routes[2].forward: backend old has source: proxy-v1, which has no UDP form, and this rule can see UDP flows (use proxy-v2, transparent or none, or name the TCP listeners in match.listeners)',
    ],
  );
});

test('a UDP listener needs workers: 1', () => {
  assert.deepEqual(errors(`${UDP}workers: 2\n`), [
    'config.yaml:3: listeners[0].transport: a UDP listener with workers: 2: UDP flows and their amplification guard live in one process (use workers: 1)',
  ]);
});
