// Other software's firewall rules, read for `firewall doctor`: which TCP flows another table
// DNATs, REDIRECTs or TPROXYs, and which rules write packet or conntrack marks. Sources:
// `nft -j list ruleset` (native nftables) and iptables-save (iptables-nft and iptables-legacy).
// iptables-nft rules appear in nft's JSON too, but with their targets as an opaque
// `{"xt": {"type": "target", "name": "DNAT"}}`, so those rules come from iptables-save and
// are skipped in the JSON (their jumps still count, for which hook reaches which chain).
import type { Cidr, PortRange } from '../config/types.js';
import { parseCidr } from '../net/address.js';
import type { NftRuleset } from './nft-json.js';
import { mergeRanges, subtractRanges } from './render.js';

/** A base chain's place in the packet path: a hook and a priority (lower runs first). */
export interface Hook {
  hook: string; // prerouting, input, forward, output, postrouting
  prio: number;
}

/** A rule that rewrites where a TCP flow goes. */
export interface NatEntry {
  where: string; // "table ip nat chain DOCKER" or "iptables-nft -t nat chain DOCKER"
  family: 4 | 6 | null; // null: an inet table, either family
  kind: 'dnat' | 'redirect' | 'tproxy';
  hooks: Hook[]; // the base chains whose packets can reach the rule
  ports: PortRange[] | null; // TCP destination ports it matches; null: every port (or unknown)
  daddr: { cidrs: Cidr[]; negated: boolean } | null; // null: any destination (or unknown)
  iif: { names: string[]; negated: boolean } | null; // `+` / `*` at the end: a prefix
  toHost: string | null; // DNAT / TPROXY address; null for REDIRECT or when computed by a map
  toPorts: PortRange | null; // null: the port stays as it was
}

/** A rule that writes the packet mark (`meta`) or the conntrack mark (`ct`). */
export interface MarkWriter {
  where: string;
  key: 'meta' | 'ct';
  set: number; // bits it can turn to 1
  clear: number; // bits it can turn to 0
  hooks: Hook[];
  text: string; // the statement, for messages
}

/**
 * A base chain on the input hook that drops what its rules do not accept (a drop policy,
 * or a last rule that drops or rejects everything: firewalld's `reject with icmpx ...`).
 * Diverted connections and transparent upstream replies are delivered through that hook.
 */
export interface InputDrop {
  where: string;
  family: 4 | 6 | null;
  how: string; // "has policy drop", "ends with `reject`"
  excepts: boolean; // a rule there (or in a chain it jumps to) accepts by mark, connmark or socket
}

/**
 * A forward chain that drops what its rules do not accept: iptables' `filter FORWARD` (Docker
 * sets policy DROP; from iptables-save, both backends) or a native nftables base chain on the
 * forward hook (a drop policy, or a last rule that drops or rejects everything). Kernel routes'
 * DNATed flows are forwarded through it.
 */
export interface ForwardDrop {
  where: string;
  family: 4 | 6;
  how: string;
  userChain: string; // where an operator adds accepts: DOCKER-USER when it exists, else FORWARD
  accepts: { daddr: NatEntry['daddr']; ports: PortRange[] | null }[]; // ACCEPTs a new flow from outside can meet
  nft?: { family: string; table: string; chain: string }; // a native nftables chain: the fix is an nft rule
}

export interface ForeignRules {
  nat: NatEntry[];
  marks: MarkWriter[];
  inputDrops: InputDrop[];
  forwardDrops: ForwardDrop[];
}

const ALL_BITS = 0xffffffff;
const EVERY_PORT: PortRange[] = [{ from: 0, to: 65535 }];

// ---- nft -j list ruleset ----------------------------------------------------------------

type Json = Record<string, unknown>;

function obj(v: unknown): Json | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : null;
}

function chainKey(family: unknown, table: unknown, chain: unknown): string {
  return `${family} ${table} ${chain}`;
}

/** Every jump/goto target anywhere under `v` (also inside verdict maps). */
function jumpTargets(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) {
    for (const x of v) jumpTargets(x, out);
    return out;
  }
  const o = obj(v);
  if (!o) return out;
  for (const [k, x] of Object.entries(o)) {
    const t = obj(x)?.target;
    if ((k === 'jump' || k === 'goto') && typeof t === 'string') out.push(t);
    else jumpTargets(x, out);
  }
  return out;
}

