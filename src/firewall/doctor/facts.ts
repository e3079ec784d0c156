// The doctor's second layer: gather() reads everything the checks need from a Host, once,
// into Facts (nft's JSON through nft-json.ts, other software's rules through
// foreign-rules.ts, ip's JSON, sysctls, processes). Never throws: a fact that cannot be
// read stays empty and the checks that need it say so or stay silent.
import type { Config } from '../../config/types.js';
import { type ContainTargets, resolveNetworks } from '../../contain/docker.js';
import { type KernelRoute, kernelRoutes } from '../../kernel/plan.js';
import { ipFamily } from '../../net/address.js';
import { type CtEntry, divertsUdp, parseConntrack } from '../conntrack.js';
import { type ForeignRules, fromIptablesSave, fromNftJson } from '../foreign-rules.js';
import { hasTable, type NftRuleset, parseNftJson } from '../nft-json.js';
import {
  divertedListeners,
  FAMILY,
  type ProtectedPort,
  parseSshdListeners,
  planRuleset,
  protectedFrom,
  RULE,
  type RulesetPlan,
  TABLE,
} from '../render.js';
import type { Host, ProcessInfo } from './host.js';

export interface IpRule {
  priority: number;
  raw: Record<string, unknown>;
  fwmark: number | null;
  fwmask: number;
  not: boolean;
  table: string | null; // numeric (ip -N)
  action: string | null; // unreachable, blackhole, prohibit, goto, ... (null: lookup)
}

export interface RouteInfo {
  type?: string;
  dst?: string;
  dev?: string;
  gateway?: string;
  nexthops?: { dev?: string }[];
}

export interface Link {
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
  nft: { status: 'ok' | 'missing' | 'denied' | 'error'; detail: string; rs: NftRuleset | null };
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
  kernelRoutes: KernelRoute[]; // the kernel routes the table DNATs (those with a diverted listener)
  contain?: ContainTargets; // contain.networks as Docker reports them now
  native: { ok: true } | { ok: false; reason: string } | null; // null: not checked
  // UDP conntrack entries (`conntrack -L -p udp`), read only when a UDP listener is diverted
  conntrack?: { status: 'ok' | 'missing' | 'denied' | 'error'; detail: string; entries: CtEntry[] };
  // where the NAT rules of every table send flows now (any protocol): DNAT addresses, and
  // whether some rule REDIRECTs; a NATed conntrack entry pointing elsewhere is stale
  natTargets?: { dnat: Set<string>; redirect: boolean };
}

/** Every `dnat to ADDR` address and whether a `redirect` exists, anywhere in nft's JSON. */
function nftNatTargets(value: unknown, out: { dnat: Set<string>; redirect: boolean }): void {
  if (Array.isArray(value)) {
    for (const v of value) nftNatTargets(v, out);
    return;
  }
  if (!value || typeof value !== 'object') return;
  for (const [k, v] of Object.entries(value)) {
    if (k === 'dnat' && v && typeof v === 'object' && typeof (v as { addr?: unknown }).addr === 'string')
      out.dnat.add((v as { addr: string }).addr);
    if (k === 'redirect') out.redirect = true;
    nftNatTargets(v, out);
  }
}

/** The same from iptables-save text: `--to-destination ADDR[:PORT]` and `-j REDIRECT`. */
function iptablesNatTargets(text: string, out: { dnat: Set<string>; redirect: boolean }): void {
  for (const m of text.matchAll(/--to-destination\s+(\S+)/g)) {
    const to = m[1]!;
    const v6 = /^\[([^\]]+)\]/.exec(to);
    out.dnat.add(v6 ? v6[1]! : to.includes('.') ? to.split(':')[0]!.split('-')[0]! : to.split('-')[0]!);
  }
  if (/-j REDIRECT\b/.test(text)) out.redirect = true;
}

const LINE = (s: string) => s.trim().split('\n')[0] ?? '';

function parseJson<T>(text: string): T | null {
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}

