// Real third-party peers for integration tests, all on 127.0.0.1, each with its config,
// pid and logs in its own temp dir, run in the foreground as a child process:
//   - HAProxy and nginx as PROXY-protocol *receivers* (honeypot stand-ins) that answer
//     each connection with the client address the PROXY header gave them;
//   - HAProxy as a PROXY-protocol *sender* (a proxy peer: a load balancer in front of
//     honeygate);
//   - in-process TCP servers (banner, echo, reply-on-end) as plain honeypots.
// Readiness is read from /proc/net/tcp (a LISTEN socket on the port), not by connecting:
// a probe connection to a load balancer would itself become a flow in honeygate's events.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

// ---- finding binaries ---------------------------------------------------------------

// Debian keeps daemons in /usr/sbin, which a non-root PATH often lacks.
const EXTRA_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin'];

/** The absolute path of `bin` on PATH (or in an sbin dir), or null. */
export function which(bin: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const file = path.join(dir, bin);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * For node:test's `skip` option: false when every binary is installed, else the reason,
 * e.g. `test('x', { skip: needs('haproxy') }, ...)`.
 */
export function needs(...bins: string[]): string | false {
  const absent = bins.filter((b) => which(b) === null);
  if (absent.length === 0) return false;
  return `${absent.join(', ')} not installed: run npm test as root to install it`;
}

// ---- child-process peers ------------------------------------------------------------

export interface Peer {
  name: string;
  port: number; // where it accepts connections on 127.0.0.1
  dir: string; // its config, pid and logs
  proc: ChildProcess;
  output(): string; // its stdout, stderr and error log so far, for failure messages
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
// A test runner that dies mid-test must not leave peers bound to ports.
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/** True when /proc/net/tcp lists a LISTEN socket on 127.0.0.1:port. */
export function isListening(port: number): boolean {
  const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const table = fs.readFileSync('/proc/net/tcp', 'utf8');
  return table.split('\n').some((line) => {
    const cols = line.trim().split(/\s+/);
    return cols[1] === want && cols[3] === '0A';
  });
}

/**
 * Bytes waiting in the receive queue of the local socket on 127.0.0.1:port connected to
 * `peerPort` (from /proc/net/tcp): how a test sees that honeygate has read what it sent.
 */
export function receiveQueue(port: number, peerPort: number): number | undefined {
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hex(port)}`) && f[2]?.endsWith(`:${hex(peerPort)}`))
      return Number.parseInt(f[4]!.split(':')[1]!, 16);
  }
  return undefined;
}

export async function startProcessPeer(
  name: string,
  dir: string,
  port: number,
  cmd: string,
  args: string[],
  logFile: string | null,
): Promise<Peer> {
  const proc = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  proc.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  proc.on('error', (err) => {
    out += `spawn error: ${err.message}\n`;
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.once('exit', () => running.delete(proc));
  const output = () => {
    let log = '';
    if (logFile) {
      try {
        log = fs.readFileSync(logFile, 'utf8');
      } catch {
        // not written yet
      }
    }
    return `${out}${log}`;
  };
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      `${name} to listen on 127.0.0.1:${port}`,
      () => {
        if (proc.exitCode !== null || proc.signalCode !== null) {
          throw new Error(`${name} exited (${proc.exitCode ?? proc.signalCode}): ${output()}`);
        }
        return isListening(port);
      },
      10_000,
    );
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${name} output:\n${output()}`);
  }
  return { name, port, dir, proc, output, stop };
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `hg-${prefix}-`));
}

const HAPROXY_DEFAULTS = ['defaults', '  timeout connect 5s', '  timeout client 30s', '  timeout server 30s'];

/**
 * HAProxy with `bind 127.0.0.1:PORT accept-proxy` (v1 and v2) in HTTP mode: every request
 * is answered `200 text/plain` with "SRC_IP:SRC_PORT" as taken from the PROXY header.
 * Send it an HTTP request (`GET / HTTP/1.0\r\n\r\n`); a missing or bad header makes it
 * close the connection without a reply.
 */
export async function startHaproxyAcceptProxy(): Promise<Peer> {
  const bin = which('haproxy');
  if (!bin) throw new Error(needs('haproxy') as string);
  const dir = tempDir('haproxy-recv');
  const port = await freePort();
  const cfg = [
    'global',
    `  pidfile ${dir}/haproxy.pid`,
    ...HAPROXY_DEFAULTS,
    '  mode http',
    'frontend reporter',
    `  bind 127.0.0.1:${port} accept-proxy`,
    '  http-request return status 200 content-type text/plain lf-string "%[src]:%[src_port]"',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'haproxy.cfg'), cfg);
  return startProcessPeer('haproxy (accept-proxy)', dir, port, bin, ['-db', '-f', 'haproxy.cfg'], null);
}

/** An HTTP request for startHaproxyAcceptProxy; its body answer is "IP:PORT". */
export const HTTP_REQUEST = 'GET / HTTP/1.0\r\nHost: reporter\r\n\r\n';

/** The body of an HTTP/1.x response (after the blank line). */
export function httpBody(response: Buffer | string): string {
  const text = response.toString();
  const i = text.indexOf('\r\n\r\n');
  return i < 0 ? '' : text.slice(i + 4);
}

