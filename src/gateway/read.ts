// Reads the first bytes of a flow for a stage that must look before it routes (inbound
// PROXY header, protocol peek). The stage decides after each chunk; bytes it does not keep
// go back to the flow as pending payload for the action.
import type { Flow } from './flow.js';

export type Decision<T> = { done: T; consumed?: number } | undefined;

export interface ReadOptions<T> {
  timeoutMs: number;
  maxBytes: number; // decide with what there is once this much arrived
  onTimeout: T; // the value when time runs out (or maxBytes arrive undecided)
  /**
   * true: every byte is attacker payload, counted as it arrives (peek). false: the bytes
   * may be a PROXY header, counted by the stage once it knows; if the flow ends first
   * (reset, close), they are counted then, so no evidence is lost.
   */
  payload: boolean;
}

/**
 * Accumulates bytes until `decide(buffer, ended)` returns a decision or time runs out.
 * Resolves null if the flow closed meanwhile. Leaves the socket paused; bytes after
 * `consumed` are pushed to flow.pending.
 */
export function readUntil<T>(
  flow: Flow,
  opts: ReadOptions<T>,
  decide: (buf: Buffer, ended: boolean) => Decision<T>,
): Promise<{ value: T; buffered: Buffer; ended: boolean } | null> {
  const down = flow.downstream;
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let ended = false;
    let settled = false;
    const stop = () => {
      settled = true;
      clearTimeout(timer);
      down.off('data', onData);
      down.off('end', onEnd);
      down.off('close', onClose);
      down.pause();
    };
    const finish = (value: T, consumed = 0) => {
      stop();
      if (buf.length > consumed) flow.pending.push(buf.subarray(consumed));
      resolve({ value, buffered: buf.subarray(0, consumed), ended });
    };
    // The flow may finish (a reset) while we wait: count what we hold before its event.
    const abandon = () => {
      if (settled) return;
      stop();
      if (!opts.payload && buf.length > 0) flow.received(buf);
      resolve(null);
    };
    const check = () => {
      const d = decide(buf, ended);
      if (d) finish(d.done, d.consumed ?? 0);
      else if (ended || buf.length >= opts.maxBytes) finish(opts.onTimeout);
    };
    const onData = (chunk: Buffer) => {
      if (opts.payload) flow.received(chunk);
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      check();
    };
    const onEnd = () => {
      ended = true;
      check();
    };
    const onClose = abandon;
    const timer = setTimeout(() => finish(opts.onTimeout), opts.timeoutMs);
    timer.unref();
    flow.defer(abandon);
    down.on('data', onData);
    down.on('end', onEnd);
    down.on('close', onClose);
    down.resume();
  });
}
