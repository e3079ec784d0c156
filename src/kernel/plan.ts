// Which routes the kernel serves, like LVS-NAT: a route whose `forward:` names a backend with
// `engine: kernel` is rendered as nftables DNAT (render.ts) for the flows a tproxy listener's
// `divert:` sends, so no byte of it passes through user space. Pure: the config checks,
// `check`'s words, the renderer and the conntrack recorder all read this one plan.
import type { ForwardAction } from '../actions/definitions/forward.js';
import type { Path } from '../config/report.js';
import type {
  BackendConfig,
  Cidr,
  Config,
  Endpoint,
  ListenerConfig,
  PortRange,
  Route,
} from '../config/types.js';
import { anyContains, cidrContains, formatEndpoint } from '../net/address.js';

/** firewall.kernelMark's default: the conntrack mark bit of kernel-routed flows. */
export const DEFAULT_KERNEL_MARK = 0x2000;

/**
 * Slots per server in a backend's map: `numgen inc mod SLOTS` (roundrobin) or `jhash ... mod
 * SLOTS` (source-hash) picks a slot, the map names its server. 12 is divisible by 1, 2, 3, 4
 * and 6, so when servers go down the slots still split evenly among up to 6 live ones.
 */
export const SLOTS_PER_SERVER = 12;

/** A kernel route as rendered: the route, its backend, the diverted listeners it serves. */
export interface KernelRoute {
  route: Route;
  backend: BackendConfig;
  listeners: ListenerConfig[]; // diverted tproxy listeners: the kernel DNATs their flows
  userListeners: string[]; // the other listeners the route applies to: user space forwards (transparent)
  returns: Route[]; // earlier user-space routes that may take some of these flows: rendered as `return`
}

export function kernelMark(config: Config): number {
  return config.firewall.kernelMark ?? DEFAULT_KERNEL_MARK;
}

export function isKernel(b: BackendConfig | undefined): b is BackendConfig {
  return b?.engine === 'kernel';
}

/** The kernel backend a route forwards to, or null. */
export function kernelBackendOf(config: Config, route: Route): BackendConfig | null {
  if (route.action.type !== 'forward') return null;
  const b = config.backends.get((route.action as ForwardAction).backend);
  return isKernel(b) ? b : null;
}

function isDiverted(l: ListenerConfig): boolean {
  return !!l.tproxy?.divert;
}

function routeListeners(config: Config, route: Route): ListenerConfig[] {
  const names = route.match?.listeners;
  return names ? config.listeners.filter((l) => names.includes(l.name)) : config.listeners;
}

// ---- overlap: could two routes match the same flow? (conservative: unsure means yes) ----

function portsMeet(a: PortRange[] | null, b: PortRange[] | null): boolean {
  if (!a || !b) return true;
  return a.some((x) => b.some((y) => x.from <= y.to && y.from <= x.to));
}

function cidrsMeet(a: Cidr[] | null, b: Cidr[] | null): boolean {
  if (!a || !b) return true;
  const network = (c: Cidr) => [...c.bytes].join(c.family === 4 ? '.' : ',');
  return a.some((x) =>
    b.some((y) => {
      if (x.family !== y.family) return false;
      // two blocks meet exactly when one contains the other's network address
      const [wide, narrow] = x.prefix <= y.prefix ? [x, y] : [y, x];
      if (wide.family === 6) return true; // conservative for IPv6
      return cidrContains(wide, network(narrow));
    }),
  );
}

function listenersMeet(a: string[] | null, b: string[] | null): boolean {
  if (!a || !b) return true;
  return a.some((x) => b.includes(x));
}

/** True when some flow may match both routes (ignoring protocol). */
export function routesMeet(a: Route, b: Route): boolean {
  if (!a.match || !b.match) return true;
  return (
    listenersMeet(a.match.listeners, b.match.listeners) &&
    portsMeet(a.match.dstPorts, b.match.dstPorts) &&
    cidrsMeet(a.match.srcAddresses, b.match.srcAddresses) &&
    cidrsMeet(a.match.dstAddresses, b.match.dstAddresses)
  );
}

// ---- the plan ---------------------------------------------------------------------------

