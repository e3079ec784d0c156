// One record per flow (plus periodic updates, plus aggregated admission rejections).
// Every sink stores exactly these fields; names are ours, the JSON lines sink maps them
// to the Elastic Common Schema.
import type { ActionType } from '../actions/definitions/index.js';

export type EventType =
  | 'flow' // a flow ended: the one final record
  | 'update' // a long flow is still open: counters so far (same id as the final record)
  | 'rejected' // admission refused `count` flows from one source over an interval
  | 'firewall' // run --manage-firewall applied its rules, or found them gone and applied them again
  | 'egress'; // a contained honeypot started flows to one destination: `count` packets dropped over an interval

export type CloseReason =
  | 'client-closed' // attacker closed first (FIN), then the rest drained
  | 'server-closed' // honeypot closed first
  | 'client-reset'
  | 'server-reset'
  | 'idle-timeout'
  | 'max-duration'
  | 'byte-cap'
  | 'server-unavailable' // no server reachable and no fallback
  | 'capture-done' // capture read its byte limit or the attacker closed
  | 'capture-timeout'
  | 'rejected' // route action reject (RST)
  | 'dropped' // route action drop
  | 'no-route'
  | 'limit-global'
  | 'limit-per-source'
  | 'limit-rate'
  | 'spoof-attempt' // PROXY header from an untrusted peer
  | 'bad-proxy-header'
  | 'proxy-header-timeout'
  | 'shutdown' // still open when the grace period ended
  | 'fd-exhausted' // honeygate ran out of file descriptors (EMFILE, ENFILE): not the honeypot's fault
  | 'crash' // honeygate was killed before recording the flow: recovered from the start journal at the next start
  | 'error';

export interface Address {
  ip: string;
  port: number;
}

export interface FlowEvent {
  id: string; // 32 hex chars; also the UNIQUE_ID TLV sent upstream in PROXY v2
  type: EventType;
  openedAt: number; // epoch ms
  closedAt: number | null; // null on updates
  sensor: string;
  listener: string;
  src: Address; // the attacker (from the PROXY header when one was accepted)
  dst: Address; // where the attacker connected to
  peer: Address | null; // the proxy peer (the socket's own peer) when its PROXY header replaced src
  proxyHeader: 'v1' | 'v2' | 'local' | null; // inbound PROXY header accepted, if any
  route: string | null;
  action: ActionType | 'close' | null; // 'close': refused before routing
  backend: string | null;
  server: string | null; // "ip:port" of the honeypot that got it
  sourceMode: string | null;
  bytesIn: number; // attacker -> gateway
  bytesOut: number; // gateway -> attacker
  durationMs: number;
  closeReason: CloseReason | null;
  firstBytes: Buffer; // the attacker's first bytes, capped at limits.firstBytes
  protocol: string | null; // detected protocol (ssh, http, tls, ...)
  protocolFields: Record<string, unknown> | null; // e.g. { userAgent, path } or { clientVersion }
  count: number; // 1 for flows; flows refused for 'rejected'
  detail: string | null; // error text or other context for a human
  engine?: 'kernel'; // the flow never reached honeygate: nftables DNAT forwarded it, conntrack recorded it (src/kernel)
}

/** The fields every event needs; the rest default to "none" (null, 0, no bytes, count 1). */
type EventCore = Pick<FlowEvent, 'id' | 'type' | 'openedAt' | 'closedAt' | 'sensor'>;

/** An event that is not a served flow (a tally, a recovered start, a firewall note): unset fields empty. */
export function blankEvent(fields: EventCore & Partial<FlowEvent>): FlowEvent {
  return {
    listener: '',
    src: { ip: '', port: 0 },
    dst: { ip: '', port: 0 },
    peer: null,
    proxyHeader: null,
    route: null,
    action: null,
    backend: null,
    server: null,
    sourceMode: null,
    bytesIn: 0,
    bytesOut: 0,
    durationMs: fields.closedAt === null ? 0 : fields.closedAt - fields.openedAt,
    closeReason: null,
    firstBytes: Buffer.alloc(0),
    protocol: null,
    protocolFields: null,
    count: 1,
    detail: null,
    ...fields,
  };
}

export interface Sink {
  readonly name: string;
  /** Writes a batch. Called off the data path; may throw (the recorder counts it). */
  write(events: FlowEvent[]): void | Promise<void>;
  /** Reopens files (logrotate). */
  reopen(): void;
  close(): Promise<void> | void;
}
