// Config -> honeygate's nftables table and policy routing, as text and argv. Pure: no I/O,
// so the output is golden-tested (test/helpers/fixtures/firewall) and `show` prints exactly what
// `apply` loads. docs/firewall.md explains the design: hooks, priorities, mark math.
import { createHash } from 'node:crypto';
import type {
  Config,
  Divert,
  FirewallConfig,
  ListenerConfig,
  PortRange,
  TproxyConfig,
} from '../config/types.js';
import type { ContainTargets } from '../contain/docker.js';
import { renderContain } from '../contain/render.js';
import { type ListenerSets, renderKernel, type ServerUp } from '../kernel/render.js';
import { familyAddresses } from '../net/address.js';

export const TABLE = 'honeygate';
export const FAMILY = 'inet';

/** A port the firewall must not divert (lock-out protection), and why. */
export interface ProtectedPort {
  port: number;
  why: string;
}

export interface RenderOptions {
  protectedPorts: ProtectedPort[];
  contain?: ContainTargets; // contain.networks as resolved now (src/contain/docker.ts); absent: none found
  up?: ServerUp; // kernel routes: which servers the maps hold (health checks); absent: every one
}

/**
 * Rule comments: `verify` finds each rule by its comment, so they are stable identifiers
 * as well as words for whoever reads `nft list ruleset`.
 */
export const RULE = {
  reply: 'honeygate: replies to transparent upstream flows',
  transparent: 'honeygate: packets of transparent sockets',
  dnat: 'honeygate: already DNATed by another table',
  own: "honeygate: to honeygate's own listeners",
  ownUdp: "honeygate: to honeygate's own UDP listeners",
  ctMark: 'honeygate: mark transparent upstream flows',
  replyUdp: 'honeygate: replies to transparent upstream UDP flows',
  ctMarkUdp: 'honeygate: mark transparent upstream UDP flows',
  divert: (listener: string, family: 4 | 6) => `honeygate: divert to listener ${listener} (IPv${family})`,
} as const;

/** What `verify` expects to find in the live table (apart from the text itself). */
export interface RulesetPlan {
  hash: string; // sha256 of the table body, kept in the table's comment
  chains: { name: string; type: string; hook: string; prio: number; rules: string[] }[];
  sets: { name: string; type: 'inet_service' | 'ipv4_addr' | 'ipv6_addr' | 'ifname'; elements: string[] }[];
  families: (4 | 6)[]; // address families that need policy routing
}

// ---- port arithmetic ------------------------------------------------------------------

/** Sorted, with overlapping and adjacent ranges joined. */
export function mergeRanges(ranges: PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from || a.to - b.to);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else out.push({ from: r.from, to: r.to });
  }
  return out;
}

/** `ranges` without every port in `minus`; sorted and merged. */
export function subtractRanges(ranges: PortRange[], minus: PortRange[]): PortRange[] {
  let out = mergeRanges(ranges);
  for (const m of mergeRanges(minus)) {
    const next: PortRange[] = [];
    for (const r of out) {
      if (m.to < r.from || m.from > r.to) {
        next.push(r);
        continue;
      }
      if (r.from < m.from) next.push({ from: r.from, to: m.from - 1 });
      if (r.to > m.to) next.push({ from: m.to + 1, to: r.to });
    }
    out = next;
  }
  return out;
}

export interface DivertPorts {
  ports: PortRange[]; // what the rule matches
  protectedOut: ProtectedPort[]; // protected ports that would have been diverted and are not
  protectedKept: ProtectedPort[]; // protected ports diverted anyway: divert.ports names them alone
}

/**
 * divert.ports minus divert.exclude minus the protected ports. A protected port stays
 * diverted only when divert.ports names it by itself (`22`, not inside `1-65535`): asking
 * for it alone is asking for it on purpose.
 */
export function divertPorts(divert: Divert, protectedPorts: ProtectedPort[]): DivertPorts {
  const base = subtractRanges(divert.ports, divert.exclude);
  const inBase = (p: number) => base.some((r) => r.from <= p && p <= r.to);
  const protectedOut: ProtectedPort[] = [];
  const protectedKept: ProtectedPort[] = [];
  for (const p of uniquePorts(protectedPorts)) {
    if (!inBase(p.port)) continue;
    if (divert.ports.some((r) => r.from === p.port && r.to === p.port)) protectedKept.push(p);
    else protectedOut.push(p);
  }
  const ports = subtractRanges(
    base,
    protectedOut.map((p) => ({ from: p.port, to: p.port })),
  );
  return { ports, protectedOut, protectedKept };
}

