// contain: -> the chains and sets it adds to honeygate's nft table. Pure, like the rest of
// render.ts, which places this output in the table; docs/containment.md explains the design.
//
// Two base chains at priority filter - 10, one on the forward hook (honeypot -> anywhere
// routed through this host) and one on input (honeypot -> this host), both before Docker's
// filter chains at priority 0. In nftables a drop in any base chain is final and an accept
// is not, so these chains only ever drop: the flows they let pass still meet Docker's rules.
// Replies (ct state established, related) pass untouched: the honeypot answers every flow
// that reached it. What is new from a honeypot is either on the allow list (accept, maybe
// rate-limited) or recorded in a dynamic set and dropped. Recording comes first in its own
// rule without a verdict, so a full set (a failed update ends its rule) never lets a packet through.
import type { Cidr } from '../config/types.js';
import { familyAddresses } from '../net/address.js';
import type { ContainAllow, ContainConfig } from './config.js';
import type { ContainTargets } from './docker.js';

/** Protocols with ports: their attempts are recorded with the destination port. */
export const PORT_PROTOCOLS = ['tcp', 'udp', 'sctp', 'dccp', 'udplite'] as const;

/**
 * The dynamic sets honeygate reads the egress counters from, by family and kind: `ports`
 * keyed by honeypot, destination, protocol and port; `icmp` by honeypot, destination and
 * ICMP (ICMPv6) type; `other` (GRE, raw IP, ...) by honeypot, destination and protocol.
 */
export const EGRESS_SETS = [
  { name: 'egress_v4', family: 4, kind: 'ports' },
  { name: 'egress_v4_icmp', family: 4, kind: 'icmp' },
  { name: 'egress_v4_other', family: 4, kind: 'other' },
  { name: 'egress_v6', family: 6, kind: 'ports' },
  { name: 'egress_v6_icmp', family: 6, kind: 'icmp' },
  { name: 'egress_v6_other', family: 6, kind: 'other' },
] as const;

export type EgressSet = (typeof EGRESS_SETS)[number];

/** nft's set type and the rule's match and key for one egress set. */
export function egressSetShape(s: EgressSet): { type: string; match: string; key: string } {
  const v4 = s.family === 4;
  const ip = v4 ? 'ip' : 'ip6';
  const addr = v4 ? 'ipv4_addr' : 'ipv6_addr';
  const icmp = v4 ? 'icmp' : 'ipv6-icmp';
  const pair = `${ip} saddr . ${ip} daddr`;
  if (s.kind === 'ports') {
    return {
      type: `${addr} . ${addr} . inet_proto . inet_service`,
      // nft adds `meta nfproto` for the key's `ip saddr`: an IPv6 packet never lands in egress_v4
      match: `meta l4proto { ${PORT_PROTOCOLS.join(', ')} }`,
      key: `${pair} . meta l4proto . th dport`,
    };
  }
  if (s.kind === 'icmp') {
    return {
      type: `${addr} . ${addr} . ${v4 ? 'icmp_type' : 'icmpv6_type'}`,
      match: `meta l4proto ${icmp}`,
      key: `${pair} . ${v4 ? 'icmp' : 'icmpv6'} type`,
    };
  }
  return {
    type: `${addr} . ${addr} . inet_proto`,
    match: `meta nfproto ipv${s.family} meta l4proto != { ${[...PORT_PROTOCOLS, icmp].join(', ')} }`,
    key: `${pair} . meta l4proto`,
  };
}

export const CONTAIN_RULE = {
  replies: (hook: Hook) => `honeygate: contain (${hook}): replies and related packets pass`,
  nd: (hook: Hook) => `honeygate: contain (${hook}): IPv6 neighbour discovery passes`,
  allow: (hook: Hook, who: string, i: number) => `honeygate: contain (${hook}): ${who} allow[${i}]`,
  record: (hook: Hook, who: string, set: string) => `honeygate: contain (${hook}): ${who} record in ${set}`,
  drop: (hook: Hook, who: string) => `honeygate: contain (${hook}): ${who} drop`,
  sinkDirect: 'honeygate: contain (input): the sink takes redirected connections only',
  sinkPass: 'honeygate: contain (input): connections redirected to the sink pass',
  sinkAllow: (who: string, i: number) => `honeygate: contain (sink): ${who} allow[${i}] is not redirected`,
  sinkRedirect: (who: string) => `honeygate: contain (sink): ${who} new TCP connections go to the sink`,
} as const;