export function toRule(r: Record<string, unknown>): IpRule {
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

export function shellQuote(s: string): string {
  return /^[\w./@%+=:,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function transparentServers(c: Config): { backend: string; host: string; port: number }[] {
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

  const ss = await host.exec('ss', ['-ltnHe']);
  const sshd = parseSshdListeners(ss.code === 0 ? ss.stdout : '', (await host.sshdSockets?.()) ?? new Set());
  const protectedPorts = protectedFrom(config, sshd);
  const contain = await resolveNetworks(config.contain);
  const plan = planRuleset(config, { protectedPorts, contain });

  const facts: Facts = {
    config,
    contain,
    file: shellQuote(file),
    capEff: capHex ? BigInt(`0x${capHex}`) : null,
    sysctl: new Map(),
    nft: { status: 'ok', detail: '', rs: null },
    tableText: null,
    probes: [],
    rules: { 4: null, 6: null },
    rulesError: { 4: '', 6: '' },
    routes: new Map(),
    defaults4: [],
    links: null,
    foreign: { nat: [], marks: [], inputDrops: [], forwardDrops: [] },
    iptables: [],
    processes: [],
    servers: new Map(),
    protectedPorts,
    plan,
    kernelRoutes: kernelRoutes(config).filter((k) => k.listeners.length > 0),
    native: host.native?.() ?? null,
  };

  // nftables: the whole ruleset (others' tables too), then ours as text for its comment
  const nft = await host.exec('nft', ['-j', 'list', 'ruleset']);
  const rs = nft.code === 0 ? parseNftJson(nft.stdout) : null;
  if (nft.missing) facts.nft = { status: 'missing', detail: nft.stderr, rs: null };
  else if (nft.code !== 0) {
    facts.nft = { status: denied(nft.stderr) ? 'denied' : 'error', detail: LINE(nft.stderr), rs: null };
  } else if (!rs) facts.nft = { status: 'error', detail: 'nft printed something that is not JSON', rs: null };
  else facts.nft = { status: 'ok', detail: '', rs };
  const natTargets = { dnat: new Set<string>(), redirect: false };
  if (rs) nftNatTargets(rs.rules, natTargets);
  facts.natTargets = natTargets;
  if (rs && hasTable(rs, { family: FAMILY, name: TABLE })) {
    const t = await host.exec('nft', ['list', 'table', FAMILY, TABLE]);
    if (t.code === 0) facts.tableText = t.stdout;
  }
  if (plan && facts.nft.status === 'ok') {
    const families = new Set(divertedListeners(config).flatMap((l) => l.tproxy!.addresses.map(ipFamily)));
    for (const p of NFT_PROBES) {
      if (p.family !== null && !families.has(p.family)) continue;
      const fib = plan.chains.some((c) => c.rules.includes(RULE.own) || c.rules.includes(RULE.ownUdp));
      if (p.feature === 'nft_fib_inet' && !fib) continue;
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
    // the tables of rules tried before honeygate's (the ip-rule-order check reads their
    // routes) and of every fwmark rule (the reply path of TPROXY rules managed elsewhere)
    for (const rule of facts.rules[family] ?? []) {
      const wanted = rule.priority < config.firewall.rulePriority || (rule.fwmark !== null && !rule.not);
      if (wanted && rule.table) tables.add(rule.table);
    }
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
    'net/netfilter/nf_conntrack_acct',
    'net/netfilter/nf_conntrack_timestamp',
  ];
  for (const dev of ['all', ...(facts.links ?? []).map((l) => l.name)]) {
    for (const k of ['rp_filter', 'src_valid_mark', 'accept_local', 'route_localnet']) {
      keys.push(`net/ipv4/conf/${dev}/${k}`);
    }
  }
  for (const k of keys) facts.sysctl.set(k, (await host.readFile(`/proc/sys/${k}`))?.trim() ?? null);

  // others' rules: native nftables from the JSON, iptables (both backends) from iptables-save
  if (facts.nft.rs) facts.foreign = fromNftJson(facts.nft.rs, { family: FAMILY, name: TABLE });
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
      iptablesNatTargets(r.stdout, natTargets);
      const parsed = fromIptablesSave(r.stdout, family, label);
      facts.foreign.nat.push(...parsed.nat);
      facts.foreign.marks.push(...parsed.marks);
      // iptables-nft's chains are in nft's JSON already
      if (!label.endsWith('-nft')) facts.foreign.inputDrops.push(...parsed.inputDrops);
      facts.foreign.forwardDrops.push(...parsed.forwardDrops);
      facts.iptables.push(label);
    }
  }

  if (divertsUdp(config)) {
    const entries: CtEntry[] = [];
    facts.conntrack = { status: 'ok', detail: '', entries };
    for (const family of ['ipv4', 'ipv6']) {
      const r = await host.exec('conntrack', ['-L', '-f', family, '-p', 'udp']);
      if (r.missing) facts.conntrack = { status: 'missing', detail: r.stderr, entries };
      else if (r.code !== 0)
        facts.conntrack = { status: denied(r.stderr) ? 'denied' : 'error', detail: LINE(r.stderr), entries };
      if (r.code !== 0) break;
      entries.push(...parseConntrack(r.stdout));
    }
  }

  facts.processes = await host.processes();
  return facts;
}
