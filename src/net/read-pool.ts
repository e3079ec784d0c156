// Reads into reused buffers, for sockets whose bytes go into a tunnel stream (the honeypot's
// on the hub). By default Node reads a socket into a new 64 KiB ArrayBuffer each time: in
// bulk that is a GB of external memory per GB moved, which drove V8 into dozens of
// incremental markings per run and doubled the hub's CPU per GB in half of the runs
// (docs/tunnel.md, Performance). Here a read that fills its buffer lends the buffer itself
// to the one consumer that claims it (the stream write, which gives it back when nghttp2
// is done with it); anything shorter is copied out, and an idle socket waits on one buffer
// that all of them share, so it pins no memory of its own.
import type net from 'node:net';

/** Node's own read size: a bulk read fills it. */
export const READ_BYTES = 64 * 1024;
/** Free buffers kept for reuse (4 MiB); more than that in flight are left to the GC when they come back. */
const MAX_FREE = 64;

const free: Buffer[] = [];
let shared: Buffer | null = null;
// The chunk being emitted right now, and whether a consumer took its buffer.
let lent: Buffer | null = null;
let lentFrom: Buffer | null = null;
let taken = false;

function take(): Buffer {
  return free.pop() ?? Buffer.allocUnsafeSlow(READ_BYTES);
}

function give(buf: Buffer): void {
  if (free.length < MAX_FREE) free.push(buf);
}

/**
 * The `onread` option for net.connect / new net.Socket: the socket emits 'data' itself. A
 * full read's chunk is the pooled buffer: a listener that claim()s it must not keep it past
 * giving it back (a recording keeps its chunks: such a flow does not read this way).
 */
export function pooledReads(): net.OnReadOpts {
  let next: Buffer | null = null; // the buffer for the next read; null: the shared one
  return {
    buffer: () => {
      if (next) return next;
      shared ??= Buffer.allocUnsafeSlow(READ_BYTES);
      return shared;
    },
    callback(this: net.Socket, nread: number, buf: Uint8Array) {
      const b = buf as Buffer;
      const full = nread === b.length;
      if (full && b !== shared) {
        // Lent: a listener that claims it gives it back. Unclaimed, a listener may have
        // kept the chunk, so the buffer is left to it (and the GC).
        lent = b.subarray(0, nread);
        lentFrom = b;
        taken = false;
        try {
          this.emit('data', lent);
        } finally {
          lent = null;
          lentFrom = null;
        }
      } else {
        const chunk = Buffer.allocUnsafe(nread);
        b.copy(chunk, 0, 0, nread);
        if (b !== shared) give(b);
        this.emit('data', chunk);
      }
      // A full read says more is waiting: the next goes into a buffer of its own. A short
      // one says the socket is drained, and it may stay idle for hours on the shared one.
      next = full ? take() : null;
      return true;
    },
  };
}

/**
 * Takes a lent chunk's buffer (the chunk being emitted by a pooledReads socket): returns the
 * function that gives it back, to be called once nothing refers to the chunk any more.
 * Undefined for any other chunk (a copy: nothing to give back).
 */
export function claim(chunk: Buffer): (() => void) | undefined {
  if (chunk !== lent || taken) return undefined;
  taken = true;
  const buf = lentFrom!;
  return () => give(buf);
}
