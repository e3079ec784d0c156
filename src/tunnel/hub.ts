// The hub's side of the tunnels: one listener's HTTP/2 server over mutual TLS. It accepts
// only sensors whose certificate chains to tunnel.ca and whose name (the certificate's, never
// what a stream claims) tunnel.sensors lists. Each CONNECT stream is one flow: its PROXY v2
// header says who the attacker is and which id the sensor gave the flow, and the gateway
// takes it from there as if the attacker had connected here (admit, route, action, event).
import http2 from 'node:http2';
import type net from 'node:net';
import type tls from 'node:tls';
import type { ListenerConfig, TunnelListen } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import type { Address } from '../events/event.js';
import type { Logger } from '../log.js';
import { formatEndpoint, normalizeIp, socketIp } from '../net/address.js';
import { type ProxyHeader, parseProxyHeader } from '../net/proxy-protocol.js';
import {
  certificateName,
  keepAlive,
  MAX_SESSION_MEMORY_MB,
  MAX_STREAMS,
  NGHTTP2_REFUSED_STREAM,
  PP2_TYPE_SENSOR,
  readTls,
  SESSION_WINDOW,
  STREAM_RESET_BURST,
  STREAM_RESET_RATE,
  STREAM_WINDOW,
  streamAsSocket,
  type TlsMaterial,
  TUNNEL_CIPHERS,
  type TunnelFlow,
} from './session.js';

/** What the hub learned of a stream before the gateway takes it. */
export type TunneledStart = {
  sensor: string; // from the certificate
  peer: Address; // the sensor's own address (the tunnel's remote end)
} & (
  | { ok: true; src: Address; dst: Address; id: string | null; claimed: string | null; rest: Buffer[] }
  | {
      ok: false;
      reason: 'bad-proxy-header' | 'proxy-header-timeout' | 'client-closed';
      detail: string;
      bytes: Buffer;
    }
);

/** The gateway's entry for a stream: returns the flow it made (null: refused by admission). */
export type OnTunneled = (stream: net.Socket, listener: string, start: TunneledStart) => TunnelFlow | null;

export interface HubStats {
  listener: string;
  address: string;
  sensors: { sensor: string; peer: string; streams: number }[]; // one per connected tunnel
  streams: number; // opened since start
  refused: number; // TLS handshakes or names refused since start
}

interface Tunnel {
  sensor: string;
  peer: Address;
  session: http2.ServerHttp2Session;
  flows: Set<TunnelFlow>;
}

const EVENT_ID = /^[0-9a-f]{32}$/;
const WARN_INTERVAL_MS = 10_000;

export class Hub {
  private cfg: TunnelListen;
  private server: http2.Http2SecureServer;
  private readonly tunnels = new Set<Tunnel>();
  private streams = 0;
  private refused = 0;
  private lastWarned = 0;
  address = '';

