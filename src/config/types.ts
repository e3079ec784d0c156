// The defaulted, validated configuration every stage reads. The raw YAML shape lives in
// schema.ts; load.ts turns raw into this. Durations are milliseconds, sizes are bytes.

import type { Action } from '../actions/definitions/index.js';
import type { NatsConfig } from '../fleet/config.js';
import type { Identity } from '../privileges/identity.js';
import type { RecordingsConfig, RecordOptions } from '../record/config.js';

export type SourceMode = 'none' | 'proxy-v1' | 'proxy-v2' | 'transparent';
export type Balance = 'roundrobin' | 'leastconn' | 'source-hash';
/** Who carries a backend's flows: honeygate's relay (`user`) or nftables DNAT (`kernel`, src/kernel). */
export type Engine = 'user' | 'kernel';
export type ProxyVersion = 'v1' | 'v2';

export interface Endpoint {
  host: string; // literal IPv4 or IPv6 address, no brackets
  port: number; // 0 only in tests: the kernel picks one
}

export interface PortRange {
  from: number;
  to: number; // inclusive; equals `from` for a single port
}

/** A CIDR block, parsed once. `text` is what the user wrote, for messages. */
export interface Cidr {
  text: string;
  family: 4 | 6;
  bytes: Buffer; // network address, 4 or 16 bytes
  prefix: number;
}

export interface AcceptProxy {
  versions: ProxyVersion[];
  from: Cidr[]; // proxy peers (trusted); a header from anyone else is a spoof attempt
  timeoutMs: number; // the header must arrive within this
}

/** What the firewall diverts to a tproxy listener (nft: iifname, daddr, dport). */
export interface Divert {
  interfaces: string[];
  addresses: Cidr[] | null; // original destinations; null: every address
  ports: PortRange[];
  exclude: PortRange[]; // never diverted
}

export interface TproxyConfig {
  port: number;
  addresses: string[]; // literal IPs the transparent sockets bind (one per family at most)
  divert: Divert | null; // null: TPROXY rules managed elsewhere send it connections
}

/** What a listener receives: TCP connections, or UDP datagrams grouped into flows (src/gateway/udp). */
export type Transport = 'tcp' | 'udp';

export interface ListenerConfig {
  name: string;
  transport: Transport;
  bind: Endpoint[]; // expanded: one entry per address and port of a range; empty for tproxy
  acceptProxy: AcceptProxy | null;
  originalDst: boolean; // dst from SO_ORIGINAL_DST (traffic REDIRECTed or DNATed to a bind listener)
  tproxy: TproxyConfig | null;
  tunnel?: TunnelListen | null; // a hub's tunnel listener (src/tunnel); bind is then empty
}

export interface RouteMatch {
  listeners: string[] | null;
  dstPorts: PortRange[] | null;
  dstAddresses: Cidr[] | null;
  srcAddresses: Cidr[] | null;
  protocols: string[] | null; // detected protocol (see src/classifiers); 'unknown' when none matched
  sensors?: string[] | null; // a hub's flows from these sensors' tunnels (the certificate's name)
}

// What a route does: each action's options and words are its definition's
// (src/actions/definitions/), so adding an action does not touch this file.
export type { Action, CaptureOptions } from '../actions/definitions/index.js';

export interface Route {
  index: number; // position in routes[], for messages and events
  name: string; // `name:` or "#<index>"
  match: RouteMatch | null; // null: matches every flow (a default rule)
  action: Action;
  record?: RecordOptions | null; // session recording of this route's flows (src/record/)
}

export interface HealthCheck {
  intervalMs: number;
  timeoutMs: number;
  rise: number; // consecutive successes to mark a server up
  fall: number; // consecutive failures to mark it down
}

export interface BackendConfig {
  name: string;
  servers: Endpoint[];
  source: SourceMode;
  balance: Balance;
  health: HealthCheck | null; // null: servers are always considered up
  fallback: string | null; // another backend's name, or "capture"; used when every server is down
  connectTimeoutMs: number;
  retries: number; // further servers tried after a failed connect
  record?: RecordOptions | null; // session recording of flows forwarded here (a route's record wins)
  tunnel?: TunnelDial | null; // a sensor's hub over a tunnel (src/tunnel); servers is then empty
  engine?: Engine; // absent: user. kernel: the firewall DNATs the routes' flows (source is then transparent)
}

export interface Limits {
  maxConnections: number; // concurrent flows, all sources
  perSource: number; // concurrent flows per source address
  perSourceRate: { count: number; perMs: number }; // new flows per source
  idleTimeoutMs: number;
  maxDurationMs: number;
  maxBytesIn: number; // attacker -> honeypot, per flow; 0 = no cap
  maxBytesOut: number; // honeypot -> attacker, per flow; 0 = no cap
  firstBytes: number; // bytes of the attacker's stream kept in the event
  rejectLogIntervalMs: number; // admission rejections are aggregated per source over this
  graceMs: number; // on SIGTERM, open flows get this long to finish
  udp?: UdpLimits; // UDP listeners' flows and amplification guard (defaults when absent)
}

/** `limits.udp` and `limits.amplification`: how UDP flows end and what may go back to a source. */
export interface UdpLimits {
  idleTimeoutMs: number; // a UDP flow with no datagram either way for this long ends (one event)
  maxFlows: number; // open UDP flows at most; beyond: refused as limit-global
  amplification: AmplificationGuard;
}

export interface AmplificationGuard {
  enabled: boolean;
  ratio: number; // each datagram from a source adds its bytes x ratio to its reply budget
  allowance: number; // ... and raises the budget to at least this many bytes
  bytesPerSecond: number; // reply bytes to one source per second
  packetsPerSecond: number; // reply datagrams to one source per second
  unanswered: number; // reply datagrams to a source since its last datagram, at most
}

