// `honeygate firewall doctor`: inspects this host (the current network namespace) for what
// transparent mode needs and reports each problem with its fix. Three layers:
//   Host    raw facts: files under /proc, tool output (ip, nft, iptables-save, ss), processes;
//           realHost() reads the live system, unit tests pass a fake built from fixtures;
//   gather  parses them once into Facts;
//   checks  small functions Facts -> Finding[], one concern each, never throwing.
// Other software's rules (Docker, kube-proxy, VPNs) are parsed in foreign-rules.ts.
// Kernel behaviour the messages state was checked on Linux 6.18 in network namespaces
// (src_valid_mark, rp_filter, route_localnet, br_netfilter, transparent dials to local and
// DNATed addresses); where a claim depends on someone else's rules, messages say "can".
import { readdir, readFile, readlink } from 'node:fs/promises';
import type { Config, PortRange } from '../config/types.js';
import { type ContainTargets, resolveNetworks } from '../contain/docker.js';
import { containment } from '../contain/doctor.js';
import { cidrContains, formatEndpoint, ipFamily } from '../net/address.js';
import { nativeAvailable } from '../net/native.js';
import { elementText, isOurRule, sameElements, spawnCollect } from './apply.js';
import { type ForeignRules, fromIptablesSave, fromNftJson, type NatEntry } from './foreign-rules.js';
import { FOREIGN_MARK_BITS } from './marks.js';
import {
  divertPorts,
  FAMILY,
  formatRange,
  hex,
  type ProtectedPort,
  parseSshdListeners,
  planRuleset,
  protectedFrom,
  RULE,
  type RulesetPlan,
  routingEntries,
  TABLE,
  tableComment,
} from './render.js';

export interface Finding {
  check: string;
  status: 'ok' | 'warn' | 'fail';
  message: string;
  fix?: string;
}

// ---- the host -----------------------------------------------------------------------------

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
  missing: boolean; // the program is not installed
}

export interface ProcessInfo {
  pid: number;
  comm: string;
  cmdline: string[];
}

/** Where the doctor's raw facts come from. */
export interface Host {
  /** Runs a program to completion; never rejects (a missing program gives missing: true). */
  exec(file: string, args: string[], input?: string): Promise<ExecResult>;
  /** A file's text (e.g. /proc/sys/net/ipv4/ip_forward), or null when it cannot be read. */
  readFile(path: string): Promise<string | null>;
  /** dockerd and docker-proxy processes in this network namespace (others cannot matter here). */
  processes(): Promise<ProcessInfo[]>;
  /** Whether honeygate's native addon loads (absent: not checked). */
  native?(): { ok: true } | { ok: false; reason: string };
}

const EXEC_TIMEOUT_MS = 15_000;
const WATCHED_PROCESSES = new Set(['dockerd', 'docker-proxy']);

/** The live system: the current process's network namespace. */
export function realHost(): Host {
  return {
    async exec(file, args, input) {
      const r = await spawnCollect(file, args, input, { env: { LC_ALL: 'C' }, timeout: EXEC_TIMEOUT_MS });
      if (r.error)
        return { code: null, stdout: r.stdout, stderr: r.error.message, missing: r.error.code === 'ENOENT' };
      return { code: r.code, stdout: r.stdout, stderr: r.stderr, missing: false };
    },
    async readFile(path) {
      try {
        return await readFile(path, 'utf8');
      } catch {
        return null;
      }
    },
    native: nativeAvailable,
    async processes() {
      const self = await readlink('/proc/self/ns/net').catch(() => null);
      const out: ProcessInfo[] = [];
      for (const name of await readdir('/proc').catch(() => [] as string[])) {
        if (!/^\d+$/.test(name)) continue;
        try {
          const comm = (await readFile(`/proc/${name}/comm`, 'utf8')).trim();
          if (!WATCHED_PROCESSES.has(comm)) continue;
          // Another user's process (root's dockerd, seen without privileges) hides its namespace:
          // count it, as on the usual host with one Docker in the root namespace.
          const ns = await readlink(`/proc/${name}/ns/net`).catch(() => null);
          if (ns !== null && ns !== self) continue;
          const cmdline = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0').filter(Boolean);
          out.push({ pid: Number(name), comm, cmdline });
        } catch {
          // the process ended while we looked
        }
      }
      return out;
    },
  };
}

// ---- facts ----------------------------------------------------------------------------

interface IpRule {
  priority: number;
  raw: Record<string, unknown>;
  fwmark: number | null;
  fwmask: number;
  not: boolean;
  table: string | null; // numeric (ip -N)
  action: string | null; // unreachable, blackhole, prohibit, goto, ... (null: lookup)
}

interface RouteInfo {
  type?: string;
  dst?: string;
  dev?: string;
  gateway?: string;
  nexthops?: { dev?: string }[];
}

interface Link {
  name: string;
  kind: string | null;
  master: string | null; // the bridge (or bond) this interface is a port of
  addrs: { family: 4 | 6; local: string; scope: string }[];
}

export interface Facts {
  config: Config;
  file: string; // the config file, shell-quoted, for fixes
  capEff: bigint | null;
  sysctl: Map<string, string | null>; // "net/ipv4/conf/eth0/rp_filter" -> "1"
  nft: { status: 'ok' | 'missing' | 'denied' | 'error'; detail: string; json: unknown };
  tableText: string | null; // `nft list table inet honeygate`
  probes: { feature: string; ok: boolean | null; detail: string }[];
  rules: Record<4 | 6, IpRule[] | null>;
  rulesError: Record<4 | 6, string>;
  routes: Map<string, RouteInfo[]>; // "4 4210" -> routes of that table
  defaults4: RouteInfo[]; // default routes of the main table
  links: Link[] | null;
  foreign: ForeignRules;
  iptables: string[]; // the iptables-save variants read, for messages
  processes: ProcessInfo[];
  servers: Map<string, { route: RouteInfo | null; error: string }>; // transparent servers' hosts
  protectedPorts: ProtectedPort[];
  plan: RulesetPlan | null;
  contain?: ContainTargets; // contain.networks as Docker reports them now
  native: { ok: true } | { ok: false; reason: string } | null; // null: not checked
}

const LINE = (s: string) => s.trim().split('\n')[0] ?? '';

function parseJson<T>(text: string): T | null {
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}

function toRule(r: Record<string, unknown>): IpRule {
  const num = (v: unknown) => (typeof v === 'string' ? Number.parseInt(v, 16) >>> 0 : null);
  return {
    priority: Number(r.priority ?? 0),
    raw: r,
    fwmark: num(r.fwmark),
    fwmask: r.fwmask === undefined ? 0xffffffff : (num(r.fwmask) ?? 0xffffffff),
    not: 'not' in r,
    table: typeof r.table === 'string' ? r.table : null,
    action: typeof r.action === 'string' ? r.action : null,
  };
}