  constructor(
    private listener: ListenerConfig,
    private readonly log: Logger,
    private readonly onFlow: OnTunneled,
  ) {
    this.cfg = listener.tunnel!;
    const m = readTls(this.cfg.tls);
    this.server = http2.createSecureServer({
      ...m,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      ciphers: TUNNEL_CIPHERS,
      honorCipherOrder: true,
      allowHTTP1: false,
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      settings: { initialWindowSize: STREAM_WINDOW, maxConcurrentStreams: MAX_STREAMS, enablePush: false },
      // Not in @types/node yet (Node >= 22.9 and 24; older ones ignore them): see STREAM_RESET_BURST.
      ...({ streamResetBurst: STREAM_RESET_BURST, streamResetRate: STREAM_RESET_RATE } as object),
    });
    this.server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      this.refused++;
      this.warn(`refused a tunnel from ${peerOf(socket)}: ${err.message}`);
    });
    this.server.on('session', (session) => this.onSession(session));
    this.server.on('error', (err) => this.log.warn({ code: 'HG_ERR_TUNNEL', err }, 'tunnel listener failed'));
  }

  get name(): string {
    return this.listener.name;
  }

  /** Binds tunnel.listen; rejects with HG_ERR_LISTEN naming it. */
  listen(): Promise<void> {
    const { host, port } = this.cfg.listen;
    return new Promise((resolve, reject) => {
      const failed = (err: Error) =>
        reject(
          new HoneygateError(
            'HG_ERR_LISTEN',
            `listener ${this.name} (tunnel) ${formatEndpoint({ host, port })}: ${err.message}`,
            {
              cause: err,
            },
          ),
        );
      this.server.once('error', failed);
      this.server.listen({ host, port, backlog: 1024 }, () => {
        this.server.off('error', failed);
        const a = this.server.address() as net.AddressInfo;
        this.address = formatEndpoint({ host: normalizeIp(a.address) ?? a.address, port: a.port });
        resolve();
      });
    });
  }

  /** Same listen address, new config (SIGHUP): new certificates and names for new tunnels; open ones keep going. */
  update(listener: ListenerConfig): void {
    const next = listener.tunnel!;
    const m: TlsMaterial = readTls(next.tls);
    this.server.setSecureContext({
      ...m,
      minVersion: 'TLSv1.3',
      ciphers: TUNNEL_CIPHERS,
      honorCipherOrder: true,
    });
    this.listener = listener;
    this.cfg = next;
  }

  sameAddress(listener: ListenerConfig): boolean {
    const a = listener.tunnel?.listen;
    return !!a && a.host === this.cfg.listen.host && (a.port === this.cfg.listen.port || a.port === 0);
  }

  stats(): HubStats {
    return {
      listener: this.name,
      address: this.address,
      sensors: [...this.tunnels].map((t) => ({
        sensor: t.sensor,
        peer: formatEndpoint({ host: t.peer.ip, port: t.peer.port }),
        streams: t.flows.size,
      })),
      streams: this.streams,
      refused: this.refused,
    };
  }

  /** Stops accepting tunnels; open ones end when their flows do (or at close()). */
  stopAccepting(): void {
    this.server.close();
  }

  /** Ends every tunnel; flows still open end as `reason`. */
  close(reason: 'shutdown' | 'tunnel-lost' = 'shutdown'): void {
    this.server.close();
    for (const t of [...this.tunnels]) this.lose(t, reason, 'the hub is stopping');
  }

  private onSession(session: http2.ServerHttp2Session): void {
    const socket = session.socket as tls.TLSSocket;
    const peer = addressOf(socket);
    const name = certificateName(socket.getPeerCertificate());
    session.on('error', () => {}); // the socket's close below reports the end
    if (!name || !this.cfg.sensors.includes(name)) {
      this.refused++;
      const why = name ? `sensor name "${name}" is not in tunnel.sensors` : 'its certificate has no name';
      this.warn(`refused a tunnel from ${formatEndpoint({ host: peer.ip, port: peer.port })}: ${why}`);
      session.goaway(NGHTTP2_REFUSED_STREAM, 0, Buffer.from(why));
      session.destroy();
      return;
    }
    session.setLocalWindowSize(SESSION_WINDOW);
    const tunnel: Tunnel = { sensor: name, peer, session, flows: new Set() };
    this.tunnels.add(tunnel);
    const where = formatEndpoint({ host: peer.ip, port: peer.port });
    this.log.info({ listener: this.name, sensor: name, peer: where }, 'tunnel up');
    const stopPing = keepAlive(session, (why) => this.lose(tunnel, 'tunnel-lost', why));
    // The socket's close comes before the streams' (theirs are a tick later): the flows
    // end as tunnel-lost, not as whatever their streams' ends would say.
    const gone = () => {
      stopPing();
      this.lose(tunnel, 'tunnel-lost', 'the sensor closed the connection');
    };
    socket.once('error', gone);
    socket.once('close', gone);
    socket.once('end', gone);
    session.once('close', gone);
    session.on('stream', (stream, headers) => this.onStream(tunnel, stream, headers));
  }

  /** Ends a tunnel: its open flows first (as `reason`), then the session. */
  private lose(t: Tunnel, reason: 'shutdown' | 'tunnel-lost', why: string): void {
    if (!this.tunnels.delete(t)) return;
    const open = [...t.flows];
    for (const flow of open) flow.finish(reason, `sensor ${t.sensor}: ${why}`);
    t.session.destroy();
    this.log[reason === 'tunnel-lost' && why.startsWith('no answer') ? 'warn' : 'info'](
      { listener: this.name, sensor: t.sensor, flows: open.length, why },
      'tunnel down',
    );
  }

  private onStream(t: Tunnel, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => {}); // until a flow owns it
    if (headers[':method'] !== 'CONNECT') {
      stream.respond({ ':status': 405 }, { endStream: true });
      return;
    }
    this.streams++;
    stream.respond({ ':status': 200 });
    const base = { sensor: t.sensor, peer: t.peer };
    void readHeader(stream, this.cfg.headerTimeoutMs).then((r) => {
      if (t.session.destroyed && !stream.destroyed) stream.destroy();
      const socket = streamAsSocket(stream);
      let start: TunneledStart;
      if (r.status === 'done') {
        const h = r.header;
        if (h.command !== 'PROXY' || !h.src || !h.dst)
          start = {
            ...base,
            ok: false,
            reason: 'bad-proxy-header',
            detail: 'a tunnel stream needs PROXY TCP4/TCP6',
            bytes: r.bytes,
          };
        else {
          const id = h.uniqueId?.toString('latin1') ?? null;
          if (id !== null && !EVENT_ID.test(id))
            start = {
              ...base,
              ok: false,
              reason: 'bad-proxy-header',
              detail: 'UNIQUE_ID is not a flow id (32 hex digits)',
              bytes: r.bytes,
            };
          else
            start = {
              ...base,
              ok: true,
              src: address(h.src),
              dst: address(h.dst),
              id,
              claimed: claimedName(h),
              rest: r.rest,
            };
        }
      } else start = { ...base, ok: false, reason: r.status, detail: r.detail, bytes: r.bytes };
      if (!start.ok && start.reason === 'client-closed' && stream.destroyed) return;
      const flow = this.onFlow(socket, this.name, start);
      if (!flow || flow.closed) return;
      if (t.session.destroyed) return flow.finish('tunnel-lost', `sensor ${t.sensor}: the tunnel ended`);
      if (stream.closed) return; // done with the tunnel already (see below)
      t.flows.add(flow);
      flow.defer(() => t.flows.delete(flow));
      // A stream that ended while its session lived is done with the tunnel, though its
      // flow may still be closing the honeypot's side: a tunnel lost now is not its end.
      stream.once('close', () => {
        if (!t.session.destroyed) t.flows.delete(flow);
      });
    });
  }

  private warn(message: string): void {
    const now = Date.now();
    if (now - this.lastWarned < WARN_INTERVAL_MS) return;
    this.lastWarned = now;
    this.log.warn({ code: 'HG_ERR_TUNNEL', listener: this.name }, message);
  }
}