export interface EventsConfig {
  sensor: string; // this gateway's name in every event
  sqlite: string | null; // path, or null for none
  jsonl: string | null;
  createDirectories: boolean; // create a sink's missing directory at start; false: a missing one is an error
  updateIntervalMs: number; // long flows get an update event this often
  queueSize: number; // events waiting for sinks; beyond this they are counted as dropped
  batchMs: number; // sinks write at most this often
  retention?: Retention | null; // bounds of the SQLite store (events/retention.ts); null: keep everything
  nats?: NatsConfig | null; // the fleet sink (src/fleet), or null for none
  enrich?: EnrichConfig | null; // MaxMind-format databases for the source's country and AS (src/enrich)
  recordings?: RecordingsConfig; // session recordings' directory and disk budget (src/record/)
  scan?: ScanConfig; // scan detection (src/scan); absent: the defaults
}

/** events.enrich: absolute paths of .mmdb files, or null for none. */
export interface EnrichConfig {
  country: string | null; // GeoIP2/GeoLite2 Country or City layout: country.iso_code
  asn: string | null; // GeoIP2/GeoLite2 ASN layout: autonomous_system_number, autonomous_system_organization
}

/** events.scan: when a source's flows become a `scan` event (src/scan/detector.ts). */
export interface ScanConfig {
  enabled: boolean;
  ports: number; // more distinct destination ports than this make a scan
  addresses: number; // more distinct destination addresses than this make a scan
  idleMs: number; // a source quiet this long has ended its scan
  maxDurationMs: number; // a longer scan is reported in parts of this length
  maxAddresses: number; // addresses listed in one event (the count goes on)
  maxSources: number; // sources tracked at once; new ones beyond are not
}

export interface Retention {
  maxAgeMs: number | null; // events opened longer ago are deleted
  maxBytes: number | null; // the store's pages in use are kept at or below this
}

export interface AdminConfig {
  listen: Endpoint;
  token: string | null;
}

/** honeygate's own nftables table and policy routing (src/firewall). */
export interface FirewallConfig {
  mark: number; // packet mark bits honeygate sets on diverted flows and their replies
  mask: number;
  table: number; // policy routing table holding `local default dev lo`
  rulePriority: number; // `ip rule` preference of `fwmark MARK/MASK lookup TABLE`
  checkIntervalMs: number; // run --manage-firewall: how often the rules are verified
  kernelMark?: number; // absent: 0x2000. The conntrack mark bit of flows kernel routes DNAT (never a packet mark)
}

export interface Config {
  listeners: ListenerConfig[];
  routes: Route[];
  backends: Map<string, BackendConfig>;
  limits: Limits;
  events: EventsConfig;
  admin: AdminConfig | null;
  firewall: FirewallConfig;
  contain: ContainConfig | null; // egress containment of honeypots (src/contain); null: none
  log: {
    level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
    format: 'auto' | 'json' | 'pretty'; // auto: pretty when stdout is a terminal, JSON lines otherwise
  };
  /**
   * Worker processes of `run` (`auto` resolved to the number of CPUs). 1: one process, no
   * fork. More: a primary forks them; each binds every listener with SO_REUSEPORT.
   */
  workers: number;
  /** `user:`/`group:`: the account `run` drops to after start-up (src/privileges), or null. */
  user: Identity | null;
}

/** `contain:` (src/contain). */
export type ContainProtocol = 'tcp' | 'udp';

/** One allow-list entry: new flows from a honeypot to `to` (and `ports`) pass, at most at `rate`. */
export interface ContainAllow {
  to: Cidr[];
  protocols: ContainProtocol[];
  ports: PortRange[] | null; // null: every port
  rate: { count: number; unit: 'second' | 'minute' | 'hour' } | null; // null: no limit
}

export interface ContainConfig {
  honeypots: Cidr[]; // source addresses held in
  networks: string[]; // Docker networks by name, resolved to their bridge at apply
  docker: string; // the Docker API's unix socket
  allow: ContainAllow[];
  recordIntervalMs: number; // how often the egress counters become events
  sizes: number; // distinct (honeypot, destination, protocol, port) tuples kept between two reads
  sink: ContainSink | null; // null: TCP attempts are dropped and counted like the rest
}

/** contain.sink: new TCP connections from honeypots are redirected here, their first bytes recorded. */
export interface ContainSink {
  port: number; // honeygate's listener for redirected connections (every local address)
  rate: { count: number; unit: 'second' | 'minute' | 'hour' }; // beyond it: dropped and counted
  holdMs: number; // how long the sink waits for first bytes before it closes
}

// The tunnel's sections (src/tunnel/config.ts reads them).

/** PEM files of one side of a mutual-TLS tunnel: the CA that signs the other side, our own certificate and key. */
export interface TunnelTls {
  ca: string;
  cert: string;
  key: string;
}

/** A hub's tunnel listener: sensors dial in here; each stream is one flow. */
export interface TunnelListen {
  listen: { host: string; port: number };
  tls: TunnelTls;
  sensors: string[]; // the certificate names accepted (CN or a DNS name of the subjectAltName)
  headerTimeoutMs: number; // a stream's PROXY v2 header must arrive within this
}

/** A sensor's tunnel backend: the hub it dials out to. */
export interface TunnelDial {
  hub: { host: string; port: number }; // host may be a DNS name
  tls: TunnelTls;
  serverName: string; // the name the hub's certificate must carry (default: hub's host)
}
