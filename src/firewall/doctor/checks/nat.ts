// Other tables on the paths of diverted connections: DNAT, REDIRECT and TPROXY on diverted
// ports, the NAT rules that feed originalDst listeners, and input chains that drop by default.
import { ipFamily } from '../../../net/address.js';
import { divertedListeners, divertPorts, formatRange, hex } from '../../render.js';
import { type Check, entryTarget, type Finding, fail, joinWords, ok, portsText, warn } from '../finding.js';
import {
  cidrsOverlap,
  effective,
  expandInterfaces,
  iifMatches,
  intersect,
  localAddress,
  ourPrio,
  rulesRead,
  sysctlName,
} from '../query.js';

/** DNAT / REDIRECT / TPROXY in other tables on ports honeygate diverts. */
export const nat: Check = (f) => {
  const C = 'nat';
  // other tables' rules are read for TCP only (foreign-rules.ts): UDP listeners are not compared
  const listeners = divertedListeners(f.config).filter((l) => l.transport !== 'udp');
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
        ? `tcp port${overlap.length > 1 || overlap[0]!.from !== overlap[0]!.to ? 's' : ''} ` +
          `${portsText(overlap)}`
        : 'every tcp port';
      const after = pre.some((h) => h.prio >= ourPrio);
      const exclude =
        `add ${portsText(overlap)} to divert.exclude of listener ${l.name} ` +
        `in ${f.file}, then: honeygate firewall apply -c ${f.file}`;
      if (e.kind === 'tproxy') {
        out.push(
          warn(
            C,
            `${e.where} TPROXYs ${ports} to ${entryTarget(e)} as well as honeygate ` +
              `(listener ${l.name}): two transparent proxies compete for these ` +
              'connections, and which one gets each depends on rule order and marks',
            `remove the other TPROXY rule, or ${exclude}`,
          ),
        );
      } else if (after) {
        out.push(
          warn(
            C,
            `${e.where} (priority ${pre.map((h) => h.prio).join(', ')}) ` +
              `${e.kind === 'dnat' ? 'DNATs' : 'REDIRECTs'} ` +
              `${ports} to ${entryTarget(e)}, but runs after honeygate's divert ` +
              `(priority dstnat + 10 = ${ourPrio}): honeygate's divert takes these ` +
              'connections first and this rule then rewrites them, so they can ' +
              `reach neither honeygate nor ${entryTarget(e)} (on Linux 6.18 they time out)`,
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
            `${e.where} ${e.kind === 'dnat' ? 'DNATs' : 'REDIRECTs'} ${ports} ` +
              `to ${entryTarget(e)}, listener ${originalDstPorts.get(e.toPorts.from)} ` +
              `(originalDst): honeygate's divert lets them pass (ct status dnat) ` +
              'and that listener takes them',
          ),
        );
      } else {
        out.push(
          ok(
            C,
            `${e.where} ${e.kind === 'dnat' ? 'DNATs' : 'REDIRECTs'} ${ports} ` +
              `(diverted by listener ${l.name}) to ${entryTarget(e)}: by design ` +
              `these connections pass honeygate (its rule \`ct status dnat accept\`) ` +
              `and go there with the client's address; honeygate does not see them`,
          ),
        );
      }
    }
  }
  if (out.length === 0)
    out.push(ok(C, 'no other table DNATs, REDIRECTs or TPROXYs a port honeygate diverts'));
  return out;
};

// route_localnet does not matter to TPROXY: the tproxy statement only picks the listening
// socket by the given address (127.0.0.1:PORT) and leaves the packet's destination as it was,
// so routing never sees a 127/8 destination (checked: diversion works with route_localnet 0).
// It matters to `originalDst` listeners: a DNAT to 127.0.0.1 from another interface rewrites
// the destination to 127/8, which the kernel drops as martian unless route_localnet is 1; and
// REDIRECT rewrites to the incoming interface's primary address, which a listener bound to
// 127.0.0.1 does not receive (the client gets a reset).
export const originalDst: Check = (f) => {
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
          `listener ${l.name} reads SO_ORIGINAL_DST, but no REDIRECT or DNAT ` +
            `rule here sends connections to port ${ports[0]}: it only sees connections ` +
            'made to it directly',
          'add one in your own nat table, e.g.: iptables -t nat -A PREROUTING ' +
            `-i eth0 -p tcp --dport 8000:8099 -j REDIRECT --to-ports ${ports[0]}`,
        ),
      );
      continue;
    }
    for (const e of hits) {
      if (e.kind === 'redirect' && loopbackOnly) {
        out.push(
          fail(
            C,
            `${e.where} REDIRECTs to port ${formatRange(e.toPorts!)}, but listener ` +
              `${l.name} binds only ${l.bind[0]!.host}: REDIRECT rewrites the destination ` +
              'to the primary address of the interface the packet came in on, so ' +
              'these connections are refused',
            `bind listener ${l.name} to "0.0.0.0:${ports[0]}" in ${f.file} (originalDst ` +
              'still reports the original destination)',
          ),
        );
      } else if (e.kind === 'dnat' && e.toHost && /^127\./.test(e.toHost)) {
        const devs = e.iif && !e.iif.negated ? expandInterfaces(f, e.iif.names) : nonLo;
        const off = devs.filter((d) => effective(f, d, 'route_localnet') === 0);
        if (off.length === 0) {
          out.push(
            ok(
              C,
              `${e.where} DNATs to ${entryTarget(e)} (listener ${l.name}); route_localnet ` +
                'is 1 where it applies',
            ),
          );
        } else {
          out.push(
            fail(
              C,
              `${e.where} DNATs to ${entryTarget(e)} (listener ${l.name}), but ` +
                `route_localnet is 0 on ${joinWords(off)}: the kernel drops packets ` +
                'to 127/8 that arrive from outside as martians. route_localnet=1 ' +
                'also lets neighbours reach other services bound to 127.0.0.1; binding ' +
                'the listener to 0.0.0.0 and using REDIRECT avoids it',
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
export const input: Check = (f) => {
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
        : // quoted: & would background it
          `nft insert rule ${nft ? `${nft[1]} ${nft[2]} ${nft[3]}` : 'FAMILY TABLE CHAIN'} ` +
          `'meta mark & ${hex(fw.mask)} == ${hex(fw.mark)} accept'`;
    out.push(
      warn(
        C,
        `${d.where} ${d.how}: connections honeygate diverts are delivered ` +
          'to this host through the input hook, addressed to whatever port ' +
          'the attacker chose, so unless a rule there accepts them (by mark, ' +
          'interface or port) new connections to diverted ports never reach ' +
          `honeygate; an accept in honeygate's own table cannot override it`,
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
          ? `${joinWords(excepted)} drop${excepted.length > 1 ? '' : 's'} by ` +
              `default but accept${excepted.length > 1 ? '' : 's'} marked or transparent-socket packets`
          : 'no input chain drops by default: diverted connections reach honeygate',
      ),
    );
  }
  return out;
};