/** One entry per port (reasons joined), sorted. */
export function uniquePorts(ports: ProtectedPort[]): ProtectedPort[] {
  const byPort = new Map<number, string[]>();
  for (const p of ports) {
    const whys = byPort.get(p.port) ?? [];
    if (!whys.includes(p.why)) whys.push(p.why);
    byPort.set(p.port, whys);
  }
  return [...byPort.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([port, whys]) => ({ port, why: whys.join('; ') }));
}

export function formatRange(r: PortRange): string {
  return r.from === r.to ? String(r.from) : `${r.from}-${r.to}`;
}

/**
 * Ports honeygate's own `bind` listeners hold on addresses other than loopback. Connections
 * to this host's addresses on them must reach those listeners: tproxy would otherwise hand
 * them to the tproxy socket (an inbound-PROXY listener's load balancer would then look like
 * the attacker, its header like the attacker's bytes).
 */
export function ownListenerPorts(config: Config, transport: 'tcp' | 'udp' = 'tcp'): PortRange[] {
  const ports: PortRange[] = [];
  for (const l of config.listeners) {
    if (l.tproxy || transportOf(l) !== transport) continue;
    for (const e of l.bind) {
      if (e.port === 0 || /^127\./.test(e.host) || e.host === '::1') continue;
      ports.push({ from: e.port, to: e.port });
    }
  }
  return mergeRanges(ports);
}

/** A listener's transport; configs assembled before the key existed are TCP. */
export function transportOf(l: ListenerConfig): 'tcp' | 'udp' {
  return l.transport ?? 'tcp';
}

/** True when some listener takes UDP: transparent upstream UDP flows need their reply rules. */
export function hasUdp(config: Config): boolean {
  return config.listeners.some((l) => transportOf(l) === 'udp');
}

// ---- address arithmetic ---------------------------------------------------------------

// ---- marks ----------------------------------------------------------------------------

export function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}

/** `KEY set KEY | MARK`, or with a wider mask `KEY set KEY & ~MASK | MARK`: only MASK's bits change. */
function setMark(key: 'meta mark' | 'ct mark', fw: FirewallConfig): string {
  if (fw.mask === fw.mark) return `${key} set ${key} | ${hex(fw.mark)}`;
  return `${key} set ${key} & ${hex(~fw.mask)} | ${hex(fw.mark)}`;
}

// ---- the ruleset ----------------------------------------------------------------------

/** True when the config needs honeygate's table at all. */
export function needsFirewall(config: Config): boolean {
  return (
    divertedListeners(config).length > 0 || transparentFamilies(config).length > 0 || config.contain != null
  );
}

/** A tproxy listener whose connections honeygate's own rules divert. */
export type DivertedListener = ListenerConfig & { tproxy: TproxyConfig & { divert: Divert } };

/**
 * The tproxy listeners with `divert`; the others get their connections from TPROXY rules
 * managed elsewhere, and honeygate renders nothing for them.
 */
export function divertedListeners(config: Config): DivertedListener[] {
  return config.listeners.filter((l): l is DivertedListener => !!l.tproxy?.divert);
}

function transparentFamilies(config: Config): (4 | 6)[] {
  const out = new Set<4 | 6>();
  for (const b of config.backends.values()) {
    if (b.source !== 'transparent') continue;
    for (const s of b.servers) out.add(s.host.includes(':') ? 6 : 4);
  }
  return [...out];
}

/** Set names come from listener names; nft identifiers take letters, digits and `_`. */
function setBaseNames(names: string[]): string[] {
  const used = new Set<string>();
  return names.map((n, i) => {
    let base = n.replace(/[^A-Za-z0-9_]/g, '_');
    if (!/^[A-Za-z]/.test(base)) base = `l${base}`;
    if (used.has(base)) base = `${base}_${i}`;
    used.add(base);
    return base;
  });
}

interface Rendered {
  text: string;
  plan: RulesetPlan;
}

/**
 * The complete input for `nft -f`: creates, empties and refills `table inet honeygate` in
 * one transaction (declare, delete, declare again: deleting a table that may not exist
 * fails, deleting one just declared does not). Empty when the config needs no rules.
 */
export function renderRuleset(config: Config, opts: RenderOptions): string {
  return render(config, opts).text;
}

export function planRuleset(config: Config, opts: RenderOptions): RulesetPlan | null {
  return needsFirewall(config) ? render(config, opts).plan : null;
}

