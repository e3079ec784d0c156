#!/usr/bin/env node
// The CPU of one relay forward() call on its own: the N-API reading of its arguments, which
// is what its calling convention decides. The flow id does not exist, so the core answers
// "no such flow waiting" at once, the same work for any convention; a real dial adds its
// socket calls on top. Takes an addon file, so that two builds can be run in alternation:
//   node bench/forward-call.mjs build/Release/honeygate.node [CALLS]
// An addon that exports relayDial (native/boundary.h's dial spec) gets the spec written as
// src/gateway/relay.ts writes it, then forward(id, host, localIp, header); an older one
// gets the 12 arguments. Prints nanoseconds of CPU (user + system) per call.
import { createRequire } from 'node:module';
import { resolve } from 'node:path';

const [file, calls] = process.argv.slice(2);
if (!file) {
  console.error('Usage: node bench/forward-call.mjs ADDON.node [CALLS]');
  process.exit(2);
}
const addon = createRequire(import.meta.url)(resolve(file));
const N = Number(calls ?? 2_000_000);
const header = Buffer.from('PROXY TCP4 192.0.2.1 198.51.100.1 40000 22\r\n');
const at = addon.relayDial;
const spec = new Float64Array(at?.length ?? 0);
const relay = at
  ? new addon.Relay(() => {}, new Float64Array(2), spec)
  : new addon.Relay(() => {}, new Float64Array(2));
const forward = at
  ? (id) => {
      spec[at.port] = 2222;
      spec[at.localPort] = 0;
      spec[at.transparent] = 0;
      spec[at.mark] = 0;
      spec[at.timeoutMs] = 5000;
      spec[at.firstCap] = 64;
      spec[at.maxIn] = 0;
      spec[at.maxOut] = 0;
      return relay.forward(id, '198.51.100.7', null, header);
    }
  : (id) => relay.forward(id, '198.51.100.7', 2222, header, null, 0, false, 0, 5000, 64, 0, 0);

for (let i = 0; i < 200_000; i++) forward(100_000 + (i & 1023)); // JIT warm-up
const before = process.cpuUsage();
for (let i = 0; i < N; i++) forward(100_000 + (i & 1023));
const used = process.cpuUsage(before);
relay.destroy();
console.log(
  `${(((used.user + used.system) * 1000) / N).toFixed(1)} ns per forward() (${at ? 'dial spec' : '12 arguments'})`,
);
