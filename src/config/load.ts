// Loads a configuration: YAML text -> ${VAR} substitution -> raw schema (schema.ts) ->
// cross-field checks -> the defaulted Config (types.ts). Every problem in the file is
// collected and reported at once, each as "FILE:LINE: key.path: what is wrong (allowed ...)".
//
// Relative sink paths (events.sqlite, events.jsonl) resolve against the current working
// directory, not the config file's directory: `./data/events.db` means what it says in
// the shell the operator typed the command in.
import { readFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type Scalar } from 'yaml';
import type { z } from 'zod';
import { ERRORS } from '../errors.js';
import { FOREIGN_MARKS } from '../firewall/marks.js';
import { formatEndpoint } from '../net/address.js';
import {
  ACTION_KEYS,
  adminSchema,
  backendSchema,
  CAPTURE_DEFAULTS,
  conv,
  eventsSchema,
  firewallSchema,
  limitsSchema,
  listenerSchema,
  logSchema,
  MAX_BIND_PORTS,
  name as parseName,
  workers as parseWorkers,
  type RawBackend,
  type RawFirewall,
  type RawListener,
  type RawRoute,
  routeSchema,
  TOP_KEYS,
  topSchema,
} from './schema.js';
import type { Action, BackendConfig, Config, Endpoint, ListenerConfig, Route, RouteMatch } from './types.js';

export type LoadResult = { ok: true; config: Config; warnings: string[] } | { ok: false; errors: string[] };

export interface LoadOptions {
  env?: NodeJS.ProcessEnv; // for ${VAR}; default process.env
  baseDir?: string; // relative sink paths resolve against this; default process.cwd()
  fileName?: string; // shown in messages; default "config"
}

/** File descriptors the process may hold (see the fd budget warning). */
export const FD_BUDGET = 20_000;

type Path = (string | number)[];

/** Where a problem is and whether it may be a side effect of a YAML syntax error. */
interface Problem {
  line: number;
  col?: number;
  path: Path;
  message: string;
  kind: 'yaml' | 'field' | 'cross';
}

/** `routes[2].forward`, `backends.cowrie.balance`, `backends["a b"].servers`. */
export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function keyText(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key);
}

/** Collects problems for one document and knows the line of every key path. */
class Report {
  readonly problems: Problem[] = [];
  readonly warnings: Problem[] = [];
  constructor(
    private readonly doc: ReturnType<typeof parseDocument>,
    private readonly lines: LineCounter,
  ) {}

  /** The line of the deepest node on `path` that exists (a key's own line for mappings). */
  lineOf(path: Path): number {
    let node: unknown = this.doc.contents;
    let offset = (node as Node | null)?.range?.[0] ?? 0;
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => keyText(p.key) === String(seg));
        if (!pair) break;
        offset = (pair.key as Node | null)?.range?.[0] ?? offset;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number' && node.items[seg]) {
        node = node.items[seg];
        offset = (node as Node).range?.[0] ?? offset;
      } else {
        break;
      }
    }
    return this.lines.linePos(offset).line;
  }

  error(path: Path, message: string, kind: 'field' | 'cross' = 'cross', linePath: Path = path): void {
    this.problems.push({ line: this.lineOf(linePath), path, message, kind });
  }

  warn(path: Path, message: string): void {
    this.warnings.push({ line: this.lineOf(path), path, message, kind: 'cross' });
  }

  /** Parses `value` at `path` with a schema; returns the output, or undefined after recording its issues. */
  parse<S extends z.ZodType>(schema: S, value: unknown, path: Path): z.output<S> | undefined {
    const res = schema.safeParse(value, { reportInput: true });
    if (res.success) return res.data;
    for (const iss of res.error.issues) {
      const at = [...path, ...(iss.path as Path)];
      if (iss.code === 'unrecognized_keys') {
        for (const key of iss.keys)
          this.error(at, `unknown key '${key}' (${iss.message})`, 'field', [...at, key]);
      } else {
        this.error(at, iss.message, 'field');
      }
    }
    return undefined;
  }
}

function format(fileName: string, p: Problem): string {
  const where = p.col === undefined ? `${fileName}:${p.line}` : `${fileName}:${p.line}:${p.col}`;
  return p.path.length ? `${where}: ${formatPath(p.path)}: ${p.message}` : `${where}: ${p.message}`;
}

function sorted(problems: Problem[]): Problem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => a.p.line - b.p.line || a.i - b.i)
    .map((x) => x.p);
}

// ---- ${VAR} substitution ------------------------------------------------------------

