// Inbound PROXY protocol: a proxy peer (a trusted load balancer or remote sensor in front of
// honeygate, listed in acceptProxy.from) tells us who the attacker is. A proxy peer must send
// a valid header in time; anyone else who sends one is recorded as a spoof attempt, and
// anyone else who does not is an ordinary attacker. ("Upstream" is the honeypot side.)
import type { AcceptProxy } from '../config/types.js';
import { normalizeIp } from '../net/address.js';
import { type ParseResult, parseProxyHeader, V2_SIGNATURE } from '../net/proxy-protocol.js';
import type { Flow } from './flow.js';
import { readUntil } from './read.js';

const V1_PREFIX = Buffer.from('PROXY ');

/**
 * `viaProxyPeer`: the socket's peer is a proxy peer (in accept.from). Returns true when the
 * flow goes on to routing; false when it was finished here.
 */
export async function readProxyHeader(
  flow: Flow,
  accept: AcceptProxy,
  viaProxyPeer: boolean,
): Promise<boolean> {
  return viaProxyPeer ? fromProxyPeer(flow, accept) : fromUntrusted(flow, accept);
}

async function fromProxyPeer(flow: Flow, accept: AcceptProxy): Promise<boolean> {
  const opts = { v1: accept.versions.includes('v1'), v2: accept.versions.includes('v2') };
  type Outcome = ParseResult | { status: 'timeout' } | { status: 'closed' };
  const read = await readUntil<Outcome>(
    flow,
    { timeoutMs: accept.timeoutMs, maxBytes: 64 * 1024, onTimeout: { status: 'timeout' }, payload: false },
    (buf, ended) => {
      const r = parseProxyHeader(buf, opts);
      if (r.status === 'done') return { done: r, consumed: r.consumed };
      if (r.status === 'error') return { done: r };
      // Closing without a byte is how load balancers probe a port: not a bad header.
      if (ended && buf.length === 0) return { done: { status: 'closed' } };
      if (ended) return { done: { status: 'error', reason: 'connection closed inside the header' } };
      return undefined;
    },
  );
  if (!read) {
    flow.finish('client-closed');
    return false;
  }
  const r = read.value;
  if (r.status !== 'done') {
    // Whatever was sent instead of a header is evidence: keep it in the event.
    for (const chunk of flow.takePending()) flow.received(chunk);
    if (r.status === 'closed') flow.finish('client-closed');
    else if (r.status === 'timeout')
      flow.finish('proxy-header-timeout', `no PROXY header within ${accept.timeoutMs} ms`);
    else flow.finish('bad-proxy-header', r.status === 'error' ? r.reason : 'incomplete header');
    return false;
  }
  const h = r.header;
  flow.proxyHeader = h.command === 'LOCAL' ? 'local' : h.version === 1 ? 'v1' : 'v2';
  if (h.command === 'PROXY' && h.src && h.dst) {
    // The spec's rule: LOCAL, UNKNOWN and UNIX keep the socket's own addresses.
    flow.peer = flow.src; // the proxy peer's own address
    flow.src = { ip: normalizeIp(h.src.ip) ?? h.src.ip, port: h.src.port };
    flow.dst = { ip: normalizeIp(h.dst.ip) ?? h.dst.ip, port: h.dst.port };
  }
  for (const chunk of flow.pending) flow.received(chunk);
  return true;
}

async function fromUntrusted(flow: Flow, accept: AcceptProxy): Promise<boolean> {
  // Wait briefly for the first bytes: only a client that speaks first can send a header.
  const read = await readUntil(
    flow,
    { timeoutMs: accept.timeoutMs, maxBytes: 64 * 1024, onTimeout: true, payload: true },
    (buf, ended) => (buf.length >= 16 || ended ? { done: true } : undefined),
  );
  if (!read) {
    flow.finish('client-closed');
    return false;
  }
  const first = Buffer.concat(flow.pending);
  if (startsLike(first, V1_PREFIX) || startsLike(first, V2_SIGNATURE)) {
    flow.finish('spoof-attempt', `PROXY header from untrusted ${flow.src.ip}`);
    return false;
  }
  return true;
}

/** True when `buf` is a (possibly partial) prefix of `sig` or starts with it. */
function startsLike(buf: Buffer, sig: Buffer): boolean {
  const n = Math.min(buf.length, sig.length);
  return (
    n > 0 && buf.subarray(0, n).equals(sig.subarray(0, n)) && (n === sig.length || buf.length < sig.length)
  );
}
