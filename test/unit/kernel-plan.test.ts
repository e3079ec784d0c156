// engine: kernel: what `check` refuses (each at the key asking for user space), what it
// explains, and how a backend's map slots move when servers go down.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';
import { explainKernel, slotTargets } from '../../src/kernel/plan.js';

const BASE = `
listeners:
  - name: all
    tproxy: { port: 15001 }
    divert: { interface: eth0 }
  - name: ssh
    bind: "0.0.0.0:2222"
    acceptProxy: { from: ["198.51.100.0/24"] }
`;

function errors(text: string): string[] {
  const r = loadConfigText(BASE + text, { env: {}, baseDir: '/tmp', fileName: 'c.yaml' });
  return r.ok ? [] : r.errors;
}

test('a kernel route with a protocol match is refused at match.protocol', () => {
  const e = errors(`
routes:
  - match: { dstPorts: ["80"], protocol: http }
    forward: web
backends:
  web: { servers: ["192.0.2.20:80"], engine: kernel }
`);
  assert.equal(e.length, 1, e.join('\n'));
  assert.match(e[0]!, /routes\[0\]\.match\.protocol: the kernel forwards without reading a byte/);
});

test('leastconn, a PROXY source and loopback servers are refused at their keys', () => {
  const e = errors(`
routes:
  - forward: web
backends:
  web: { servers: ["127.0.0.1:80"], engine: kernel, balance: leastconn, source: proxy-v2 }
`);
  assert.ok(
    e.some((l) => /backends\.web\.source: proxy-v2 needs user space/.test(l)),
    e.join('\n'),
  );
  // the source error stops the load before the assembled checks: fix it and look again
  const e2 = errors(`
routes:
  - forward: web
backends:
  web: { servers: ["127.0.0.1:80"], engine: kernel, balance: leastconn }
`);
  assert.ok(
    e2.some((l) => /backends\.web\.balance: leastconn needs/.test(l)),
    e2.join('\n'),
  );
  assert.ok(
    e2.some((l) => /backends\.web\.servers: 127\.0\.0\.1:80: engine: kernel DNATs/.test(l)),
    e2.join('\n'),
  );
});

test('a kernel route naming a bind listener with acceptProxy is refused at match.listeners', () => {
  const e = errors(`
routes:
  - match: { listeners: [ssh] }
    forward: web
backends:
  web: { servers: ["192.0.2.20:80"], engine: kernel }
`);
  assert.ok(
    e.some((l) => /match\.listeners: listener ssh binds sockets and reads PROXY headers/.test(l)),
    e.join('\n'),
  );
  assert.ok(
    e.some((l) => /routes\[0\]\.forward: no tproxy listener with divert:/.test(l)),
    e.join('\n'),
  );
});

test('an earlier protocol route the kernel cannot decide is named', () => {
  const e = errors(`
routes:
  - match: { protocol: ssh }
    forward: cowrie
  - forward: web
backends:
  cowrie: { servers: ["192.0.2.10:2222"] }
  web: { servers: ["192.0.2.20:80"], engine: kernel }
`);
  assert.ok(
    e.some((l) => /routes\[1\]\.forward: routes\[0\] matches protocol first/.test(l)),
    e.join('\n'),
  );
});

test('check explains which routes the kernel serves and what stays in user space', () => {
  const r = loadConfigText(
    `${BASE}
routes:
  - match: { dstPorts: ["22"] }
    forward: cowrie
  - forward: web
backends:
  cowrie: { servers: ["192.0.2.10:2222"] }
  web: { servers: ["192.0.2.20:80", "192.0.2.21:80"], engine: kernel, balance: source-hash }
`,
    { env: {}, baseDir: '/tmp', fileName: 'c.yaml' },
  );
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  assert.equal(r.config.backends.get('web')!.source, 'transparent');
  const [line] = explainKernel(r.config);
  assert.match(line!, /^#1: nftables DNAT to backend web \(IPv4\) for listener all, by jhash/);
  assert.match(line!, /routes #0 match first stay in user space/);
  assert.match(line!, /flows of ssh are forwarded by user space/);
  assert.match(
    line!,
    /limits in the kernel: 64 open flows \(ct count\) and 50\/s new flows \(limit rate\) per source/,
  );
});

test('a down server gives its slots to the live ones; the others keep theirs', () => {
  const s = [1, 2, 3].map((i) => ({ host: `192.0.2.${i}`, port: 80 }));
  const all = slotTargets(s, () => true);
  assert.equal(all.length, 36);
  const down = slotTargets(s, (x) => x.host !== '192.0.2.2');
  assert.equal(down.length, 36);
  for (let j = 0; j < 36; j++) {
    if (all[j]!.host !== '192.0.2.2') assert.equal(down[j], all[j]);
    else assert.notEqual(down[j]!.host, '192.0.2.2');
  }
  const counts = new Map<string, number>();
  for (const t of down) counts.set(t!.host, (counts.get(t!.host) ?? 0) + 1);
  assert.deepEqual([...counts.values()], [18, 18]);
  assert.deepEqual(
    slotTargets(s, () => false),
    [],
  );
});
