// The configuration in words: listeners, backends and the routing table as `check` and
// the dashboard show them, and which rules can never match because an earlier rule
// already takes every flow they would.
import ipaddr from 'ipaddr.js';
import { describeAction } from '../actions/definitions/index.js';
import { cidrContains, formatEndpoint, parseCidr } from '../net/address.js';
import type {
  BackendConfig,
  Cidr,
  Config,
  Endpoint,
  ListenerConfig,
  PortRange,
  Route,
  RouteMatch,
} from './types.js';
import { formatDuration } from './zod.js';

export { formatDuration } from './zod.js';

/** "a", "a or b", "a, b or c". */
function orList(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`;
}

function formatPorts(r: PortRange): string {
  return r.from === r.to ? String(r.from) : `${r.from}-${r.to}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

const SOURCE_WORDS: Record<BackendConfig['source'], string> = {
  none: 'plain',
  'proxy-v1': 'PROXY v1',
  'proxy-v2': 'PROXY v2',
  transparent: 'transparent',
};

function describeMatch(m: RouteMatch | null, index: number): string {
  if (!m) return index === 0 ? 'every flow' : 'every other flow';
  const parts = ['flows'];
  if (m.listeners) parts.push(`on listener${m.listeners.length > 1 ? 's' : ''} ${orList(m.listeners)}`);
  if (m.srcAddresses) parts.push(`from ${orList(m.srcAddresses.map((c) => c.text))}`);
  const to: string[] = [];
  if (m.dstAddresses) to.push(orList(m.dstAddresses.map((c) => c.text)));
  if (m.dstPorts) to.push(`port ${orList(m.dstPorts.map(formatPorts))}`);
  if (to.length) parts.push(`to ${to.join(' ')}`);
  if (m.protocols) parts.push(`speaking ${orList(m.protocols)}`);
  return parts.join(' ');
}

function fallbackWords(fallback: string | null): string {
  if (fallback === null) return 'close';
  return fallback === 'capture' ? 'capture' : `backend ${fallback}`;
}

/** A backend as a forward action names it: "backend web (2 servers, roundrobin, plain; ...)". */
function backendWords(config: Config, name: string): string | null {
  const b = config.backends.get(name);
  if (!b) return null;
  const servers = plural(b.servers.length, 'server');
  return `backend ${b.name} (${servers}, ${b.balance}, ${SOURCE_WORDS[b.source]}; if all down: ${fallbackWords(b.fallback)})`;
}

function label(r: Route): string {
  return r.name === `#${r.index}` ? `#${r.index}` : `#${r.index} ${r.name}`;
}

/** The routing table, one line per rule in order: "#0 ssh: flows ... -> forward to ...". */
export function explainRoutes(config: Config): string[] {
  return config.routes.map(
    (r) =>
      `${label(r)}: ${describeMatch(r.match, r.index)} -> ${describeAction(r.action, { backend: (name) => backendWords(config, name) })}`,
  );
}

/** Endpoints as ranges: 127.0.0.1:2300-2310 rather than eleven entries. */
export function compressEndpoints(endpoints: Endpoint[]): string[] {
  const out: string[] = [];
  let start: Endpoint | null = null;
  let last: Endpoint | null = null;
  const flush = () => {
    if (!start || !last) return;
    out.push(start.port === last.port ? formatEndpoint(start) : `${formatEndpoint(start)}-${last.port}`);
  };
  for (const e of endpoints) {
    if (last && start && e.host === last.host && e.port === last.port + 1 && last.port !== 0) {
      last = e;
      continue;
    }
    flush();
    start = e;
    last = e;
  }
  flush();
  return out;
}

function describeListener(l: ListenerConfig): string {
  const line = describeSockets(l);
  return l.transport === 'udp' ? line.replace(`${l.name}: `, `${l.name}: UDP `) : line;
}

function describeSockets(l: ListenerConfig): string {
  if (l.tproxy) {
    const t = l.tproxy;
    const sockets = t.addresses.map((host) => formatEndpoint({ host, port: t.port })).join(', ');
    const d = t.divert;
    if (!d) {
      return (
        `${l.name}: transparent ${sockets}; honeygate diverts nothing to it: ` +
        'TPROXY rules managed elsewhere must send it connections'
      );
    }
    const ranges = (rs: { from: number; to: number }[]) =>
      rs.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)).join(', ');
    const to = d.addresses ? ` to ${orList(d.addresses.map((c) => c.text))}` : '';
    const except = d.exclude.length ? ` except ${ranges(d.exclude)}` : '';
    return `${l.name}: transparent ${sockets}; receives what the firewall diverts from ${orList(d.interfaces)}${to}, ports ${ranges(d.ports)}${except} (sshd's and the admin port stay out unless named alone)`;
  }
  const sockets = l.bind.length > 1 ? ` (${plural(l.bind.length, 'socket')})` : '';
  let line = `${l.name}: ${compressEndpoints(l.bind).join(', ')}${sockets}`;
  if (l.originalDst) line += '; destination from SO_ORIGINAL_DST (REDIRECT/DNAT)';
  const ap = l.acceptProxy;
  if (ap) {
    const versions = `PROXY ${ap.versions.join('/')}`;
    line += `; accepts ${versions} headers from ${orList(ap.from.map((c) => c.text))} (within ${formatDuration(ap.timeoutMs)})`;
  }
  return line;
}

