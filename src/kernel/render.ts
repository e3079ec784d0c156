// The kernel routes as nftables text inside honeygate's table (src/firewall/render.ts calls
// this): one nat chain at prerouting that DNATs each kernel route's flows to a server picked
// from a named map (slot -> address . port), and the maps themselves. Health checks rewrite a
// map's elements (maps.ts), never the rules. Pure.
import type { Config, Endpoint, ListenerConfig } from '../config/types.js';
import { familyAddresses } from '../net/address.js';
import {
  familyServers,
  type KernelRoute,
  kernelMark,
  kernelRoutes,
  slotCount,
  slotElements,
} from './plan.js';

/** The nft sets render.ts made for a diverted listener: what its divert rule matches. */
export interface ListenerSets {
  listener: ListenerConfig;
  ports: string; // the inet_service set of its diverted ports
  addresses: Partial<Record<4 | 6, string>>; // its divert.addresses set per family, when it has one
  families: (4 | 6)[]; // the families its divert rule covers
}

export interface KernelPart {
  text: string[]; // maps, ct timeouts and the chain, as table body lines
  chain: { name: string; type: string; hook: string; prio: number; rules: string[] } | null;
}

export const KERNEL_CHAIN = 'kernel';
/** Priority dstnat + 5: after other tables' DNAT at dstnat (Docker's published ports), whose flows then skip this chain. */
export const KERNEL_PRIO = -95;

/**
 * Close-state timeouts of kernel flows, in seconds: a closed flow's conntrack entry (and so its
 * event, which conntrack's DESTROY carries: UPDATE events hold no byte counters) ends a second
 * after the last ACK (time_wait) or a reset (close), instead of the default two minutes and ten
 * seconds. A second still absorbs a retransmitted FIN or ACK; a packet later than that meets no
 * entry. Half-closed flows (fin_wait, close_wait) keep 10 s past their last packet, and
 * established flows keep the system's timeouts.
 */
export const CLOSE_TIMEOUTS = 'fin_wait : 10, close_wait : 10, last_ack : 1, time_wait : 1, close : 1';

export const KERNEL_RULE = {
  perSource: (k: KernelRoute, listener: string, family: 4 | 6, n: number) =>
    `honeygate: limits.perSource ${n} for route ${routeLabel(k.route)} in the kernel (listener ${listener}, IPv${family})`,
  rate: (k: KernelRoute, listener: string, family: 4 | 6, rate: string) =>
    `honeygate: limits.perSourceRate ${rate} for route ${routeLabel(k.route)} in the kernel (listener ${listener}, IPv${family})`,
  dnat: (k: KernelRoute, listener: string, family: 4 | 6) =>
    `honeygate: route ${routeLabel(k.route)} to backend ${k.backend.name} in the kernel (listener ${listener}, IPv${family})`,
  stay: (label: string, listener: string, family: 4 | 6) =>
    `honeygate: route ${label} stays in user space (listener ${listener}, IPv${family})`,
} as const;

/** The refusal reasons the kernel counts, as the user-space admission names them. */
export type KernelRefusal = 'limit-per-source' | 'limit-rate';

/**
 * The dynamic set counting a reason's refusals, keyed by source . destination . port, one
 * counter each: read (and diffed) by refusals.ts into `rejected` tallies.
 */
export function refusedSet(reason: KernelRefusal, family: 4 | 6): string {
  return `kernel_refused_${reason === 'limit-per-source' ? 'source' : 'rate'}_v${family}`;
}

/** Distinct (source, destination, port) keys a refusal set holds; past it refusals still happen, uncounted. */
export const REFUSED_SET_SIZE = 65_536;
/** Sources the per-source sets track at once (`ct count`, `limit`): past it new sources pass unlimited. */
export const SOURCE_SET_SIZE = 65_535;

const RATE_UNIT: Record<number, string> = { 1000: 'second', 60000: 'minute', 3600000: 'hour' };

/** limits.perSourceRate as nft's `limit rate` (the bucket holds `count`, as user space's does). */
export function nftRate(r: { count: number; perMs: number }): string {
  return `${r.count}/${RATE_UNIT[r.perMs] ?? `second`} burst ${r.count} packets`;
}

function rateWords(r: { count: number; perMs: number }): string {
  return `${r.count}/${RATE_UNIT[r.perMs]?.[0] ?? 's'}`;
}

function routeLabel(r: { index: number; name: string }): string {
  return r.name === `#${r.index}` ? `#${r.index}` : `#${r.index} ${r.name}`;
}

