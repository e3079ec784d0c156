// What the primary and its worker processes say to each other over the IPC channel of
// child_process.fork (serialization 'advanced': Buffers and Maps arrive as they were sent).
// One channel per worker, in order: a reply sent after a batch of events arrives after it.

import type { RecorderStats } from '../events/recorder.js';
import type { GatewayStats } from '../gateway/gateway.js';

/** Primary -> worker. */
export type ToWorker =
  | { type: 'reload'; id: number } // read the config file again and reload
  | { type: 'reload-continue'; id: number } // the firewall points at the new sockets: close the old ones
  | { type: 'reopen' } // SIGUSR1
  | { type: 'stats'; id: number }
  | { type: 'events-written'; id: number } // the sinks took the events of that batch
  | { type: 'stop' }; // SIGTERM: drain, send the last events, exit

/** Worker -> primary. */
export type FromWorker =
  | { type: 'ready' } // every listener bound
  | { type: 'failed'; message: string; code?: string } // could not start; exits 1
  // Events as the values of their SQLite rows, packed in one block (row.ts packEvents): the
  // primary hands the block on to the store thread as it is.
  // `id`: answered with events-written once the primary's sinks took them, so the worker's
  // start journal settles those flows only then (a killed primary loses no flow unseen).
  | { type: 'events'; pack: Uint8Array; id: number }
  | { type: 'reload-bound'; id: number } // new sockets bound, waiting for reload-continue
  | { type: 'reloaded'; id: number; error?: string }
  | { type: 'stats'; id: number; gateway: GatewayStats; recorder: RecorderStats }
  | { type: 'stopped' }; // every event sent; exits 0

/** The hidden `run` option that makes a process a worker: `--worker INDEX`. */
export const WORKER_FLAG = '--worker';