const VAR_RE = /\$(\$\{)|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces ${VAR} and ${VAR:-default} in every scalar value ($${ is a literal ${).
 * An unquoted scalar that becomes a number or a boolean takes that type, so
 * `retries: ${RETRIES:-2}` is the number 2.
 */
function substituteEnv(report: Report, node: unknown, path: Path, env: NodeJS.ProcessEnv): void {
  if (isMap(node)) {
    for (const pair of node.items) substituteEnv(report, pair.value, [...path, keyText(pair.key)], env);
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      substituteEnv(report, item, [...path, i], env);
    });
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('$')) {
    const scalar = node as Scalar<unknown>;
    const before = scalar.value as string;
    const after = before.replace(VAR_RE, (whole, escaped, name: string | undefined, dflt) => {
      if (escaped) return escaped;
      const value = env[name!];
      if (value !== undefined && value !== '') return value;
      if (dflt !== undefined) return dflt;
      // Set but empty is an error too: an empty admin token would switch authentication off.
      report.error(
        path,
        `environment variable ${name} is ${value === '' ? 'empty' : 'not set'} (write \${${name}:-default} to give a default, \${${name}:-} for an empty one)`,
      );
      return whole;
    });
    if (after === before) return;
    scalar.value = after;
    if (scalar.type === 'PLAIN') {
      if (/^-?\d+(\.\d+)?$/.test(after)) scalar.value = Number(after);
      else if (after === 'true' || after === 'false') scalar.value = after === 'true';
    }
  }
}

// ---- sections -----------------------------------------------------------------------

interface Parsed {
  listeners: { index: number; raw: RawListener }[];
  listenerNames: string[]; // every name written, even in a listener that failed to parse
  routes: { index: number; raw: RawRoute; action: (typeof ACTION_KEYS)[number] | null }[];
  backends: Map<string, RawBackend>;
  backendNames: string[]; // every key under backends:, even if its body is broken
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
    const parsed = report.parse(backendSchema, value, path);
    if (parsed) out.backends.set(key, parsed);
  }
}

function describeShape(v: unknown): string {
  return Array.isArray(v) ? 'a list' : typeof v === 'string' ? `"${v}"` : String(v);
}

// ---- cross-field checks -------------------------------------------------------------

function known(names: string[]): string {
  return names.length ? `known: ${[...new Set(names)].join(', ')}` : 'none defined';
}