/** A backend's map name for one family: letters, digits and `_` only. */
export function mapName(backend: string, family: 4 | 6): string {
  return `kernel_${backend.replace(/[^A-Za-z0-9_]/g, '_')}_v${family}`;
}

/** True when `server` of `backend` should get flows; absent: every server. */
export type ServerUp = (backend: string, server: Endpoint) => boolean;

/** `{ a, b }` or a single element bare, as nft prints it. */
function anon(elements: string[]): string {
  return elements.length === 1 ? elements[0]! : `{ ${elements.join(', ')} }`;
}

/** The route's own match for one family, or null when the route matches no flow of it. */
function routeMatch(r: KernelRoute['route'], family: 4 | 6): string | null {
  const ip = family === 4 ? 'ip' : 'ip6';
  const parts: string[] = [];
  const m = r.match;
  if (m?.srcAddresses) {
    const a = familyAddresses(m.srcAddresses, family);
    if (a?.length === 0) return null;
    if (a) parts.push(`${ip} saddr ${anon(a)}`);
  }
  if (m?.dstAddresses) {
    const a = familyAddresses(m.dstAddresses, family);
    if (a?.length === 0) return null;
    if (a) parts.push(`${ip} daddr ${anon(a)}`);
  }
  if (m?.dstPorts) {
    parts.push(
      `tcp dport ${anon(m.dstPorts.map((p) => (p.from === p.to ? `${p.from}` : `${p.from}-${p.to}`)))}`,
    );
  }
  return parts.join(' ');
}

/** The divert rule's match for a listener and family: the same flows tproxy would take. */
function listenerMatch(s: ListenerSets, family: 4 | 6): string {
  const ifaces = `{ ${s.listener.tproxy!.divert!.interfaces.map((n) => `"${n}"`).join(', ')} }`;
  const ip = family === 4 ? 'ip' : 'ip6';
  const addr = s.addresses[family];
  return `iifname ${ifaces} meta nfproto ipv${family} meta l4proto tcp${addr ? ` ${ip} daddr @${addr}` : ''} tcp dport @${s.ports}`;
}

function applies(r: KernelRoute['route'], l: ListenerConfig): boolean {
  return !r.match?.listeners || r.match.listeners.includes(l.name);
}