function render(config: Config, opts: RenderOptions): Rendered {
  const fw = config.firewall;
  const plan: RulesetPlan = { hash: '', chains: [], sets: [], families: [] };
  if (!needsFirewall(config)) return { text: '', plan };
  const families = new Set<4 | 6>(transparentFamilies(config));
  const protectedAll = uniquePorts(opts.protectedPorts);

  const sets: string[] = [];
  const divertRules: string[] = [];
  const divertComments: string[] = [];
  const diverting = new Set<'tcp' | 'udp'>(); // transports some divert rule takes
  const tproxies = divertedListeners(config);
  const bases = setBaseNames(tproxies.map((l) => l.name));
  const listenerSets: ListenerSets[] = [];
  tproxies.forEach((l, i) => {
    const t = l.tproxy!;
    const base = bases[i]!;
    const proto = transportOf(l);
    const { ports, protectedOut, protectedKept } = divertPorts(t.divert, protectedAll);
    const notes: string[] = [];
    if (t.divert.exclude.length) notes.push(`excluded ${t.divert.exclude.map(formatRange).join(', ')}`);
    if (protectedOut.length) notes.push(`protected ${protectedOut.map((p) => p.port).join(', ')}`);
    for (const p of protectedKept)
      notes.push(`${p.port} diverted although protected (${p.why}): divert.ports names it`);
    divertRules.push(
      `\t\t# listener ${l.name}${proto === 'udp' ? ' (UDP)' : ''}${notes.length ? `: ${notes.join('; ')}` : ''}`,
    );
    if (ports.length === 0) {
      divertRules.push('\t\t# nothing left to divert: every port is excluded or protected');
      return;
    }
    const portSet = `${base}_ports`;
    const elements = ports.map(formatRange);
    sets.push(renderSet(portSet, 'inet_service', elements));
    plan.sets.push({ name: portSet, type: 'inet_service', elements });
    const ifaces = `{ ${t.divert.interfaces.map((n) => `"${n}"`).join(', ')} }`;
    const mine: ListenerSets = { listener: l, ports: portSet, addresses: {}, families: [] };
    listenerSets.push(mine);
    for (const family of [4, 6] as const) {
      const to = t.addresses.find((a) => a.includes(':') === (family === 6));
      if (!to) continue;
      const ip = family === 4 ? 'ip' : 'ip6';
      // Without an address match the family must still be pinned: `tproxy ip` needs IPv4.
      let match = `meta nfproto ipv${family} meta l4proto ${proto}`;
      if (t.divert.addresses) {
        const addrs = familyAddresses(t.divert.addresses, family);
        if (addrs?.length === 0) continue; // addresses named, none of this family
        if (addrs) {
          const set = `${base}_v${family}`;
          const type = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
          sets.push(renderSet(set, type, addrs));
          plan.sets.push({ name: set, type, elements: addrs });
          match = `meta l4proto ${proto} ${ip} daddr @${set}`;
          mine.addresses[family] = set;
        }
      }
      mine.families.push(family);
      const target = family === 4 ? `${to}:${t.port}` : `[${to}]:${t.port}`;
      const comment = RULE.divert(l.name, family);
      divertRules.push(
        `\t\tiifname ${ifaces} ${match} ${proto} dport @${portSet} tproxy ${ip} to ${target} ${setMark('meta mark', fw)} accept comment "${comment}"`,
      );
      divertComments.push(comment);
      diverting.add(proto);
      families.add(family);
    }
  });

  const own = diverting.has('tcp') ? ownListenerPorts(config).map(formatRange) : [];
  const ownUdp = diverting.has('udp') ? ownListenerPorts(config, 'udp').map(formatRange) : [];
  const ownRule: string[] = [];
  if (own.length) {
    // not a listener's set: those end in _ports, _v4 or _v6
    sets.push(renderSet('own_listeners', 'inet_service', own));
    plan.sets.push({ name: 'own_listeners', type: 'inet_service', elements: own });
    ownRule.push(
      "\t\t# this host's addresses on the ports of honeygate's own bind listeners: those listeners take them",
      `\t\tmeta l4proto tcp fib daddr type local tcp dport @own_listeners accept comment "${RULE.own}"`,
    );
  }
  if (ownUdp.length) {
    sets.push(renderSet('own_udp_listeners', 'inet_service', ownUdp));
    plan.sets.push({ name: 'own_udp_listeners', type: 'inet_service', elements: ownUdp });
    ownRule.push(
      `\t\tmeta l4proto udp fib daddr type local udp dport @own_udp_listeners accept comment "${RULE.ownUdp}"`,
    );
  }
  // UDP has no connection for `socket transparent` to find: replies of transparent upstream
  // UDP flows come home by their conntrack mark alone, set only on the flows honeygate
  // originates (ct direction original). A datagram honeygate sends back to an attacker
  // belongs to the attacker's entry (reply direction) and leaves it unmarked, so the
  // attacker's later datagrams keep meeting the divert rule.
  const udp = hasUdp(config);
  const replyUdp = udp
    ? [
        `\t\tmeta l4proto udp ct mark & ${hex(fw.mask)} == ${hex(fw.mark)} ${setMark('meta mark', fw)} accept comment "${RULE.replyUdp}"`,
      ]
    : [];
  const ctMarkUdp = udp
    ? [
        `\t\tmeta l4proto udp ct direction original socket transparent 1 ${setMark('ct mark', fw)} comment "${RULE.ctMarkUdp}"`,
      ]
    : [];
  const prerouting = [
    '\tchain prerouting {',
    '\t\ttype filter hook prerouting priority dstnat + 10; policy accept;',
    '\t\t# replies of our transparent upstream flows go home (also those another table DNATed)',
    `\t\tmeta l4proto tcp ct mark & ${hex(fw.mask)} == ${hex(fw.mark)} ${setMark('meta mark', fw)} accept comment "${RULE.reply}"`,
    ...replyUdp,
    '\t\t# later packets of flows a transparent socket owns; not a new SYN: it would meet the',
    '\t\t# TIME_WAIT socket of an earlier flow from the same port and get an ACK, not a SYN-ACK;',
    '\t\t# tproxy hands it to the listener instead',
    `\t\tmeta l4proto tcp tcp flags & (syn | ack) != syn socket transparent 1 ${setMark('meta mark', fw)} accept comment "${RULE.transparent}"`,
    "\t\t# flows another table DNATed at dstnat (Docker's published ports) keep going",
    `\t\tct status dnat accept comment "${RULE.dnat}"`,
    ...ownRule,
    ...divertRules,
    '\t}',
  ];
  const output = [
    '\tchain output {',
    '\t\ttype route hook output priority mangle + 10; policy accept;',
    "\t\t# a transparent upstream flow's conntrack entry carries the mark, so its replies come home",
    '\t\t# even when another table DNATed it here (a Docker-published port) and un-NATs the replies late',
    `\t\tmeta l4proto tcp socket transparent 1 ${setMark('ct mark', fw)} comment "${RULE.ctMark}"`,
    ...ctMarkUdp,
    '\t}',
  ];
  const contain = config.contain ? renderContain(config.contain, opts.contain) : null;
  if (contain) {
    sets.push(...contain.sets);
    plan.sets.push(...contain.planSets);
  }
  const kernel = renderKernel(config, listenerSets, opts.up);
  const body = [
    ...sets,
    ...kernel.text,
    ...prerouting,
    '',
    ...output,
    ...(contain ? ['', ...contain.chains] : []),
  ]
    .join('\n')
    .trimEnd();
  // The hash names the config's table, not the servers' health: maps as if every server were up.
  const hashed = opts.up
    ? [
        ...sets,
        ...renderKernel(config, listenerSets).text,
        ...prerouting,
        '',
        ...output,
        ...(contain ? ['', ...contain.chains] : []),
      ]
        .join('\n')
        .trimEnd()
    : body;
  plan.hash = createHash('sha256').update(hashed).digest('hex').slice(0, 16);
  plan.chains = [
    {
      name: 'prerouting',
      type: 'filter',
      hook: 'prerouting',
      prio: -90,
      rules: [
        RULE.reply,
        ...(udp ? [RULE.replyUdp] : []),
        RULE.transparent,
        RULE.dnat,
        ...(own.length ? [RULE.own] : []),
        ...(ownUdp.length ? [RULE.ownUdp] : []),
        ...divertComments,
      ],
    },
    {
      name: 'output',
      type: 'route',
      hook: 'output',
      prio: -140,
      rules: [RULE.ctMark, ...(udp ? [RULE.ctMarkUdp] : [])],
    },
    ...(kernel.chain ? [kernel.chain] : []),
    ...(contain?.planChains ?? []),
  ];
  plan.families = [...families].sort();

  const protectedLine = protectedAll.length
    ? protectedAll.map((p) => `${p.port} (${p.why})`).join(', ')
    : 'none';
  const text = [
    '# honeygate: generated by `honeygate firewall apply`; applying it again replaces the table in one transaction',
    `# lock-out protection, never diverted unless divert.ports names the port alone: ${protectedLine}`,
    `# policy routing: ip rule fwmark ${hex(fw.mark)}/${hex(fw.mask)} lookup ${fw.table} (pref ${fw.rulePriority}); table ${fw.table}: local default dev lo`,
    `table ${FAMILY} ${TABLE} {}`,
    `delete table ${FAMILY} ${TABLE}`,
    `table ${FAMILY} ${TABLE} {`,
    `\tcomment "${tableComment(plan.hash)}"`,
    body,
    '}',
    '',
  ].join('\n');
  return { text, plan };
}