function shellQuote(s: string): string {
  return /^[\w./@%+=:,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

const tproxyListeners = (c: Config) => c.listeners.filter((l) => l.tproxy);

function transparentServers(c: Config): { backend: string; host: string; port: number }[] {
  const out: { backend: string; host: string; port: number }[] = [];
  for (const b of c.backends.values()) {
    if (b.source !== 'transparent') continue;
    for (const s of b.servers) out.push({ backend: b.name, host: s.host, port: s.port });
  }
  return out;
}

const NFT_PROBES: { feature: string; family: 4 | 6 | null; rule: string }[] = [
  {
    feature: 'nft_tproxy (IPv4)',
    family: 4,
    rule: 'meta nfproto ipv4 meta l4proto tcp tproxy ip to 127.0.0.1:1',
  },
  {
    feature: 'nft_tproxy (IPv6)',
    family: 6,
    rule: 'meta nfproto ipv6 meta l4proto tcp tproxy ip6 to [::1]:1',
  },
  { feature: 'nft_socket', family: null, rule: 'meta l4proto tcp socket transparent 1 accept' },
  // only when the ruleset has the own-listeners rule
  { feature: 'nft_fib_inet', family: null, rule: 'meta l4proto tcp fib daddr type local accept' },
];

/**
 * A throw-away table with one rule. `nft --check` sends it to the kernel, which validates it
 * (autoloading the module, as `apply` would) and aborts the batch: nothing is created.
 */
function probeTable(rule: string): string {
  return [
    'table inet honeygate_doctor_probe {',
    '\tchain probe {',
    '\t\ttype filter hook prerouting priority dstnat + 10; policy accept;',
    `\t\t${rule}`,
    '\t}',
    '}',
    '',
  ].join('\n');
}

const denied = (s: string) => /Operation not permitted|Permission denied/i.test(s);

/** Reads everything the checks need. Never throws: a fact that cannot be read stays empty. */
export async function gather(config: Config, host: Host, file = 'FILE'): Promise<Facts> {
  const status = (await host.readFile('/proc/self/status')) ?? '';
  const capHex = /^CapEff:\s*([0-9a-f]+)/im.exec(status)?.[1];

  const ss = await host.exec('ss', ['-ltnpH']);
  const protectedPorts = protectedFrom(config, parseSshdListeners(ss.code === 0 ? ss.stdout : ''));
  const contain = await resolveNetworks(config.contain);
  const plan = planRuleset(config, { protectedPorts, contain });

  const facts: Facts = {
    config,
    contain,
    file: shellQuote(file),
    capEff: capHex ? BigInt(`0x${capHex}`) : null,
    sysctl: new Map(),
    nft: { status: 'ok', detail: '', json: null },
    tableText: null,
    probes: [],
    rules: { 4: null, 6: null },
    rulesError: { 4: '', 6: '' },
    routes: new Map(),
    defaults4: [],
    links: null,
    foreign: { nat: [], marks: [], inputDrops: [] },
    iptables: [],
    processes: [],
    servers: new Map(),
    protectedPorts,
    plan,
    native: host.native?.() ?? null,
  };

  // nftables: the whole ruleset (others' tables too), then ours as text for its comment
  const nft = await host.exec('nft', ['-j', 'list', 'ruleset']);
  const json = nft.code === 0 ? parseJson<unknown>(nft.stdout) : null;
  if (nft.missing) facts.nft = { status: 'missing', detail: nft.stderr, json: null };
  else if (nft.code !== 0) {
    facts.nft = { status: denied(nft.stderr) ? 'denied' : 'error', detail: LINE(nft.stderr), json: null };
  } else if (!json)
    facts.nft = { status: 'error', detail: 'nft printed something that is not JSON', json: null };
  else facts.nft = { status: 'ok', detail: '', json };
  if (hasTable(facts)) {
    const t = await host.exec('nft', ['list', 'table', FAMILY, TABLE]);
    if (t.code === 0) facts.tableText = t.stdout;
  }
  if (plan && facts.nft.status === 'ok') {
    const families = new Set(tproxyListeners(config).flatMap((l) => l.tproxy!.addresses.map(ipFamily)));
    for (const p of NFT_PROBES) {
      if (p.family !== null && !families.has(p.family)) continue;
      if (p.feature === 'nft_fib_inet' && !plan.chains.some((c) => c.rules.includes(RULE.own))) continue;
      const r = await host.exec('nft', ['--check', '-f', '-'], probeTable(p.rule));
      facts.probes.push({
        feature: p.feature,
        ok: r.code === 0 ? true : denied(r.stderr) ? null : false,
        detail: r.stderr.trim().split('\n').slice(0, 2).join(' | '),
      });
    }
  }

  // policy routing
  const tables = new Set<string>();
  for (const family of [4, 6] as const) {
    const r = await host.exec('ip', ['-j', '-N', `-${family}`, 'rule', 'show']);
    const list = r.code === 0 ? parseJson<Record<string, unknown>[]>(r.stdout || '[]') : null;
    facts.rules[family] = list ? list.map(toRule) : null;
    facts.rulesError[family] = r.missing ? 'ip (iproute2) is not installed' : LINE(r.stderr);
    tables.clear();
    tables.add(String(config.firewall.table));
    for (const rule of earlierRules(facts, family)) if (rule.table) tables.add(rule.table);
    for (const t of tables) {
      const routes = await host.exec('ip', ['-j', `-${family}`, 'route', 'show', 'table', t]);
      // a table that does not exist prints half a JSON array and exits 2: it has no routes
      facts.routes.set(`${family} ${t}`, (routes.code === 0 && parseJson<RouteInfo[]>(routes.stdout)) || []);
    }
  }
  const defaults = await host.exec('ip', ['-j', '-4', 'route', 'show', 'default']);
  facts.defaults4 = (defaults.code === 0 && parseJson<RouteInfo[]>(defaults.stdout)) || [];

  // interfaces with their kind (bridge, veth, ...) and addresses
  const addr = await host.exec('ip', ['-j', '-d', 'addr', 'show']);
  const links = addr.code === 0 ? parseJson<Record<string, unknown>[]>(addr.stdout) : null;
  facts.links =
    links?.map((l) => ({
      name: String(l.ifname),
      kind: ((l.linkinfo as { info_kind?: string } | undefined)?.info_kind ?? null) as string | null,
      master: typeof l.master === 'string' ? l.master : null,
      addrs: ((l.addr_info as { family?: string; local?: string; scope?: string }[] | undefined) ?? [])
        .filter((a) => a.local && (a.family === 'inet' || a.family === 'inet6'))
        .map((a) => ({ family: a.family === 'inet' ? 4 : 6, local: a.local!, scope: a.scope ?? '' })),
    })) ?? null;

  for (const s of transparentServers(config)) {
    if (facts.servers.has(s.host)) continue;
    const r = await host.exec('ip', ['-j', 'route', 'get', s.host]);
    const route = r.code === 0 ? (parseJson<RouteInfo[]>(r.stdout)?.[0] ?? null) : null;
    facts.servers.set(s.host, { route, error: LINE(r.stderr) });
  }

  // sysctls: global ones, then per interface (effective values combine `all` and the interface)
  const keys = [
    'net/ipv4/ip_forward',
    'net/ipv6/conf/all/forwarding',
    'net/ipv6/conf/all/disable_ipv6',
    'net/ipv4/ip_unprivileged_port_start',
    'net/bridge/bridge-nf-call-iptables',
    'net/bridge/bridge-nf-call-ip6tables',
  ];
  for (const dev of ['all', ...(facts.links ?? []).map((l) => l.name)]) {
    for (const k of ['rp_filter', 'src_valid_mark', 'accept_local', 'route_localnet']) {
      keys.push(`net/ipv4/conf/${dev}/${k}`);
    }
  }
  for (const k of keys) facts.sysctl.set(k, (await host.readFile(`/proc/sys/${k}`))?.trim() ?? null);

  // others' rules: native nftables from the JSON, iptables (both backends) from iptables-save
  if (facts.nft.json) facts.foreign = fromNftJson(facts.nft.json, { family: FAMILY, name: TABLE });
  for (const family of [4, 6] as const) {
    const tool = family === 4 ? 'iptables' : 'ip6tables';
    const variants: string[] = [`${tool}-nft-save`];
    const legacyNames = await host.readFile(`/proc/net/${family === 4 ? 'ip' : 'ip6'}_tables_names`);
    // Only when legacy tables exist: reading them must not load x_tables modules.
    if (legacyNames?.trim()) variants.push(`${tool}-legacy-save`);
    for (const v of variants) {
      let r = await host.exec(v, []);
      let label = v.replace(/-save$/, '');
      if (r.missing && v.endsWith('-nft-save')) {
        r = await host.exec(`${tool}-save`, []);
        label = tool;
      }
      if (r.code !== 0 || !r.stdout.trim()) continue;
      const parsed = fromIptablesSave(r.stdout, family, label);
      facts.foreign.nat.push(...parsed.nat);
      facts.foreign.marks.push(...parsed.marks);
      // iptables-nft's chains are in nft's JSON already
      if (!label.endsWith('-nft')) facts.foreign.inputDrops.push(...parsed.inputDrops);
      facts.iptables.push(label);
    }
  }

  facts.processes = await host.processes();
  return facts;
}

// ---- helpers over facts -----------------------------------------------------------------

/** False when nft could not read the ruleset: checks of others' rules then stay silent. */
function rulesRead(f: Facts): boolean {
  return f.nft.status === 'ok';
}

function hasTable(f: Facts): boolean {
  const items = (f.nft.json as { nftables?: { table?: { family: string; name: string } }[] } | null)
    ?.nftables;
  return !!items?.some((o) => o.table?.family === FAMILY && o.table.name === TABLE);
}

/** Rule comments of honeygate's live chains, by chain name, and their hook/prio. */
function liveChains(f: Facts): Map<string, { type?: string; hook?: string; prio?: number; rules: string[] }> {
  const out = new Map<string, { type?: string; hook?: string; prio?: number; rules: string[] }>();
  const items =
    (f.nft.json as { nftables?: Record<string, Record<string, unknown>>[] } | null)?.nftables ?? [];
  for (const o of items) {
    const c = o.chain;
    if (c && c.family === FAMILY && c.table === TABLE) {
      out.set(String(c.name), {
        type: c.type as string | undefined,
        hook: c.hook as string | undefined,
        prio: c.prio as number | undefined,
        rules: [],
      });
    }
  }
  for (const o of items) {
    const r = o.rule;
    if (r && r.family === FAMILY && r.table === TABLE) {
      out.get(String(r.chain))?.rules.push(typeof r.comment === 'string' ? r.comment : '(no comment)');
    }
  }
  return out;
}

/** Elements of honeygate's live sets, in render.ts's syntax. */
function liveSets(f: Facts): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const items =
    (f.nft.json as { nftables?: Record<string, Record<string, unknown>>[] } | null)?.nftables ?? [];
  for (const o of items) {
    const s = o.set;
    if (s && s.family === FAMILY && s.table === TABLE) {
      out.set(String(s.name), ((s.elem as unknown[] | undefined) ?? []).map(elementText));
    }
  }
  return out;
}

function sysctl(f: Facts, key: string): string | null {
  return f.sysctl.get(key) ?? null;
}

function num(f: Facts, key: string): number | null {
  const v = sysctl(f, key);
  return v === null || !/^-?\d+$/.test(v) ? null : Number(v);
}

/** The value the kernel uses: max(all, dev) for rp_filter, all || dev for the flags. */
function effective(f: Facts, dev: string, key: string): number {
  const all = num(f, `net/ipv4/conf/all/${key}`) ?? 0;
  const own = num(f, `net/ipv4/conf/${dev}/${key}`) ?? 0;
  return key === 'rp_filter' ? Math.max(all, own) : all || own ? 1 : 0;
}

/** `sysctl -w` wants slashes when an interface name has a dot (eth0.100). */
function sysctlName(dev: string, key: string): string {
  return dev.includes('.') ? `net/ipv4/conf/${dev}/${key}` : `net.ipv4.conf.${dev}.${key}`;
}

/** Interface names a divert list covers here; `eth*` expands to the matching interfaces. */
function expandInterfaces(f: Facts, names: string[]): string[] {
  const out = new Set<string>();
  for (const n of names) {
    if (n.endsWith('*')) {
      for (const l of f.links ?? []) if (l.name.startsWith(n.slice(0, -1))) out.add(l.name);
    } else if (!f.links || f.links.some((l) => l.name === n)) out.add(n);
  }
  return [...out];
}

function divertInterfaces(f: Facts): string[] {
  return expandInterfaces(
    f,
    tproxyListeners(f.config).flatMap((l) => l.tproxy!.divert.interfaces),
  );
}

/** Interfaces the honeypots' replies arrive on (the route to each transparent server). */
function honeypotInterfaces(f: Facts): string[] {
  const out = new Set<string>();
  for (const { route } of f.servers.values()) {
    if (route?.dev && route.dev !== 'lo' && route.type !== 'local') out.add(route.dev);
  }
  return [...out];
}

function localAddress(f: Facts, ip: string): boolean {
  if (/^127\./.test(ip) || ip === '::1') return true;
  return (f.links ?? []).some((l) => l.addrs.some((a) => a.local === ip));
}

function joinWords(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}

function portsText(ranges: PortRange[], max = 8): string {
  const shown = ranges.slice(0, max).map(formatRange).join(', ');
  return ranges.length > max ? `${shown}, ... (${ranges.length} ranges)` : shown;
}

function intersect(a: PortRange[], b: PortRange[]): PortRange[] {
  const out: PortRange[] = [];
  for (const x of a) {
    for (const y of b) {
      const from = Math.max(x.from, y.from);
      const to = Math.min(x.to, y.to);
      if (from <= to) out.push({ from, to });
    }
  }
  return out;
}

function cidrsOverlap(a: { bytes: Buffer; prefix: number; family: 4 | 6 }, b: typeof a): boolean {
  if (a.family !== b.family) return false;
  const short = a.prefix <= b.prefix ? a : b;
  const long = short === a ? b : a;
  const ip = long.family === 4 ? [...long.bytes].join('.') : ipv6Text(long.bytes);
  return cidrContains({ text: '', ...short }, ip);
}

function ipv6Text(bytes: Buffer): string {
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(bytes.readUInt16BE(i).toString(16));
  return parts.join(':');
}

function iifMatches(iif: NatEntry['iif'], names: string[]): boolean {
  if (!iif) return true;
  const hit = (pattern: string, name: string) =>
    pattern.endsWith('+') || pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
  const any = names.some((n) => iif.names.some((p) => hit(p, n)));
  // `! -i docker0` still takes packets from every other interface
  return iif.negated ? names.some((n) => !iif.names.some((p) => hit(p, n))) : any;
}

const ourPrio = -90; // dstnat + 10: the prerouting chain render.ts creates

function entryTarget(e: NatEntry): string {
  if (e.kind === 'redirect')
    return e.toPorts ? `local port ${formatRange(e.toPorts)}` : 'the same local port';
  const port = e.toPorts ? `:${formatRange(e.toPorts)}` : '';
  if (!e.toHost) return e.toPorts ? `port ${formatRange(e.toPorts)}` : '(a computed address)';
  return e.toHost.includes(':') ? `[${e.toHost}]${port}` : `${e.toHost}${port}`;
}

/** ip rules tried before honeygate's, for `family`. */
function earlierRules(f: Facts, family: 4 | 6): IpRule[] {
  return (f.rules[family] ?? []).filter((r) => r.priority < f.config.firewall.rulePriority);
}

/** Whether a rule of `family` is honeygate's (any pref), and whether it has the configured pref. */
function ourRuleState(f: Facts, family: 4 | 6): { exact: boolean; others: IpRule[] } {
  const fw = f.config.firewall;
  const rules = f.rules[family] ?? [];
  const exact = rules.some((r) => isOurRule(r.raw as Parameters<typeof isOurRule>[0], fw));
  const others = rules.filter(
    (r) =>
      !r.not &&
      r.fwmark === fw.mark &&
      r.fwmask === fw.mask &&
      r.table === String(fw.table) &&
      r.priority !== fw.rulePriority,
  );
  return { exact, others };
}

function ruleText(r: IpRule): string {
  const sel: string[] = [];
  for (const [k, v] of Object.entries(r.raw)) {
    if (['priority', 'table', 'fwmark', 'fwmask', 'not', 'action', 'src', 'flags'].includes(k)) continue;
    sel.push(`${k} ${typeof v === 'string' || typeof v === 'number' ? v : JSON.stringify(v)}`);
  }
  if (r.raw.src && r.raw.src !== 'all') sel.unshift(`from ${r.raw.src}`);
  if (r.fwmark !== null)
    sel.unshift(`fwmark ${hex(r.fwmark)}${r.fwmask !== 0xffffffff ? `/${hex(r.fwmask)}` : ''}`);
  const what = r.action && r.action !== 'lookup' ? r.action : `lookup ${r.table}`;
  return `${r.priority}: ${r.not ? 'not ' : ''}${sel.join(' ') || 'from all'} ${what}`;
}

// ---- the checks -------------------------------------------------------------------------

type Check = (f: Facts) => Finding[];

const ok = (check: string, message: string): Finding => ({ check, status: 'ok', message });
const warn = (check: string, message: string, fix?: string): Finding =>
  fix ? { check, status: 'warn', message, fix } : { check, status: 'warn', message };
const fail = (check: string, message: string, fix: string): Finding => ({
  check,
  status: 'fail',
  message,
  fix,
});

const CAP_NET_BIND_SERVICE = 10n;
const CAP_NET_ADMIN = 12n;

const capabilities: Check = (f) => {
  const C = 'capabilities';
  if (f.capEff === null) return [warn(C, 'cannot read CapEff from /proc/self/status')];
  const out: Finding[] = [];
  const has = (bit: bigint) => ((f.capEff! >> bit) & 1n) === 1n;
  if (!has(CAP_NET_ADMIN)) {
    out.push(
      fail(
        C,
        "this process lacks CAP_NET_ADMIN: it cannot read or load nftables rules, add ip rules, or set IP_TRANSPARENT and SO_MARK on sockets, and the checks of other software's firewall rules are left out",
        `sudo honeygate firewall doctor -c ${f.file}   # as a service: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE in the systemd unit`,
      ),
    );
  } else {
    // IP_TRANSPARENT would accept CAP_NET_RAW instead, but nft and SO_MARK need NET_ADMIN anyway.
    out.push(ok(C, 'CAP_NET_ADMIN is effective (nftables, ip rules, IP_TRANSPARENT, SO_MARK)'));
  }
  const start = num(f, 'net/ipv4/ip_unprivileged_port_start') ?? 1024;
  const low = f.config.listeners.flatMap((l) => l.bind.filter((b) => b.port > 0 && b.port < start));
  if (low.length && !has(CAP_NET_BIND_SERVICE)) {
    out.push(
      warn(
        C,
        `listeners bind ${formatEndpoint(low[0]!)}${low.length > 1 ? ` and ${low.length - 1} more` : ''}, below net.ipv4.ip_unprivileged_port_start (${start}), and this process lacks CAP_NET_BIND_SERVICE`,
        'run honeygate as root, or give its systemd unit AmbientCapabilities=CAP_NET_BIND_SERVICE',
      ),
    );
  }
  return out;
};

/** tproxy listeners, originalDst listeners and transparent backends need the addon; a failed build only warned at npm ci. */
const native: Check = (f) => {
  const C = 'native';
  const c = f.config;
  const needs = [
    ...c.listeners.filter((l) => l.tproxy || l.originalDst).map((l) => `listener ${l.name}`),
    ...[...c.backends.values()].filter((b) => b.source === 'transparent').map((b) => `backend ${b.name}`),
  ];
  if (needs.length === 0 || f.native === null) return [];
  if (f.native.ok) return [ok(C, 'the native addon loads (IP_TRANSPARENT sockets, SO_ORIGINAL_DST)')];
  return [
    fail(
      C,
      `${joinWords(needs)} need${needs.length > 1 ? '' : 's'} honeygate's native addon, which does not load (${f.native.reason}): \`honeygate run\` refuses to start`,
      "apt-get install g++ make python3, then in honeygate's directory: node scripts/build-native.mjs",
    ),
  ];
};

const nftables: Check = (f) => {
  const C = 'nftables';
  switch (f.nft.status) {
    case 'missing':
      return [fail(C, '`nft` is not installed', 'apt-get install nftables')];
    case 'denied':
      return [
        fail(
          C,
          `nft cannot read the ruleset: ${f.nft.detail} (needs CAP_NET_ADMIN)`,
          `sudo honeygate firewall doctor -c ${f.file}`,
        ),
      ];
    case 'error':
      return [
        fail(C, `\`nft -j list ruleset\` failed: ${f.nft.detail}`, 'nft list ruleset   # see what nft says'),
      ];
    default: {
      const meta = (f.nft.json as { nftables?: { metainfo?: { version?: string } }[] }).nftables?.find(
        (o) => o.metainfo,
      )?.metainfo;
      const iptables = f.iptables.length
        ? `; iptables rules read with ${f.iptables.map((t) => `${t}-save`).join(', ')}`
        : '';
      const version = meta?.version ? ` ${meta.version}` : '';
      return [ok(C, `nft${version} reads the ruleset${iptables}`)];
    }
  }
};

const kernel: Check = (f) => {
  const C = 'kernel';
  if (!f.plan || f.nft.status !== 'ok') return [];
  const out: Finding[] = [];
  for (const p of f.probes) {
    if (p.ok === true) continue;
    if (p.ok === null) {
      out.push(warn(C, `cannot probe ${p.feature}: ${p.detail} (needs CAP_NET_ADMIN)`));
      continue;
    }
    const module = p.feature.split(' ')[0]!;
    const config =
      module === 'nft_socket'
        ? 'CONFIG_NFT_SOCKET'
        : module === 'nft_fib_inet'
          ? 'CONFIG_NFT_FIB_INET'
          : `CONFIG_NFT_TPROXY and CONFIG_NF_TPROXY_IPV${p.feature.includes('IPv6') ? 6 : 4}`;
    out.push(
      fail(
        C,
        `the kernel rejects a rule using ${p.feature} (\`nft --check\`: ${p.detail}); honeygate's table cannot load without it`,
        `modprobe ${module}   # if that fails, the kernel lacks ${config}`,
      ),
    );
  }
  if (out.length === 0) {
    out.push(ok(C, `${joinWords(f.probes.map((p) => p.feature))} work (probed with nft --check)`));
  }
  return out;
};

const table: Check = (f) => {
  const C = 'table';
  if (f.nft.status !== 'ok') return [];
  const present = hasTable(f);
  if (!f.plan) {
    return present
      ? [
          warn(
            C,
            `table ${FAMILY} ${TABLE} exists, but the config has no tproxy listener and no transparent backend`,
            `honeygate firewall remove -c ${f.file}`,
          ),
        ]
      : [ok(C, 'the config has no tproxy listener and no transparent backend: it needs no firewall rules')];
  }
  if (!present) {
    return [
      fail(
        C,
        `table ${FAMILY} ${TABLE} is missing: nothing is diverted to honeygate, and replies to transparent upstream connections are not routed back to it`,
        `honeygate firewall apply -c ${f.file}`,
      ),
    ];
  }
  const problems: string[] = [];
  const comment = f.tableText ? /^\s*comment "([^"]*)"/m.exec(f.tableText)?.[1] : undefined;
  if (comment !== tableComment(f.plan.hash)) {
    problems.push(
      `its comment is ${comment ? `"${comment}"` : 'missing'}, the config renders "${tableComment(f.plan.hash)}" (applied from another config, or edited)`,
    );
  }
  const live = liveChains(f);
  for (const c of f.plan.chains) {
    const l = live.get(c.name);
    if (!l) {
      problems.push(`chain ${c.name} is missing`);
      continue;
    }
    if (l.hook !== c.hook || l.prio !== c.prio || l.type !== c.type) {
      problems.push(
        `chain ${c.name} is ${l.type} hook ${l.hook} priority ${l.prio}, expected ${c.type} hook ${c.hook} priority ${c.prio}`,
      );
    }
    const missing = c.rules.filter((r) => !l.rules.includes(r));
    const extra = l.rules.filter((r) => !c.rules.includes(r));
    if (missing.length) problems.push(`chain ${c.name} lacks ${missing.map((r) => `"${r}"`).join(', ')}`);
    if (extra.length)
      problems.push(`chain ${c.name} has unexpected ${extra.map((r) => `"${r}"`).join(', ')}`);
  }
  // the comment hash covers the rendered text, not elements deleted later with `nft delete element`
  const sets = liveSets(f);
  for (const set of f.plan.sets) {
    const have = sets.get(set.name);
    if (!have) problems.push(`set ${set.name} is missing`);
    else if (!sameElements(have, set.elements)) {
      problems.push(
        `set ${set.name} holds { ${have.join(', ')} }, the config renders { ${set.elements.join(', ')} }`,
      );
    }
  }
  if (problems.length) {
    return [
      fail(
        C,
        `table ${FAMILY} ${TABLE} differs from the config: ${problems.join('; ')}`,
        `honeygate firewall apply -c ${f.file}`,
      ),
    ];
  }
  return [
    ok(C, `table ${FAMILY} ${TABLE} is in place and matches the config (${tableComment(f.plan.hash)})`),
  ];
};

