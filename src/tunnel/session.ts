// What both ends of a tunnel share: the TLS material, the HTTP/2 settings that bound what a
// stream buffers, the PING that finds a dead tunnel, and a stream dressed as the socket a
// Flow expects (its downstream on the hub, its upstream on the sensor).
//
// One tunnel is one HTTP/2 session over TLS 1.3 with client certificates, dialed by the
// sensor. One flow is one CONNECT stream (RFC 9113 section 8.5: the stream carries raw
// bytes both ways, END_STREAM is the half-close, RST_STREAM CONNECT_ERROR the reset). The
// stream starts with a PROXY v2 header (the attacker's src and dst, UNIQUE_ID = the flow's
// event id, the sensor's claimed name in a custom TLV), then the attacker's bytes.
import fs from 'node:fs';
import http2 from 'node:http2';
import type net from 'node:net';
import type tls from 'node:tls';
import type { TunnelTls } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import type { CloseReason } from '../events/event.js';
import { claim } from '../net/read-pool.js';

/**
 * Flow control, per stream and per session. A receiver grants at most STREAM_WINDOW bytes
 * of one stream before it must read them, and it stops reading (stops granting) while the
 * socket it copies into is full (BATCH_BYTES); a sender stops reading its socket while the
 * stream queues STREAM_QUEUE_BYTES. So a flow holds at most STREAM_WINDOW + BATCH_BYTES on
 * the receiving side and STREAM_QUEUE_BYTES + one read on the sending side per direction,
 * whatever the attacker or honeypot does. SESSION_WINDOW
 * bounds the sum over a tunnel's streams, so one slow honeypot cannot stall the others
 * until 128 flows are each full.
 */
export const STREAM_WINDOW = 256 * 1024;
export const SESSION_WINDOW = 32 * 1024 * 1024;
/** nghttp2's per-session memory cap (MB) before it refuses new streams; Node's default 10 is a few hundred full streams. */
export const MAX_SESSION_MEMORY_MB = 256;
export const MAX_STREAMS = 16_384;

/**
 * The hub's guard against a peer that resets streams in bulk (nghttp2's rapid-reset limit,
 * by default a burst of 1000 then 33 per second, past which it ends the whole session with
 * INTERNAL_ERROR). A sensor is authenticated, and every attacker who resets a connection
 * resets its stream: raised well above one sensor's flow rate. Node 24 applies it; Node 20.20
 * ignores it (there, streams that end normally must not be reset: streamAsSocket).
 */
export const STREAM_RESET_BURST = MAX_STREAMS;
export const STREAM_RESET_RATE = 10_000;
/** How long a stream that ended both ways may take to close after our END_STREAM before it is reset. */
export const GRACEFUL_CLOSE_MS = 5000;

/** A PING every PING_INTERVAL_MS; no answer within PING_TIMEOUT_MS: the tunnel is dead. Worst case 7.5 s. */
export const PING_INTERVAL_MS = 2500;
export const PING_TIMEOUT_MS = 5000;

/**
 * TLS 1.3 cipher suites, ours first: both ends are honeygate, and AES-128-GCM costs 15% less
 * per byte than the AES-256-GCM OpenSSL (and HAProxy) pick by default (`openssl speed -evp`,
 * 16 KiB blocks, AES-NI: 6.6 vs 5.7 GB/s), on both sides of every byte a tunnel carries. The
 * hub enforces its order (honorCipherOrder); a peer that offers only the others still connects.
 */
export const TUNNEL_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';

/** PROXY v2 custom TLV (PP2_TYPE_MIN_CUSTOM): the name the sensor claims. Informational: the certificate decides. */
export const PP2_TYPE_SENSOR = 0xe0;

export const { NGHTTP2_CONNECT_ERROR, NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } =
  http2.constants;