/** Maps, timeouts and the kernel chain; nothing when the config has no kernel route to serve. */
export function renderKernel(config: Config, listeners: ListenerSets[], up?: ServerUp): KernelPart {
  const routes = kernelRoutes(config).filter((k) => k.listeners.length > 0);
  if (routes.length === 0) return { text: [], chain: null };
  const mark = `0x${kernelMark(config).toString(16)}`;
  const text: string[] = [];
  const backends = [...new Map(routes.map((k) => [k.backend.name, k.backend])).values()];
  for (const b of backends) {
    for (const family of [4, 6] as const) {
      const servers = familyServers(b, family);
      if (!servers.length) continue;
      const ip = family === 4 ? 'ip' : 'ip6';
      const elements = slotElements(servers, (s) => up?.(b.name, s) ?? true);
      text.push(
        `\t# backend ${b.name}, IPv${family}: slot -> server; health checks rewrite the elements (${slotCount(servers.length)} slots, ${servers.length} server${servers.length === 1 ? '' : 's'})`,
        `\tmap ${mapName(b.name, family)} {`,
        `\t\ttypeof numgen inc mod ${slotCount(servers.length)} : ${ip} daddr . tcp dport`,
        ...(elements.length ? [`\t\telements = { ${elements.join(', ')} }`] : []),
        '\t}',
        '',
      );
    }
  }
  const { perSource, perSourceRate } = config.limits;
  const limitFamilies = [...new Set(listeners.flatMap((s) => s.families))].sort();
  for (const family of limitFamilies) {
    const ip = family === 4 ? 'ip' : 'ip6';
    const addr = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
    text.push(
      `\t# limits in the kernel, IPv${family}: open flows (ct count) and new flows (limit rate) per source`,
      `\tset kernel_sources_v${family} {`,
      `\t\ttype ${addr}`,
      `\t\tsize ${SOURCE_SET_SIZE}`,
      '\t\tflags dynamic',
      '\t}',
      '',
      `\tset kernel_rates_v${family} {`,
      `\t\ttype ${addr}`,
      `\t\tsize ${SOURCE_SET_SIZE}`,
      '\t\tflags dynamic,timeout',
      '\t\ttimeout 1h',
      '\t}',
      '',
    );
    for (const reason of ['limit-per-source', 'limit-rate'] as const) {
      const set = refusedSet(reason, family);
      text.push(
        `\t# refused flows (${reason}), a counter per source . destination . port; honeygate reads them into rejected events`,
        `\tset ${set} {`,
        `\t\ttypeof ${ip} saddr . ${ip} daddr . tcp dport`,
        `\t\tsize ${REFUSED_SET_SIZE}`,
        '\t\tflags dynamic,timeout',
        '\t\tcounter',
        '\t\ttimeout 1h',
        '\t}',
        '',
        `\tchain refuse_${set.slice('kernel_refused_'.length)} {`,
        '\t\t# counted first: when the set is full the update fails and the reset below still happens',
        `\t\tupdate @${set} { ${ip} saddr . ${ip} daddr . tcp dport }`,
        '\t\treject with tcp reset',
        '\t}',
        '',
      );
    }
  }
  for (const family of [4, 6] as const) {
    text.push(
      `\tct timeout kernel_close_v${family} {`,
      '\t\tprotocol tcp',
      `\t\tl3proto ${family === 4 ? 'ip' : 'ip6'}`,
      `\t\tpolicy = { ${CLOSE_TIMEOUTS} }`,
      '\t}',
      '',
    );
  }
  const rules: string[] = [];
  const comments: string[] = [];
  const stays = new Set(routes.flatMap((k) => k.returns.map((r) => r.index)));
  const last = Math.max(...routes.map((k) => k.route.index));
  for (const route of config.routes) {
    if (route.index > last) break;
    const k = routes.find((x) => x.route === route);
    if (!k && !stays.has(route.index)) continue;
    for (const s of listeners) {
      if (!applies(route, s.listener)) continue;
      for (const family of s.families) {
        const own = routeMatch(route, family);
        if (own === null) continue;
        const match = `${listenerMatch(s, family)}${own ? ` ${own}` : ''}`;
        if (!k) {
          const comment = KERNEL_RULE.stay(routeLabel(route), s.listener.name, family);
          rules.push(`\t\t${match} return comment "${comment}"`);
          comments.push(comment);
          continue;
        }
        const n = familyServers(k.backend, family).length;
        if (!n) {
          rules.push(
            `\t\t# route ${routeLabel(route)}: backend ${k.backend.name} has no IPv${family} server; such flows go on to user space`,
          );
          continue;
        }
        const ip = family === 4 ? 'ip' : 'ip6';
        const pick =
          k.backend.balance === 'source-hash'
            ? `jhash ${ip} saddr mod ${slotCount(n)} seed 0x0`
            : `numgen inc mod ${slotCount(n)}`;
        const perComment = KERNEL_RULE.perSource(k, s.listener.name, family, perSource);
        const rateComment = KERNEL_RULE.rate(k, s.listener.name, family, rateWords(perSourceRate));
        const tag = (r: KernelRefusal) => refusedSet(r, family).slice('kernel_refused_'.length);
        rules.push(
          `\t\t${match} add @kernel_sources_v${family} { ${ip} saddr ct count over ${perSource} } jump refuse_${tag('limit-per-source')} comment "${perComment}"`,
          `\t\t${match} update @kernel_rates_v${family} { ${ip} saddr limit rate over ${nftRate(perSourceRate)} } jump refuse_${tag('limit-rate')} comment "${rateComment}"`,
        );
        comments.push(perComment, rateComment);
        const comment = KERNEL_RULE.dnat(k, s.listener.name, family);
        rules.push(
          `\t\t${match} ct mark set ct mark | ${mark} ct timeout set "kernel_close_v${family}" counter dnat ${ip} to ${pick} map @${mapName(k.backend.name, family)} comment "${comment}"`,
        );
        comments.push(comment);
      }
    }
  }
  text.push(
    `\tchain ${KERNEL_CHAIN} {`,
    `\t\ttype nat hook prerouting priority dstnat + 5; policy accept;`,
    '\t\t# kernel routes (engine: kernel), like LVS-NAT: first match wins, as in routes:. Limits',
    '\t\t# first: a flow over limits.perSource open flows or limits.perSourceRate new flows of its',
    '\t\t# source is reset here and counted in a kernel_refused_* set. A flow DNATed here is marked',
    "\t\t# (ct mark) for honeygate's conntrack records, and passes the divert rules below as",
    '\t\t# "already DNATed"; one whose map is empty (every server down) is not DNATed and goes on',
    '\t\t# to user space',
    ...rules,
    '\t}',
    '',
  );
  return {
    text,
    chain: { name: KERNEL_CHAIN, type: 'nat', hook: 'prerouting', prio: KERNEL_PRIO, rules: comments },
  };
}