const ipRule: Check = (f) => {
  const C = 'ip-rule';
  if (!f.plan) return [];
  const fw = f.config.firewall;
  const out: Finding[] = [];
  const families = f.plan.families;
  for (const family of families) {
    const add = routingEntries(fw, family)[0]!.argv.join(' ');
    const what = `\`ip -${family} rule\` pref ${fw.rulePriority} fwmark ${hex(fw.mark)}/${hex(fw.mask)} lookup ${fw.table}`;
    if (f.rules[family] === null) {
      out.push(fail(C, `IPv${family}: cannot list ip rules: ${f.rulesError[family]}`, add));
      continue;
    }
    const { exact, others } = ourRuleState(f, family);
    if (exact) {
      out.push(ok(C, `IPv${family}: ${what} is in place`));
    } else if (others.length) {
      const prefs = others.map((r) => r.priority).join(', ');
      out.push(
        warn(
          C,
          `IPv${family}: honeygate's rule is at pref ${prefs}, the config says ${fw.rulePriority} (apply and remove look for it at ${fw.rulePriority})`,
          `ip -${family} rule del pref ${others[0]!.priority} && ${add}`,
        ),
      );
    } else {
      const counterpart = families.length > 1 && ourRuleState(f, family === 4 ? 6 : 4).exact;
      out.push(
        fail(
          C,
          `IPv${family}: ${what} is missing${counterpart ? ` (the IPv${family === 4 ? 6 : 4} one is there)` : ''}: packets honeygate marks are routed like any other, so diverted connections never reach it and transparent upstream replies do not come back`,
          `${add}   # or: honeygate firewall apply -c ${f.file}`,
        ),
      );
    }
  }
  return out;
};

