// Every protocol honeygate recognises. Adding one: a new file exporting a Classifier, and
// one line in CLASSIFIERS. Their first bytes differ, so order only settles ties.
import { http } from './http.js';
import { rdp } from './rdp.js';
import { redis } from './redis.js';
import { smb } from './smb.js';
import { ssh } from './ssh.js';
import { telnet } from './telnet.js';
import { tls } from './tls.js';
import { type Classifier, NEED_MORE, NO_MATCH, type Verdict } from './types.js';

export type { Classifier, Verdict } from './types.js';

export const CLASSIFIERS: readonly Classifier[] = [tls, http, ssh, rdp, smb, redis, telnet];

/** Protocol names, for config validation ("routes[0].match.protocol: unknown protocol ..."). */
export const PROTOCOLS: readonly string[] = CLASSIFIERS.map((c) => c.protocol);

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
