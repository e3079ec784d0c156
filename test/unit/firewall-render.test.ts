// The rendered ruleset for each config in test/helpers/fixtures/firewall/*.yaml matches its golden
// *.nft file, and (as root, with nft installed) every golden loads: `nft --check -f` in a
// throwaway network namespace. After an intended change, regenerate with:
//   UPDATE_GOLDEN=1 node --test dist/test/unit/firewall-render.test.js
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import {
  divertPorts,
  mergeRanges,
  parseSshdListeners,
  planRuleset,
  protectedFrom,
  renderRouting,
  renderRuleset,
  subtractRanges,
} from '../../src/firewall/render.js';
import { familyAddresses, parseCidr } from '../../src/net/address.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIXTURES = `${ROOT}test/helpers/fixtures/firewall/`;
const SSHD = [{ address: '0.0.0.0:22', port: 22 }];

const files = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

function load(file: string): Config {
  const r = loadConfigFile(`${FIXTURES}${file}`);
  if (!r.ok) assert.fail(r.errors.join('\n'));
  return r.config;
}

function config(text: string): Config {
  const r = loadConfigText(text, { env: {}, baseDir: '/tmp', fileName: 'config.yaml' });
  if (!r.ok) assert.fail(r.errors.join('\n'));
  return r.config;
}

function nftCheckSkip(): string | false {
  if (process.getuid?.() !== 0)
    return 'needs root (nft --check needs CAP_NET_ADMIN, run in a throwaway netns)';
  if (spawnSync('nft', ['--version']).error) return 'nft not installed (Debian package nftables)';
  if (spawnSync('unshare', ['--version']).error) return 'unshare not installed (Debian package util-linux)';
  return false;
}

