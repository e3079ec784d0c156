// Every check on a configuration, run on the raw document before anything is assembled,
// so that one `check` lists every problem: the sections against their schemas (schema.ts),
// then the cross-field checks (names that must exist, binds that must not clash, fallback
// chains that must end, sinks and workers that must not collide). Warnings, which need the
// assembled Config, are at the end.

import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import type { z } from 'zod';
import { type ActionType, backendsOf, rawBackends } from '../actions/definitions/index.js';
import { PROTOCOLS, UDP_PROTOCOLS } from '../classifiers/index.js';
import { checkContain, containSchema, type RawContainSection } from '../contain/schema.js';
import { mmdbProblem } from '../enrich/check.js';
import { FOREIGN_MARKS } from '../firewall/marks.js';
import { kernelRawProblems } from '../kernel/plan.js';
import { formatEndpoint } from '../net/address.js';
import { FD_RESERVE, flowsWithin } from '../net/fd-limit.js';
import { type Identity, resolveIdentity } from '../privileges/identity.js';
import { isRecord, type Path, type Report } from './report.js';
import {
  ACTION_KEYS,
  accountSchema,
  adminSchema,
  backendSchema,
  eventsSchema,
  firewallSchema,
  limitsSchema,
  listenerSchema,
  logSchema,
  MAX_BIND_PORTS,
  workers as parseWorkers,
  type RawBackend,
  type RawFirewall,
  type RawListener,
  type RawRoute,
  routeSchema,
  TOP_KEYS,
  topSchema,
} from './schema.js';
import type { Config, Endpoint } from './types.js';
import { conv, name as parseName } from './zod.js';

// ---- sections -----------------------------------------------------------------------

/** The document as its schemas read it; a part that failed to parse is missing or undefined. */
export interface Parsed {
  listeners: { index: number; raw: RawListener }[];
  listenerNames: string[]; // every name written, even in a listener that failed to parse
  routes: { index: number; raw: RawRoute; action: ActionType | null }[];
  backends: Map<string, RawBackend>;
  backendNames: string[]; // every key under backends:, even if its body is broken
  limits?: z.output<typeof limitsSchema>;
  events?: z.output<typeof eventsSchema>;
  admin?: z.output<typeof adminSchema>; // also absent when admin: is
  adminWritten: boolean;
  log?: z.output<typeof logSchema>;
  firewall?: RawFirewall;
  contain?: RawContainSection;
  workers?: number | 'auto';
  identity?: Identity | null; // user:/group:, looked up; undefined when the lookup failed
}

function parseListeners(report: Report, raw: unknown, out: Parsed): void {
  if (raw === undefined || raw === null || (Array.isArray(raw) && raw.length === 0)) {
    report.error(['listeners'], 'at least one listener is required (e.g. - name: ssh, bind: "0.0.0.0:2222")');
    return;
  }
  if (!Array.isArray(raw)) {
    report.error(['listeners'], 'expected a list of listeners', 'field');
    return;
  }
  raw.forEach((item, index) => {
    if (isRecord(item) && typeof item.name === 'string') out.listenerNames.push(item.name);
    const parsed = report.parse(listenerSchema, item, ['listeners', index]);
    if (parsed) out.listeners.push({ index, raw: parsed });
  });
}

function parseRoutes(report: Report, raw: unknown, out: Parsed): void {
  if (raw === undefined || raw === null || (Array.isArray(raw) && raw.length === 0)) {
    report.warn(['routes'], 'no routes: every flow is captured (an implicit `- capture: {}`)');
    return;
  }
  if (!Array.isArray(raw)) {
    report.error(['routes'], 'expected a list of rules', 'field');
    return;
  }
  const allowed = `one of ${ACTION_KEYS.join(', ')}`;
  raw.forEach((item, index) => {
    const path = ['routes', index];
    const present = isRecord(item) ? ACTION_KEYS.filter((k) => k in item) : [];
    if (isRecord(item) && present.length === 0) {
      report.error(path, `no action: a rule needs exactly ${allowed}`, 'field');
    } else if (present.length > 1) {
      report.error(
        path,
        `${present.length} actions (${present.join(', ')}): a rule needs exactly ${allowed}`,
        'field',
      );
    }
    const parsed = report.parse(routeSchema, item, path);
    if (parsed) out.routes.push({ index, raw: parsed, action: present.length === 1 ? present[0]! : null });
  });
}

