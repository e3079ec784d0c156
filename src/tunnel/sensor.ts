// The sensor's side: one tunnel per tunnel backend, dialed out to the hub (so it works from
// behind NAT), kept up with PINGs, redialed with backoff and jitter when it drops. A flow
// forwarded to the backend opens one CONNECT stream on it; while the tunnel is down the
// backend's fallback (capture by default) takes the flow, so attackers still meet a service.
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { BackendConfig, TunnelDial } from '../config/types.js';
import type { Logger } from '../log.js';
import { formatEndpoint } from '../net/address.js';
import {
  keepAlive,
  MAX_SESSION_MEMORY_MB,
  readTls,
  SESSION_WINDOW,
  STREAM_WINDOW,
  sameTls,
  type TlsMaterial,
  TUNNEL_CIPHERS,
  type TunnelFlow,
} from './session.js';

/** Redial delays: from BACKOFF_MIN_MS doubling to BACKOFF_MAX_MS, each drawn from [d/2, d] (jitter: 20 sensors do not redial in step). */
export const BACKOFF_MIN_MS = 200;
export const BACKOFF_MAX_MS = 5000;

export interface TunnelStats {
  backend: string;
  hub: string;
  up: boolean;
  streams: number; // open now
  opened: number; // streams opened since start
  reconnects: number; // tunnels established after the first
  buffered: number; // bytes queued in this tunnel's open streams, both ways
}

interface Session {
  session: http2.ClientHttp2Session;
  socket: tls.TLSSocket;
  flows: Set<TunnelFlow>;
  streams: Set<http2.ClientHttp2Stream>;
  up: boolean;
  stopPing: () => void;
}

export class TunnelClient {
  private cfg: TunnelDial;
  private material: TlsMaterial;
  private current: Session | null = null;
  private readonly sessions = new Set<Session>(); // the current one and any draining after a SIGHUP
  private attempt = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private everUp = false;
  private lastDownWarning = 0;
  opened = 0;
  reconnects = 0;

  constructor(
    private backend: BackendConfig,
    private readonly sensor: string,
    private readonly log: Logger,
  ) {
    this.cfg = backend.tunnel!;
    this.material = readTls(this.cfg.tls);
  }

  get hub(): string {
    return formatEndpoint(this.cfg.hub);
  }

  get up(): boolean {
    return this.current?.up === true;
  }

  /** The name this sensor claims in each stream's header (the hub goes by the certificate). */
  get sensorName(): string {
    return this.sensor;
  }

  start(): void {
    this.dial();
  }

  /**
   * A reloaded backend (SIGHUP): new certificates or a new hub take a new tunnel for new
   * flows; the old one stops taking streams and closes when its open flows have ended.
   */
  update(backend: BackendConfig): void {
    const next = backend.tunnel!;
    const material = readTls(next.tls);
    const changed =
      !sameTls(material, this.material) ||
      next.hub.host !== this.cfg.hub.host ||
      next.hub.port !== this.cfg.hub.port ||
      next.serverName !== this.cfg.serverName;
    this.backend = backend;
    this.cfg = next;
    this.material = material;
    if (!changed) return;
    const old = this.current;
    this.current = null;
    if (old) {
      old.up = false;
      old.session.close(); // graceful: open streams go on, no new ones
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.attempt = 0;
    this.dial();
  }

  /** Opens a stream for a flow; null while no tunnel is up. */
  open(flow: TunnelFlow, authority: string): http2.ClientHttp2Stream | null {
    const s = this.current;
    if (!s?.up || s.session.closed || s.session.destroyed) return null;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = s.session.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
    } catch {
      return null;
    }
    this.opened++;
    s.flows.add(flow);
    s.streams.add(stream);
    flow.defer(() => s.flows.delete(flow));
    // A stream that ended while its session lived is done with the tunnel, though its flow
    // may still be closing the attacker's side: a tunnel lost now is not that flow's end.
    stream.once('close', () => {
      s.streams.delete(stream);
      if (!s.session.destroyed) s.flows.delete(flow);
    });
    return stream;
  }