/** For each chain, the base chains that reach it through jumps and gotos. */
function reachability(bases: Map<string, Hook>, edges: Map<string, Set<string>>): Map<string, Hook[]> {
  const out = new Map<string, Hook[]>();
  for (const [start, hook] of bases) {
    const seen = new Set<string>([start]);
    const queue = [start];
    while (queue.length) {
      const c = queue.shift()!;
      const list = out.get(c) ?? [];
      if (!list.some((h) => h.hook === hook.hook && h.prio === hook.prio)) list.push(hook);
      out.set(c, list);
      for (const next of edges.get(c) ?? []) {
        if (seen.has(next)) continue;
        seen.add(next);
        queue.push(next);
      }
    }
  }
  return out;
}

/** `start` and every chain it reaches through jumps and gotos. */
function reachable(start: string, edges: Map<string, Set<string>>): Set<string> {
  const seen = new Set<string>([start]);
  const queue = [start];
  while (queue.length) {
    for (const next of edges.get(queue.shift()!) ?? []) {
      if (seen.has(next)) continue;
      seen.add(next);
      queue.push(next);
    }
  }
  return seen;
}

/** An nft rule that accepts on a packet mark, conntrack mark or socket match (it may let honeygate's packets in). */
function acceptsByMarkOrSocket(expr: unknown[]): boolean {
  if (!expr.some((e) => obj(e) !== null && 'accept' in obj(e)!)) return false;
  const text = JSON.stringify(expr);
  return (
    /"(meta|ct)":\{"key":"mark"\}/.test(text) ||
    /"socket":\{/.test(text) ||
    /"xt":\{"type":"match","name":"(mark|connmark|socket)"\}/.test(text)
  );
}

/** One port element of nft JSON: 80, "80", {"range": [1, 9]}. */
function portElement(v: unknown): PortRange | null {
  if (typeof v === 'number') return { from: v, to: v };
  if (typeof v === 'string' && /^\d+$/.test(v)) return { from: Number(v), to: Number(v) };
  const o = obj(v);
  const range = o?.range;
  if (Array.isArray(range) && typeof range[0] === 'number' && typeof range[1] === 'number') {
    return { from: range[0], to: range[1] };
  }
  if (o?.elem) return portElement(obj(o.elem)?.val);
  return null;
}

function portList(v: unknown, sets: Map<string, unknown[]>, scope: string): PortRange[] | null {
  if (typeof v === 'string' && v.startsWith('@')) {
    const elems = sets.get(`${scope} ${v.slice(1)}`);
    return elems ? portList({ set: elems }, sets, scope) : null;
  }
  const set = obj(v)?.set;
  if (Array.isArray(set)) {
    const out: PortRange[] = [];
    for (const e of set) {
      const r = portElement(e);
      if (!r) return null;
      out.push(r);
    }
    return mergeRanges(out);
  }
  const one = portElement(v);
  return one ? [one] : null;
}

function cidrElement(v: unknown): Cidr | null {
  try {
    if (typeof v === 'string') return parseCidr(v);
    const p = obj(obj(v)?.prefix);
    if (p && typeof p.addr === 'string' && typeof p.len === 'number') return parseCidr(`${p.addr}/${p.len}`);
    const e = obj(v)?.elem;
    if (e) return cidrElement(obj(e)?.val);
  } catch {
    // not an address: the match stays unknown
  }
  return null;
}

function cidrList(v: unknown, sets: Map<string, unknown[]>, scope: string): Cidr[] | null {
  if (typeof v === 'string' && v.startsWith('@')) {
    const elems = sets.get(`${scope} ${v.slice(1)}`);
    return elems ? cidrList({ set: elems }, sets, scope) : null;
  }
  const set = obj(v)?.set;
  const items = Array.isArray(set) ? set : [v];
  const out: Cidr[] = [];
  for (const e of items) {
    const c = cidrElement(e);
    if (!c) return null;
    out.push(c);
  }
  return out;
}

function nameList(v: unknown): string[] | null {
  if (typeof v === 'string') return [v];
  const set = obj(v)?.set;
  if (Array.isArray(set) && set.every((x) => typeof x === 'string')) return set as string[];
  return null;
}

/** What a rule's matches select, as far as the checks need it. */
interface Selection {
  family: 4 | 6 | null;
  tcp: boolean; // false: the rule only takes another protocol (udp, icmp, ...)
  ports: PortRange[] | null;
  daddr: NatEntry['daddr'];
  iif: NatEntry['iif'];
}

function protoIsTcp(v: unknown): boolean {
  if (v === 'tcp' || v === 6) return true;
  const set = obj(v)?.set;
  if (Array.isArray(set)) return set.some((x) => x === 'tcp' || x === 6);
  return typeof v !== 'string' && typeof v !== 'number'; // unknown shapes: assume TCP may match
}

function selectNft(
  expr: unknown[],
  sets: Map<string, unknown[]>,
  scope: string,
  tableFamily: string,
): Selection {
  const sel: Selection = {
    family: tableFamily === 'ip' ? 4 : tableFamily === 'ip6' ? 6 : null,
    tcp: true,
    ports: null,
    daddr: null,
    iif: null,
  };
  for (const e of expr) {
    const m = obj(obj(e)?.match);
    if (!m) continue;
    const negated = m.op === '!=';
    const left = obj(m.left);
    const payload = obj(left?.payload);
    const meta = obj(left?.meta);
    if (payload?.field === 'dport' && typeof payload.protocol === 'string') {
      if (payload.protocol !== 'tcp' && payload.protocol !== 'th') sel.tcp = false;
      const ports = portList(m.right, sets, scope);
      sel.ports = ports && negated ? subtractRanges(EVERY_PORT, ports) : ports;
    } else if (payload?.field === 'daddr' && (payload.protocol === 'ip' || payload.protocol === 'ip6')) {
      sel.family = payload.protocol === 'ip' ? 4 : 6;
      const cidrs = cidrList(m.right, sets, scope);
      sel.daddr = cidrs ? { cidrs, negated } : null;
    } else if (payload && (payload.protocol === 'ip' || payload.protocol === 'ip6')) {
      sel.family = payload.protocol === 'ip' ? 4 : 6;
      if (payload.field === 'protocol' || payload.field === 'nexthdr') {
        if (!negated && !protoIsTcp(m.right)) sel.tcp = false;
        if (negated && (m.right === 'tcp' || m.right === 6)) sel.tcp = false;
      }
    } else if (payload && typeof payload.protocol === 'string' && payload.protocol !== 'th') {
      if (['udp', 'udplite', 'sctp', 'dccp', 'icmp', 'icmpv6'].includes(payload.protocol)) sel.tcp = false;
    } else if (meta?.key === 'l4proto') {
      if (!negated && !protoIsTcp(m.right)) sel.tcp = false;
      if (negated && (m.right === 'tcp' || m.right === 6)) sel.tcp = false;
    } else if (meta?.key === 'nfproto') {
      if (m.right === 'ipv4') sel.family = 4;
      if (m.right === 'ipv6') sel.family = 6;
    } else if (meta?.key === 'iifname') {
      const names = nameList(m.right);
      sel.iif = names ? { names, negated } : null;
    }
  }
  return sel;
}

/**
 * A rule in a chain that others jump to also carries the jumping rules' conditions (one
 * level): `iifname "eth0" tcp dport 8000-8010 jump web` + `dnat to ...` in web.
 */
function inherit(own: Selection, jumpers: Selection[] | undefined): Selection {
  if (!jumpers?.length) return own;
  const out = { ...own };
  if (jumpers.every((j) => !j.tcp)) out.tcp = false;
  if (!own.ports && jumpers.every((j) => j.ports)) out.ports = mergeRanges(jumpers.flatMap((j) => j.ports!));
  if (!own.iif && jumpers.every((j) => j.iif && !j.iif.negated)) {
    out.iif = { names: [...new Set(jumpers.flatMap((j) => j.iif!.names))], negated: false };
  }
  return out;
}

function addJumper(map: Map<string, Selection[]>, key: string, sel: Selection): void {
  const list = map.get(key) ?? [];
  list.push(sel);
  map.set(key, list);
}

function portOrRange(v: unknown): PortRange | null {
  return portElement(v);
}

/** The bits a mark assignment can set and clear; `self` is the key being written. */
export function markEffect(value: unknown, self: 'meta' | 'ct'): { set: number; clear: number } {
  if (typeof value === 'number') return { set: value >>> 0, clear: ~value >>> 0 };
  const o = obj(value);
  if (o && obj(o[self])?.key === 'mark') return { set: 0, clear: 0 }; // the same mark, unchanged
  for (const op of ['|', '&', '^'] as const) {
    const args = o?.[op];
    if (!Array.isArray(args) || typeof args[1] !== 'number') continue;
    const inner = markEffect(args[0], self);
    const c = args[1] >>> 0;
    if (op === '|') return { set: (inner.set | c) >>> 0, clear: (inner.clear & ~c) >>> 0 };
    if (op === '&') return { set: (inner.set & c) >>> 0, clear: (inner.clear | ~c) >>> 0 };
    return { set: (inner.set | c) >>> 0, clear: (inner.clear | c) >>> 0 };
  }
  // Copied from elsewhere (`meta mark set ct mark`, `ct mark set meta mark`): every bit can
  // become 0; a bit becomes 1 only where the source holds it, and honeygate's bits there are
  // honeygate's own (or reported where another rule sets them).
  return { set: 0, clear: ALL_BITS };
}

function statementText(key: 'meta' | 'ct', value: unknown): string {
  const v = (x: unknown): string => {
    if (typeof x === 'number') return `0x${x.toString(16)}`;
    const o = obj(x);
    if (!o) return JSON.stringify(x);
    for (const op of ['|', '&', '^']) {
      const a = o[op];
      if (Array.isArray(a)) return `${v(a[0])} ${op} ${v(a[1])}`;
    }
    for (const k of ['meta', 'ct']) if (obj(o[k])?.key) return `${k} ${String(obj(o[k])!.key)}`;
    return JSON.stringify(x);
  };
  return `${key} mark set ${v(value)}`;
}

/**
 * NAT rules and mark writers of every table except `skip` (honeygate's own), from
 * `nft -j list ruleset` output (read by nft-json.ts).
 */
export function fromNftJson(rs: NftRuleset, skip: { family: string; name: string }): ForeignRules {
  const bases = new Map<string, Hook>();
  const inputChains: { family: string; table: string; name: string; policy: unknown }[] = [];
  const edges = new Map<string, Set<string>>();
  const sets = new Map<string, unknown[]>();
  const rules: { family: string; table: string; chain: string; expr: unknown[] }[] = [];
  for (const chain of rs.chains) {
    if (chain.hook === undefined || chain.prio === undefined) continue;
    bases.set(chainKey(chain.family, chain.table, chain.name), { hook: chain.hook, prio: chain.prio });
    if (chain.hook === 'input' && ['ip', 'ip6', 'inet'].includes(String(chain.family))) {
      inputChains.push({
        family: String(chain.family),
        table: String(chain.table),
        name: chain.name,
        policy: chain.policy,
      });
    }
  }
  for (const set of rs.sets) sets.set(`${set.family} ${set.table} ${set.name}`, set.elem);
  for (const rule of rs.rules) {
    const r = { family: String(rule.family), table: String(rule.table), chain: rule.chain, expr: rule.expr };
    rules.push(r);
    const from = chainKey(r.family, r.table, r.chain);
    for (const t of jumpTargets(r.expr)) {
      const set = edges.get(from) ?? new Set<string>();
      set.add(chainKey(r.family, r.table, t));
      edges.set(from, set);
    }
  }
  const reach = reachability(bases, edges);
  const selections = rules.map((r) => selectNft(r.expr, sets, `${r.family} ${r.table}`, r.family));
  const jumpers = new Map<string, Selection[]>();
  rules.forEach((r, i) => {
    for (const t of jumpTargets(r.expr)) addJumper(jumpers, chainKey(r.family, r.table, t), selections[i]!);
  });
  const out: ForeignRules = { nat: [], marks: [], inputDrops: [], forwardDrops: [] };
  for (const c of inputChains) {
    if (c.family === skip.family && c.table === skip.name) continue;
    const key = chainKey(c.family, c.table, c.name);
    const how = dropsHow(
      c.policy,
      rules.filter((r) => chainKey(r.family, r.table, r.chain) === key),
    );
    if (!how) continue;
    const reached = reachable(key, edges);
    const excepts = rules.some(
      (r) => reached.has(chainKey(r.family, r.table, r.chain)) && acceptsByMarkOrSocket(r.expr),
    );
    out.inputDrops.push({
      where: `table ${c.family} ${c.table} chain ${c.name}`,
      family: c.family === 'ip' ? 4 : c.family === 'ip6' ? 6 : null,
      how,
      excepts,
    });
  }
  out.forwardDrops.push(...nftForwardDrops(rs, skip, rules, selections, edges));
  rules.forEach((r, i) => {
    if (r.family === skip.family && r.table === skip.name) return;
    // iptables-nft's targets: read from iptables-save instead
    if (r.expr.some((e) => obj(obj(e)?.xt)?.type === 'target')) return;
    const key = chainKey(r.family, r.table, r.chain);
    const where = `table ${r.family} ${r.table} chain ${r.chain}`;
    const hooks = reach.get(key) ?? [];
    const sel = bases.has(key) ? selections[i]! : inherit(selections[i]!, jumpers.get(key));
    if (!sel.tcp) return;
    for (const e of r.expr) {
      const o = obj(e);
      if (!o) continue;
      const base = { where, family: sel.family, hooks, ports: sel.ports, daddr: sel.daddr, iif: sel.iif };
      if ('dnat' in o) {
        const d = obj(o.dnat);
        out.nat.push({
          ...base,
          kind: 'dnat',
          toHost: typeof d?.addr === 'string' ? d.addr : null,
          toPorts: portOrRange(d?.port),
        });
      } else if ('redirect' in o) {
        out.nat.push({
          ...base,
          kind: 'redirect',
          toHost: null,
          toPorts: portOrRange(obj(o.redirect)?.port),
        });
      } else if ('tproxy' in o) {
        const t = obj(o.tproxy);
        const fam = t?.family === 'ip' ? 4 : t?.family === 'ip6' ? 6 : sel.family;
        out.nat.push({
          ...base,
          family: fam,
          kind: 'tproxy',
          toHost: typeof t?.addr === 'string' ? t.addr : null,
          toPorts: portOrRange(t?.port),
        });
      } else if ('mangle' in o) {
        const m = obj(o.mangle);
        const key = obj(m?.key);
        const which = obj(key?.meta)?.key === 'mark' ? 'meta' : obj(key?.ct)?.key === 'mark' ? 'ct' : null;
        if (!which) continue;
        const { set, clear } = markEffect(m?.value, which);
        if (set === 0 && clear === 0) continue;
        out.marks.push({ where, key: which, set, clear, hooks, text: statementText(which, m?.value) });
      }
    }
  });
  return out;
}

/** The verdict a rule ends with (`accept`, `drop`, `reject`, `jump`, ...), counters and logs aside. */
/** How a chain drops what reaches its end (its policy, or a last rule that is a bare drop/reject), or null. */
function dropsHow(policy: unknown, own: readonly { expr: unknown[] }[]): string | null {
  if (policy === 'drop') return 'has policy drop';
  const last = own.at(-1);
  const bare = last?.expr.filter((e) => !['counter', 'log'].some((k) => k in (obj(e) ?? {}))).length === 1;
  const final = last && bare ? finalVerdict(last.expr) : undefined;
  return final === 'drop' || final === 'reject' ? `ends with \`${final}\`` : null;
}

function finalVerdict(expr: unknown[]): string | undefined {
  const last = expr.filter((e) => !['counter', 'log'].some((k) => k in (obj(e) ?? {}))).at(-1);
  return Object.keys(obj(last) ?? {})[0];
}

/** False when a `ct state` match leaves out new flows (`ct state established,related`). */
function admitsNew(expr: unknown[]): boolean {
  for (const e of expr) {
    const m = obj(obj(e)?.match);
    if (obj(obj(m?.left)?.ct)?.key !== 'state') continue;
    const states = (Array.isArray(m!.right) ? m!.right : [m!.right]).map(String);
    const has = states.includes('new');
    if (m!.op === '!=' ? has : !has) return false;
  }
  return true;
}

/**
 * Native nftables base chains on the forward hook that drop what their rules do not accept,
 * with the accepts (in them or the chains they jump to) that a new flow from outside can meet:
 * not those for one input interface, nor those for established flows only. iptables-nft's
 * `filter FORWARD` is left to iptables-save, which names DOCKER-USER.
 */
function nftForwardDrops(
  rs: NftRuleset,
  skip: { family: string; name: string },
  rules: { family: string; table: string; chain: string; expr: unknown[] }[],
  selections: Selection[],
  edges: Map<string, Set<string>>,
): ForwardDrop[] {
  const out: ForwardDrop[] = [];
  for (const chain of rs.chains) {
    const family = String(chain.family);
    const table = String(chain.table);
    if (chain.hook !== 'forward' || !['ip', 'ip6', 'inet'].includes(family)) continue;
    if (family === skip.family && table === skip.name) continue;
    if (family !== 'inet' && chain.name === 'FORWARD') continue; // iptables-nft's
    const key = chainKey(family, table, chain.name);
    const how = dropsHow(
      chain.policy,
      rules.filter((r) => chainKey(r.family, r.table, r.chain) === key),
    );
    if (!how) continue;
    const reached = reachable(key, edges);
    const accepts = rules.flatMap((r, i) => {
      if (!reached.has(chainKey(r.family, r.table, r.chain)) || finalVerdict(r.expr) !== 'accept') return [];
      const sel = selections[i]!;
      if (!sel.tcp || (sel.iif && !sel.iif.negated) || !admitsNew(r.expr)) return [];
      return [{ family: sel.family, daddr: sel.daddr, ports: sel.ports }];
    });
    const families: (4 | 6)[] = family === 'ip' ? [4] : family === 'ip6' ? [6] : [4, 6];
    for (const f of families) {
      out.push({
        where: `table ${family} ${table} chain ${chain.name}`,
        family: f,
        how,
        userChain: chain.name,
        accepts: accepts
          .filter((a) => a.family === null || a.family === f)
          .map(({ daddr, ports }) => ({ daddr, ports })),
        nft: { family, table, chain: chain.name },
      });
    }
  }
  return out;
}

// ---- iptables-save ----------------------------------------------------------------------

/** Where iptables' built-in chains sit (include/uapi/linux/netfilter_ipv4.h priorities). */
const IPTABLES_BASES: Record<string, Record<string, Hook>> = {
  raw: { PREROUTING: { hook: 'prerouting', prio: -300 }, OUTPUT: { hook: 'output', prio: -300 } },
  mangle: {
    PREROUTING: { hook: 'prerouting', prio: -150 },
    INPUT: { hook: 'input', prio: -150 },
    FORWARD: { hook: 'forward', prio: -150 },
    OUTPUT: { hook: 'output', prio: -150 },
    POSTROUTING: { hook: 'postrouting', prio: -150 },
  },
  nat: {
    PREROUTING: { hook: 'prerouting', prio: -100 },
    INPUT: { hook: 'input', prio: 100 },
    OUTPUT: { hook: 'output', prio: -100 },
    POSTROUTING: { hook: 'postrouting', prio: 100 },
  },
  filter: {
    INPUT: { hook: 'input', prio: 0 },
    FORWARD: { hook: 'forward', prio: 0 },
    OUTPUT: { hook: 'output', prio: 0 },
  },
  security: {
    INPUT: { hook: 'input', prio: 50 },
    FORWARD: { hook: 'forward', prio: 50 },
    OUTPUT: { hook: 'output', prio: 50 },
  },
};

/** Splits an iptables-save line into words; "quoted strings" (comments) stay one word. */
export function words(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const m of line.matchAll(re)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

function parseNumber(s: string | undefined): number | null {
  if (s === undefined) return null;
  const n = /^0x[0-9a-f]+$/i.test(s) ? Number.parseInt(s, 16) : /^\d+$/.test(s) ? Number(s) : Number.NaN;
  return Number.isFinite(n) ? n >>> 0 : null;
}

/** "0x1000/0x1000" or "0x1000" (mask all ones). */
function valueMask(s: string | undefined): { value: number; mask: number } | null {
  if (!s) return null;
  const [v, m] = s.split('/');
  const value = parseNumber(v);
  const mask = m === undefined ? ALL_BITS : parseNumber(m);
  return value === null || mask === null ? null : { value, mask };
}

/** "8080", "1000:2000", "3000,3001:3005". */
function iptablesPorts(s: string): PortRange[] | null {
  const out: PortRange[] = [];
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:[:-](\d+))?$/.exec(part);
    if (!m) return null;
    out.push({ from: Number(m[1]), to: Number(m[2] ?? m[1]) });
  }
  return mergeRanges(out);
}