function parseBackends(report: Report, raw: unknown, out: Parsed): void {
  if (raw === undefined || raw === null) return;
  if (!isRecord(raw)) {
    report.error(
      ['backends'],
      `expected a mapping of backend names to backends, got ${describeShape(raw)}`,
      'field',
    );
    return;
  }
  for (const [key, value] of Object.entries(raw)) {
    out.backendNames.push(key);
    const path = ['backends', key];
    try {
      parseName(key);
    } catch (err) {
      report.error(path, (err as Error).message, 'field');
    }
    if (key === 'capture')
      report.error(path, 'the name "capture" is reserved (fallback: capture means the capture action)');
    // servers is optional in the schema only because a tunnel backend has none.
    if (isRecord(value) && value.servers === undefined && value.tunnel === undefined)
      report.error([...path, 'servers'], 'required key is missing');
    const parsed = report.parse(backendSchema, value, path);
    if (parsed?.tunnel && parsed.servers)
      report.error([...path, 'servers'], 'a tunnel backend takes no servers (its server is tunnel.hub)');
    else if (parsed?.tunnel && parsed.health)
      report.error([...path, 'health'], 'a tunnel backend takes no health check (the tunnel pings its hub)');
    else if (parsed && (parsed.tunnel || parsed.servers)) out.backends.set(key, parsed);
  }
}

function describeShape(v: unknown): string {
  return Array.isArray(v) ? 'a list' : typeof v === 'string' ? `"${v}"` : String(v);
}
// ---- cross-field checks -------------------------------------------------------------

function known(names: string[]): string {
  return names.length ? `known: ${[...new Set(names)].join(', ')}` : 'none defined';
}

/** A listener is either `bind` (with optional acceptProxy, originalDst) or `tproxy` (+ `divert`). */
function checkListenerKind(report: Report, path: Path, raw: RawListener): boolean {
  if (raw.tunnel) {
    // A hub's tunnel listener: its flows' addresses come from each stream's PROXY v2 header.
    const others = (['bind', 'tproxy', 'divert', 'acceptProxy'] as const).filter((k) => raw[k] !== undefined);
    for (const key of others)
      report.error(
        [...path, key],
        `a tunnel listener takes no ${key} (its flows arrive over sensors' tunnels)`,
      );
    if (raw.originalDst) report.error([...path, 'originalDst'], 'a tunnel listener takes no originalDst');
    return others.length === 0 && !raw.originalDst;
  }
  if (raw.transport === 'udp') {
    let ok = true;
    if (raw.acceptProxy !== undefined) {
      report.error(
        [...path, 'acceptProxy'],
        'a UDP listener takes no acceptProxy (a PROXY header opens a TCP connection; UDP has no connection to open)',
      );
      ok = false;
    }
    if (raw.originalDst) {
      report.error(
        [...path, 'originalDst'],
        'a UDP listener takes no originalDst (SO_ORIGINAL_DST is for TCP; use tproxy for diverted UDP)',
      );
      ok = false;
    }
    if (!ok) return false;
  }
  if (raw.tproxy) {
    let ok = true;
    for (const key of ['bind', 'acceptProxy'] as const) {
      if (raw[key] === undefined) continue;
      report.error(
        [...path, key],
        `a tproxy listener takes no ${key} (its connections arrive through the firewall's divert rules)`,
      );
      ok = false;
    }
    if (raw.originalDst) {
      report.error([...path, 'originalDst'], 'a tproxy listener knows the original destination already');
      ok = false;
    }
    // Without divert, TPROXY rules managed elsewhere send the listener its connections.
    const families = raw.tproxy.address.map((a) => (a.includes(':') ? 6 : 4));
    if (new Set(families).size !== families.length) {
      report.error([...path, 'tproxy', 'address'], 'at most one IPv4 and one IPv6 address');
      ok = false;
    }
    for (const c of raw.divert?.addresses ?? []) {
      if (families.includes(c.family)) continue;
      report.error(
        [...path, 'divert', 'addresses'],
        `${c.text} is IPv${c.family} but tproxy.address has no IPv${c.family} address to receive it`,
      );
      ok = false;
    }
    return ok;
  }
  if (raw.divert) {
    report.error([...path, 'divert'], 'divert belongs to a tproxy listener (add tproxy: { port: ... })');
    return false;
  }
  if (!raw.bind) {
    report.error([...path], 'a listener needs bind: "ADDRESS:PORT" or tproxy: { port: ... }');
    return false;
  }
  return true;
}

