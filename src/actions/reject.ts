import type { Flow } from '../gateway/flow.js';

/** Answers with a TCP reset, as a closed port would after the handshake. */
export function reject(flow: Flow): void {
  flow.action = 'reject';
  flow.reset();
  flow.finish('rejected');
}
