// The `listening` log lines: one per listener and run of consecutive ports on one address,
// not one per socket. A range of 1,000 ports is one line:
//   {"msg":"listening","listener":"wide","address":"0.0.0.0:1000-1999","ports":1000}
// A socket on port 0 (the kernel picked its port) or a transparent one is a line of its own.
import type { Logger } from '../log.js';
import type { BoundSocket } from './listener.js';

interface Run {
  listener: string;
  host: string; // as the address prints it: "0.0.0.0", "[::]"
  from: number;
  to: number;
}

/** The sockets as runs of consecutive ports per listener and address, in the order bound. */
export function listeningRuns(
  bound: readonly BoundSocket[],
): { listener: string; address: string; ports: number }[] {
  const runs: Run[] = [];
  let last: Run | null = null;
  for (const b of bound) {
    const colon = b.address.lastIndexOf(':');
    const host = b.address.slice(0, colon);
    const port = Number(b.address.slice(colon + 1));
    const alone = b.key.includes('|'); // port 0 or transparent (listener.ts socketKey)
    if (!alone && last && last.listener === b.listener && last.host === host && port === last.to + 1) {
      last.to = port;
      continue;
    }
    const run: Run = { listener: b.listener, host, from: port, to: port };
    runs.push(run);
    last = alone ? null : run;
  }
  return runs.map((r) => ({
    listener: r.listener,
    address: r.from === r.to ? `${r.host}:${r.from}` : `${r.host}:${r.from}-${r.to}`,
    ports: r.to - r.from + 1,
  }));
}

export function logListening(log: Logger, bound: readonly BoundSocket[]): void {
  for (const run of listeningRuns(bound)) log.info(run, 'listening');
}