function checkListeners(report: Report, p: Parsed): void {
  const seen = new Map<string, number>();
  const bound = new Map<string, string>();
  for (const { index, raw } of p.listeners) {
    const path = ['listeners', index];
    const first = seen.get(raw.name);
    if (first !== undefined) {
      report.error([...path, 'name'], `duplicate listener name "${raw.name}" (also listeners[${first}])`);
    } else {
      seen.set(raw.name, index);
    }
    if (!checkListenerKind(report, path, raw)) continue;
    if (raw.tproxy) {
      for (const host of raw.tproxy.address) {
        const key = formatEndpoint({ host, port: raw.tproxy.port });
        const owner = bound.get(key);
        if (owner !== undefined)
          report.error([...path, 'tproxy'], `${key} is already bound by listener ${owner}`);
        bound.set(key, raw.name);
      }
      continue;
    }
    let ports = 0;
    for (const b of raw.bind ?? []) ports += b.ports.to - b.ports.from + 1;
    if (ports > MAX_BIND_PORTS) {
      report.error(
        [...path, 'bind'],
        `binds ${ports} ports; at most ${MAX_BIND_PORTS} per listener (each is an open socket, and open files are limited)`,
      );
      continue;
    }
    for (const e of expandBind(raw)) {
      if (e.port === 0) continue; // the kernel picks a distinct port each time
      const key = formatEndpoint(e);
      const owner = bound.get(key);
      if (owner !== undefined && owner !== raw.name) {
        report.error([...path, 'bind'], `${key} is already bound by listener ${owner}`);
      } else if (owner === raw.name) {
        report.error([...path, 'bind'], `${key} appears twice`);
      }
      bound.set(key, raw.name);
    }
  }
}

/** TCP-only protocols (every classifier but the UDP ones): a UDP flow never matches them. */
const TCP_ONLY = new Set(PROTOCOLS.filter((p) => !UDP_PROTOCOLS.includes(p)));

/**
 * Routes that can only see UDP flows (every listener they name is UDP) must not ask for a
 * TCP protocol, and a backend a UDP flow may reach must have a UDP form of its source mode.
 */
function checkUdpRoutes(report: Report, p: Parsed): void {
  const udp = new Set(p.listeners.filter((l) => l.raw.transport === 'udp').map((l) => l.raw.name));
  if (udp.size === 0) return;
  for (const { index, raw } of p.routes) {
    const named = raw.match?.listeners;
    const onlyUdp = named?.every((n) => udp.has(n));
    const seesUdp = named === undefined || named.some((n) => udp.has(n));
    const protocols = raw.match?.protocol;
    if (onlyUdp && protocols) {
      const tcp = protocols.filter((x) => TCP_ONLY.has(x));
      if (tcp.length === protocols.length) {
        report.error(
          ['routes', index, 'match', 'protocol'],
          `${tcp.join(', ')} ${tcp.length === 1 ? 'is a TCP protocol' : 'are TCP protocols'}: this rule sees only UDP listeners (UDP protocols: ${UDP_PROTOCOLS.join(', ')}, unknown)`,
        );
      }
    }
    if (!seesUdp || typeof raw.forward !== 'string') continue;
    const b = p.backends.get(raw.forward);
    if (b?.source === 'proxy-v1') {
      report.error(
        ['routes', index, 'forward'],
        `backend ${raw.forward} has source: proxy-v1, which has no UDP form, and this rule can see UDP flows (use proxy-v2, transparent or none, or name the TCP listeners in match.listeners)`,
      );
    }
  }
}

