// Reads the first bytes of a flow for a stage that must look before it routes (inbound
// PROXY header, protocol peek). The stage decides after each chunk; bytes it does not keep
// go back to the flow as pending payload for the action.
import type { Flow } from './flow.js';

export type Decision<T> = { done: T; consumed?: number } | undefined;

/**
 * Accumulates bytes until `decide(buffer, ended)` returns a decision or `timeoutMs` passes
 * (then resolves with `onTimeout`). Resolves null if the flow closed meanwhile. Leaves the
 * socket paused; bytes after `consumed` are pushed to flow.pending.
 */
export function readUntil<T>(
  flow: Flow,
  timeoutMs: number,
  maxBytes: number,
  decide: (buf: Buffer, ended: boolean) => Decision<T>,
  onTimeout: T,
): Promise<{ value: T; buffered: Buffer; ended: boolean } | null> {
  const down = flow.downstream;
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let ended = false;
    // `closed` is separate from the value: a stage's timeout value may itself be null.
    const finish = (value: T, consumed = 0, closed = false) => {
      clearTimeout(timer);
      down.off('data', onData);
      down.off('end', onEnd);
      down.off('close', onClose);
      down.pause();
      if (closed) return resolve(null);
      if (buf.length > consumed) flow.pending.push(buf.subarray(consumed));
      resolve({ value, buffered: buf.subarray(0, consumed), ended });
    };
    const check = () => {
      const d = decide(buf, ended);
      if (d) finish(d.done, d.consumed ?? 0);
      else if (ended || buf.length >= maxBytes) finish(onTimeout);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      check();
    };
    const onEnd = () => {
      ended = true;
      check();
    };
    const onClose = () => finish(onTimeout, 0, true);
    const timer = setTimeout(() => finish(onTimeout), timeoutMs);
    timer.unref();
    down.on('data', onData);
    down.on('end', onEnd);
    down.on('close', onClose);
    down.resume();
  });
}
