// Connectionless LDAP (RFC 1798; Active Directory's "LDAP ping", a favourite reflector): an
// LDAPMessage SEQUENCE of a message id and a searchRequest ([APPLICATION 3]).
import { intValue, readTlv } from './ber.js';
import { asciiText, type Classifier, matched, NO_MATCH, type Verdict } from './types.js';

function search(buf: Buffer): Record<string, unknown> | null {
  const msg = readTlv(buf, 0);
  if (msg?.tag !== 0x30) return null;
  const id = readTlv(buf, msg.start, msg.end);
  if (!id || intValue(buf, id) === null) return null;
  const op = readTlv(buf, id.end, msg.end);
  if (op?.tag !== 0x63) return null; // searchRequest
  const base = readTlv(buf, op.start, op.end);
  if (base?.tag !== 0x04) return null;
  return {
    operation: 'search',
    messageId: intValue(buf, id),
    baseObject: asciiText(buf, base.start, base.end, 128),
  };
}

export const cldap: Classifier = {
  protocol: 'cldap',
  classify(buf: Buffer): Verdict {
    const f = search(buf);
    return f ? matched('cldap', f) : NO_MATCH;
  },
};