/** Works on the raw rules, so a rule with a broken field still has its names checked. */
function checkRoutes(report: Report, p: Parsed, rawRoutes: unknown): void {
  if (!Array.isArray(rawRoutes)) return;
  const names = new Map<string, number>();
  rawRoutes.forEach((r, index) => {
    if (!isRecord(r)) return;
    const path = ['routes', index];
    if (typeof r.name === 'string') {
      const first = names.get(r.name);
      if (first !== undefined)
        report.error([...path, 'name'], `duplicate route name "${r.name}" (also routes[${first}])`);
      else names.set(r.name, index);
    }
    for (const type of ACTION_KEYS.filter((k) => k in r)) {
      for (const backend of rawBackends(type, r[type])) {
        if (!p.backendNames.includes(backend))
          report.error([...path, type], `unknown backend "${backend}" (${known(p.backendNames)})`);
      }
    }
    const listeners = isRecord(r.match) ? r.match.listeners : undefined;
    const list = Array.isArray(listeners) ? listeners : [listeners];
    list.forEach((l, i) => {
      if (typeof l !== 'string' || p.listenerNames.includes(l)) return;
      const at = Array.isArray(listeners)
        ? [...path, 'match', 'listeners', i]
        : [...path, 'match', 'listeners'];
      report.error(at, `unknown listener "${l}" (${known(p.listenerNames)})`);
    });
  });
}

/** Works on the raw backends, so a backend with a broken field still has its fallback checked. */
function checkBackends(report: Report, p: Parsed, rawBackends: unknown): void {
  if (!isRecord(rawBackends)) return;
  const fallbackOf = (name: string): unknown => {
    const b = rawBackends[name];
    return isRecord(b) ? b.fallback : undefined;
  };
  for (const name of p.backendNames) {
    const b = rawBackends[name];
    if (!isRecord(b)) continue;
    const path = ['backends', name];
    if (typeof b.fallback !== 'string' || b.fallback === 'capture') continue;
    if (!p.backendNames.includes(b.fallback)) {
      report.error(
        [...path, 'fallback'],
        `unknown backend "${b.fallback}" (${known([...p.backendNames, 'capture'])})`,
      );
      continue;
    }
    // Follow the chain; it must end (in capture, or a backend without fallback) before coming back.
    const chain = [name];
    let next: unknown = b.fallback;
    while (typeof next === 'string' && p.backendNames.includes(next)) {
      if (chain.includes(next)) {
        // Report a cycle once, at the member defined first.
        const first = p.backendNames.find((n) => chain.includes(n));
        if (next === name && first === name) {
          report.error([...path, 'fallback'], `fallback cycle: ${[...chain, next].join(' -> ')}`);
        }
        break;
      }
      chain.push(next);
      next = fallbackOf(next);
    }
  }
}

function checkFirewall(report: Report, f: RawFirewall): void {
  const mask = f.mask ?? f.mark;
  if ((f.mark & ~mask) >>> 0 !== 0) {
    report.error(
      ['firewall', 'mark'],
      `0x${f.mark.toString(16)} has bits outside mask 0x${mask.toString(16)}`,
    );
  }
  if ((f.kernelMark & mask) >>> 0 !== 0) {
    report.error(
      ['firewall', 'kernelMark'],
      `0x${f.kernelMark.toString(16)} shares bits with firewall.mask 0x${mask.toString(16)}: kernel-routed flows would be taken for transparent ones and their replies delivered locally`,
    );
  }
  for (const [bits, who] of FOREIGN_MARKS) {
    if ((mask & bits) >>> 0 === 0) continue;
    report.warn(['firewall', 'mask'], `shares bits 0x${((mask & bits) >>> 0).toString(16)} with ${who}`);
  }
}

