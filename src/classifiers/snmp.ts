// SNMP (RFC 3416, 3412): a BER SEQUENCE of version, then community and PDU (v1, v2c) or
// the v3 header. The community is what attackers guess, so it is recorded.
import { intValue, readTlv } from './ber.js';
import { asciiText, type Classifier, matched, NO_MATCH, type Verdict } from './types.js';

const PDUS: Record<number, string> = {
  160: 'get',
  161: 'get-next',
  162: 'response',
  163: 'set',
  164: 'trap',
  165: 'get-bulk',
  166: 'inform',
  167: 'trap-v2',
  168: 'report',
};
const VERSIONS: Record<number, string> = { 0: '1', 1: '2c', 3: '3' };

function snmpFields(buf: Buffer): Record<string, unknown> | null {
  const msg = readTlv(buf, 0);
  if (msg?.tag !== 0x30) return null;
  const ver = readTlv(buf, msg.start, msg.end);
  const v = ver ? intValue(buf, ver) : null;
  if (!ver || v === null || VERSIONS[v] === undefined) return null;
  const next = readTlv(buf, ver.end, msg.end);
  if (!next) return null;
  if (v === 3) return next.tag === 0x30 ? { version: '3' } : null; // msgGlobalData; the rest may be encrypted
  if (next.tag !== 0x04) return null;
  const pdu = readTlv(buf, next.end, msg.end);
  if (!pdu || PDUS[pdu.tag] === undefined) return null;
  return {
    version: VERSIONS[v],
    community: asciiText(buf, next.start, next.end, 64),
    pdu: PDUS[pdu.tag],
  };
}

export const snmp: Classifier = {
  protocol: 'snmp',
  classify(buf: Buffer): Verdict {
    const f = snmpFields(buf);
    return f ? matched('snmp', f) : NO_MATCH;
  },
};
