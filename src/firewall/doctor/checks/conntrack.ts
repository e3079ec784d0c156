// Stale UDP conntrack entries on diverted ports (moby/libnetwork#1994): entries another table
// NATed, pointing where no NAT rule sends flows any more. honeygate lets NATed flows pass
// (`ct status dnat accept`), so while datagrams keep coming they go to the old place, never
// to honeygate. ../../conntrack.ts says which entries count and why.
import { ctFlow, ctTarget, deleteArgs, divertsUdp, staleUdp } from '../../conntrack.js';
import { type Check, ok, warn } from '../finding.js';
import { localAddress } from '../query.js';

export const udpConntrack: Check = (f) => {
  const C = 'udp-conntrack';
  const ct = f.conntrack;
  if (!divertsUdp(f.config) || !ct) return [];
  if (ct.status === 'missing') {
    return [
      warn(
        C,
        'conntrack is not installed: stale UDP conntrack entries on diverted ports cannot be looked for ' +
          '(and `firewall apply` cannot delete them)',
        'apt-get install conntrack',
      ),
    ];
  }
  if (ct.status !== 'ok')
    return [warn(C, `cannot list UDP conntrack entries (conntrack -L): ${ct.detail || ct.status}`)];
  const targets = f.natTargets ?? { dnat: new Set<string>(), redirect: false };
  const nated = staleUdp(f.config, f.protectedPorts, ct.entries);
  // still where a rule sends such flows now: a DNAT to that address, or a REDIRECT to here
  const current = (ip: string) => targets.dnat.has(ip) || (targets.redirect && localAddress(f, ip));
  const stale = nated.filter((e) => !current(e.replySrc));
  if (stale.length === 0) {
    const also = nated.length
      ? ` (${nated.length} NATed by a rule that still exists: ct status dnat lets them pass by design)`
      : '';
    return [ok(C, `no stale UDP conntrack entry on a diverted port${also}`)];
  }
  const n = stale.length;
  const shown = stale
    .slice(0, 3)
    .map((e) => `${ctFlow(e)} goes to ${ctTarget(e)}`)
    .join('; ');
  return [
    warn(
      C,
      `${n} UDP conntrack entr${n === 1 ? 'y' : 'ies'} on diverted ports still point${n === 1 ? 's' : ''} ` +
        `where a NAT rule that no longer exists sent ${n === 1 ? 'it' : 'them'} (${shown}${n > 3 ? '; ...' : ''}): ` +
        'honeygate lets NATed flows pass (ct status dnat), and an entry lives as long as datagrams keep coming, so ' +
        'these senders never reach honeygate (moby/libnetwork#1994)',
      `honeygate firewall apply -c ${f.file}   # deletes them; or one by one: conntrack ${deleteArgs(stale[0]!).join(' ')}`,
    ),
  ];
};