const ipRoute: Check = (f) => {
  const C = 'ip-route';
  if (!f.plan) return [];
  const fw = f.config.firewall;
  const out: Finding[] = [];
  for (const family of f.plan.families) {
    const routes = f.routes.get(`${family} ${fw.table}`) ?? [];
    const found = routes.some((r) => r.type === 'local' && r.dst === 'default' && r.dev === 'lo');
    if (found) {
      out.push(ok(C, `IPv${family}: table ${fw.table} has \`local default dev lo\``));
    } else {
      const add = routingEntries(fw, family)[1]!.argv.join(' ');
      out.push(
        fail(
          C,
          `IPv${family}: table ${fw.table} has no \`local default dev lo\` route: marked packets match honeygate's ip rule, find no route there and fall through to the main table, so diverted connections are forwarded or dropped instead of reaching honeygate`,
          `${add}   # or: honeygate firewall apply -c ${f.file}`,
        ),
      );
    }
  }
  return out;
};

const DROPS = ['unreachable', 'blackhole', 'prohibit'];
const ORDER_KEYS = new Set(['priority', 'src', 'table', 'fwmark', 'fwmask', 'not', 'action', 'iif', 'flags']);

/** Rules before honeygate's that take its marked packets to a table with a default route. */
const ipRuleOrder: Check = (f) => {
  const C = 'ip-rule-order';
  if (!f.plan) return [];
  const fw = f.config.firewall;
  const divert = divertInterfaces(f);
  const out: Finding[] = [];
  for (const family of f.plan.families) {
    for (const r of earlierRules(f, family)) {
      if (r.table === '255' || r.priority === 0) continue; // the local table: this host's own addresses
      if (r.fwmark !== null && ((fw.mark & r.fwmask) >>> 0 === r.fwmark) === r.not) continue;
      const iif = r.raw.iif;
      if (typeof iif === 'string' && !divert.includes(iif)) continue;
      // other selectors (from PREFIX, to, ipproto, dport, uidrange, ...): cannot tell, say nothing
      if (r.raw.src !== undefined && r.raw.src !== 'all') continue;
      if (Object.keys(r.raw).some((k) => !ORDER_KEYS.has(k))) continue;
      const routes = r.table ? (f.routes.get(`${family} ${r.table}`) ?? []) : [];
      const dflt = routes.find((x) => x.dst === 'default');
      if (!r.action && dflt?.type === 'local') continue; // delivered here, as by honeygate's own table
      const drops =
        (r.action !== null && DROPS.includes(r.action)) ||
        (dflt?.type !== undefined && DROPS.includes(dflt.type));
      if (!drops && !dflt) continue;
      out.push(
        warn(
          C,
          `IPv${family}: rule \`${ruleText(r)}\` comes before honeygate's (pref ${fw.rulePriority}) and matches its marked packets: diverted connections to addresses that are not this host's ${drops ? 'are dropped' : `follow table ${r.table}'s default route`} instead of reaching honeygate`,
          `set firewall.rulePriority below ${r.priority} in ${f.file}, then: honeygate firewall remove -c OLD_FILE; honeygate firewall apply -c ${f.file}`,
        ),
      );
    }
  }
  return out;
};