/** `--to-destination` value: "192.0.2.130:80", "192.0.2.130", "[2001:db8::5]:80", "2001:db8::5". */
function toDestination(s: string, family: 4 | 6): { host: string | null; ports: PortRange | null } {
  const v6 = /^\[([^\]]+)\](?::(\d+)(?:-(\d+))?)?$/.exec(s);
  if (v6) return { host: v6[1]!, ports: v6[2] ? { from: Number(v6[2]), to: Number(v6[3] ?? v6[2]) } : null };
  if (family === 6) return { host: s.split('-')[0]!, ports: null };
  const m = /^([\d.]+)(?:-[\d.]+)?(?::(\d+)(?:-(\d+))?)?$/.exec(s);
  if (!m) return { host: null, ports: null };
  return { host: m[1]!, ports: m[2] ? { from: Number(m[2]), to: Number(m[3] ?? m[2]) } : null };
}

/** iptables' MARK/CONNMARK/TPROXY mark options -> bits set and cleared. */
function xtMarkEffect(opts: Map<string, string>, prefix = ''): { set: number; clear: number } | null {
  const xmark = valueMask(opts.get(`--${prefix}set-xmark`) ?? opts.get(`--${prefix}set-mark`));
  // (mark & ~mask) ^ value: bits in mask become value's; value bits outside mask flip
  if (xmark) return { set: xmark.value, clear: (xmark.mask ^ xmark.value) >>> 0 };
  const and = parseNumber(opts.get(`--${prefix}and-mark`));
  if (and !== null) return { set: 0, clear: ~and >>> 0 };
  const or = parseNumber(opts.get(`--${prefix}or-mark`));
  if (or !== null) return { set: or, clear: 0 };
  const xor = parseNumber(opts.get(`--${prefix}xor-mark`));
  if (xor !== null) return { set: xor, clear: xor };
  return null;
}