const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

/**
 * nginx with a stream server `listen 127.0.0.1:PORT proxy_protocol` that answers every
 * connection with "$proxy_protocol_addr:$proxy_protocol_port\n" and closes. Single
 * process (`master_process off`), foreground, all files in its temp dir; needs no root.
 */
export async function startNginxProxyProtocol(): Promise<Peer> {
  const bin = which('nginx');
  if (!bin) throw new Error(needs('nginx') as string);
  const dir = tempDir('nginx');
  const port = await freePort();
  // Debian ships the stream module separately (libnginx-mod-stream); other builds link it in.
  const load = fs.existsSync(NGINX_STREAM_MODULE) ? `load_module ${NGINX_STREAM_MODULE};` : '';
  const cfg = [
    load,
    'daemon off;',
    'master_process off;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log info;`,
    'events { worker_connections 256; }',
    'stream {',
    '  server {',
    `    listen 127.0.0.1:${port} proxy_protocol;`,
    '    proxy_protocol_timeout 5s;',
    '    return "$proxy_protocol_addr:$proxy_protocol_port\\n";',
    '  }',
    '}',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'nginx.conf'), cfg);
  // -e: the error log before the config is read (else /var/log/nginx, root only).
  const args = ['-p', dir, '-e', `${dir}/error.log`, '-c', `${dir}/nginx.conf`];
  return startProcessPeer('nginx (proxy_protocol)', dir, port, bin, args, `${dir}/error.log`);
}

export interface SendingProxyOptions {
  target: number; // honeygate's port on 127.0.0.1
  version: 'v1' | 'v2';
  // HAProxy's own source address towards honeygate, so the event's `peer` (HAProxy) can
  // be told apart from its `src` (the client); any 127.0.0.0/8 address works on Linux.
  sourceAddress?: string;
}

/**
 * HAProxy as a proxy peer (a load balancer in front of honeygate): TCP mode, `server hg 127.0.0.1:TARGET
 * send-proxy-v2` (or `send-proxy` for v1). Clients connect to `port`; honeygate receives
 * the PROXY header naming the client.
 */
export async function startHaproxySendingProxy(opts: SendingProxyOptions): Promise<Peer> {
  const bin = which('haproxy');
  if (!bin) throw new Error(needs('haproxy') as string);
  const dir = tempDir('haproxy-send');
  const port = await freePort();
  const send = opts.version === 'v2' ? 'send-proxy-v2' : 'send-proxy';
  const source = `source ${opts.sourceAddress ?? '127.0.0.2'}`;
  const cfg = [
    'global',
    `  pidfile ${dir}/haproxy.pid`,
    ...HAPROXY_DEFAULTS,
    '  mode tcp',
    'frontend lb',
    `  bind 127.0.0.1:${port}`,
    '  default_backend gateway',
    'backend gateway',
    `  server hg 127.0.0.1:${opts.target} ${send} ${source}`,
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'haproxy.cfg'), cfg);
  return startProcessPeer(`haproxy (${send})`, dir, port, bin, ['-db', '-f', 'haproxy.cfg'], null);
}

// ---- in-process servers -------------------------------------------------------------

export interface TcpServer {
  port: number;
  accepted: number; // connections accepted so far
  open: number; // connections open now
  received: Buffer[]; // per connection, everything it received (filled as it arrives)
  stop(): Promise<void>; // stops listening and destroys open connections
}

/** A TCP server on 127.0.0.1 (port 0 unless given) running `handle` for each connection. */
export function startTcpServer(
  handle: (socket: net.Socket, index: number) => void,
  port = 0,
): Promise<TcpServer> {
  const sockets = new Set<net.Socket>();
  const result: TcpServer = {
    port: 0,
    accepted: 0,
    open: 0,
    received: [],
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  // Half-open allowed: a reply-on-end server must still write after the client's FIN.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    const index = result.accepted++;
    result.open++;
    result.received[index] = Buffer.alloc(0);
    sockets.add(socket);
    socket.on('data', (c: Buffer) => {
      result.received[index] = Buffer.concat([result.received[index]!, c]);
    });
    socket.once('close', () => {
      sockets.delete(socket);
      result.open--;
    });
    handle(socket, index);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      result.port = (server.address() as net.AddressInfo).port;
      resolve(result);
    });
  });
}

/** Sends `banner` on accept and closes: a honeypot that says who it is. */
export function startBannerServer(banner: string, port = 0): Promise<TcpServer> {
  return startTcpServer((socket) => socket.end(banner), port);
}

/** Echoes everything back; closes its side when the client does. */
export function startEchoServer(port = 0): Promise<TcpServer> {
  return startTcpServer((socket) => socket.pipe(socket), port);
}

/** Reads until the client half-closes, then answers `reply(allData)` and closes. */
export function startReplyOnEndServer(
  reply: (data: Buffer) => string | Buffer,
  port = 0,
): Promise<TcpServer> {
  return startTcpServer((socket) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => socket.end(reply(Buffer.concat(chunks))));
  }, port);
}
