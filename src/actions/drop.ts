import type { Flow } from '../gateway/flow.js';
import { closeGently } from './close.js';

/** Closes without sending a byte: a FIN, nothing else. */
export function drop(flow: Flow): void {
  flow.action = 'drop';
  closeGently(flow, 'dropped');
}
