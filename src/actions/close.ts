import type { CloseReason } from '../events/event.js';
import type { Flow } from '../gateway/flow.js';

/**
 * Ends the attacker's side with a FIN, as a real service would. Bytes still arriving are
 * counted and discarded: unread bytes in the kernel would turn the close into a reset (a
 * fingerprint). An attacker who never reads could hold the FIN back, so there is a deadline.
 */
export function closeGently(flow: Flow, reason: CloseReason): void {
  const down = flow.downstream;
  flow.closeReason ??= reason;
  down.removeAllListeners('data');
  down.on('data', (chunk: Buffer) => {
    flow.bytesIn += chunk.length;
  });
  down.resume();
  down.end(() => flow.finish(reason));
  setTimeout(() => flow.finish(reason), 2000).unref();
}
