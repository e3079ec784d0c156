// Telnet: option negotiation (RFC 854/855) that clients open with: IAC (0xff) followed by
// WILL/WONT/DO/DONT and an option, or a subnegotiation (SB ... IAC SE). Fields list the
// options the client negotiated, e.g. ["DO SGA", "WILL NAWS"].
import { type Classifier, matched, NEED_MORE, NO_MATCH, type Verdict } from './types.js';

const IAC = 0xff;
const SB = 0xfa;
const SE = 0xf0;
const VERBS: Record<number, string> = { 251: 'WILL', 252: 'WONT', 253: 'DO', 254: 'DONT' };
const OPTIONS: Record<number, string> = {
  0: 'BINARY',
  1: 'ECHO',
  3: 'SGA',
  5: 'STATUS',
  6: 'TIMING-MARK',
  24: 'TTYPE',
  31: 'NAWS',
  32: 'TSPEED',
  33: 'LFLOW',
  34: 'LINEMODE',
  35: 'XDISPLOC',
  36: 'ENVIRON',
  39: 'NEW-ENVIRON',
};
const MAX_OPTIONS = 32;
const MAX_SCAN = 1024;

export const telnet: Classifier = {
  protocol: 'telnet',
  classify(buf: Buffer, final = false): Verdict {
    if (buf.length === 0) return final ? NO_MATCH : NEED_MORE;
    if (buf[0] !== IAC) return NO_MATCH;
    if (buf.length === 1) return final ? NO_MATCH : NEED_MORE;
    const verb = buf[1]!;
    if (!VERBS[verb] && verb !== SB) return NO_MATCH;
    if (buf.length === 2) return final ? NO_MATCH : NEED_MORE;
    return matched('telnet', { options: negotiated(buf) });
  },
};

/** The leading run of IAC commands, as "VERB OPTION" strings; stops at the first byte of data. */
function negotiated(buf: Buffer): string[] {
  const out: string[] = [];
  const stop = Math.min(buf.length, MAX_SCAN);
  let i = 0;
  while (i + 2 < stop && buf[i] === IAC && out.length < MAX_OPTIONS) {
    const verb = buf[i + 1]!;
    const option = buf[i + 2]!;
    const name = OPTIONS[option] ?? String(option);
    if (VERBS[verb]) {
      out.push(`${VERBS[verb]} ${name}`);
      i += 3;
    } else if (verb === SB) {
      out.push(`SB ${name}`);
      let j = i + 3; // skip to IAC SE
      while (j + 1 < stop && !(buf[j] === IAC && buf[j + 1] === SE)) j++;
      i = j + 2;
    } else {
      break;
    }
  }
  return out;
}
