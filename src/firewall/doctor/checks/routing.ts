// Policy routing and the routes around it: honeygate's ip rule and local route, rules that
// come first, the source checks (src_valid_mark, rp_filter), the divert interfaces, IPv6,
// and the way to and back from transparent servers.
import { formatEndpoint, ipFamily } from '../../../net/address.js';
import { divertedListeners, hex, RULE, routingEntries } from '../../render.js';
import { type Facts, type IpRule, transparentServers } from '../facts.js';
import { type Check, entryTarget, type Finding, fail, joinWords, ok, ruleText, warn } from '../finding.js';
import {
  divertInterfaces,
  earlierRules,
  effective,
  expandInterfaces,
  honeypotInterfaces,
  localAddress,
  num,
  ourRuleState,
  ourTable,
  publishedBy,
  rulesRead,
  sysctlName,
} from '../query.js';

export const ipRule: Check = (f) => {
  const C = 'ip-rule';
  if (!f.plan) return [];
  const fw = f.config.firewall;
  const out: Finding[] = [];
  const families = f.plan.families;
  for (const family of families) {
    const add = routingEntries(fw, family)[0]!.argv.join(' ');
    const what =
      `\`ip -${family} rule\` pref ${fw.rulePriority} fwmark ${hex(fw.mark)}/${hex(fw.mask)} ` +
      `lookup ${fw.table}`;
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
          `IPv${family}: honeygate's rule is at pref ${prefs}, the config says ` +
            `${fw.rulePriority} (apply and remove look for it at ${fw.rulePriority})`,
          `ip -${family} rule del pref ${others[0]!.priority} && ${add}`,
        ),
      );
    } else {
      const counterpart = families.length > 1 && ourRuleState(f, family === 4 ? 6 : 4).exact;
      out.push(
        fail(
          C,
          `IPv${family}: ${what} is missing` +
            (counterpart ? ` (the IPv${family === 4 ? 6 : 4} one is there)` : '') +
            ': packets honeygate marks are routed like any other, so diverted ' +
            'connections never reach it and transparent upstream replies do not come back',
          `${add}   # or: honeygate firewall apply -c ${f.file}`,
        ),
      );
    }
  }
  return out;
};

export const ipRoute: Check = (f) => {
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
          `IPv${family}: table ${fw.table} has no \`local default dev lo\` ` +
            `route: marked packets match honeygate's ip rule, find no route there ` +
            'and fall through to the main table, so diverted connections are ' +
            'forwarded or dropped instead of reaching honeygate',
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
export const ipRuleOrder: Check = (f) => {
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
          `IPv${family}: rule \`${ruleText(r)}\` comes before honeygate's (pref ${fw.rulePriority}) ` +
            "and matches its marked packets: diverted connections to addresses that are not this host's " +
            (drops ? 'are dropped' : `follow table ${r.table}'s default route`) +
            ' instead of reaching honeygate',
          `set firewall.rulePriority below ${r.priority} in ${f.file}, then: ` +
            `honeygate firewall remove -c OLD_FILE; honeygate firewall apply -c ${f.file}`,
        ),
      );
    }
  }
  return out;
};

export const srcValidMark: Check = (f) => {
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
          ? `src_valid_mark is 1 on ${joinWords(note)}, but accept_local=1 with ` +
              'rp_filter 0 or 2 lets marked packets pass'
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
      `src_valid_mark is 1 on ${joinWords(roles)}${viaAll}: the kernel's ` +
        `source check then looks the sender up with honeygate's mark, finds ` +
        `table ${f.config.firewall.table}'s local route and drops the packet ` +
        'as a martian source, whatever rp_filter says — they vanish without ' +
        'a trace (net.ipv4.conf.all.log_martians=1 logs them). VPN tools ' +
        'such as wg-quick set it; if one needs it, keep it and set accept_local=1 ' +
        'with rp_filter 0 or 2 on these interfaces instead',
      `sysctl -w ${set.map((d) => `${sysctlName(d, 'src_valid_mark')}=0`).join(' ')}`,
    ),
  ];
};

