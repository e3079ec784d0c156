// Routing: the first rule whose every condition holds takes the flow. Protocol conditions
// need the attacker's first bytes, so the flow is peeked only when a rule that could still
// match asks for it, and at most once.
import type { Route, RouteMatch } from '../config/types.js';
import { anyContains } from '../net/address.js';
import type { Flow } from './flow.js';
import { peekProtocol } from './peek.js';

/** Every condition but the protocol (a UDP flow has these fields too). */
export function matchesAddresses(
  m: RouteMatch,
  flow: Pick<Flow, 'listener' | 'src' | 'dst'> & { sensor?: string | null },
): boolean {
  if (m.listeners && !m.listeners.includes(flow.listener.name)) return false;
  if (m.dstPorts && !m.dstPorts.some((r) => flow.dst.port >= r.from && flow.dst.port <= r.to)) return false;
  if (m.dstAddresses && !anyContains(m.dstAddresses, flow.dst.ip)) return false;
  if (m.srcAddresses && !anyContains(m.srcAddresses, flow.src.ip)) return false;
  if (m.sensors && (!flow.sensor || !m.sensors.includes(flow.sensor))) return false;
  return true;
}

/** What routeByAddress() answers when a rule that could still match asks for the protocol. */
export const NEEDS_PEEK = Symbol('needs peek');

/** The route chosen without reading the attacker's bytes, null for none, or NEEDS_PEEK. */
export function routeByAddress(flow: Flow, routes: Route[]): Route | null | typeof NEEDS_PEEK {
  for (const route of routes) {
    const m = route.match;
    if (!m) return route;
    if (!matchesAddresses(m, flow)) continue;
    return m.protocols ? NEEDS_PEEK : route;
  }
  return null;
}

/** After routeByAddress() answered NEEDS_PEEK: peeks once, then routes on the protocol seen (null: the flow closed while peeking). */
export async function routeAfterPeek(flow: Flow, routes: Route[]): Promise<Route | null> {
  if (!(await peekProtocol(flow))) return null;
  return routeWithoutPeek(flow, routes);
}

/** The route a flow that can no longer be read would take: protocol conditions see "unknown". */
export function routeWithoutPeek(
  flow: Pick<Flow, 'listener' | 'src' | 'dst' | 'protocol'>,
  routes: Route[],
): Route | null {
  for (const route of routes) {
    const m = route.match;
    if (!m) return route;
    if (!matchesAddresses(m, flow)) continue;
    if (!m.protocols || m.protocols.includes(flow.protocol ?? 'unknown')) return route;
  }
  return null;
}
