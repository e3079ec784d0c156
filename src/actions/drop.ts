import type { Flow } from '../gateway/flow.js';

/** Closes without sending a byte (a FIN, nothing else). */
export function drop(flow: Flow): void {
  flow.action = 'drop';
  flow.downstream.end();
  flow.finish('dropped');
}