export type Hook = 'forward' | 'input';

export interface ContainRendered {
  sets: string[]; // set blocks (text)
  chains: string[]; // chain blocks (text lines)
  planChains: { name: string; type: string; hook: string; prio: number; rules: string[] }[];
  planSets: { name: string; type: 'ipv4_addr' | 'ipv6_addr' | 'ifname'; elements: string[] }[];
}

/** A honeypot match: the nft expression and its name in rule comments. */
interface Who {
  match: string;
  name: string;
  family: 4 | 6 | null; // null: both (an interface)
}

function allowMatch(a: ContainAllow, family: 4 | 6, addrs: string[] | null, rate = true): string {
  const parts: string[] = [];
  if (addrs) parts.push(`${family === 4 ? 'ip' : 'ip6'} daddr { ${addrs.join(', ')} }`);
  else parts.push(`meta nfproto ipv${family}`);
  parts.push(`meta l4proto { ${a.protocols.join(', ')} }`);
  if (a.ports) {
    const ports = a.ports.map((r) => (r.from === r.to ? String(r.from) : `${r.from}-${r.to}`));
    parts.push(`th dport { ${ports.join(', ')} }`);
  }
  if (a.rate && rate) parts.push(`limit rate ${a.rate.count}/${a.rate.unit}`);
  return parts.join(' ');
}

function setBlock(lines: string[]): string {
  return [...lines.map((l, i) => (i === 0 || i === lines.length - 1 ? `\t${l}` : `\t\t${l}`)), ''].join('\n');
}

/** The sets and chains for `contain`; `targets`: its Docker networks as resolved now. */
export function renderContain(contain: ContainConfig, targets: ContainTargets | undefined): ContainRendered {
  const out: ContainRendered = { sets: [], chains: [], planChains: [], planSets: [] };
  const who: Who[] = [];
  const bridges = [...new Set((targets?.networks ?? []).map((n) => n.bridge))].sort();
  if (bridges.length) {
    const elements = bridges.map((b) => `"${b}"`);
    out.sets.push(
      setBlock(['set contain_ifaces {', 'type ifname', `elements = { ${elements.join(', ')} }`, '}']),
    );
    out.planSets.push({ name: 'contain_ifaces', type: 'ifname', elements: bridges });
    who.push({ match: 'iifname @contain_ifaces', name: 'networks', family: null });
  }
  for (const family of [4, 6] as const) {
    const addrs = familyAddresses(contain.honeypots, family);
    if (!addrs?.length) continue; // a /0 is refused by the config check
    const name = `contain_v${family}`;
    const type = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
    out.sets.push(
      setBlock([
        `set ${name} {`,
        `type ${type}`,
        'flags interval',
        `elements = { ${addrs.join(', ')} }`,
        '}',
      ]),
    );
    out.planSets.push({ name, type, elements: addrs });
    who.push({
      match: `${family === 4 ? 'ip' : 'ip6'} saddr @${name}`,
      name: `honeypots IPv${family}`,
      family,
    });
  }
  for (const s of EGRESS_SETS) {
    // The timeout only frees memory: honeygate reads the counters every recordInterval.
    const timeout = Math.max(3600, Math.ceil((contain.recordIntervalMs * 10) / 1000));
    out.sets.push(
      setBlock([
        `set ${s.name} {`,
        `type ${egressSetShape(s).type}`,
        `size ${contain.sizes}`,
        'flags dynamic,timeout',
        `timeout ${timeout}s`,
        'counter',
        '}',
      ]),
    );
  }

  const comments = (targets?.missing ?? []).map((m) => `\t\t# network ${m.name} is NOT contained: ${m.why}`);
  for (const hook of ['forward', 'input'] as const) {
    const name = `contain_${hook}`;
    const rules: string[] = [];
    const lines: string[] = [
      `\tchain ${name} {`,
      `\t\ttype filter hook ${hook} priority filter - 10; policy accept;`,
      ...comments,
      '\t\t# replies to the flows that reached a honeypot, and their ICMP errors: nothing more to check',
    ];
    const add = (rule: string, comment: string) => {
      lines.push(`\t\t${rule} comment "${comment}"`);
      rules.push(comment);
    };
    add('ct state { established, related } accept', CONTAIN_RULE.replies(hook));
    add(
      'icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-report, mld2-listener-report } accept',
      CONTAIN_RULE.nd(hook),
    );
    if (contain.sink && hook === 'input') {
      const port = contain.sink.port;
      lines.push(
        `\t\t# the sink (port ${port}) answers only what contain_sink redirected: no one reaches it directly`,
      );
      add(`meta l4proto tcp th dport ${port} ct status ! dnat drop`, CONTAIN_RULE.sinkDirect);
      add(`meta l4proto tcp th dport ${port} ct status dnat accept`, CONTAIN_RULE.sinkPass);
    }
    for (const w of who) {
      lines.push(`\t\t# ${w.name}: new flows they start`);
      for (const { a, i, family, addrs, who } of allowed(contain, w)) {
        add(`${w.match} ${allowMatch(a, family, addrs)} accept`, CONTAIN_RULE.allow(hook, who, i));
      }
      for (const s of EGRESS_SETS) {
        if (w.family !== null && w.family !== s.family) continue;
        const { match, key } = egressSetShape(s);
        add(`${w.match} ${match} update @${s.name} { ${key} }`, CONTAIN_RULE.record(hook, w.name, s.name));
      }
      add(`${w.match} drop`, CONTAIN_RULE.drop(hook, w.name));
    }
    lines.push('\t}');
    out.chains.push(...lines, '');
    out.planChains.push({ name, type: 'filter', hook, prio: -10, rules });
  }
  if (contain.sink) renderSink(contain, who, out);
  return out;
}

