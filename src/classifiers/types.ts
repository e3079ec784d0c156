// A classifier looks at the first bytes an attacker sent and says which protocol they are.
// It only peeks: the bytes still go, unchanged, to whatever the route picks.

export type Verdict =
  | { match: true; protocol: string; fields: Record<string, unknown> }
  | { match: false }
  | { need: 'more' };

export interface Classifier {
  readonly protocol: string;
  /**
   * Accepts the bytes received so far (possibly partial, possibly hostile) and returns a
   * verdict without throwing or reading beyond `buf`. `final` means no more bytes will
   * come (timeout, byte cap, or the attacker closed): a classifier that was waiting only
   * to fill in fields answers with what it has instead of 'need more'.
   */
  classify(buf: Buffer, final?: boolean): Verdict;
  /**
   * Fields that need bytes past those the peek waited for (SSH's KEXINIT follows the
   * server's line): given the flow's first bytes at its end and the fields the peek found,
   * returns the fields to keep instead, or null to keep them as they are. Never throws.
   */
  complete?(buf: Buffer, fields: Record<string, unknown>): Record<string, unknown> | null;
}

export const NEED_MORE: Verdict = { need: 'more' };
export const NO_MATCH: Verdict = { match: false };

export function matched(protocol: string, fields: Record<string, unknown>): Verdict {
  return { match: true, protocol, fields };
}

/** True when `buf` is a prefix of `token` (so more bytes could still spell it). */
export function isPrefixOf(buf: Buffer, token: string): boolean {
  if (buf.length > token.length) return false;
  for (let i = 0; i < buf.length; i++) if (buf[i] !== token.charCodeAt(i)) return false;
  return true;
}

/** Printable ASCII text of buf[start, end), other bytes as "\xNN"; capped at `max` characters of input. */
export function asciiText(buf: Buffer, start: number, end: number, max = 256): string {
  const stop = Math.min(end, buf.length, start + max);
  let out = '';
  for (let i = Math.max(0, start); i < stop; i++) {
    const b = buf[i]!;
    out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}