/** The kernel routes in order, each with what the firewall renders for it. */
export function kernelRoutes(config: Config): KernelRoute[] {
  const out: KernelRoute[] = [];
  config.routes.forEach((route, i) => {
    const backend = kernelBackendOf(config, route);
    if (!backend) return;
    const all = routeListeners(config, route);
    const listeners = all.filter(isDiverted);
    const returns = config.routes
      .slice(0, i)
      .filter((r) => !kernelBackendOf(config, r) && routesMeet(r, route));
    out.push({
      route,
      backend,
      listeners,
      userListeners: all.filter((l) => !isDiverted(l)).map((l) => l.name),
      returns,
    });
  });
  return out;
}

/** The first of `listeners` whose divert: sends flows to `dst`, or undefined. */
export function divertedTo(listeners: ListenerConfig[], dst: Endpoint): ListenerConfig | undefined {
  return listeners.find((x) => {
    const d = x.tproxy!.divert!;
    if (d.addresses && !anyContains(d.addresses, dst.host)) return false;
    if (d.exclude.some((r) => dst.port >= r.from && dst.port <= r.to)) return false;
    return d.ports.some((r) => dst.port >= r.from && dst.port <= r.to);
  });
}

export function hasKernelRoutes(config: Config): boolean {
  return kernelRoutes(config).some((k) => k.listeners.length > 0);
}

/** A problem with a kernel route or backend, at its key. */
export interface KernelProblem {
  path: Path;
  message: string;
}

const LOOPBACK = (host: string) => host === '::1' || host.startsWith('127.');

/**
 * Combinations the kernel cannot serve, each at the key that asks for user space: protocol
 * matching (a peek at the first bytes), listeners whose flows arrive on sockets, an earlier
 * rule that needs a peek to decide, balancing by connection counts, loopback servers.
 */
export function kernelProblems(config: Config): KernelProblem[] {
  const out: KernelProblem[] = [];
  for (const b of config.backends.values()) {
    if (!isKernel(b)) continue;
    const path = ['backends', b.name];
    if (b.balance === 'leastconn') {
      out.push({
        path: [...path, 'balance'],
        message:
          'leastconn needs the count of open flows per server, which nftables DNAT does not keep: use roundrobin (numgen) or source-hash (jhash) with engine: kernel',
      });
    }
    for (const s of b.servers) {
      if (LOOPBACK(s.host) || s.port === 0) {
        out.push({
          path: [...path, 'servers'],
          message: `${formatEndpoint(s)}: engine: kernel DNATs to the server's own address and port (not loopback, not port 0)`,
        });
      }
    }
  }
  config.routes.forEach((route, i) => {
    const backend = kernelBackendOf(config, route);
    if (!backend) return;
    const path: Path = ['routes', route.index];
    const why = `backend ${backend.name} has engine: kernel`;
    if (route.match?.protocols) {
      out.push({
        path: [...path, 'match', 'protocol'],
        message: `the kernel forwards without reading a byte, so it cannot match a protocol (${why}): drop protocol, or use engine: user`,
      });
    }
    for (const l of routeListeners(config, route)) {
      if (isDiverted(l) || !route.match?.listeners) continue;
      const proxy = l.acceptProxy ? ' and reads PROXY headers (acceptProxy)' : '';
      const kind = l.tproxy
        ? 'receives TPROXY rules managed elsewhere (no divert:)'
        : `binds sockets${proxy}`;
      out.push({
        path: [...path, 'match', 'listeners'],
        message: `listener ${l.name} ${kind}: the kernel serves only the flows a tproxy listener's divert: sends (${why})`,
      });
    }
    if (!routeListeners(config, route).some(isDiverted)) {
      out.push({
        path: [...path, 'forward'],
        message: `no tproxy listener with divert: sends flows this route applies to, so the kernel has none to serve (${why})`,
      });
    }
    for (const earlier of config.routes.slice(0, i)) {
      if (!earlier.match?.protocols || kernelBackendOf(config, earlier) || !routesMeet(earlier, route))
        continue;
      out.push({
        path: [...path, 'forward'],
        message:
          `routes[${earlier.index}] matches protocol first, which only user space can tell; the kernel cannot know ` +
          `which flows it would take (${why}): put this route before it, or give the two distinct dstPorts`,
      });
    }
  });
  return out;
}