function popcount(n: number): number {
  let c = 0;
  for (let v = n >>> 0; v; v >>>= 1) c += v & 1;
  return c;
}

function freeMark(f: Facts): number | null {
  let used = FOREIGN_MARK_BITS;
  for (const family of [4, 6] as const) {
    for (const r of f.rules[family] ?? []) if (r.fwmark !== null && !r.not) used |= r.fwmark & r.fwmask;
  }
  // a constant (`meta mark set 0x4000`) clears every other bit: that says nothing about the bit's owner
  for (const m of f.foreign.marks) used |= m.set | (popcount(m.clear) <= 16 ? m.clear : 0);
  for (const bit of [0x1000, 0x2000, 0x10, 0x80, 0x1, 0x2]) if ((used & bit) === 0) return bit;
  return null;
}

const fwmark: Check = (f) => {
  const C = 'fwmark';
  if (!f.plan) return [];
  const fw = f.config.firewall;
  const mask = fw.mask;
  const out: Finding[] = [];
  const free = freeMark(f);
  const fix = `pick unused bits: honeygate firewall remove -c ${f.file}; set firewall: { mark: ${free !== null ? hex(free) : 'BITS'} } in ${f.file}; honeygate firewall apply -c ${f.file}`;
  for (const family of [4, 6] as const) {
    for (const r of f.rules[family] ?? []) {
      if (r.fwmark === null) continue;
      // Bits both rules test: when the two marks agree on them, each rule can match the
      // other's packets; when they disagree (`fwmark 0x1` vs 0x1000), the rules exclude each other.
      const common = (r.fwmask & mask) >>> 0;
      if (common === 0 || (r.fwmark & common) >>> 0 !== (fw.mark & common) >>> 0) continue;
      if (
        isOurRule(r.raw as Parameters<typeof isOurRule>[0], fw) ||
        ourRuleState(f, family).others.includes(r)
      ) {
        continue;
      }
      out.push(
        warn(
          C,
          `IPv${family}: rule \`${ruleText(r)}\` tests bits ${hex(common)} of honeygate's mark ${hex(fw.mark)}/${hex(mask)} for the same values: packets marked by the software that owns it can match honeygate's rule (and be delivered to this host), and honeygate's packets can match it`,
          fix,
        ),
      );
    }
  }
  // The conntrack mark only matters for transparent dials that another table DNATs.
  const published = transparentServers(f.config).some((s) => publishedBy(f, s.host, s.port));
  for (const m of f.foreign.marks) {
    const sets = (m.set & mask) >>> 0;
    const clears = (m.clear & mask) >>> 0;
    const prerouting = m.hooks.filter((h) => h.hook === 'prerouting');
    const unknown = m.hooks.length === 0; // a chain no base chain reaches (yet)
    let harm: string | null = null;
    let how = fix;
    if (sets && m.key === 'meta') {
      harm = `sets bits ${hex(sets)} of honeygate's mask ${hex(mask)} on packets: those match honeygate's ip rule and are routed to this host (table ${fw.table}: local default) instead of their destination`;
    } else if (sets && m.key === 'ct') {
      harm = `sets bits ${hex(sets)} of honeygate's mask ${hex(mask)} in conntrack marks: every packet of those connections then gets honeygate's mark (first rule of its prerouting chain) and is routed to this host`;
    } else if (clears && m.key === 'meta' && (unknown || prerouting.some((h) => h.prio >= ourPrio))) {
      harm = `can clear bits ${hex(clears)} of honeygate's mark after honeygate's prerouting chain (priority ${ourPrio}) set them, so diverted packets are routed on instead of reaching honeygate`;
      how = `run that chain before honeygate's (priority below ${ourPrio}), or make the rule keep bits ${hex(mask)} (\`meta mark set meta mark & ... | ...\`)`;
    } else if (
      clears &&
      m.key === 'ct' &&
      published &&
      !m.hooks.every((h) => h.hook === 'output' && h.prio < -140)
    ) {
      harm = `can clear bits ${hex(clears)} of the conntrack mark honeygate's output chain sets on transparent upstream connections, so replies that another table un-NATs late (Docker-published ports) no longer come back`;
      how = `dial the containers' own addresses instead of published ports (see transparent-backends): then the conntrack mark is not needed`;
    }
    if (!harm) continue;
    out.push(warn(C, `${m.where} (\`${m.text}\`) ${harm}`, how));
  }
  if (out.length === 0) {
    const what = rulesRead(f) ? 'ip rule or firewall rule' : 'ip rule (firewall rules unread)';
    out.push(ok(C, `no other ${what} uses the bits of honeygate's mask ${hex(mask)}`));
  }
  return out;
};

const srcValidMark: Check = (f) => {
  const C = 'src_valid_mark';
  if (!f.plan) return [];
  const divert = divertInterfaces(f);
  const honeypot = honeypotInterfaces(f);
  const devs = [...new Set([...divert, ...honeypot])];
  const bad = devs.filter(
    (d) =>
      effective(f, d, 'src_valid_mark') === 1 &&
      // accept_local lets the reverse lookup's local answer through, unless rp_filter is strict
      !(effective(f, d, 'accept_local') === 1 && effective(f, d, 'rp_filter') !== 1),
  );
  if (bad.length === 0) {
    const note = devs.filter((d) => effective(f, d, 'src_valid_mark') === 1);
    return [
      ok(
        C,
        note.length
          ? `src_valid_mark is 1 on ${joinWords(note)}, but accept_local=1 with rp_filter 0 or 2 lets marked packets pass`
          : `src_valid_mark is 0 on ${joinWords([...devs, 'all'])}`,
      ),
    ];
  }
  const set = ['all', ...bad].filter((d) => num(f, `net/ipv4/conf/${d}/src_valid_mark`) === 1);
  const roles = bad.map((d) => {
    const r = [
      divert.includes(d) ? 'diverted connections' : '',
      honeypot.includes(d) ? 'honeypot replies' : '',
    ]
      .filter(Boolean)
      .join(' and ');
    return `${d} (${r})`;
  });
  const viaAll =
    num(f, 'net/ipv4/conf/all/src_valid_mark') === 1 ? ' (set on `all`, so on every interface)' : '';
  return [
    fail(
      C,
      `src_valid_mark is 1 on ${joinWords(roles)}${viaAll}: the kernel's source check then looks the sender up with honeygate's mark, finds table ${f.config.firewall.table}'s local route and drops the packet as a martian source, whatever rp_filter says — they vanish without a trace (net.ipv4.conf.all.log_martians=1 logs them). VPN tools such as wg-quick set it; if one needs it, keep it and set accept_local=1 with rp_filter 0 or 2 on these interfaces instead`,
      `sysctl -w ${set.map((d) => `${sysctlName(d, 'src_valid_mark')}=0`).join(' ')}`,
    ),
  ];
};