/** What a tunnel needs of a Flow (src/gateway/flow.ts): to end it, and to hear when it ends. */
export interface TunnelFlow {
  readonly closed: boolean;
  finish(reason: CloseReason, detail?: string): void;
  defer(fn: () => void): void;
}

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** Reads the PEM files; throws HG_ERR_TUNNEL naming the file that cannot be read. */
export function readTls(files: TunnelTls): TlsMaterial {
  const read = (what: string, path: string): Buffer => {
    try {
      return fs.readFileSync(path);
    } catch (err) {
      throw new HoneygateError('HG_ERR_TUNNEL', `${what} ${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  return {
    ca: read('tunnel.ca', files.ca),
    cert: read('tunnel.cert', files.cert),
    key: read('tunnel.key', files.key),
  };
}

export function sameTls(a: TlsMaterial, b: TlsMaterial): boolean {
  return a.ca.equals(b.ca) && a.cert.equals(b.cert) && a.key.equals(b.key);
}

/** A certificate's name: its subject CN, else its first DNS subjectAltName; null when it has neither. */
export function certificateName(cert: tls.PeerCertificate | null | undefined): string | null {
  if (!cert || Object.keys(cert).length === 0) return null;
  const cn = cert.subject?.CN;
  if (typeof cn === 'string' && cn !== '') return cn;
  const dns = /(?:^|,\s*)DNS:([^,\s]+)/.exec(cert.subjectaltname ?? '');
  return dns ? dns[1]! : null;
}

/**
 * PINGs the peer every PING_INTERVAL_MS; calls `dead` once when one goes unanswered for
 * PING_TIMEOUT_MS (a cut link, a stopped peer: TCP alone would wait for minutes). Returns
 * the stop function.
 */
export function keepAlive(session: http2.Http2Session, dead: (why: string) => void): () => void {
  let sentAt = 0; // 0: no PING outstanding
  const timer = setInterval(() => {
    if (session.destroyed) return clearInterval(timer);
    if (sentAt !== 0) {
      if (Date.now() - sentAt < PING_TIMEOUT_MS) return;
      clearInterval(timer);
      return dead(`no answer to a PING within ${PING_TIMEOUT_MS / 1000} s`);
    }
    sentAt = Date.now();
    try {
      session.ping((err) => {
        if (!err) sentAt = 0;
      });
    } catch {
      // the session is closing: its close handler reports it
    }
  }, PING_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

const TUNNEL_STREAM = Symbol('tunnel stream');

/** Whether `socket` is a tunnel stream dressed by streamAsSocket. */
export function isTunnelStream(socket: net.Socket): boolean {
  return (socket as unknown as Record<symbol, unknown>)[TUNNEL_STREAM] === true;
}

/** What batchedWrite lets a socket hold before it says "full" (the pump then pauses the stream). */
export const BATCH_BYTES = 64 * 1024;

/**
 * A write to `to` for what a tunnel stream delivers: the chunks of one event-loop turn go
 * out in one writev. A stream hands over at most 16 KiB per 'data' (Node's TLS layer
 * decrypts into 16 KiB pieces and nghttp2 passes each on), one JS callback each: written
 * one by one, each was a write(2) of its own, the sensor's largest cost in bulk. The socket
 * is corked at the first chunk and uncorked in setImmediate (after this turn's I/O, before
 * the next poll: no added wait), and it reports full only at BATCH_BYTES, not at its 16 KiB
 * highWaterMark, or the pump would pause the stream after every chunk. So a flow holds at
 * most STREAM_WINDOW + BATCH_BYTES per direction. Returns write()'s "keep going".
 */
export function batchedWrite(to: net.Socket): (chunk: Buffer) => boolean {
  let corked = false;
  const uncork = () => {
    corked = false;
    if (!to.destroyed && to.writableCorked > 0) to.uncork();
  };
  return (chunk) => {
    if (!corked && !to.destroyed) {
      corked = true;
      to.cork();
      setImmediate(uncork);
    }
    to.write(chunk);
    return to.writableLength < BATCH_BYTES;
  };
}

/** What the pump lets a tunnel stream queue (bytes nghttp2 has not sent yet) before it pauses the socket it reads. */
export const STREAM_QUEUE_BYTES = 256 * 1024;

/**
 * The write the pump uses to copy from `from` into `to` when either is a tunnel stream, else
 * null. From a stream: batchedWrite. Into a stream: write() and "keep going" until the stream
 * queues STREAM_QUEUE_BYTES: a stream's 16 KiB highWaterMark is a quarter of one 64 KiB
 * socket read, so write() said "full" after every read and the socket was paused and resumed
 * (two epoll_ctl calls, a 'drain') per read.
 */
export function tunnelWrite(from: net.Socket, to: net.Socket): ((chunk: Buffer) => boolean) | null {
  if (isTunnelStream(from)) return batchedWrite(to);
  if (!isTunnelStream(to)) return null;
  return (chunk) => {
    // A chunk read into a pooled buffer: its buffer goes back once the stream is done with it.
    to.write(chunk, claim(chunk));
    return to.writableLength < STREAM_QUEUE_BYTES;
  };
}

/** An RST_STREAM from the other end is the remote socket's reset: ECONNRESET, which Flow's failOn maps to `*-reset`. */
function asReset(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code !== 'ERR_HTTP2_STREAM_ERROR' && code !== 'ERR_HTTP2_STREAM_CANCEL') return err;
  const reset = new Error(`tunnel stream reset (${(err as Error).message})`) as NodeJS.ErrnoException;
  reset.code = 'ECONNRESET';
  return reset;
}

/**
 * A stream as the net.Socket a Flow and the pump use: the same Duplex events and methods,
 * setNoDelay a no-op (the session's socket has TCP_NODELAY), resetAndDestroy an
 * RST_STREAM CONNECT_ERROR (the other end resets its socket), stream errors as resets.
 * destroy() without an error, once the other end has sent END_STREAM, sends ours instead of
 * an RST_STREAM CANCEL, as closing a socket sends a FIN: the stream closes when it is out.
 * (The pump closes a socket whose peer has ended as soon as the attacker's FIN comes, and
 * a reset per flow made the hub's nghttp2 end the whole tunnel after 1000 flows at more
 * than 33/s: its rapid-reset guard.)
 */
export function streamAsSocket(stream: http2.Http2Stream): net.Socket {
  const s = stream as unknown as net.Socket & { emit: (event: string, ...args: unknown[]) => boolean };
  (s as unknown as Record<symbol, unknown>)[TUNNEL_STREAM] = true;
  const emit = s.emit;
  s.emit = function (this: unknown, event: string, ...args: unknown[]) {
    if (event === 'error') args[0] = asReset(args[0]);
    return emit.call(this, event, ...args);
  };
  s.setNoDelay = () => s;
  s.resetAndDestroy = () => {
    if (!stream.destroyed) stream.close(NGHTTP2_CONNECT_ERROR);
    return s;
  };
  const destroy = s.destroy;
  // An RST_STREAM CANCEL (the other end destroyed its socket mid-flow) emits no error, and the
  // stream then never closed while the pump had its honeypot side paused: the hub held the
  // flow open until the idle timeout. It is the other end's reset.
  stream.once('aborted', () => {
    if (stream.destroyed) return;
    const reset = new Error('tunnel stream reset (aborted by the other end)') as NodeJS.ErrnoException;
    reset.code = 'ECONNRESET';
    destroy.call(s, reset);
  });
  let closing = false;
  s.destroy = function (this: net.Socket, err?: Error) {
    if (err || stream.closed || stream.destroyed || !stream.readableEnded) return destroy.call(this, err);
    if (closing) return s;
    closing = true;
    if (!stream.writableEnded) stream.end();
    const timer = setTimeout(() => {
      if (!stream.destroyed) destroy.call(s);
    }, GRACEFUL_CLOSE_MS);
    timer.unref();
    stream.once('close', () => clearTimeout(timer));
    return s;
  };
  return s;
}
