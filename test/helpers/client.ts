// The attacker's side in integration tests: plain TCP clients on loopback that send bytes
// and collect everything that comes back, with every wait bounded.
import net from 'node:net';
import { withTimeout } from './wait.js';

export interface ConnectOptions {
  host?: string; // default 127.0.0.1
  localAddress?: string; // e.g. 127.0.0.3, to be told apart from other loopback clients
  timeoutMs?: number; // connect timeout, default 5000
  allowHalfOpen?: boolean; // keep our side open after the far side's FIN (until end())
}

/** Resolves to a connected socket (with an 'error' listener already attached). */
export function connect(port: number, opts: ConnectOptions = {}): Promise<net.Socket> {
  const socket = net.connect({
    port,
    host: opts.host ?? '127.0.0.1',
    localAddress: opts.localAddress,
    allowHalfOpen: opts.allowHalfOpen ?? false,
  });
  const connected = new Promise<net.Socket>((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
  // Errors after connect are reported through readAll/closed; this keeps them from throwing.
  socket.on('error', () => {});
  return withTimeout(connected, opts.timeoutMs ?? 5000, `connect to 127.0.0.1:${port}`).catch((err) => {
    socket.destroy();
    throw err;
  });
}

export interface Reply {
  data: Buffer; // everything the far side sent before the socket closed
  error: string | null; // e.g. ECONNRESET when the far side reset instead of closing
}

/** Collects what `socket` receives until it closes. Rejects (and destroys it) after `timeoutMs`. */
export function readAll(socket: net.Socket, timeoutMs = 5000): Promise<Reply> {
  const chunks: Buffer[] = [];
  let error: string | null = null;
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', (err: NodeJS.ErrnoException) => {
    error = err.code ?? err.message;
  });
  const closed = new Promise<Reply>((resolve) => {
    if (socket.closed) resolve({ data: Buffer.alloc(0), error: null });
    socket.once('close', () => resolve({ data: Buffer.concat(chunks), error }));
  });
  return withTimeout(closed, timeoutMs, 'the far side to close the connection').catch((err) => {
    socket.destroy();
    throw err;
  });
}

/** Resolves once `socket` has received data for which `done(all so far)` is true. */
export function readUntil(
  socket: net.Socket,
  done: (data: Buffer) => boolean,
  timeoutMs = 5000,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const got = new Promise<Buffer>((resolve, reject) => {
    const onData = (c: Buffer) => {
      chunks.push(c);
      const all = Buffer.concat(chunks);
      if (done(all)) {
        socket.off('data', onData);
        resolve(all);
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`closed after ${Buffer.concat(chunks).length} bytes`)));
  });
  return withTimeout(got, timeoutMs, 'expected data on the connection');
}

export interface ExchangeResult extends Reply {
  localPort: number; // the client's ephemeral port: what a PROXY-aware peer must report
}

/**
 * Connects, sends `payload`, half-closes (unless `end: false`) and collects the reply
 * until the far side closes.
 */
export async function exchange(
  port: number,
  payload: string | Buffer,
  opts: ConnectOptions & { end?: boolean; replyTimeoutMs?: number } = {},
): Promise<ExchangeResult> {
  const socket = await connect(port, opts);
  const localPort = socket.localPort!;
  const reply = readAll(socket, opts.replyTimeoutMs ?? 5000);
  if (payload.length > 0) socket.write(payload);
  if (opts.end !== false) socket.end();
  return { ...(await reply), localPort };
}