for (const file of files) {
  const golden = `${FIXTURES}${file.replace(/\.yaml$/, '.nft')}`;
  test(`firewall/${file} renders its golden ruleset`, () => {
    const c = load(file);
    const actual = renderRuleset(c, { protectedPorts: protectedFrom(c, SSHD) });
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(golden, actual);
    assert.equal(actual, readFileSync(golden, 'utf8'));
  });

  test(`firewall/${file.replace(/\.yaml$/, '.nft')} passes nft --check`, { skip: nftCheckSkip() }, (t) => {
    if (readFileSync(golden, 'utf8') === '') return t.skip('renders nothing');
    // unshare --net: a fresh, empty namespace that vanishes with the process.
    const r = spawnSync('unshare', ['--net', 'nft', '--check', '-f', golden], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });
}

test('none.yaml: no tproxy listener and no transparent backend render nothing', () => {
  const c = load('none.yaml');
  assert.equal(renderRuleset(c, { protectedPorts: [] }), '');
  assert.equal(planRuleset(c, { protectedPorts: [] }), null);
  assert.deepEqual(renderRouting(c), []);
});

test('renderRouting: one rule and one local route per family the ruleset uses', () => {
  assert.deepEqual(
    renderRouting(load('basic.yaml')).map((e) => e.argv.join(' ')),
    [
      'ip -4 rule add pref 10000 fwmark 0x1000/0x1000 lookup 4210',
      'ip -4 route add local 0.0.0.0/0 dev lo table 4210',
      'ip -6 rule add pref 10000 fwmark 0x1000/0x1000 lookup 4210',
      'ip -6 route add local ::/0 dev lo table 4210',
    ],
  );
  assert.deepEqual(
    renderRouting(load('v4-only.yaml')).map((e) => e.argv.join(' ')),
    [
      'ip -4 rule add pref 10000 fwmark 0x1000/0x1000 lookup 4210',
      'ip -4 route add local 0.0.0.0/0 dev lo table 4210',
    ],
  );
  assert.deepEqual(
    renderRouting(load('addresses-v4.yaml')).map((e) => e.family),
    [4, 4],
    'IPv6 is not diverted, so it needs no routing',
  );
  assert.deepEqual(
    renderRouting(load('custom-marks.yaml')).map((e) => e.argv.join(' ')),
    [
      'ip -4 rule add pref 500 fwmark 0x200000/0x300000 lookup 100',
      'ip -4 route add local 0.0.0.0/0 dev lo table 100',
      'ip -6 rule add pref 500 fwmark 0x200000/0x300000 lookup 100',
      'ip -6 route add local ::/0 dev lo table 100',
    ],
  );
  assert.deepEqual(
    renderRouting(load('transparent-only.yaml')).map((e) => e.family),
    [4, 4, 6, 6],
    'a transparent backend with IPv4 and IPv6 servers needs both',
  );
});

test('mergeRanges and subtractRanges', () => {
  assert.deepEqual(
    mergeRanges([
      { from: 10, to: 20 },
      { from: 1, to: 5 },
      { from: 21, to: 22 },
      { from: 4, to: 8 },
    ]),
    [
      { from: 1, to: 8 },
      { from: 10, to: 22 },
    ],
  );
  assert.deepEqual(
    subtractRanges(
      [{ from: 1, to: 65535 }],
      [
        { from: 22, to: 22 },
        { from: 1, to: 1 },
        { from: 65535, to: 65535 },
        { from: 100, to: 200 },
      ],
    ),
    [
      { from: 2, to: 21 },
      { from: 23, to: 99 },
      { from: 201, to: 65534 },
    ],
  );
  assert.deepEqual(subtractRanges([{ from: 80, to: 80 }], [{ from: 1, to: 65535 }]), []);
});

test('divertPorts: protected ports leave ranges, stay when named alone, exclusions always win', () => {
  const prot = [
    { port: 22, why: 'sshd' },
    { port: 9100, why: 'admin' },
  ];
  const all = { interfaces: ['eth0'], addresses: null, exclude: [], ports: [{ from: 1, to: 65535 }] };
  assert.deepEqual(divertPorts(all, prot), {
    ports: [
      { from: 1, to: 21 },
      { from: 23, to: 9099 },
      { from: 9101, to: 65535 },
    ],
    protectedOut: prot,
    protectedKept: [],
  });
  const named = { ...all, ports: [{ from: 22, to: 22 }, ...all.ports] };
  assert.deepEqual(divertPorts(named, prot).protectedKept, [prot[0]]);
  assert.deepEqual(divertPorts(named, prot).ports, [
    { from: 1, to: 9099 },
    { from: 9101, to: 65535 },
  ]);
  const excluded = { ...named, exclude: [{ from: 22, to: 22 }] };
  assert.deepEqual(divertPorts(excluded, prot).protectedKept, [], 'exclude beats naming it');
  const elsewhere = { ...all, ports: [{ from: 80, to: 80 }] };
  assert.deepEqual(divertPorts(elsewhere, prot), {
    ports: [{ from: 80, to: 80 }],
    protectedOut: [],
    protectedKept: [],
  });
});

test('familyAddresses: per family, nested blocks dropped, /0 means no match', () => {
  const cidrs = ['203.0.113.0/24', '203.0.113.7', '198.51.100.1', '2001:db8::/32', '2001:db8:5::/48'].map(
    parseCidr,
  );
  assert.deepEqual(familyAddresses(cidrs, 4), ['198.51.100.1', '203.0.113.0/24']);
  assert.deepEqual(familyAddresses(cidrs, 6), ['2001:db8::/32']);
  assert.deepEqual(familyAddresses([parseCidr('203.0.113.0/24')], 6), []);
  assert.equal(familyAddresses([parseCidr('0.0.0.0/0'), parseCidr('203.0.113.0/24')], 4), null);
});

test('parseSshdListeners: ss -ltnpH lines naming sshd', () => {
  const ss = [
    'LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=612,fd=3))',
    'LISTEN 0      128             [::]:22           [::]:*    users:(("sshd",pid=612,fd=4))',
    'LISTEN 0      128          0.0.0.0:2201      0.0.0.0:*    users:(("sshd",pid=700,fd=3))',
    'LISTEN 0      511        127.0.0.1:80        0.0.0.0:*    users:(("nginx",pid=1,fd=6),("nginx",pid=2,fd=6))',
    'LISTEN 0      4096       127.0.0.53%lo:53    0.0.0.0:*    users:(("systemd-resolve",pid=5,fd=14))',
    '',
  ].join('\n');
  assert.deepEqual(parseSshdListeners(ss), [
    { address: '0.0.0.0:22', port: 22 },
    { address: '[::]:22', port: 22 },
    { address: '0.0.0.0:2201', port: 2201 },
  ]);
  const c = config('listeners: [{ name: a, bind: "127.0.0.1:1" }]\nadmin: { listen: "127.0.0.1:9100" }\n');
  assert.deepEqual(protectedFrom(c, parseSshdListeners(ss)), [
    { port: 22, why: 'sshd listens on 0.0.0.0:22, [::]:22' },
    { port: 2201, why: 'sshd listens on 0.0.0.0:2201' },
    { port: 9100, why: 'admin API on 127.0.0.1:9100' },
  ]);
  assert.deepEqual(protectedFrom(c, []), [
    { port: 22, why: 'SSH: the default port, no listening sshd found' },
    { port: 9100, why: 'admin API on 127.0.0.1:9100' },
  ]);
});

// Review finding: a socket-activated sshd shares its listening socket with systemd, and ss may
// list systemd first; only lines starting with "sshd" were taken, so its port lost its protection.
test('parseSshdListeners: sshd anywhere in the users list', () => {
  const ss =
    'LISTEN 0      4096         0.0.0.0:22222     0.0.0.0:*    users:(("systemd",pid=1,fd=51),("sshd",pid=612,fd=3))\n' +
    'LISTEN 0      4096         0.0.0.0:2000      0.0.0.0:*    users:(("notsshd",pid=9,fd=3))\n';
  assert.deepEqual(parseSshdListeners(ss), [{ address: '0.0.0.0:22222', port: 22222 }]);
});

// With 100,000 sockets on the host `ss -p` took 26-30 s: sshd's listeners are now found
// by their socket inodes, read from sshd's own descriptors.
test('parseSshdListeners: ss -ltnHe lines whose inode an sshd holds', () => {
  const ss =
    'LISTEN 0      128          0.0.0.0:2222      0.0.0.0:*    ino:4242 sk:1 cgroup:/system.slice/ssh.service <->\n' +
    'LISTEN 0      511        127.0.0.1:80        0.0.0.0:*    ino:5151 sk:2 cgroup:/system.slice/nginx.service <->\n' +
    'LISTEN 0      128             [::]:2222         [::]:*    ino:4243 sk:3 v6only:1 <->\n';
  assert.deepEqual(parseSshdListeners(ss, new Set(['4242', '4243'])), [
    { address: '0.0.0.0:2222', port: 2222 },
    { address: '[::]:2222', port: 2222 },
  ]);
  assert.deepEqual(parseSshdListeners(ss), []);
});

test('the ruleset text: mark math, chain priorities, protected-port comment', () => {
  const text = renderRuleset(load('custom-marks.yaml'), { protectedPorts: [{ port: 22, why: 'sshd' }] });
  assert.match(text, /^table inet honeygate \{\}\ndelete table inet honeygate\ntable inet honeygate \{$/m);
  assert.match(text, /type filter hook prerouting priority dstnat \+ 10; policy accept;/);
  assert.match(text, /type route hook output priority mangle \+ 10; policy accept;/);
  assert.match(
    text,
    /ct mark & 0x300000 == 0x200000 meta mark set meta mark & 0xffcfffff \| 0x200000 accept/,
  );
  assert.match(text, /ct mark set ct mark & 0xffcfffff \| 0x200000 comment/);
  assert.match(
    text,
    /^# lock-out protection, never diverted unless divert.ports names the port alone: 22 \(sshd\)$/m,
  );
  // Rules in the design's order: replies, transparent sockets, DNATed elsewhere, then diverts.
  const order = [
    'ct mark &',
    'socket transparent 1 meta mark',
    'ct status dnat accept',
    'tproxy ip to',
    'tproxy ip6 to',
  ];
  const at = order.map((s) => text.indexOf(s));
  assert.deepEqual(
    [...at].sort((a, b) => a - b),
    at,
  );
  assert.ok(!at.includes(-1), String(at));
});

test('nft is never asked to load a rule for a family the listener cannot receive', () => {
  const text = renderRuleset(load('v4-only.yaml'), { protectedPorts: [] });
  assert.ok(!text.includes('tproxy ip6'), text);
});
