// Copies bytes both ways between the attacker (downstream) and the honeypot (upstream),
// with backpressure, half-close, byte caps (time limits: deadlines.ts). Written by hand rather than with
// stream.pipeline: we count and keep bytes per chunk, and a half-close on one side must
// not tear down the other.
import type net from 'node:net';
import { tunnelWrite } from '../tunnel/session.js';
import { type Flow, failOn } from './flow.js';

/** Half-closes `to` after the other side's FIN; closes it outright when it has already ended too. */
function passEnd(to: net.Socket): void {
  if (to.readableEnded && to.writableLength === 0) to.destroy();
  else to.end();
}

/** Runs until both sides closed or a limit hit; flow.finish() records the outcome. */
export function pump(flow: Flow, upstream: net.Socket): void {
  const down = flow.downstream;
  const limits = flow.runtime.config.limits;
  let firstEnd: 'client' | 'server' | null = null;
  let downClosed = false;
  let upClosed = false;

  flow.defer(() => upstream.destroy());
  flow.defer(flow.runtime.deadlines.watch(flow));

  // The attacker's side has had failOn(flow, 'client') since accept.
  upstream.removeAllListeners('error');
  upstream.on('error', failOn(flow, 'server'));

  const done = () => {
    if (downClosed && upClosed) flow.finish(firstEnd === 'server' ? 'server-closed' : 'client-closed');
  };

  // To and from a tunnel stream: batched writes, the stream's own queue bound (tunnel/session.ts).
  const toUpstream = tunnelWrite(down, upstream) ?? ((c: Buffer) => upstream.write(c));
  const toDown = tunnelWrite(upstream, down) ?? ((c: Buffer) => down.write(c));

  const rec = flow.recording;
  for (const chunk of flow.takePending()) {
    rec?.in(chunk);
    upstream.write(chunk);
  }

  down.on('data', (chunk: Buffer) => {
    flow.received(chunk);
    if (limits.maxBytesIn > 0 && flow.bytesIn > limits.maxBytesIn)
      return flow.finish('byte-cap', 'maxBytesIn');
    rec?.in(chunk);
    if (upstream.writable && !toUpstream(chunk)) down.pause();
  });
  upstream.on('drain', () => down.resume());
  upstream.on('data', (chunk: Buffer) => {
    flow.bytesOut += chunk.length;
    if (limits.maxBytesOut > 0 && flow.bytesOut > limits.maxBytesOut)
      return flow.finish('byte-cap', 'maxBytesOut');
    rec?.out(chunk);
    if (down.writable && !toDown(chunk)) upstream.pause();
  });
  down.on('drain', () => upstream.resume());

  // The second side to send its FIN finishes the flow: the other socket has nothing left to
  // read, so once its writes are out close() sends our FIN without a shutdown() first.
  down.on('end', () => {
    firstEnd ??= 'client';
    rec?.finIn();
    passEnd(upstream);
  });
  upstream.on('end', () => {
    firstEnd ??= 'server';
    rec?.finOut();
    passEnd(down);
  });
  down.on('close', () => {
    downClosed = true;
    // The attacker is gone for good: nothing more can reach them, so stop the honeypot side too.
    if (!upClosed) upstream.end();
    done();
  });
  upstream.on('close', () => {
    upClosed = true;
    done();
  });
  // An earlier stage (header, peek) may have read the attacker's FIN already: 'end' is
  // emitted once, so pass the half-close on here or the honeypot would wait for it forever.
  if (down.readableEnded) {
    firstEnd = 'client';
    rec?.finIn();
    upstream.end();
  }
  down.resume();
  upstream.resume();
}
