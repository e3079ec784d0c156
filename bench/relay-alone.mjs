#!/usr/bin/env node
// The native relay with nothing of honeygate around it: every accepted connection is dialed
// to the server at once, with no Flow, no admission, no routing and no event. It is the
// floor under honeygate's new-connection rate on this machine: what honeygate does per flow
// comes on top of it. A bench target, not a product mode (bench/README.md).
//
//   node bench/relay-alone.mjs HONEYGATE_ROOT LISTEN_PORT SERVER_PORT [PROCESSES]
//
// PROCESSES > 1 (the all-cores layout): this process and PROCESSES - 1 children, each a
// relay on its own SO_REUSEPORT socket, as honeygate's workers are.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [root, listenPort, serverPort, processes = '1'] = process.argv.slice(2);
const native = await import(pathToFileURL(join(root, 'dist', 'src', 'net', 'native.js')).href);

const children = [];
for (let i = 1; i < Number(processes); i++)
  children.push(
    spawn(process.execPath, [fileURLToPath(import.meta.url), root, listenPort, serverPort, '1'], {
      stdio: 'inherit',
    }),
  );

// Record layout: native/relay.cc's header comment (numbers per record type).
const LENGTH = { 1: 5, 2: 2, 3: 2, 4: 8, 5: 2 };
// forward()'s numbers go in the dial spec (native/boundary.h); a tree from before the spec
// (BENCH_HONEYGATE) takes them as arguments.
const fields = native.relayBoundary().dial;
const dial = new Float64Array(fields?.length ?? 0);
if (fields) {
  dial[fields.port] = Number(serverPort);
  dial[fields.timeoutMs] = 5000;
}
const forward = fields
  ? (id) => relay.forward(id, '127.0.0.1', null, null)
  : (id) => relay.forward(id, '127.0.0.1', Number(serverPort), null, null, 0, false, 0, 5000, 0, 0, 0);
const relay = native.createRelay(
  (n) => {
    for (let i = 0; i < n.length; i += LENGTH[n[i]]) {
      const id = n[i + 1];
      if (n[i] === 1) forward(id);
      else if (n[i] === 3) relay.close(id, true); // the server refused: nothing retries here
    }
  },
  new Float64Array(2),
  dial,
);
relay.listen(native.listenSocket('127.0.0.1', Number(listenPort), { backlog: 4096, reusePort: true }), 1, 0);
process.on('SIGTERM', () => {
  for (const child of children) child.kill('SIGTERM');
  relay.destroy();
  process.exit(0);
});