const rpFilter: Check = (f) => {
  const C = 'rp_filter';
  if (!f.plan) return [];
  const divert = divertInterfaces(f);
  const honeypot = honeypotInterfaces(f);
  const defaultDevs = new Set(
    f.defaults4
      .flatMap((r) => [r.dev, ...(r.nexthops ?? []).map((h) => h.dev)])
      .filter((d): d is string => !!d),
  );
  const out: Finding[] = [];
  const words = ['0 (off)', '1 (strict)', '2 (loose)'];
  for (const d of divert) {
    const v = effective(f, d, 'rp_filter');
    if (v !== 1 || defaultDevs.has(d) || defaultDevs.size === 0) continue;
    const all = num(f, 'net/ipv4/conf/all/rp_filter') === 1;
    const set = [...(all ? ['all'] : []), ...(num(f, `net/ipv4/conf/${d}/rp_filter`) === 1 ? [d] : [])];
    out.push(
      warn(
        C,
        `rp_filter is 1 (strict) on ${d}, but the default route leaves by ${joinWords([...defaultDevs])}: packets from attackers whose address routes back through another interface are dropped before honeygate sees them`,
        `sysctl -w ${set.map((x) => `${sysctlName(x, 'rp_filter')}=2`).join(' ')}`,
      ),
    );
  }
  if (out.length === 0) {
    const devs = [...new Set([...divert, ...honeypot])];
    const values = devs.map(
      (d) => `${d} ${words[effective(f, d, 'rp_filter')] ?? effective(f, d, 'rp_filter')}`,
    );
    const on = devs.some((d) => effective(f, d, 'rp_filter') !== 0);
    const noDefault =
      on && f.defaults4.length === 0
        ? ' (there is no IPv4 default route: packets from sources with no route back fail the check)'
        : '';
    out.push(
      ok(
        C,
        `${values.join(', ') || 'no interfaces'}: the reverse-path check ignores marks while src_valid_mark is 0, so diverted packets and honeypot replies pass it like any other${noDefault}`,
      ),
    );
  }
  return out;
};

// route_localnet does not matter to TPROXY: the tproxy statement only picks the listening
// socket by the given address (127.0.0.1:PORT) and leaves the packet's destination as it was,
// so routing never sees a 127/8 destination (checked: diversion works with route_localnet 0).
// It matters to `originalDst` listeners: a DNAT to 127.0.0.1 from another interface rewrites
// the destination to 127/8, which the kernel drops as martian unless route_localnet is 1; and
// REDIRECT rewrites to the incoming interface's primary address, which a listener bound to
// 127.0.0.1 does not receive (the client gets a reset).
const originalDst: Check = (f) => {
  const C = 'original-dst';
  if (!rulesRead(f)) return [];
  const out: Finding[] = [];
  // where packets can come in: every interface with its own IP layer (not lo, not bridge ports)
  const nonLo = (f.links ?? []).filter((l) => l.name !== 'lo' && !l.master).map((l) => l.name);
  for (const l of f.config.listeners) {
    if (!l.originalDst || l.bind.length === 0) continue;
    const ports = [...new Set(l.bind.map((b) => b.port))];
    const loopbackOnly = l.bind.every((b) => /^127\./.test(b.host) || b.host === '::1');
    const hits = f.foreign.nat.filter(
      (e) =>
        e.kind !== 'tproxy' &&
        e.hooks.some((h) => h.hook === 'prerouting') &&
        e.toPorts !== null &&
        ports.some((p) => e.toPorts!.from <= p && p <= e.toPorts!.to),
    );
    if (hits.length === 0) {
      out.push(
        warn(
          C,
          `listener ${l.name} reads SO_ORIGINAL_DST, but no REDIRECT or DNAT rule here sends connections to port ${ports[0]}: it only sees connections made to it directly`,
          `add one in your own nat table, e.g.: iptables -t nat -A PREROUTING -i eth0 -p tcp --dport 8000:8099 -j REDIRECT --to-ports ${ports[0]}`,
        ),
      );
      continue;
    }
    for (const e of hits) {
      if (e.kind === 'redirect' && loopbackOnly) {
        out.push(
          fail(
            C,
            `${e.where} REDIRECTs to port ${formatRange(e.toPorts!)}, but listener ${l.name} binds only ${l.bind[0]!.host}: REDIRECT rewrites the destination to the primary address of the interface the packet came in on, so these connections are refused`,
            `bind listener ${l.name} to "0.0.0.0:${ports[0]}" in ${f.file} (originalDst still reports the original destination)`,
          ),
        );
      } else if (e.kind === 'dnat' && e.toHost && /^127\./.test(e.toHost)) {
        const devs = e.iif && !e.iif.negated ? expandInterfaces(f, e.iif.names) : nonLo;
        const off = devs.filter((d) => effective(f, d, 'route_localnet') === 0);
        if (off.length === 0) {
          out.push(
            ok(
              C,
              `${e.where} DNATs to ${entryTarget(e)} (listener ${l.name}); route_localnet is 1 where it applies`,
            ),
          );
        } else {
          out.push(
            fail(
              C,
              `${e.where} DNATs to ${entryTarget(e)} (listener ${l.name}), but route_localnet is 0 on ${joinWords(off)}: the kernel drops packets to 127/8 that arrive from outside as martians. route_localnet=1 also lets neighbours reach other services bound to 127.0.0.1; binding the listener to 0.0.0.0 and using REDIRECT avoids it`,
              `sysctl -w ${off.map((d) => `${sysctlName(d, 'route_localnet')}=1`).join(' ')}`,
            ),
          );
        }
      } else {
        out.push(
          ok(C, `${e.where} sends connections to ${entryTarget(e)}: listener ${l.name} receives them`),
        );
      }
    }
  }
  return out;
};

/**
 * A drop policy on the input hook (ufw, a hand-made `iptables -P INPUT DROP`, firewalld's
 * final reject) also drops what honeygate diverts: TPROXY delivers those packets locally,
 * through INPUT, addressed to ports nothing there allows. An accept in honeygate's own table
 * cannot help: every base chain on the hook must accept. Checked on Linux 6.18.
 */
const input: Check = (f) => {
  const C = 'input';
  if (!f.plan || !rulesRead(f)) return [];
  const fw = f.config.firewall;
  const out: Finding[] = [];
  for (const d of f.foreign.inputDrops) {
    if (d.excepts || (d.family !== null && !f.plan.families.includes(d.family))) continue;
    const ipt = /^(ip6?tables)(-\w+)? -t (\w+) chain (\S+)$/.exec(d.where);
    const nft = /^table (\S+) (\S+) chain (\S+)$/.exec(d.where);
    const iptablesFix = (tool: string, table: string, chain: string) =>
      `${tool} -t ${table} -I ${chain} -m mark --mark ${hex(fw.mark)}/${hex(fw.mask)} -j ACCEPT`;
    const fix = ipt
      ? iptablesFix(ipt[1]!, ipt[3]!, ipt[4]!)
      : nft && nft[1] !== 'inet' && nft[2] === 'filter' && nft[3] === 'INPUT'
        ? iptablesFix(nft[1] === 'ip' ? 'iptables' : 'ip6tables', 'filter', 'INPUT')
        : `nft insert rule ${nft ? `${nft[1]} ${nft[2]} ${nft[3]}` : 'FAMILY TABLE CHAIN'} 'meta mark & ${hex(fw.mask)} == ${hex(fw.mark)} accept'`; // quoted: & would background it
    out.push(
      warn(
        C,
        `${d.where} ${d.how}: connections honeygate diverts are delivered to this host through the input hook, addressed to whatever port the attacker chose, so unless a rule there accepts them (by mark, interface or port) new connections to diverted ports never reach honeygate; an accept in honeygate's own table cannot override it`,
        `${fix}   # then make it part of that firewall's saved configuration`,
      ),
    );
  }
  if (out.length === 0) {
    const excepted = f.foreign.inputDrops.filter((d) => d.excepts).map((d) => d.where);
    out.push(
      ok(
        C,
        excepted.length
          ? `${joinWords(excepted)} drop${excepted.length > 1 ? '' : 's'} by default but accept${excepted.length > 1 ? '' : 's'} marked or transparent-socket packets`
          : 'no input chain drops by default: diverted connections reach honeygate',
      ),
    );
  }
  return out;
};