export function explainListeners(config: Config): string[] {
  return config.listeners.map(describeListener);
}

function describeBackend(b: BackendConfig): string {
  const h = b.health;
  const health = h
    ? `health check every ${formatDuration(h.intervalMs)} (timeout ${formatDuration(h.timeoutMs)}, up after ${h.rise}, down after ${h.fall})`
    : 'no health check (servers always up)';
  const retries = plural(b.retries, 'retry').replace('retrys', 'retries');
  return (
    `${b.name}: ${b.servers.map(formatEndpoint).join(', ')}; ${b.balance}, ${SOURCE_WORDS[b.source]}; ${health}; ` +
    `connect timeout ${formatDuration(b.connectTimeoutMs)}, ${retries}; if all down: ${fallbackWords(b.fallback)}`
  );
}

export function explainBackends(config: Config): string[] {
  return [...config.backends.values()].map(describeBackend);
}

// ---- unreachable rules --------------------------------------------------------------

const EVERY_PORT: PortRange[] = [{ from: 1, to: 65535 }];
const EVERY_ADDRESS: Cidr[] = [parseCidr('0.0.0.0/0'), parseCidr('::/0')];

/** True when the union of `outer` contains every port of `inner`. */
function portsCover(outer: PortRange[], inner: PortRange[]): boolean {
  const merged: PortRange[] = [];
  for (const r of [...outer].sort((a, b) => a.from - b.from)) {
    const top = merged.at(-1);
    if (top && r.from <= top.to + 1) top.to = Math.max(top.to, r.to);
    else merged.push({ ...r });
  }
  return inner.every((r) => merged.some((m) => m.from <= r.from && r.to <= m.to));
}

/** True when each block of `inner` lies inside one block of `outer` (conservative: unions of blocks are not joined). */
function cidrsCover(outer: Cidr[], inner: Cidr[]): boolean {
  return inner.every((b) => {
    const network = ipaddr.fromByteArray([...b.bytes]).toString();
    return outer.some((a) => a.family === b.family && a.prefix <= b.prefix && cidrContains(a, network));
  });
}

function setCovers(outer: string[], inner: string[]): boolean {
  return inner.every((x) => outer.includes(x));
}

/** True when every flow `later` matches is also matched by `earlier`. */
function covers(earlier: RouteMatch | null, later: RouteMatch | null, config: Config): boolean {
  if (!earlier) return true;
  if (!later)
    later = { listeners: null, dstPorts: null, dstAddresses: null, srcAddresses: null, protocols: null };
  const allListeners = config.listeners.map((l) => l.name);
  return (
    (!earlier.listeners || setCovers(earlier.listeners, later.listeners ?? allListeners)) &&
    (!earlier.dstPorts || portsCover(earlier.dstPorts, later.dstPorts ?? EVERY_PORT)) &&
    (!earlier.dstAddresses || cidrsCover(earlier.dstAddresses, later.dstAddresses ?? EVERY_ADDRESS)) &&
    (!earlier.srcAddresses || cidrsCover(earlier.srcAddresses, later.srcAddresses ?? EVERY_ADDRESS)) &&
    (!earlier.protocols || (later.protocols !== null && setCovers(earlier.protocols, later.protocols)))
  );
}

/** Rules that can never match, each with the first earlier rule that takes all their flows. */
export function findUnreachableRoutes(config: Config): { index: number; shadowedBy: number }[] {
  const out: { index: number; shadowedBy: number }[] = [];
  config.routes.forEach((later, j) => {
    for (let i = 0; i < j; i++) {
      const earlier = config.routes[i]!;
      if (covers(earlier.match, later.match, config)) {
        out.push({ index: later.index, shadowedBy: earlier.index });
        return;
      }
    }
  });
  return out;
}

/**
 * Rules that ask for ports no listener they apply to has bound: they can never match.
 * Listeners with acceptProxy are skipped (their dst port comes from the header), and so
 * are port-0 binds (the kernel picks).
 */
export function findUnboundPortRoutes(config: Config): { index: number; ports: string }[] {
  const out: { index: number; ports: string }[] = [];
  for (const route of config.routes) {
    const m = route.match;
    if (!m?.dstPorts) continue;
    const listeners = config.listeners.filter((l) => !m.listeners || m.listeners.includes(l.name));
    // Their dst port is not the socket's: a PROXY header's, a NAT rule's, or a diverted flow's.
    if (listeners.some((l) => l.acceptProxy || l.originalDst || l.tproxy || l.bind.some((e) => e.port === 0)))
      continue;
    const bound = listeners.flatMap((l) => l.bind.map((e) => e.port));
    const reachable = m.dstPorts.some((r) => bound.some((p) => p >= r.from && p <= r.to));
    if (!reachable) {
      const ports = m.dstPorts.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)).join(', ');
      out.push({ index: route.index, ports });
    }
  }
  return out;
}