/** A listener is either `bind` (with optional acceptProxy, originalDst) or `tproxy` + `divert`. */
function checkListenerKind(report: Report, path: Path, raw: RawListener): boolean {
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
    if (!raw.divert) {
      report.error(
        [...path, 'divert'],
        'a tproxy listener needs divert: { interface: ..., ports: ... } (what the firewall sends it)',
      );
      return false;
    }
    const families = raw.tproxy.address.map((a) => (a.includes(':') ? 6 : 4));
    if (new Set(families).size !== families.length) {
      report.error([...path, 'tproxy', 'address'], 'at most one IPv4 and one IPv6 address');
      ok = false;
    }
    for (const c of raw.divert.addresses ?? []) {
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
        `binds ${ports} ports; at most ${MAX_BIND_PORTS} per listener (each is an open socket; the process may hold ${FD_BUDGET} open files)`,
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
    if (typeof r.forward === 'string' && !p.backendNames.includes(r.forward)) {
      report.error([...path, 'forward'], `unknown backend "${r.forward}" (${known(p.backendNames)})`);
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
  for (const [bits, who] of FOREIGN_MARKS) {
    if ((mask & bits) >>> 0 === 0) continue;
    report.warn(['firewall', 'mask'], `shares bits 0x${((mask & bits) >>> 0).toString(16)} with ${who}`);
  }
}

// ---- assembly -----------------------------------------------------------------------

function expandBind(raw: RawListener): Endpoint[] {
  const out: Endpoint[] = [];
  for (const b of raw.bind ?? [])
    for (let port = b.ports.from; port <= b.ports.to; port++) out.push({ host: b.host, port });
  return out;
}

function toListener(raw: RawListener): ListenerConfig {
  const ap = raw.acceptProxy;
  return {
    name: raw.name,
    bind: expandBind(raw),
    acceptProxy: ap ? { versions: [...new Set(ap.versions)], from: ap.from, timeoutMs: ap.timeout } : null,
    originalDst: raw.originalDst,
    tproxy:
      raw.tproxy && raw.divert
        ? {
            port: raw.tproxy.port,
            addresses: raw.tproxy.address,
            divert: {
              interfaces: raw.divert.interface,
              addresses: raw.divert.addresses ?? null,
              ports: raw.divert.ports,
              exclude: raw.divert.exclude,
            },
          }
        : null,
  };
}

function toMatch(raw: RawRoute['match']): RouteMatch | null {
  if (!raw) return null;
  const m: RouteMatch = {
    listeners: raw.listeners ?? null,
    dstPorts: raw.dstPorts ?? null,
    dstAddresses: raw.dstAddresses ?? null,
    srcAddresses: raw.srcAddresses ?? null,
    protocols: raw.protocol ?? null,
  };
  // `match: {}` restricts nothing: the same as no match, a default rule.
  return Object.values(m).every((v) => v === null) ? null : m;
}

function toAction(raw: RawRoute, key: (typeof ACTION_KEYS)[number]): Action {
  switch (key) {
    case 'forward':
      return { type: 'forward', backend: raw.forward! };
    case 'capture': {
      const c = raw.capture!;
      return {
        type: 'capture',
        capture: { maxBytes: c.maxBytes, timeoutMs: c.timeout, banner: c.banner ?? null },
      };
    }
    case 'reject':
      return { type: 'reject' };
    case 'drop':
      return { type: 'drop' };
  }
}

/** The rule used when routes: is absent or empty. */
export const DEFAULT_CAPTURE: Action = {
  type: 'capture',
  capture: CAPTURE_DEFAULTS,
};

function toBackend(name: string, b: RawBackend): BackendConfig {
  return {
    name,
    servers: b.servers,
    source: b.source,
    balance: b.balance,
    health: b.health
      ? {
          intervalMs: b.health.interval,
          timeoutMs: b.health.timeout,
          rise: b.health.rise,
          fall: b.health.fall,
        }
      : null,
    fallback: b.fallback ?? null,
    connectTimeoutMs: b.connectTimeout,
    retries: b.retries,
  };
}

function isLoopback(host: string): boolean {
  return host === '::1' || host.startsWith('127.');
}

/** Loads configuration text. Never throws on bad input: every problem is in `errors`. */
export function loadConfigText(text: string, opts: LoadOptions = {}): LoadResult {
  const fileName = opts.fileName ?? 'config';
  const env = opts.env ?? process.env;
  const lines = new LineCounter();
  // logLevel error: yaml would print its own warnings to stderr; ours are collected below.
  const doc = parseDocument(text, {
    lineCounter: lines,
    prettyErrors: true,
    uniqueKeys: true,
    logLevel: 'error',
  });
  const report = new Report(doc, lines);
  const yamlProblems: Problem[] = [];
  for (const e of doc.errors) {
    const line = e.linePos?.[0]?.line ?? 1;
    // One syntax error tends to echo as "unexpected token" for every token after it on
    // the line; the first one per line is the one to read.
    if (yamlProblems.some((y) => y.line === line)) continue;
    const message = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    yamlProblems.push({ line, col: e.linePos?.[0]?.col, path: [], message, kind: 'yaml' });
  }
  for (const w of doc.warnings)
    report.warn([], w.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''));

  substituteEnv(report, doc.contents, [], env);
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    report.error([], `cannot read the document: ${(err as Error).message}`);
  }

  const p: Parsed = { listeners: [], listenerNames: [], routes: [], backends: new Map(), backendNames: [] };
  let limits: z.output<typeof limitsSchema> | undefined;
  let events: z.output<typeof eventsSchema> | undefined;
  let admin: z.output<typeof adminSchema> | undefined;
  let firewall: RawFirewall | undefined;
  let log: z.output<typeof logSchema> | undefined;
  let workers: number | 'auto' | undefined = 1;
  if (raw === undefined || raw === null) {
    if (!yamlProblems.length && !report.problems.length)
      report.error([], 'the configuration is empty (at least listeners: is needed)');
  } else if (!isRecord(raw)) {
    report.error(
      [],
      `expected a mapping with keys ${TOP_KEYS.join(', ')}, got ${describeShape(raw)}`,
      'field',
    );
  } else {
    report.parse(topSchema, raw, []);
    parseListeners(report, raw.listeners, p);
    parseRoutes(report, raw.routes, p);
    parseBackends(report, raw.backends, p);
    limits = report.parse(limitsSchema, raw.limits ?? {}, ['limits']);
    events = report.parse(eventsSchema, raw.events ?? {}, ['events']);
    admin = raw.admin === undefined ? undefined : report.parse(adminSchema, raw.admin ?? {}, ['admin']);
    log = report.parse(logSchema, raw.log ?? {}, ['log']);
    firewall = report.parse(firewallSchema, raw.firewall ?? {}, ['firewall']);
    if (firewall) checkFirewall(report, firewall);
    if (raw.workers !== undefined) workers = report.parse(conv(parseWorkers), raw.workers, ['workers']);
    checkListeners(report, p);
    checkRoutes(report, p, raw.routes);
    checkBackends(report, p, raw.backends);
  }

  // After a syntax error the document is a guess: keep only field problems above the first
  // one, since the rest (and every cross-field check) may be echoes of it.
  let problems = report.problems;
  if (yamlProblems.length) {
    const firstBad = Math.min(...yamlProblems.map((y) => y.line));
    // Document-level problems (an odd top-level key) are the syntax error seen from above.
    const above = (x: Problem) => x.kind === 'field' && x.line < firstBad && x.path.length > 0;
    problems = [...yamlProblems, ...problems.filter(above)];
  }
  if (
    problems.length ||
    !limits ||
    !events ||
    !log ||
    !firewall ||
    workers === undefined ||
    !isRecord(raw) ||
    (raw.admin !== undefined && !admin)
  ) {
    const errors = sorted(problems).map((x) => format(fileName, x));
    if (!errors.length) errors.push(`${fileName}:1: ${ERRORS.HG_ERR_CONFIG}`);
    return { ok: false, errors };
  }

  const listeners = p.listeners.map((l) => toListener(l.raw));
  const routes: Route[] = p.routes.map(({ index, raw: r, action }) => ({
    index,
    name: r.name ?? `#${index}`,
    match: toMatch(r.match),
    action: toAction(r, action!),
  }));
  if (routes.length === 0) routes.push({ index: 0, name: '#0', match: null, action: DEFAULT_CAPTURE });
  const backends = new Map<string, BackendConfig>();
  for (const [name, b] of p.backends) backends.set(name, toBackend(name, b));
  const baseDir = opts.baseDir ?? process.cwd();
  const config: Config = {
    listeners,
    routes,
    backends,
    limits: {
      maxConnections: limits.maxConnections,
      perSource: limits.perSource,
      perSourceRate: limits.perSourceRate,
      idleTimeoutMs: limits.idleTimeout,
      maxDurationMs: limits.maxDuration,
      maxBytesIn: limits.maxBytesIn,
      maxBytesOut: limits.maxBytesOut,
      firstBytes: limits.firstBytes,
      rejectLogIntervalMs: limits.rejectLogInterval,
      graceMs: limits.grace,
    },
    events: {
      sensor: events.sensor ?? hostname(),
      sqlite: events.sqlite === null ? null : resolve(baseDir, events.sqlite),
      jsonl: events.jsonl === null ? null : resolve(baseDir, events.jsonl),
      updateIntervalMs: events.updateInterval,
      queueSize: events.queueSize,
      batchMs: events.batch,
    },
    admin: admin ? { listen: admin.listen, token: admin.token } : null,
    firewall: {
      mark: firewall.mark,
      mask: firewall.mask ?? firewall.mark,
      table: firewall.table,
      rulePriority: firewall.rulePriority,
      checkIntervalMs: firewall.checkInterval,
    },
    log,
    workers: workers === 'auto' ? availableParallelism() : workers,
  };
  const { sqlite, jsonl } = config.events;
  if (sqlite && jsonl && [sqlite, `${sqlite}-wal`, `${sqlite}-shm`, `${sqlite}-journal`].includes(jsonl)) {
    // SQLite would overwrite the JSON lines at its next checkpoint, silently.
    report.error(
      ['events', 'jsonl'],
      `"${jsonl}" is the SQLite store's own file: give JSON lines a file of its own`,
    );
    return { ok: false, errors: sorted(report.problems).map((x) => format(fileName, x)) };
  }
  if (config.workers > 1) {
    config.listeners.forEach((l, i) => {
      if (l.bind.some((e) => e.port === 0))
        report.error(
          ['listeners', i, 'bind'],
          `port 0 with workers: ${config.workers}: every worker would get a port of its own (name the port)`,
        );
    });
    if (report.problems.length)
      return { ok: false, errors: sorted(report.problems).map((x) => format(fileName, x)) };
  }
  warnAbout(report, config);
  return { ok: true, config, warnings: sorted(report.warnings).map((x) => format(fileName, x)) };
}

/** Things that are allowed but probably not meant. */
function warnAbout(report: Report, config: Config): void {
  const used = new Set<string>();
  for (const r of config.routes) if (r.action.type === 'forward') used.add(r.action.backend);
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
  if (!config.events.sqlite && !config.events.jsonl) {
    report.warn(['events'], 'no event sink (sqlite and jsonl are both off): connections are not recorded');
  }
  let sockets = 0;
  for (const l of config.listeners) sockets += l.bind.length;
  const fds = sockets + 2 * config.limits.maxConnections;
  if (fds > FD_BUDGET) {
    report.warn(
      ['limits', 'maxConnections'],
      `${config.limits.maxConnections} flows (2 sockets each) plus ${sockets} listening sockets need ${fds} file descriptors; the process may hold ${FD_BUDGET}`,
    );
  }
}

/** Reads and loads a configuration file; messages start with the path as given. */
export function loadConfigFile(path: string, opts: Omit<LoadOptions, 'fileName'> = {}): LoadResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { ok: false, errors: [`${path}: ${ERRORS.HG_ERR_CONFIG_READ}: ${(err as Error).message}`] };
  }
  return loadConfigText(text, { ...opts, fileName: path });
}