  stats(): TunnelStats {
    let streams = 0;
    let buffered = 0;
    for (const s of this.sessions) {
      streams += s.streams.size;
      for (const st of s.streams) buffered += st.writableLength + st.readableLength;
    }
    return {
      backend: this.backend.name,
      hub: this.hub,
      up: this.up,
      streams,
      opened: this.opened,
      reconnects: this.reconnects,
      buffered,
    };
  }

  /** Ends every tunnel; flows still open on them end as `shutdown`. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const s of [...this.sessions]) this.lose(s, 'shutdown', 'the sensor is stopping');
  }

  private dial(): void {
    if (this.stopped) return;
    const { host, port } = this.cfg.hub;
    const m = this.material;
    const authority = formatEndpoint({ host, port });
    let socket!: tls.TLSSocket;
    const session = http2.connect(`https://${net.isIPv6(host) ? `[${host}]` : host}:${port}`, {
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
      createConnection: () => {
        socket = tls.connect({
          host,
          port,
          ...m,
          servername: net.isIP(this.cfg.serverName) ? undefined : this.cfg.serverName,
          checkServerIdentity: (_host, cert) => tls.checkServerIdentity(this.cfg.serverName, cert),
          minVersion: 'TLSv1.3',
          ciphers: TUNNEL_CIPHERS,
          ALPNProtocols: ['h2'],
        });
        socket.setNoDelay(true);
        return socket;
      },
    });
    const s: Session = {
      session,
      socket,
      flows: new Set(),
      streams: new Set(),
      up: false,
      stopPing: () => {},
    };
    this.sessions.add(s);
    this.current = s;
    let refusal: string | null = null;
    session.on('error', (err) => {
      refusal ??= err.message;
    });
    session.on('goaway', (_code, _last, data) => {
      if (data && data.length > 0) refusal = `the hub says: ${data.toString('utf8')}`;
    });
    session.once('connect', () => {
      if (s !== this.current) return;
      session.setLocalWindowSize(SESSION_WINDOW);
      s.up = true;
      if (this.everUp) this.reconnects++;
      this.everUp = true;
      this.attempt = 0;
      s.stopPing = keepAlive(session, (why) => this.lose(s, 'tunnel-lost', why));
      this.log.info({ backend: this.backend.name, hub: authority }, 'tunnel up');
    });
    // The socket's close comes before the streams' (theirs are a tick later): the flows end
    // as tunnel-lost. The session's close covers a session Node ends on its own.
    const gone = (err?: unknown) =>
      this.lose(
        s,
        'tunnel-lost',
        refusal ?? (err as Error | undefined)?.message ?? 'the connection to the hub closed',
      );
    // An error or a FIN on the socket makes Node destroy the session at once, its streams a
    // tick later: listen for those too, not only for the close that follows them.
    socket.once('error', gone);
    socket.once('end', gone);
    socket.once('close', gone);
    session.once('close', gone);
    void authority;
  }

  /** Ends one tunnel: its open flows first (as `reason`), then the session; redials if it was the current one. */
  private lose(s: Session, reason: 'shutdown' | 'tunnel-lost', why: string): void {
    if (!this.sessions.delete(s)) return;
    s.stopPing();
    const wasUp = s.up;
    s.up = false;
    const open = [...s.flows];
    for (const flow of open) flow.finish(reason, `tunnel to hub ${this.hub}: ${why}`);
    if (!s.session.destroyed) s.session.destroy();
    if (s !== this.current) return;
    this.current = null;
    if (this.stopped) return;
    const now = Date.now();
    if (wasUp || now - this.lastDownWarning > 60_000) {
      this.lastDownWarning = now;
      this.log.warn(
        { code: 'HG_ERR_TUNNEL', backend: this.backend.name, hub: this.hub, flows: open.length },
        `tunnel to hub ${this.hub} ${wasUp ? 'lost' : 'cannot be set up'}: ${why}; ` +
          `flows go to fallback ${this.backend.fallback ?? 'none'} until it is back`,
      );
    }
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt++);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.dial();
    }, delay);
    this.timer.unref();
  }
}