/** SQLite would overwrite the JSON lines at its next checkpoint, silently. */
function checkSinks(report: Report, events: NonNullable<Parsed['events']>, baseDir: string): void {
  if (events.sqlite === null || events.jsonl === null) return;
  const sqlite = resolve(baseDir, events.sqlite);
  const jsonl = resolve(baseDir, events.jsonl);
  if (![sqlite, `${sqlite}-wal`, `${sqlite}-shm`, `${sqlite}-journal`].includes(jsonl)) return;
  report.error(
    ['events', 'jsonl'],
    `"${jsonl}" is the SQLite store's own file: give JSON lines a file of its own`,
  );
}

/** Each worker binds every listener itself: a port the kernel picks would differ per worker. */
function checkWorkerPorts(report: Report, p: Parsed, workers: number): void {
  if (workers <= 1) return;
  for (const { index, raw } of p.listeners) {
    if (raw.tunnel) {
      report.error(['listeners', index, 'tunnel'], `a tunnel listener needs workers: 1 (not ${workers})`);
      continue;
    }
    if (raw.transport === 'udp') {
      // The amplification guard counts per source in one process; split over workers it
      // would allow each worker's share again.
      report.error(
        ['listeners', index, 'transport'],
        `a UDP listener with workers: ${workers}: UDP flows and their amplification guard live in one process (use workers: 1)`,
      );
      continue;
    }
    if (raw.tproxy || !expandBind(raw).some((e) => e.port === 0)) continue;
    report.error(
      ['listeners', index, 'bind'],
      `port 0 with workers: ${workers}: every worker would get a port of its own (name the port)`,
    );
  }
}

/**
 * events.enrich's databases exist and are MaxMind DB files (their tail only; `run` reads
 * them whole). Not in checkEvents: `events -c` reads no database.
 */
function checkEnrich(report: Report, enrich: { country?: string; asn?: string }, baseDir: string): void {
  for (const key of ['country', 'asn'] as const) {
    const file = enrich[key];
    const problem = file ? mmdbProblem(resolve(baseDir, file)) : null;
    if (problem) report.error(['events', 'enrich', key], problem);
  }
}

/** The events section, checked on its own (`events -c FILE` reads nothing else). */
export function checkEvents(
  report: Report,
  raw: unknown,
  baseDir: string,
): z.output<typeof eventsSchema> | undefined {
  const events = report.parse(eventsSchema, raw ?? {}, ['events']);
  if (events) checkSinks(report, events, baseDir);
  return events;
}

/** A listener's bind addresses, ranges expanded: one endpoint per socket. */
export function expandBind(raw: RawListener): Endpoint[] {
  const out: Endpoint[] = [];
  for (const b of raw.bind ?? [])
    for (let port = b.ports.from; port <= b.ports.to; port++) out.push({ host: b.host, port });
  return out;
}

/** The number of workers `workers:` asks for ('auto': one per core). */
export function workerCount(workers: number | 'auto'): number {
  return workers === 'auto' ? availableParallelism() : workers;
}

// ---- the whole document ------------------------------------------------------------------

/**
 * Runs every check on the document (its YAML already read, ${VAR} already substituted):
 * every problem lands in `report`. Returns the sections as parsed, for assembly.
 */
export function checkDocument(report: Report, raw: Record<string, unknown>, baseDir: string): Parsed {
  const p: Parsed = {
    listeners: [],
    listenerNames: [],
    routes: [],
    backends: new Map(),
    backendNames: [],
    adminWritten: raw.admin !== undefined,
  };
  report.parse(topSchema, raw, []);
  parseListeners(report, raw.listeners, p);
  parseRoutes(report, raw.routes, p);
  parseBackends(report, raw.backends, p);
  p.limits = report.parse(limitsSchema, raw.limits ?? {}, ['limits']);
  p.events = checkEvents(report, raw.events, baseDir);
  if (p.events?.enrich) checkEnrich(report, p.events.enrich, baseDir);
  if (raw.admin !== undefined) p.admin = report.parse(adminSchema, raw.admin ?? {}, ['admin']);
  p.log = report.parse(logSchema, raw.log ?? {}, ['log']);
  p.firewall = report.parse(firewallSchema, raw.firewall ?? {}, ['firewall']);
  if (p.firewall) checkFirewall(report, p.firewall);
  if (raw.contain != null) p.contain = report.parse(containSchema, raw.contain, ['contain']);
  if (p.contain) checkContain(p.contain, (path, message) => report.error(path, message));
  p.workers = raw.workers === undefined ? 1 : report.parse(conv(parseWorkers), raw.workers, ['workers']);
  checkListeners(report, p);
  checkRoutes(report, p, raw.routes);
  checkUdpRoutes(report, p);
  checkBackends(report, p, raw.backends);
  for (const k of kernelRawProblems(raw.backends)) report.error(k.path, k.message);
  if (p.workers !== undefined) checkWorkerPorts(report, p, workerCount(p.workers));
  p.identity = checkIdentity(report, raw.user, raw.group);
  return p;
}