/** Each allow-list entry `i` per address family that `w` and the entry's addresses have; `who` names it in comments. */
function* allowed(contain: ContainConfig, w: Who) {
  for (const [i, a] of contain.allow.entries()) {
    for (const family of [4, 6] as const) {
      if (w.family !== null && w.family !== family) continue;
      const addrs = familyAddresses(a.to as Cidr[], family);
      if (addrs?.length === 0) continue;
      yield { a, i, family, addrs, who: w.family === null ? `${w.name} IPv${family}` : w.name };
    }
  }
}

/**
 * contain.sink: a nat chain before Docker's (dstnat - 10) redirects each new TCP connection
 * a honeypot starts, at most contain.sink.rate of them, to honeygate's sink on this host, which
 * records its first bytes; the allow list is not redirected. It sees only a connection's first
 * packet, so replies to the flows that reached a honeypot never come here. Connections over
 * the rate are not redirected: contain_forward and contain_input drop and count them.
 */
function renderSink(contain: ContainConfig, who: Who[], out: ContainRendered): void {
  const sink = contain.sink!;
  const rules: string[] = [];
  const lines: string[] = [
    '\tchain contain_sink {',
    '\t\ttype nat hook prerouting priority dstnat - 10; policy accept;',
  ];
  const add = (rule: string, comment: string) => {
    lines.push(`\t\t${rule} comment "${comment}"`);
    rules.push(comment);
  };
  for (const w of who) {
    lines.push(`\t\t# ${w.name}: new TCP connections they start go to the sink (port ${sink.port})`);
    for (const { a, i, family, addrs, who } of allowed(contain, w)) {
      if (!a.protocols.includes('tcp')) continue;
      add(`${w.match} ${allowMatch(a, family, addrs, false)} accept`, CONTAIN_RULE.sinkAllow(who, i));
    }
    add(
      `${w.match} meta l4proto tcp limit rate ${sink.rate.count}/${sink.rate.unit} redirect to :${sink.port}`,
      CONTAIN_RULE.sinkRedirect(w.name),
    );
  }
  lines.push('\t}');
  out.chains.push(...lines, '');
  out.planChains.push({ name: 'contain_sink', type: 'nat', hook: 'prerouting', prio: -110, rules });
}