const ipForward: Check = (f) => {
  const C = 'ip_forward';
  if (!rulesRead(f)) return [];
  const out: Finding[] = [];
  const docker = f.processes.some((p) => p.comm === 'dockerd');
  for (const family of [4, 6] as const) {
    const key = family === 4 ? 'net/ipv4/ip_forward' : 'net/ipv6/conf/all/forwarding';
    const value = num(f, key);
    if (value === null) continue;
    const forwarded = f.foreign.nat.filter(
      (e) =>
        e.kind === 'dnat' &&
        e.hooks.some((h) => h.hook === 'prerouting') &&
        e.toHost !== null &&
        ipFamily(e.toHost) === family &&
        !localAddress(f, e.toHost),
    );
    const name = family === 4 ? 'net.ipv4.ip_forward' : 'net.ipv6.conf.all.forwarding';
    if (value === 0 && (forwarded.length || (docker && family === 4))) {
      const why = forwarded.length
        ? `${forwarded[0]!.where} DNATs to ${entryTarget(forwarded[0]!)}${forwarded.length > 1 ? ` (and ${forwarded.length - 1} more)` : ''}`
        : 'dockerd runs here';
      out.push(
        warn(
          C,
          `${name} is 0 while ${why}: those connections (Docker's published ports, anything routed through this host) are dropped. honeygate's own diverted connections and transparent upstreams do not need forwarding: they are delivered to this host`,
          `sysctl -w ${name}=1`,
        ),
      );
    } else if (family === 4 || forwarded.length) {
      out.push(
        ok(
          C,
          `${name} is ${value}: honeygate's diverted connections and the honeypots' replies are delivered to this host and need no forwarding${value === 0 ? '; nothing here DNATs to another host' : ''}`,
        ),
      );
    }
  }
  return out;
};

const interfaces: Check = (f) => {
  const C = 'interfaces';
  if (!f.links) return [];
  const out: Finding[] = [];
  for (const l of tproxyListeners(f.config)) {
    for (const name of l.tproxy!.divert.interfaces) {
      if (expandInterfaces(f, [name]).length === 0) {
        out.push(
          warn(
            C,
            `listener ${l.name} diverts from ${name}, but ${name.endsWith('*') ? 'no interface here matches it' : 'there is no such interface here'}: the rule matches nothing until one appears (nft matches iifname by name)`,
            `ip -br link   # then fix divert.interface of listener ${l.name} in ${f.file}`,
          ),
        );
      }
    }
  }
  const divert = divertInterfaces(f);
  if (out.length === 0 && divert.length) out.push(ok(C, `diverting from ${joinWords(divert)}`));
  return out;
};

const ipv6: Check = (f) => {
  const C = 'ipv6';
  if (num(f, 'net/ipv6/conf/all/disable_ipv6') === 1) return [];
  const out: Finding[] = [];
  for (const l of tproxyListeners(f.config)) {
    const t = l.tproxy!;
    const hasV6Socket = t.addresses.some((a) => ipFamily(a) === 6);
    const v6Blocks = t.divert.addresses === null || t.divert.addresses.some((c) => c.family === 6);
    if (hasV6Socket && v6Blocks) continue;
    const global = expandInterfaces(f, t.divert.interfaces).flatMap((d) =>
      (f.links?.find((x) => x.name === d)?.addrs ?? [])
        .filter((a) => a.family === 6 && a.scope === 'global')
        .map((a) => `${d} (${a.local})`),
    );
    if (global.length === 0) continue;
    const todo = [
      hasV6Socket ? '' : `add "::1" to tproxy.address of listener ${l.name}`,
      v6Blocks ? '' : 'add the IPv6 blocks to divert.addresses',
    ].filter(Boolean);
    out.push(
      warn(
        C,
        `listener ${l.name} diverts IPv4 only, but ${joinWords(global)} ${global.length > 1 ? 'have global IPv6 addresses' : 'has a global IPv6 address'}: connections over IPv6 bypass honeygate (they reach this host's own services, or nothing)`,
        `${todo.join(' and ')} in ${f.file}, then: honeygate firewall apply -c ${f.file}`,
      ),
    );
  }
  return out;
};

/** DNAT / REDIRECT / TPROXY in other tables on ports honeygate diverts. */
const nat: Check = (f) => {
  const C = 'nat';
  const listeners = tproxyListeners(f.config);
  if (listeners.length === 0 || !rulesRead(f)) return [];
  const out: Finding[] = [];
  const originalDstPorts = new Map<number, string>();
  for (const l of f.config.listeners)
    if (l.originalDst) for (const b of l.bind) originalDstPorts.set(b.port, l.name);
  for (const l of listeners) {
    const t = l.tproxy!;
    const diverted = divertPorts(t.divert, f.protectedPorts).ports;
    const families = new Set(t.addresses.map(ipFamily));
    for (const e of f.foreign.nat) {
      const pre = e.hooks.filter((h) => h.hook === 'prerouting');
      if (pre.length === 0) continue;
      if (e.family !== null && !families.has(e.family)) continue;
      if (!iifMatches(e.iif, t.divert.interfaces)) continue;
      if (e.daddr && !e.daddr.negated && t.divert.addresses) {
        const some = e.daddr.cidrs.some((c) => t.divert.addresses!.some((d) => cidrsOverlap(c, d)));
        if (!some) continue;
      }
      const overlap = intersect(e.ports ?? [{ from: 1, to: 65535 }], diverted);
      if (overlap.length === 0) continue;
      const ports = e.ports
        ? `tcp port${overlap.length > 1 || overlap[0]!.from !== overlap[0]!.to ? 's' : ''} ${portsText(overlap)}`
        : 'every tcp port';
      const after = pre.some((h) => h.prio >= ourPrio);
      const exclude = `add ${portsText(overlap)} to divert.exclude of listener ${l.name} in ${f.file}, then: honeygate firewall apply -c ${f.file}`;
      if (e.kind === 'tproxy') {
        out.push(
          warn(
            C,
            `${e.where} TPROXYs ${ports} to ${entryTarget(e)} as well as honeygate (listener ${l.name}): two transparent proxies compete for these connections, and which one gets each depends on rule order and marks`,
            `remove the other TPROXY rule, or ${exclude}`,
          ),
        );
      } else if (after) {
        out.push(
          warn(
            C,
            `${e.where} (priority ${pre.map((h) => h.prio).join(', ')}) ${e.kind === 'dnat' ? 'DNATs' : 'REDIRECTs'} ${ports} to ${entryTarget(e)}, but runs after honeygate's divert (priority dstnat + 10 = ${ourPrio}): honeygate's divert takes these connections first and this rule then rewrites them, so they can reach neither honeygate nor ${entryTarget(e)} (on Linux 6.18 they time out)`,
            `give that chain priority dstnat (-100) or lower, or ${exclude}`,
          ),
        );
      } else if (
        e.toPorts &&
        originalDstPorts.has(e.toPorts.from) &&
        (e.kind === 'redirect' || (e.toHost !== null && localAddress(f, e.toHost)))
      ) {
        out.push(
          ok(
            C,
            `${e.where} ${e.kind === 'dnat' ? 'DNATs' : 'REDIRECTs'} ${ports} to ${entryTarget(e)}, listener ${originalDstPorts.get(e.toPorts.from)} (originalDst): honeygate's divert lets them pass (ct status dnat) and that listener takes them`,
          ),
        );
      } else {
        out.push(
          ok(
            C,
            `${e.where} ${e.kind === 'dnat' ? 'DNATs' : 'REDIRECTs'} ${ports} (diverted by listener ${l.name}) to ${entryTarget(e)}: by design these connections pass honeygate (its rule \`ct status dnat accept\`) and go there with the client's address; honeygate does not see them`,
          ),
        );
      }
    }
  }
  if (out.length === 0)
    out.push(ok(C, 'no other table DNATs, REDIRECTs or TPROXYs a port honeygate diverts'));
  return out;
};

/** Whether a DNAT in another table rewrites connections this host makes to host:port. */
function publishedBy(f: Facts, host: string, port: number): NatEntry | null {
  for (const e of f.foreign.nat) {
    if (e.kind !== 'dnat' || !e.hooks.some((h) => h.hook === 'output')) continue;
    if (e.family !== null && e.family !== ipFamily(host)) continue;
    if (e.ports && !e.ports.some((r) => r.from <= port && port <= r.to)) continue;
    if (!e.ports && !e.toPorts) continue; // an address-only DNAT: not a published port
    if (e.daddr) {
      const inside = e.daddr.cidrs.some((c) => cidrContains(c, host));
      if (e.daddr.negated ? inside || !localAddress(f, host) : !inside) continue;
    } else if (!localAddress(f, host)) {
      continue; // Docker's rules take only the host's own addresses (addrtype LOCAL)
    }
    return e;
  }
  return null;
}