/** Targets that end a rule's walk here; any other -j names a user chain. */
const IPTABLES_TARGETS = new Set([
  'ACCEPT',
  'DROP',
  'RETURN',
  'REJECT',
  'LOG',
  'DNAT',
  'SNAT',
  'MASQUERADE',
  'REDIRECT',
  'TPROXY',
  'MARK',
  'CONNMARK',
  'NFLOG',
  'NOTRACK',
  'CT',
  'TRACE',
  'QUEUE',
  'NFQUEUE',
  'TCPMSS',
  'CHECKSUM',
]);

/** One `-A CHAIN ...` line: what it matches, its -j target and the target's options. */
function parseIptablesRule(
  w: string[],
  family: 4 | 6,
): { sel: Selection; target: string | null; opts: Map<string, string> } {
  const sel: Selection = { family, tcp: true, ports: null, daddr: null, iif: null };
  let target: string | null = null;
  const opts = new Map<string, string>();
  let negated = false;
  for (let i = 2; i < w.length; i++) {
    const t = w[i]!;
    if (t === '!') {
      negated = true;
      continue;
    }
    const next = w[i + 1];
    if (target !== null) {
      // options after -j belong to the target; flags without a value get ''
      if (t.startsWith('--')) {
        const takesValue = next !== undefined && !next.startsWith('--');
        opts.set(t, takesValue ? next : '');
        if (takesValue) i++;
      }
    } else if (t === '-p' || t === '--protocol') {
      const tcp = next === 'tcp' || next === '6';
      if (tcp === negated) sel.tcp = false;
      i++;
    } else if (t === '-d' || t === '--destination') {
      try {
        sel.daddr = { cidrs: (next ?? '').split(',').map((c) => parseCidr(c)), negated };
      } catch {
        sel.daddr = null;
      }
      i++;
    } else if (t === '-i' || t === '--in-interface') {
      sel.iif = { names: [next ?? ''], negated };
      i++;
    } else if (['--dport', '--dports', '--destination-port', '--destination-ports'].includes(t)) {
      const ports = iptablesPorts(next ?? '');
      sel.ports = ports && negated ? subtractRanges(EVERY_PORT, ports) : ports;
      i++;
    } else if (t === '-j' || t === '--jump') {
      target = next ?? '';
      i++;
    }
    negated = false;
  }
  return { sel, target, opts };
}

