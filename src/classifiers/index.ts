// Every protocol honeygate recognises. Adding one: a new file exporting a Classifier, and
// one line in CLASSIFIERS. Their first bytes differ, so order only settles ties.
import { cldap } from './cldap.js';
import { dns } from './dns.js';
import { http } from './http.js';
import { memcached } from './memcached.js';
import { ntp } from './ntp.js';
import { rdp } from './rdp.js';
import { redis } from './redis.js';
import { sip } from './sip.js';
import { smb } from './smb.js';
import { snmp } from './snmp.js';
import { ssdp } from './ssdp.js';
import { ssh } from './ssh.js';
import { telnet } from './telnet.js';
import { tls } from './tls.js';
import { type Classifier, NEED_MORE, NO_MATCH, type Verdict } from './types.js';

export type { Classifier, Verdict } from './types.js';

export const CLASSIFIERS: readonly Classifier[] = [tls, http, ssh, rdp, smb, redis, telnet];

/**
 * The UDP ones: each reads one whole datagram (a flow's first), so none ever asks for more.
 * The text protocols first (their first line is unmistakable), the binary ones after.
 */
export const UDP_CLASSIFIERS: readonly Classifier[] = [sip, ssdp, memcached, dns, snmp, cldap, ntp];

/** UDP protocol names (a rule seeing only UDP listeners may ask for these). */
export const UDP_PROTOCOLS: readonly string[] = UDP_CLASSIFIERS.map((c) => c.protocol);

/** Protocol names, for config validation ("routes[0].match.protocol: unknown protocol ..."). */
export const PROTOCOLS: readonly string[] = [...CLASSIFIERS.map((c) => c.protocol), ...UDP_PROTOCOLS];

/** The protocol of one datagram (a UDP flow's first): a match, or no match. */
export function classifyDatagram(buf: Buffer): Verdict {
  for (const c of UDP_CLASSIFIERS) {
    try {
      const verdict = c.classify(buf, true);
      if ('match' in verdict && verdict.match) return verdict;
    } catch {
      // a classifier bug must not take the flow down
    }
  }
  return NO_MATCH;
}

/**
 * Runs every classifier over the bytes so far. Returns the first match; 'need more' while
 * any classifier could still match and more bytes may come (`final` false); otherwise no match.
 */
export function classify(buf: Buffer, final: boolean): Verdict {
  let waiting = false;
  for (const c of CLASSIFIERS) {
    let verdict: Verdict;
    try {
      verdict = c.classify(buf, final);
    } catch {
      continue; // a classifier bug must not take the flow down; the bytes just stay unclassified
    }
    if ('need' in verdict) waiting = true;
    else if (verdict.match) return verdict;
  }
  return waiting && !final ? NEED_MORE : NO_MATCH;
}

const BY_PROTOCOL = new Map(CLASSIFIERS.map((c) => [c.protocol, c]));

/**
 * At a flow's end, the fields of the protocol the peek named, completed from the flow's
 * first bytes where that protocol's classifier can add to them (SSH: the HASSH of the
 * client's KEXINIT); otherwise `fields` as they are. Never throws.
 */
export function completeFields(
  protocol: string | null,
  fields: Record<string, unknown> | null,
  first: () => Buffer,
): Record<string, unknown> | null {
  const c = protocol === null || fields === null ? undefined : BY_PROTOCOL.get(protocol);
  if (!c?.complete) return fields;
  try {
    return c.complete(first(), fields!) ?? fields;
  } catch {
    return fields; // a classifier bug must not cost the flow its event
  }
}