function address(a: { ip: string; port: number }): Address {
  return { ip: normalizeIp(a.ip) ?? a.ip, port: a.port };
}

function claimedName(h: ProxyHeader): string | null {
  const tlv = h.tlvs.find((t) => t.type === PP2_TYPE_SENSOR);
  return tlv ? tlv.value.toString('utf8') : null;
}

function addressOf(socket: net.Socket): Address {
  return {
    ip: (socket.remoteAddress ? socketIp(socket.remoteAddress) : null) ?? '',
    port: socket.remotePort ?? 0,
  };
}

function peerOf(socket: net.Socket): string {
  const a = addressOf(socket);
  return a.ip ? formatEndpoint({ host: a.ip, port: a.port }) : 'an unknown address';
}

type HeaderRead =
  | { status: 'done'; header: ProxyHeader; bytes: Buffer; rest: Buffer[] }
  | {
      status: 'bad-proxy-header' | 'proxy-header-timeout' | 'client-closed';
      detail: string;
      bytes: Buffer;
      rest: Buffer[];
    };

/** Reads a stream's PROXY v2 header (64 KiB and timeoutMs at most); leaves the stream paused, the bytes after it in `rest`. */
function readHeader(stream: http2.ServerHttp2Stream, timeoutMs: number): Promise<HeaderRead> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    const done = (r: HeaderRead) => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.pause();
      resolve(r);
    };
    const fail = (status: 'bad-proxy-header' | 'proxy-header-timeout' | 'client-closed', detail: string) =>
      done({ status, detail, bytes: buf, rest: [] });
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const r = parseProxyHeader(buf, { v1: false, v2: true });
      if (r.status === 'done') {
        const rest = buf.length > r.consumed ? [buf.subarray(r.consumed)] : [];
        return done({ status: 'done', header: r.header, bytes: buf.subarray(0, r.consumed), rest });
      }
      if (r.status === 'error') return fail('bad-proxy-header', r.reason);
      if (buf.length >= 64 * 1024) fail('bad-proxy-header', 'no complete header in 64 KiB');
    };
    const onEnd = () =>
      buf.length === 0
        ? fail('client-closed', 'the stream ended before its PROXY header')
        : fail('bad-proxy-header', 'the stream ended inside the header');
    const timer = setTimeout(
      () => fail('proxy-header-timeout', `no PROXY header within ${timeoutMs} ms`),
      timeoutMs,
    );
    timer.unref();
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('close', onEnd);
  });
}