/**
 * `filter FORWARD`'s drop, if it has one, and the ACCEPT rules reachable from it that a new
 * flow arriving from outside can meet: not those for one input interface (a bridge's own
 * traffic), nor those for established flows only.
 */
function forwardDrop(
  rules: { table: string; chain: string; w: string[] }[],
  parsed: ReturnType<typeof parseIptablesRule>[],
  policies: Map<string, string>,
  edges: Map<string, Set<string>>,
): Omit<ForwardDrop, 'where' | 'family'> | null {
  const key = 'filter FORWARD';
  const last = rules.filter((r) => `${r.table} ${r.chain}` === key).at(-1)?.w;
  const final = last?.length === 4 && ['DROP', 'REJECT'].includes(last[3]!) ? last[3]! : null;
  const how = policies.get(key) === 'DROP' ? 'has policy DROP' : final ? `ends with \`-j ${final}\`` : null;
  if (!how) return null;
  const reached = reachable(key, edges);
  const accepts = rules.flatMap((r, i) => {
    const { sel, target } = parsed[i]!;
    if (target !== 'ACCEPT' || !reached.has(`${r.table} ${r.chain}`)) return [];
    if (sel.iif && !sel.iif.negated) return [];
    const at = r.w.findIndex((x) => x === '--ctstate' || x === '--state');
    if (at >= 0) {
      const states = (r.w[at + 1] ?? '').split(',');
      if (r.w[at - 1] === '!' || !states.some((x) => x === 'NEW' || x === 'DNAT')) return [];
    }
    return [{ daddr: sel.daddr, ports: sel.ports }];
  });
  return { how, userChain: policies.has('filter DOCKER-USER') ? 'DOCKER-USER' : 'FORWARD', accepts };
}