/** `expected a mapping ...` for a document that is not one. */
export function checkShape(report: Report, raw: unknown): void {
  report.error([], `expected a mapping with keys ${TOP_KEYS.join(', ')}, got ${describeShape(raw)}`, 'field');
}

// ---- warnings -----------------------------------------------------------------------

function isLoopback(host: string): boolean {
  return host === '::1' || host.startsWith('127.');
}

/** Things that are allowed but probably not meant; `openFiles`: the open-file limit to check against. */
export function warnAbout(report: Report, config: Config, openFiles: number | null): void {
  const used = new Set<string>();
  for (const r of config.routes) for (const b of backendsOf(r.action)) used.add(b);
  for (const b of config.backends.values()) if (b.fallback) used.add(b.fallback);
  for (const name of config.backends.keys()) {
    if (!used.has(name)) report.warn(['backends', name], 'not used by any route or fallback');
  }
  if (config.admin && !config.admin.token && !isLoopback(config.admin.listen.host)) {
    report.warn(
      ['admin', 'listen'],
      `${formatEndpoint(config.admin.listen)} is reachable from other hosts and admin.token is not set`,
    );
  }
  for (const b of config.backends.values()) {
    if (b.source !== 'transparent') continue;
    for (const server of b.servers.filter((e) => isLoopback(e.host))) {
      report.warn(
        ['backends', b.name, 'servers'],
        `${formatEndpoint(server)} is a loopback address: its replies to the attacker's address leave by the default route and never reach honeygate (give the honeypot's own address)`,
      );
    }
  }
  if (!config.events.sqlite && !config.events.jsonl && !config.events.nats) {
    report.warn(['events'], 'no event sink (sqlite and jsonl are both off): connections are not recorded');
  }
  if (config.events.retention && !config.events.sqlite) {
    report.warn(
      ['events', 'retention'],
      'bounds the SQLite store, and events.sqlite is off: nothing is deleted',
    );
  }
  let sockets = 0;
  for (const l of config.listeners) sockets += l.bind.length;
  const fds = sockets + 2 * config.limits.maxConnections + FD_RESERVE;
  if (openFiles !== null && fds > openFiles) {
    report.warn(
      ['limits', 'maxConnections'],
      `${config.limits.maxConnections} flows (2 sockets each) plus ${sockets} listening sockets and ${FD_RESERVE} ` +
        `in reserve need ${fds} file descriptors; this process may hold ${openFiles} (RLIMIT_NOFILE), so ` +
        `flows beyond ${flowsWithin(openFiles, sockets)} are refused as limit-global. Raise the limit ` +
        `(systemd: LimitNOFILE=${fds}; a shell: ulimit -n ${fds}) or lower maxConnections`,
    );
  }
}

/** `user:` and `group:`, parsed and looked up on this host; undefined after an error. */
function checkIdentity(report: Report, rawUser: unknown, rawGroup: unknown): Identity | null | undefined {
  const user = rawUser === undefined ? undefined : report.parse(accountSchema, rawUser, ['user']);
  const group = rawGroup === undefined ? undefined : report.parse(accountSchema, rawGroup, ['group']);
  if ((rawUser !== undefined && user === undefined) || (rawGroup !== undefined && group === undefined))
    return undefined;
  const result = resolveIdentity(user, group);
  if (result.ok) return result.identity;
  for (const e of result.errors) report.error([e.key], e.message, 'field');
  return undefined;
}