export const rpFilter: Check = (f) => {
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
        `rp_filter is 1 (strict) on ${d}, but the default route leaves by ` +
          `${joinWords([...defaultDevs])}: packets from attackers whose address ` +
          'routes back through another interface are dropped before honeygate sees them',
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
        ? ' (there is no IPv4 default route: packets from sources with no route ' + 'back fail the check)'
        : '';
    out.push(
      ok(
        C,
        `${values.join(', ') || 'no interfaces'}: the reverse-path check ` +
          'ignores marks while src_valid_mark is 0, so diverted packets and ' +
          `honeypot replies pass it like any other${noDefault}`,
      ),
    );
  }
  return out;
};

export const interfaces: Check = (f) => {
  const C = 'interfaces';
  if (!f.links) return [];
  const out: Finding[] = [];
  for (const l of divertedListeners(f.config)) {
    for (const name of l.tproxy!.divert.interfaces) {
      if (expandInterfaces(f, [name]).length === 0) {
        out.push(
          warn(
            C,
            `listener ${l.name} diverts from ${name}, but ` +
              (name.endsWith('*') ? 'no interface here matches it' : 'there is no such interface here') +
              ': ' +
              'the rule matches nothing until one appears (nft matches iifname by name)',
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

export const ipv6: Check = (f) => {
  const C = 'ipv6';
  if (num(f, 'net/ipv6/conf/all/disable_ipv6') === 1) return [];
  const out: Finding[] = [];
  for (const l of divertedListeners(f.config)) {
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
        `listener ${l.name} diverts IPv4 only, but ${joinWords(global)} ` +
          (global.length > 1 ? 'have global IPv6 addresses' : 'has a global IPv6 address') +
          ': ' +
          `connections over IPv6 bypass honeygate (they reach this host's own ` +
          'services, or nothing)',
        `${todo.join(' and ')} in ${f.file}, then: honeygate firewall apply -c ${f.file}`,
      ),
    );
  }
  return out;
};

export const transparentBackends: Check = (f) => {
  const C = 'transparent-backends';
  const servers = transparentServers(f.config);
  if (servers.length === 0 || !rulesRead(f)) return [];
  const out: Finding[] = [];
  const good: string[] = [];
  const ctRule = ourTable(f)?.chains.get('output')?.rules.includes(RULE.ctMark) ?? false;
  for (const s of servers) {
    const name = `${s.backend} server ${formatEndpoint(s)}`;
    const info = f.servers.get(s.host);
    const published = publishedBy(f, s.host, s.port);
    if (published) {
      const explain =
        `${name} is a port that ${published.where} DNATs to ${entryTarget(published)} ` +
        `(a Docker-published port): the container's replies are un-NATed ` +
        `only after routing, so without honeygate's output rule that marks ` +
        `such connections' conntrack entries they would be forwarded straight ` +
        `to the attacker, leaking the container's address and killing the session`;
      const target = published.toHost
        ? formatEndpoint({ host: published.toHost, port: published.toPorts?.from ?? s.port })
        : 'CONTAINER_IP:PORT';
      const fix =
        `dial the container's own address: servers: ["${target}"] in backend ` + `${s.backend} of ${f.file}`;
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
          `${name} is an address of this host: a honeypot here answers the ` +
            `attacker's address by the main routing table, so its replies leave ` +
            'for the attacker instead of returning to honeygate and the connection never opens',
          'run the honeypot in a container or namespace with its own address ' +
            `and list that address, or use source: proxy-v2 for backend ${s.backend} in ${f.file}`,
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
        `transparent servers reached through ${good.join(', ')}; their replies ` +
          'to attackers must be routed back through this host (true when it ' +
          'is their default gateway)',
      ),
    );
  }
  return out;
};

/** Whether `r` sends the packets it matches to a table whose default route is local. */
function deliversLocally(f: Facts, family: 4 | 6, r: IpRule): boolean {
  if (r.fwmark === null || r.not || r.action || !r.table) return false;
  const routes = f.routes.get(`${family} ${r.table}`) ?? [];
  return routes.some((x) => x.type === 'local' && x.dst === 'default');
}

/**
 * tproxy listeners without `divert`: TPROXY rules managed elsewhere (by hand, another tool,
 * the orchestrator) send them connections. honeygate renders nothing for them, so it looks
 * for those rules and for the policy routing that delivers marked packets to this host,
 * and says what it cannot know (which mark those rules set, rules in other namespaces).
 */
export const externalTproxy: Check = (f) => {
  const C = 'external-tproxy';
  const out: Finding[] = [];
  for (const l of f.config.listeners) {
    const t = l.tproxy;
    if (!t || t.divert) continue;
    const sockets = joinWords(t.addresses.map((host) => formatEndpoint({ host, port: t.port })));
    const feeding = f.foreign.nat.filter(
      (e) =>
        e.kind === 'tproxy' &&
        (e.toPorts === null || (e.toPorts.from <= t.port && t.port <= e.toPorts.to)) &&
        (e.toHost === null || t.addresses.includes(e.toHost)),
    );
    if (!rulesRead(f)) {
      // nftables says why (check nftables); the routing below can still be read
    } else if (feeding.length) {
      out.push(
        ok(
          C,
          `listener ${l.name} (${sockets}) has no divert: honeygate adds no rules for it, and ` +
            `${joinWords(feeding.map((e) => e.where))} TPROXY${feeding.length > 1 ? '' : 's'} connections to it`,
        ),
      );
    } else {
      out.push(
        warn(
          C,
          `listener ${l.name} (${sockets}) has no divert, and no TPROXY rule readable here sends ` +
            `connections to port ${t.port}: it receives nothing until rules managed elsewhere do ` +
            '(rules loaded later or in another network namespace cannot be seen)',
          `e.g.: nft add rule inet YOUR_TABLE YOUR_PREROUTING_CHAIN iifname "eth0" meta l4proto tcp ` +
            `tproxy ip to ${t.addresses.find((a) => ipFamily(a) === 4) ?? '127.0.0.1'}:${t.port} meta mark set 0x1 accept`,
        ),
      );
    }
    for (const family of [...new Set(t.addresses.map(ipFamily))].sort()) {
      const rules = f.rules[family];
      if (rules === null) {
        out.push(warn(C, `IPv${family}: cannot list ip rules: ${f.rulesError[family]}`));
        continue;
      }
      const local = rules.filter((r) => deliversLocally(f, family, r));
      const marks = f.foreign.marks.filter(
        (m) => m.key === 'meta' && feeding.some((e) => e.where === m.where),
      );
      const matched = local.filter((r) => marks.some((m) => (m.set & r.fwmask) >>> 0 === r.fwmark));
      if (matched.length) {
        out.push(
          ok(
            C,
            `IPv${family}: the TPROXY rule's chain sets a mark that \`${ruleText(matched[0]!)}\` ` +
              `delivers to this host (table ${matched[0]!.table}: local default): replies and diverted ` +
              `packets to other addresses reach listener ${l.name}`,
          ),
        );
      } else if (local.length) {
        out.push(
          ok(
            C,
            `IPv${family}: ${joinWords(local.map((r) => `\`${ruleText(r)}\``))} deliver${local.length > 1 ? '' : 's'} ` +
              'marked packets to this host (a local default route); honeygate cannot tell whether ' +
              `the TPROXY rules for listener ${l.name} set that mark: they must, for connections ` +
              "to addresses that are not this host's",
          ),
        );
      } else {
        const lo = family === 4 ? '0.0.0.0/0' : '::/0';
        out.push(
          warn(
            C,
            `IPv${family}: no ip rule sends marked packets to a table with a local default route: ` +
              `connections that TPROXY rules managed elsewhere divert to listener ${l.name} reach it ` +
              "only when addressed to this host's own addresses; the others are routed on",
            `ip -${family} rule add fwmark 0x1/0x1 lookup 100 && ip -${family} route add local ${lo} dev lo table 100` +
              '   # with the TPROXY rule setting mark 0x1',
          ),
        );
      }
    }
  }
  return out;
};