export function tableComment(hash: string): string {
  return `honeygate sha256:${hash}`;
}

function renderSet(name: string, type: string, elements: string[]): string {
  return [
    `\tset ${name} {`,
    `\t\ttype ${type}`,
    '\t\tflags interval',
    `\t\telements = { ${elements.join(', ')} }`,
    '\t}',
    '',
  ].join('\n');
}

// ---- policy routing -------------------------------------------------------------------

export interface RoutingEntry {
  family: 4 | 6;
  kind: 'rule' | 'route';
  argv: string[]; // `ip ... add ...`; the same with `del` removes it
}

/** The `ip rule` / `ip route` commands honeygate needs, per address family its rules use. */
export function renderRouting(config: Config, opts: RenderOptions = { protectedPorts: [] }): RoutingEntry[] {
  const plan = planRuleset(config, opts);
  if (!plan) return [];
  return plan.families.flatMap((family) => routingEntries(config.firewall, family));
}

export function routingEntries(fw: FirewallConfig, family: 4 | 6): RoutingEntry[] {
  const f = `-${family}`;
  return [
    {
      family,
      kind: 'rule',
      argv: [
        'ip',
        f,
        'rule',
        'add',
        'pref',
        String(fw.rulePriority),
        'fwmark',
        `${hex(fw.mark)}/${hex(fw.mask)}`,
        'lookup',
        String(fw.table),
      ],
    },
    {
      family,
      kind: 'route',
      argv: [
        'ip',
        f,
        'route',
        'add',
        'local',
        family === 4 ? '0.0.0.0/0' : '::/0',
        'dev',
        'lo',
        'table',
        String(fw.table),
      ],
    },
  ];
}