/** Problems on the raw backends: a kernel backend that names a user-space source mode. */
export function kernelRawProblems(rawBackends: unknown): KernelProblem[] {
  if (!rawBackends || typeof rawBackends !== 'object') return [];
  const out: KernelProblem[] = [];
  for (const [name, b] of Object.entries(rawBackends as Record<string, unknown>)) {
    if (!b || typeof b !== 'object') continue;
    const { engine, source } = b as { engine?: unknown; source?: unknown };
    if (engine !== 'kernel' || source === undefined || source === 'transparent') continue;
    out.push({
      path: ['backends', name, 'source'],
      message: `${String(source)} needs user space (a header or a connection of our own); engine: kernel DNATs, which keeps the attacker's address like transparent: omit source or write transparent`,
    });
  }
  return out;
}

// ---- balancing --------------------------------------------------------------------------

/** A backend's servers of one family, in config order. */
export function familyServers(b: BackendConfig, family: 4 | 6): Endpoint[] {
  return b.servers.filter((s) => s.host.includes(':') === (family === 6));
}

/** One slot for a lone server (nothing to balance), SLOTS_PER_SERVER each otherwise. */
export function slotCount(servers: number): number {
  return servers === 1 ? 1 : servers * SLOTS_PER_SERVER;
}

/**
 * The map's slots: slot j belongs to server j mod N; a down server's slots go round the
 * live ones, so a live server keeps every slot it had (source-hash: its sources stay with it).
 * Empty when every server is down: the lookup misses, no DNAT happens, and the flow goes on to
 * the divert rule, so user space applies the backend's fallback.
 */
export function slotTargets(servers: Endpoint[], up: (s: Endpoint) => boolean): (Endpoint | null)[] {
  const live = servers.filter(up);
  if (live.length === 0) return [];
  const n = servers.length;
  let k = 0;
  const out: (Endpoint | null)[] = [];
  for (let j = 0; j < slotCount(n); j++) {
    const own = servers[j % n]!;
    out.push(up(own) ? own : live[k++ % live.length]!);
  }
  return out;
}

/** The map's elements in nft syntax: `0 : 192.0.2.10 . 2222`. */
export function slotElements(servers: Endpoint[], up: (s: Endpoint) => boolean): string[] {
  return slotTargets(servers, up).map((s, j) => `${j} : ${s!.host} . ${s!.port}`);
}

// ---- words ------------------------------------------------------------------------------

const BALANCE_WORDS: Record<string, string> = {
  roundrobin: 'numgen inc (round robin)',
  'source-hash': 'jhash of the source address',
};

/** `check`'s lines: which routes the kernel serves, for which listeners, and what stays in user space. */
export function explainKernel(config: Config): string[] {
  return kernelRoutes(config).map((k) => {
    const label =
      k.route.name === `#${k.route.index}` ? `#${k.route.index}` : `#${k.route.index} ${k.route.name}`;
    const fams = ([4, 6] as const)
      .filter((f) => familyServers(k.backend, f).length > 0)
      .map((f) => `IPv${f}`);
    const parts = [
      `${label}: nftables DNAT to backend ${k.backend.name} (${fams.join(', ')}) for listener${k.listeners.length === 1 ? '' : 's'} ${k.listeners.map((l) => l.name).join(', ') || '(none)'}, by ${BALANCE_WORDS[k.backend.balance] ?? k.backend.balance}; the honeypot sees the attacker's address, and must route its replies through this host (as with transparent)`,
    ];
    if (k.returns.length)
      parts.push(
        `flows that routes ${k.returns.map((r) => `#${r.index}`).join(', ')} match first stay in user space`,
      );
    if (k.userListeners.length)
      parts.push(`flows of ${k.userListeners.join(', ')} are forwarded by user space (transparent)`);
    const { perSource, perSourceRate: r } = config.limits;
    const unit = { 1000: 's', 60000: 'm', 3600000: 'h' }[r.perMs] ?? `${r.perMs}ms`;
    parts.push(
      `limits in the kernel: ${perSource} open flows (ct count) and ${r.count}/${unit} new flows (limit rate) per source; a flow over either is reset and tallied in rejected events`,
    );
    parts.push(
      'a closed flow is recorded about a second after its close (ct timeout kernel_close_v4/_v6: time_wait, close and last_ack 1 s for these flows only)',
    );
    parts.push('when every server is down, user space takes the flows (fallback)');
    return parts.join('; ');
  });
}