const transparentBackends: Check = (f) => {
  const C = 'transparent-backends';
  const servers = transparentServers(f.config);
  if (servers.length === 0 || !rulesRead(f)) return [];
  const out: Finding[] = [];
  const good: string[] = [];
  const ctRule = liveChains(f).get('output')?.rules.includes(RULE.ctMark) ?? false;
  for (const s of servers) {
    const name = `${s.backend} server ${formatEndpoint(s)}`;
    const info = f.servers.get(s.host);
    const published = publishedBy(f, s.host, s.port);
    if (published) {
      const explain = `${name} is a port that ${published.where} DNATs to ${entryTarget(published)} (a Docker-published port): the container's replies are un-NATed only after routing, so without honeygate's output rule that marks such connections' conntrack entries they would be forwarded straight to the attacker, leaking the container's address and killing the session`;
      const target = published.toHost
        ? formatEndpoint({ host: published.toHost, port: published.toPorts?.from ?? s.port })
        : 'CONTAINER_IP:PORT';
      const fix = `dial the container's own address: servers: ["${target}"] in backend ${s.backend} of ${f.file}`;
      if (ctRule)
        out.push(
          warn(C, `${explain}. That rule is in place, so it works while honeygate's table is applied`, fix),
        );
      else out.push(fail(C, `${explain}, and that rule ("${RULE.ctMark}") is not in place`, fix));
      continue;
    }
    if (!info?.route) {
      out.push(
        warn(
          C,
          `${name}: no route to ${s.host} (${info?.error || 'ip route get failed'})`,
          `ip route get ${s.host}`,
        ),
      );
      continue;
    }
    if (info.route.type === 'local' || localAddress(f, s.host)) {
      out.push(
        fail(
          C,
          `${name} is an address of this host: a honeypot here answers the attacker's address by the main routing table, so its replies leave for the attacker instead of returning to honeygate and the connection never opens`,
          `run the honeypot in a container or namespace with its own address and list that address, or use source: proxy-v2 for backend ${s.backend} in ${f.file}`,
        ),
      );
      continue;
    }
    const via = info.route.gateway ? ` via ${info.route.gateway}` : '';
    good.push(`${formatEndpoint(s)} (${info.route.dev ?? '?'}${via})`);
  }
  if (good.length) {
    out.push(
      ok(
        C,
        `transparent servers reached through ${good.join(', ')}; their replies to attackers must be routed back through this host (true when it is their default gateway)`,
      ),
    );
  }
  return out;
};

const dockerProxy: Check = (f) => {
  const C = 'docker-proxy';
  const proxies = f.processes.filter((p) => p.comm === 'docker-proxy');
  if (proxies.length === 0) {
    const docker = f.processes.some((p) => p.comm === 'dockerd');
    return [
      ok(
        C,
        docker
          ? 'no docker-proxy process: Docker runs with userland-proxy off or publishes no ports'
          : 'Docker is not running in this network namespace',
      ),
    ];
  }
  const arg = (p: ProcessInfo, k: string) => {
    const i = p.cmdline.indexOf(k);
    return i >= 0 ? p.cmdline[i + 1] : undefined;
  };
  const published = proxies.slice(0, 6).map((p) => {
    const host = arg(p, '-host-ip') ?? '?';
    const to = arg(p, '-container-ip') ?? '?';
    return `${formatEndpoint({ host, port: Number(arg(p, '-host-port') ?? 0) })} -> ${formatEndpoint({ host: to, port: Number(arg(p, '-container-port') ?? 0) })}`;
  });
  return [
    warn(
      C,
      `${proxies.length} docker-proxy process${proxies.length > 1 ? 'es' : ''} (Docker's userland-proxy: ${published.join(', ')}${proxies.length > 6 ? ', ...' : ''}): connections it relays — from this host itself, over IPv6 to ports published on IPv4 only, hairpin connections between containers — reach the container from docker-proxy's address, hiding the client`,
      'set "userland-proxy": false in /etc/docker/daemon.json (merge with what is there), then: systemctl restart docker',
    ),
  ];
};

// Checked on Linux 6.18: with br_netfilter on, frames bridged between ports of a bridge pass
// the IPv4 prerouting hook with iifname = the bridge, and a tproxy rule there matches them,
// yet they are still bridged to the other port: bridged packets are routed again only when a
// DNAT changed their destination. So diverting on a bridge never takes container-to-container
// connections, with or without br_netfilter.
const brNetfilter: Check = (f) => {
  const C = 'br_netfilter';
  const v4 = num(f, 'net/bridge/bridge-nf-call-iptables');
  const v6 = num(f, 'net/bridge/bridge-nf-call-ip6tables');
  const bridges = (f.links ?? []).filter((l) => l.kind === 'bridge').map((l) => l.name);
  const divertBridges = divertInterfaces(f).filter((d) => bridges.includes(d));
  const out: Finding[] = [];
  for (const b of divertBridges) {
    out.push(
      warn(
        C,
        `${b} is a bridge: connections between containers on it are bridged, not routed, so honeygate does not see them (with br_netfilter they pass the IP hooks, but TPROXY does not take bridged packets); connections from its containers to other networks are diverted`,
        'put containers whose lateral connections honeygate should see on separate bridges, so that traffic between them is routed through this host',
      ),
    );
  }
  if (v4 === null && v6 === null) {
    if (out.length === 0)
      out.push(ok(C, 'br_netfilter is not loaded: bridged frames do not pass the IP hooks'));
    return out;
  }
  if (out.length === 0) {
    const on = v4 === 1 || v6 === 1;
    out.push(
      ok(
        C,
        on && bridges.length
          ? `bridge-nf-call-iptables=${v4 ?? '-'} ip6tables=${v6 ?? '-'}: frames bridged on ${joinWords(bridges)} pass the IP hooks; honeygate diverts only from ${joinWords(divertInterfaces(f)) || 'no interface'}, so this changes nothing for it`
          : `bridge-nf-call-iptables=${v4 ?? '-'} ip6tables=${v6 ?? '-'}${bridges.length ? '' : '; no bridges here'}`,
      ),
    );
  }
  return out;
};

const CHECKS: [string, Check][] = [
  ['capabilities', capabilities],
  ['native', native],
  ['nftables', nftables],
  ['kernel', kernel],
  ['table', table],
  ['ip-rule', ipRule],
  ['ip-route', ipRoute],
  ['ip-rule-order', ipRuleOrder],
  ['fwmark', fwmark],
  ['src_valid_mark', srcValidMark],
  ['rp_filter', rpFilter],
  ['interfaces', interfaces],
  ['ipv6', ipv6],
  ['nat', nat],
  ['input', input],
  ['transparent-backends', transparentBackends],
  ['original-dst', originalDst],
  ['ip_forward', ipForward],
  ['docker-proxy', dockerProxy],
  ['br_netfilter', brNetfilter],
  ['contain', containment],
];

/** Runs every check over facts already gathered. */
export function check(facts: Facts): Finding[] {
  const out: Finding[] = [];
  for (const [name, run] of CHECKS) {
    try {
      out.push(...run(facts));
    } catch (err) {
      out.push(warn(name, `this check failed to run: ${(err as Error).message}`));
    }
  }
  return out;
}

/**
 * Inspects `host` (the live system by default) against `config`. `opts.file` is the config
 * file's path as the user typed it, used in the fixes (default "FILE").
 */
export async function doctor(
  config: Config,
  host: Host = realHost(),
  opts: { file?: string } = {},
): Promise<Finding[]> {
  return check(await gather(config, host, opts.file));
}

/** 1 when a check failed, else 0 (warnings leave the exit status alone). */
export function exitCode(findings: Finding[]): number {
  return findings.some((f) => f.status === 'fail') ? 1 : 0;
}

const LABEL = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;

/** One line per finding (status, check, message), its fix below it, and a summary line. */
export function formatFindings(findings: Finding[]): string {
  const width = Math.max(0, ...findings.map((f) => f.check.length));
  const lines: string[] = [];
  for (const f of findings) {
    lines.push(`${LABEL[f.status]}  ${f.check.padEnd(width)}  ${f.message}`);
    if (f.fix) lines.push(`${' '.repeat(width + 8)}fix: ${f.fix}`);
  }
  const count = (s: Finding['status']) => findings.filter((f) => f.status === s).length;
  const [oks, warns, fails] = [count('ok'), count('warn'), count('fail')];
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  lines.push(
    `${oks} ok, ${plural(warns, 'warning')}, ${plural(fails, 'failure')}: ${
      fails
        ? 'transparent mode will not work until the failures are fixed'
        : warns
          ? 'works; read the warnings'
          : 'all is well'
    }`,
  );
  return `${lines.join('\n')}\n`;
}
