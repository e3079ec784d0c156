// Review finding: a transparent dial took any source a trusted PROXY header claimed, and
// would send SYNs from loopback, multicast or the honeypot's own address (a LAND packet).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dial } from '../../src/gateway/dial.js';
import type { Flow } from '../../src/gateway/flow.js';

const server = { host: '192.0.2.10', port: 2222 };
const flowFrom = (ip: string) => ({ src: { ip, port: 40000 } }) as unknown as Flow;

for (const [ip, why] of [
  ['127.0.0.1', 'loopback'],
  ['0.0.0.0', 'unspecified'],
  ['224.0.0.1', 'multicast'],
  ['255.255.255.255', 'broadcast'],
  ['192.0.2.10', 'the server itself'],
] as const) {
  test(`a transparent dial refuses the source ${ip} (${why})`, async () => {
    await assert.rejects(dial('transparent', flowFrom(ip), server, 1000), {
      code: 'HG_ERR_UPSTREAM_CONNECT',
      message: `cannot connect to a honeypot server: 192.0.2.10:2222: will not connect from ${ip} (${why})`,
    });
  });
}

test('a transparent dial keeps the address family', async () => {
  await assert.rejects(dial('transparent', flowFrom('2001:db8::7'), server, 1000), /keeps the family/);
});
