// Stale UDP conntrack entries on diverted ports (issue 18; moby/libnetwork#1994). Pure: parses
// `conntrack -L` output and picks the entries to delete; apply.ts runs the tool, doctor's
// udp-conntrack check reports what it finds.
//
// Why only NATed entries: the divert rule (tproxy) is a filter rule that reads no conntrack
// state, so an entry that was never NATed steers nothing. An entry that another table's
// DNAT or REDIRECT rewrote is different: NAT rules are consulted only for a flow's first
// packet, and honeygate's `ct status dnat accept` lets the flow's later datagrams pass. A
// UDP entry lives as long as datagrams keep coming (30 s unanswered, 120 s once answered),
// so a sender that never pauses (a SIP or syslog client, a scanner's retries) keeps going to
// wherever the entry points, even after that DNAT rule is gone. Deleting such an entry is
// harmless: the next datagram makes a new one, which goes through the rules as they are now
// (a DNAT rule still there DNATs it again).
import type { Config, FirewallConfig } from '../config/types.js';
import { anyContains, ipFamily } from '../net/address.js';
import { divertedListeners, divertPorts, type ProtectedPort, transportOf } from './render.js';

/** One conntrack entry, as `conntrack -L` prints it (original direction, then reply). */
export interface CtEntry {
  family: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  replySrc: string; // where replies come from: the DNAT target for a DNATed flow
  replySport: number;
  mark: number;
}

/**
 * The UDP entries in `conntrack -L -p udp` output (with or without `-o extended`); lines
 * of other protocols and the tool's summary line are skipped.
 */
export function parseConntrack(text: string): CtEntry[] {
  const out: CtEntry[] = [];
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (!words.includes('udp')) continue;
    const first: Record<string, string> = {};
    const second: Record<string, string> = {};
    let mark = 0;
    for (const w of words) {
      const eq = w.indexOf('=');
      if (eq < 0) continue;
      const k = w.slice(0, eq);
      const v = w.slice(eq + 1);
      if (k === 'mark') mark = Number(v) >>> 0;
      else if (['src', 'dst', 'sport', 'dport'].includes(k)) {
        if (first[k] === undefined) first[k] = v;
        else if (second[k] === undefined) second[k] = v;
      }
    }
    if (!first.src || !first.dst || !first.sport || !first.dport || !second.src || !second.sport) continue;
    out.push({
      family: first.src.includes(':') ? 6 : 4,
      src: first.src,
      dst: first.dst,
      sport: Number(first.sport),
      dport: Number(first.dport),
      replySrc: second.src,
      replySport: Number(second.sport),
      mark,
    });
  }
  return out;
}

/** True when another table's DNAT or REDIRECT rewrote the flow's destination. */
export function isNated(e: CtEntry): boolean {
  return e.replySrc !== e.dst || e.replySport !== e.dport;
}

/** Where a NATed entry sends the datagrams: `IP:PORT` (`[IP]:PORT`). */
export function ctTarget(e: CtEntry): string {
  return e.family === 6 ? `[${e.replySrc}]:${e.replySport}` : `${e.replySrc}:${e.replySport}`;
}

/** `SRC:SPORT -> DST:DPORT` of the original direction. */
export function ctFlow(e: CtEntry): string {
  const ep = (ip: string, port: number) => (e.family === 6 ? `[${ip}]:${port}` : `${ip}:${port}`);
  return `${ep(e.src, e.sport)} -> ${ep(e.dst, e.dport)}`;
}

/** Whether the UDP listeners' divert rules would catch a datagram to this destination. */
function diverted(config: Config, protectedPorts: ProtectedPort[], e: CtEntry): boolean {
  return divertedListeners(config).some((l) => {
    if (transportOf(l) !== 'udp') return false;
    const t = l.tproxy;
    if (!t.addresses.some((a) => ipFamily(a) === e.family)) return false;
    if (t.divert.addresses && !anyContains(t.divert.addresses, e.dst)) return false;
    return divertPorts(t.divert, protectedPorts).ports.some((r) => r.from <= e.dport && e.dport <= r.to);
  });
}

/**
 * The entries that keep datagrams to a diverted UDP port away from honeygate: NATed by
 * another table. honeygate's own transparent upstream flows (its conntrack mark) stay.
 */
export function staleUdp(config: Config, protectedPorts: ProtectedPort[], entries: CtEntry[]): CtEntry[] {
  const fw: FirewallConfig = config.firewall;
  return entries.filter(
    (e) => isNated(e) && (e.mark & fw.mask) !== fw.mark && diverted(config, protectedPorts, e),
  );
}

/** True when some UDP listener has honeygate's own divert: only then is there anything to look for. */
export function divertsUdp(config: Config): boolean {
  return divertedListeners(config).some((l) => transportOf(l) === 'udp');
}

/** `conntrack -D` arguments that delete exactly this entry (its original tuple). */
export function deleteArgs(e: CtEntry): string[] {
  return [
    '-D',
    '-f',
    e.family === 6 ? 'ipv6' : 'ipv4',
    '-p',
    'udp',
    '-s',
    e.src,
    '-d',
    e.dst,
    '--sport',
    String(e.sport),
    '--dport',
    String(e.dport),
  ];
}
