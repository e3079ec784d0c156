// SSDP (UPnP discovery): HTTP-shaped requests over UDP, `M-SEARCH * HTTP/1.1` or
// `NOTIFY * HTTP/1.1`; the search target (ST) is what a reflector is asked for.
import { headerValue, textHead } from './sip.js';
import { type Classifier, matched, NO_MATCH, type Verdict } from './types.js';

const REQUEST = /^(M-SEARCH|NOTIFY) \* HTTP\/1\.[01]\r?\n/;

export const ssdp: Classifier = {
  protocol: 'ssdp',
  classify(buf: Buffer): Verdict {
    const head = textHead(buf);
    const m = REQUEST.exec(head);
    if (!m) return NO_MATCH;
    const fields: Record<string, unknown> = { method: m[1] };
    const st = headerValue(head, ['st', 'nt']);
    if (st !== undefined) fields.target = st;
    const man = headerValue(head, ['man']);
    if (man !== undefined) fields.man = man;
    return matched('ssdp', fields);
  },
};
