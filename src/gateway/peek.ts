// Peeks at the attacker's first bytes to name the protocol, without consuming them: they
// stay pending for the action. A silent client (server-speaks-first protocols) gets
// protocol "unknown" after the peek timeout.
import { classify } from '../classifiers/index.js';
import type { Verdict } from '../classifiers/types.js';
import type { Flow } from './flow.js';
import { readUntil } from './read.js';

export const PEEK_TIMEOUT_MS = 3000;
export const PEEK_MAX_BYTES = 4096;

/** Sets flow.protocol; returns false if the flow closed meanwhile. */
export async function peekProtocol(flow: Flow): Promise<boolean> {
  const already = Buffer.concat(flow.takePending());
  const first = classify(already, false);
  if (!('need' in first)) {
    flow.pending = [already]; // an earlier stage already read enough (e.g. after a PROXY header)
    setProtocol(flow, first);
    return true;
  }
  const read = await readUntil(
    flow,
    { timeoutMs: PEEK_TIMEOUT_MS, maxBytes: PEEK_MAX_BYTES, onTimeout: null, payload: true },
    (buf, ended) => {
      const all = already.length ? Buffer.concat([already, buf]) : buf;
      const v = classify(all, ended || all.length >= PEEK_MAX_BYTES);
      return 'need' in v ? undefined : { done: v };
    },
  );
  if (!read) {
    flow.finish('client-closed');
    return false;
  }
  // Keep the bytes an earlier stage read ahead of the ones read here.
  if (already.length) flow.pending.unshift(already);
  setProtocol(flow, read.value);
  return true;
}

function setProtocol(flow: Flow, v: Verdict | null): void {
  if (v && 'match' in v && v.match) {
    flow.protocol = v.protocol;
    flow.protocolFields = v.fields;
  } else {
    flow.protocol = 'unknown';
  }
}
