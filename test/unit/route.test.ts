import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';
import type { Route } from '../../src/config/types.js';
import type { Flow } from '../../src/gateway/flow.js';
import { routeByAddress, routeWithoutPeek } from '../../src/gateway/route.js';

const { routes } = (() => {
  const r = loadConfigText(`
listeners:
  - { name: ssh, bind: "127.0.0.1:2222" }
  - { name: web, bind: "127.0.0.1:8080" }
routes:
  - name: blocked
    match: { srcAddresses: ["203.0.113.0/24", "2001:db8:bad::/48"] }
    drop: {}
  - name: ssh
    match: { listeners: [ssh], dstPorts: ["22", "2222"] }
    capture: {}
  - name: honeynet
    match: { dstAddresses: ["192.0.2.0/25"], dstPorts: ["8000-8099"] }
    reject: {}
  - name: rest
    capture: {}
`);
  assert.ok(r.ok, JSON.stringify(r));
  return r.config;
})();

const flow = (listener: string, src: string, dst: string, dstPort: number) =>
  ({ listener: { name: listener }, src: { ip: src, port: 40000 }, dst: { ip: dst, port: dstPort } }) as Flow;

test('first match wins, on listener, ports, ranges and CIDRs of both families', () => {
  const cases: [Flow, string][] = [
    [flow('ssh', '198.51.100.1', '127.0.0.1', 2222), 'ssh'],
    [flow('ssh', '203.0.113.9', '127.0.0.1', 2222), 'blocked'],
    [flow('web', '2001:db8:bad::1', '2001:db8::1', 80), 'blocked'],
    [flow('web', '2001:db8:600d::1', '2001:db8::1', 80), 'rest'],
    [flow('web', '198.51.100.1', '127.0.0.1', 2222), 'rest'], // port matches, listener does not
    [flow('web', '198.51.100.1', '192.0.2.10', 8000), 'honeynet'],
    [flow('web', '198.51.100.1', '192.0.2.10', 8099), 'honeynet'],
    [flow('web', '198.51.100.1', '192.0.2.10', 8100), 'rest'],
    [flow('web', '198.51.100.1', '192.0.2.200', 8000), 'rest'], // outside the /25
  ];
  for (const [f, want] of cases) {
    assert.equal((routeByAddress(f, routes) as Route | null)?.name, want, JSON.stringify(f));
    assert.equal(routeWithoutPeek(f, routes)?.name, want);
  }
});

test('an unknown source (reset before accept) never matches a source condition', () => {
  assert.equal(routeWithoutPeek(flow('ssh', '', '127.0.0.1', 2222), routes)?.name, 'ssh');
});

test('no default rule: a flow that matches nothing gets no route', () => {
  assert.equal(routeByAddress(flow('ssh', '198.51.100.1', '127.0.0.1', 9), routes.slice(0, 3)), null);
});
