// One record per flow (plus periodic updates, plus aggregated admission rejections).
// Every sink stores exactly these fields; names are ours, the JSON lines sink maps them
// to the Elastic Common Schema.
import type { ActionType } from '../actions/definitions/index.js';

export type EventType =
  | 'flow' // a flow ended: the one final record
  | 'update' // a long flow is still open: counters so far (same id as the final record)
  | 'rejected' // admission refused `count` flows from one source over an interval
  | 'firewall' // run --manage-firewall applied its rules, or found them gone and applied them again
  | 'egress' // a contained honeypot started flows to one destination: `count` packets dropped over an interval
  | 'scan'; // one source touched more than events.scan.ports ports or .addresses addresses (src/scan): `targets`, `scan`

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
  | 'tunnel-lost' // the sensor-hub tunnel carrying the flow died (src/tunnel)
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
  sensor: string; // the gateway that recorded it; on a hub, a tunneled flow's sensor (its certificate's name)
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
  targets?: Targets | null; // rejected and scan events: the destinations covered (src/scan)
  scan?: ScanFields | null; // scan events: how the source went about it (src/scan)
  recording?: string; // session recording of this flow: its id (`honeygate replay ID`, `pcap ID`), file <id>.hgrec in events.recordings.path
  geo?: SourceGeo | null; // src's country and AS from events.enrich's databases (src/enrich), set when the recorder writes it
  transport?: 'tcp' | 'udp'; // absent or null: tcp (every event before UDP listeners)
  udp?: UdpCounts | null; // a UDP flow's datagram counts and what the amplification guard held back
  engine?: 'kernel'; // the flow never reached honeygate: nftables DNAT forwarded it, conntrack recorded it (src/kernel)
}

/** What events.enrich's databases say of a source address (each null when unknown). */
export interface SourceGeo {
  country: string | null; // ISO 3166-1 alpha-2, e.g. "DE"
  asn: number | null; // autonomous system number
  asOrg: string | null; // the AS's organisation
}

/** The destinations a tally or a scan covered, from openedAt to lastAt. */
export interface Targets {
  ports: string; // destination ports as ascending ranges: "22,80,8000-8099"
  portCount: number;
  addresses: string[]; // destination addresses, the first events.scan.maxAddresses seen
  addressCount: number; // distinct destination addresses (estimated past the list: scan/portset.ts)
  lastAt: number; // epoch ms of the last flow counted
  portsTruncated?: boolean; // true: a flood of tallies left this one its first 256 ports only
}

/**
 * What user space sees of a flow, per flow of a scan. A half-open (SYN) scan never completes
 * the handshake, so it never reaches accept() and is not counted here.
 */
export type ScanTechnique =
  | 'connect-reset' // handshake completed, reset without a byte sent (nmap -sT)
  | 'connect-close' // handshake completed, closed (FIN) without a byte sent
  | 'connect-idle' // handshake completed, nothing sent until a timeout or the gateway closed it
  | 'probe' // sent bytes (a banner grab, a service probe: nmap -sV)
  | 'refused'; // refused by an admission limit (reset by honeygate before anything was read)

export interface ScanFields {
  flows: number; // flows counted, admitted and refused
  refused: number; // of those, refused by admission limits
  rate: number; // flows per second from openedAt to lastAt
  techniques: Partial<Record<ScanTechnique, number>>; // flows by what the source did
}

/** A UDP flow's datagrams (src/gateway/udp): each way, and what the amplification guard held back. */
export interface UdpCounts {
  datagramsIn: number; // from the attacker
  datagramsOut: number; // to the attacker (replies that passed the guard)
  heldDatagrams: number; // replies the guard did not send
  heldBytes: number;
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
  /**
   * For a sink that writes only when the loop is idle (the store thread at idle priority):
   * lets it run now, at most maxMs, if it is waiting for the CPU. Called on the recorder's
   * tick, so that a busy loop cannot starve it. True if a write was answered meanwhile.
   */
  catchUp?(maxMs: number): boolean;
  /** Reopens files (logrotate). */
  reopen(): void;
  close(): Promise<void> | void;
}