/** The same command with `add` turned into `del`. */
export function deleteArgv(e: RoutingEntry): string[] {
  return e.argv.map((a, i) => (i === 3 && a === 'add' ? 'del' : a));
}

// ---- lock-out protection --------------------------------------------------------------

export interface SshdListener {
  address: string; // as ss prints it: 0.0.0.0:22, [::]:22, *:22
  port: number;
}

/**
 * The TCP listeners of sshd in `ss -ltnHe` output: the lines whose socket inode (`ino:N`) an
 * sshd process holds (`sshdInodes`). A line of `ss -ltnpH` naming sshd counts too.
 */
export function parseSshdListeners(
  ssOutput: string,
  sshdInodes: ReadonlySet<string> = new Set(),
): SshdListener[] {
  const out: SshdListener[] = [];
  for (const line of ssOutput.split('\n')) {
    const ino = /\bino:(\d+)/.exec(line)?.[1];
    // sshd anywhere in the list: with socket activation systemd (pid 1) may be listed first
    if (!(ino && sshdInodes.has(ino)) && !/users:\(.*\("sshd",/.test(line)) continue;
    // State Recv-Q Send-Q Local:Port Peer:Port Process
    const local = line.trim().split(/\s+/)[3];
    const m = local ? /:(\d+)$/.exec(local) : null;
    if (m) out.push({ address: local!, port: Number(m[1]) });
  }
  return out;
}

/** The admin API's port and sshd's ports (22 when no sshd was found), each with the reason. */
export function protectedFrom(config: Config, sshd: SshdListener[]): ProtectedPort[] {
  const out: ProtectedPort[] = [];
  if (config.admin) {
    const { host, port } = config.admin.listen;
    out.push({ port, why: `admin API on ${host.includes(':') ? `[${host}]` : host}:${port}` });
  }
  // A hub's tunnel port: diverting it would cut every sensor off.
  for (const l of config.listeners) {
    const t = l.tunnel?.listen;
    if (t)
      out.push({
        port: t.port,
        why: `tunnel listener ${l.name} on ${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`,
      });
  }
  if (sshd.length === 0) out.push({ port: 22, why: 'SSH: the default port, no listening sshd found' });
  const byPort = new Map<number, string[]>();
  for (const s of sshd) byPort.set(s.port, [...(byPort.get(s.port) ?? []), s.address]);
  for (const [port, addrs] of byPort) out.push({ port, why: `sshd listens on ${addrs.join(', ')}` });
  return uniquePorts(out);
}
