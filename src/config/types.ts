// The defaulted, validated configuration every stage reads. The raw YAML shape lives in
// schema.ts; load.ts turns raw into this. Durations are milliseconds, sizes are bytes.
import type { ContainConfig } from '../contain/config.js';

export type SourceMode = 'none' | 'proxy-v1' | 'proxy-v2' | 'transparent';
export type Balance = 'roundrobin' | 'leastconn' | 'source-hash';
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
  divert: Divert;
}

export interface ListenerConfig {
  name: string;
  bind: Endpoint[]; // expanded: one entry per address and port of a range; empty for tproxy
  acceptProxy: AcceptProxy | null;
  originalDst: boolean; // dst from SO_ORIGINAL_DST (traffic REDIRECTed or DNATed to a bind listener)
  tproxy: TproxyConfig | null;
}

export interface RouteMatch {
  listeners: string[] | null;
  dstPorts: PortRange[] | null;
  dstAddresses: Cidr[] | null;
  srcAddresses: Cidr[] | null;
  protocols: string[] | null; // detected protocol (see src/classifiers); 'unknown' when none matched
}

export interface CaptureOptions {
  maxBytes: number; // read at most this much, then close
  timeoutMs: number; // close after this long even if the attacker sent less
  banner: string | null; // sent on accept (e.g. a fake SSH banner), or nothing
}

export type Action =
  | { type: 'forward'; backend: string }
  | { type: 'capture'; capture: CaptureOptions }
  | { type: 'reject' } // RST
  | { type: 'drop' }; // close without a word (FIN, nothing sent)

export interface Route {
  index: number; // position in routes[], for messages and events
  name: string; // `name:` or "#<index>"
  match: RouteMatch | null; // null: matches every flow (a default rule)
  action: Action;
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
}

export interface EventsConfig {
  sensor: string; // this gateway's name in every event
  sqlite: string | null; // path, or null for none
  jsonl: string | null;
  updateIntervalMs: number; // long flows get an update event this often
  queueSize: number; // events waiting for sinks; beyond this they are counted as dropped
  batchMs: number; // sinks write at most this often
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
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent' };
  /**
   * Worker processes of `run` (`auto` resolved to the number of CPUs). 1: one process, no
   * fork. More: a primary forks them; each binds every listener with SO_REUSEPORT.
   */
  workers: number;
}
