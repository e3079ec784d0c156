// Questions the checks ask of the Facts: effective sysctls, which interfaces divert or carry
// honeypot replies, honeygate's live table and ip rules, other tables' NAT on a port. Pure.
import type { PortRange } from '../../config/types.js';
import { cidrContains, ipFamily } from '../../net/address.js';
import { isOurRule } from '../apply.js';
import type { NatEntry } from '../foreign-rules.js';
import { commentOf, hasTable, type LiveTable, liveTable } from '../nft-json.js';
import { divertedListeners, FAMILY, TABLE } from '../render.js';
import type { Facts, IpRule } from './facts.js';

/** False when nft could not read the ruleset: checks of others' rules then stay silent. */
export function rulesRead(f: Facts): boolean {
  return f.nft.status === 'ok';
}

const OURS = { family: FAMILY, name: TABLE };

/** Whether `table inet honeygate` is in the ruleset nft listed. */
export function hasOurTable(f: Facts): boolean {
  return f.nft.rs !== null && hasTable(f.nft.rs, OURS);
}

/** honeygate's live table (chains with their rules' comments, set elements), or null when absent. */
export function ourTable(f: Facts): LiveTable | null {
  return f.nft.rs && hasOurTable(f) ? liveTable(f.nft.rs, OURS, commentOf(f.tableText)) : null;
}

export function sysctl(f: Facts, key: string): string | null {
  return f.sysctl.get(key) ?? null;
}

export function num(f: Facts, key: string): number | null {
  const v = sysctl(f, key);
  return v === null || !/^-?\d+$/.test(v) ? null : Number(v);
}

/** The value the kernel uses: max(all, dev) for rp_filter, all || dev for the flags. */
export function effective(f: Facts, dev: string, key: string): number {
  const all = num(f, `net/ipv4/conf/all/${key}`) ?? 0;
  const own = num(f, `net/ipv4/conf/${dev}/${key}`) ?? 0;
  return key === 'rp_filter' ? Math.max(all, own) : all || own ? 1 : 0;
}

/** `sysctl -w` wants slashes when an interface name has a dot (eth0.100). */
export function sysctlName(dev: string, key: string): string {
  return dev.includes('.') ? `net/ipv4/conf/${dev}/${key}` : `net.ipv4.conf.${dev}.${key}`;
}

/** Interface names a divert list covers here; `eth*` expands to the matching interfaces. */
export function expandInterfaces(f: Facts, names: string[]): string[] {
  const out = new Set<string>();
  for (const n of names) {
    if (n.endsWith('*')) {
      for (const l of f.links ?? []) if (l.name.startsWith(n.slice(0, -1))) out.add(l.name);
    } else if (!f.links || f.links.some((l) => l.name === n)) out.add(n);
  }
  return [...out];
}

export function divertInterfaces(f: Facts): string[] {
  return expandInterfaces(
    f,
    divertedListeners(f.config).flatMap((l) => l.tproxy!.divert.interfaces),
  );
}

/** Interfaces the honeypots' replies arrive on (the route to each transparent server). */
export function honeypotInterfaces(f: Facts): string[] {
  const out = new Set<string>();
  for (const { route } of f.servers.values()) {
    if (route?.dev && route.dev !== 'lo' && route.type !== 'local') out.add(route.dev);
  }
  return [...out];
}

export function localAddress(f: Facts, ip: string): boolean {
  if (/^127\./.test(ip) || ip === '::1') return true;
  return (f.links ?? []).some((l) => l.addrs.some((a) => a.local === ip));
}

export function intersect(a: PortRange[], b: PortRange[]): PortRange[] {
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

export function cidrsOverlap(a: { bytes: Buffer; prefix: number; family: 4 | 6 }, b: typeof a): boolean {
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

export function iifMatches(iif: NatEntry['iif'], names: string[]): boolean {
  if (!iif) return true;
  const hit = (pattern: string, name: string) =>
    pattern.endsWith('+') || pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
  const any = names.some((n) => iif.names.some((p) => hit(p, n)));
  // `! -i docker0` still takes packets from every other interface
  return iif.negated ? names.some((n) => !iif.names.some((p) => hit(p, n))) : any;
}

export const ourPrio = -90; // dstnat + 10: the prerouting chain render.ts creates

/** ip rules tried before honeygate's, for `family`. */
export function earlierRules(f: Facts, family: 4 | 6): IpRule[] {
  return (f.rules[family] ?? []).filter((r) => r.priority < f.config.firewall.rulePriority);
}

/** Whether a rule of `family` is honeygate's (any pref), and whether it has the configured pref. */
export function ourRuleState(f: Facts, family: 4 | 6): { exact: boolean; others: IpRule[] } {
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

/** Whether a DNAT in another table rewrites connections this host makes to host:port. */
export function publishedBy(f: Facts, host: string, port: number): NatEntry | null {
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