/**
 * NAT rules and mark writers from one family's iptables-save output. `label` names the
 * tool in messages ("iptables-nft", "ip6tables-legacy").
 */
export function fromIptablesSave(text: string, family: 4 | 6, label: string): ForeignRules {
  type Rule = { table: string; chain: string; w: string[] };
  const rules: Rule[] = [];
  const bases = new Map<string, Hook>();
  const edges = new Map<string, Set<string>>();
  const policies = new Map<string, string>(); // "filter INPUT" -> "DROP"
  let table = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const policy = /^:(\S+) (\S+)/.exec(line);
    if (policy) policies.set(`${table} ${policy[1]}`, policy[2]!);
    if (line.startsWith('*')) {
      table = line.slice(1);
      for (const [chain, hook] of Object.entries(IPTABLES_BASES[table] ?? {}))
        bases.set(`${table} ${chain}`, hook);
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    const w = words(line);
    const chain = w[1]!;
    rules.push({ table, chain, w });
    for (let i = 2; i < w.length - 1; i++) {
      if (w[i] !== '-j' && w[i] !== '--jump' && w[i] !== '-g' && w[i] !== '--goto') continue;
      const target = w[i + 1]!;
      const set = edges.get(`${table} ${chain}`) ?? new Set<string>();
      set.add(`${table} ${target}`);
      edges.set(`${table} ${chain}`, set);
    }
  }
  const reach = reachability(bases, edges);
  const parsed = rules.map((r) => parseIptablesRule(r.w, family));
  const jumpers = new Map<string, Selection[]>();
  rules.forEach((r, i) => {
    const target = parsed[i]!.target;
    if (target && !IPTABLES_TARGETS.has(target)) addJumper(jumpers, `${r.table} ${target}`, parsed[i]!.sel);
  });
  const out: ForeignRules = { nat: [], marks: [], inputDrops: [], forwardDrops: [] };
  for (const key of ['filter INPUT', 'security INPUT', 'mangle INPUT']) {
    const own = rules.filter((r) => `${r.table} ${r.chain}` === key);
    const last = own.at(-1)?.w;
    const final = last?.length === 4 && ['DROP', 'REJECT'].includes(last[3]!) ? last[3]!.toLowerCase() : null;
    const how =
      policies.get(key) === 'DROP'
        ? 'has policy DROP'
        : final
          ? `ends with \`-j ${final.toUpperCase()}\``
          : null;
    if (!how) continue;
    const reached = reachable(key, edges);
    const excepts = rules.some(
      (r, i) =>
        reached.has(`${r.table} ${r.chain}`) &&
        parsed[i]!.target === 'ACCEPT' &&
        r.w.some((x, j) => x === '-m' && ['mark', 'connmark', 'socket'].includes(r.w[j + 1]!)),
    );
    out.inputDrops.push({ where: `${label} -t ${key.replace(' ', ' chain ')}`, family, how, excepts });
  }
  const forward = forwardDrop(rules, parsed, policies, edges);
  if (forward) out.forwardDrops.push({ where: `${label} -t filter chain FORWARD`, family, ...forward });
  rules.forEach((r, i) => {
    const { target, opts } = parsed[i]!;
    const key = `${r.table} ${r.chain}`;
    const sel = bases.has(key) ? parsed[i]!.sel : inherit(parsed[i]!.sel, jumpers.get(key));
    if (!target || !sel.tcp) return;
    const where = `${label} -t ${r.table} chain ${r.chain}`;
    const hooks = reach.get(key) ?? [];
    const base = { where, family, hooks, ports: sel.ports, daddr: sel.daddr, iif: sel.iif };
    if (target === 'DNAT') {
      const to = toDestination(opts.get('--to-destination') ?? '', family);
      out.nat.push({ ...base, kind: 'dnat', toHost: to.host, toPorts: to.ports });
    } else if (target === 'REDIRECT') {
      const p = iptablesPorts(opts.get('--to-ports') ?? '');
      out.nat.push({ ...base, kind: 'redirect', toHost: null, toPorts: p?.[0] ?? null });
    } else if (target === 'TPROXY') {
      const p = parseNumber(opts.get('--on-port'));
      const onIp = opts.get('--on-ip');
      out.nat.push({
        ...base,
        kind: 'tproxy',
        toHost: onIp && onIp !== '0.0.0.0' && onIp !== '::' ? onIp : null,
        toPorts: p === null ? null : { from: p, to: p },
      });
      const m = valueMask(opts.get('--tproxy-mark'));
      if (m) {
        out.marks.push({
          where,
          key: 'meta',
          set: m.value,
          clear: (m.mask ^ m.value) >>> 0,
          hooks,
          text: `TPROXY --tproxy-mark ${opts.get('--tproxy-mark')}`,
        });
      }
    } else if (target === 'MARK') {
      const e = xtMarkEffect(opts);
      if (e && (e.set || e.clear)) {
        out.marks.push({ where, key: 'meta', ...e, hooks, text: `MARK ${optionText(opts)}` });
      }
    } else if (target === 'CONNMARK') {
      const text = `CONNMARK ${optionText(opts)}`;
      const nfmask = parseNumber(opts.get('--nfmask')) ?? ALL_BITS;
      const ctmask = parseNumber(opts.get('--ctmask')) ?? ALL_BITS;
      if (opts.has('--restore-mark')) {
        out.marks.push({ where, key: 'meta', set: 0, clear: nfmask, hooks, text });
      } else if (opts.has('--save-mark')) {
        out.marks.push({ where, key: 'ct', set: 0, clear: ctmask, hooks, text });
      } else {
        const e = xtMarkEffect(opts);
        if (e && (e.set || e.clear)) out.marks.push({ where, key: 'ct', ...e, hooks, text });
      }
    }
  });
  return out;
}

function optionText(opts: Map<string, string>): string {
  return [...opts].map(([k, v]) => (v ? `${k} ${v}` : k)).join(' ');
}
