// Text forms shared by the sinks and the `events` verb: attacker bytes made printable,
// and JSON that never throws on what a classifier put in protocolFields.

const NAMED_ESCAPES: Record<number, string> = { 9: '\\t', 10: '\\n', 13: '\\r', 92: '\\\\' };

/**
 * Returns `bytes` as printable ASCII: 0x20-0x7e as themselves, \t \n \r and backslash
 * escaped, anything else as \xHH. With `max`, stops once the text reaches `max`
 * characters and ends it with "..." (never cutting an escape in half).
 */
export function escapeBytes(bytes: Uint8Array, max = Number.POSITIVE_INFINITY): string {
  let out = '';
  for (const b of bytes) {
    const piece = NAMED_ESCAPES[b] ?? (b >= 0x20 && b <= 0x7e ? String.fromCharCode(b) : hexEscape(b));
    if (out.length + piece.length > max) return `${out}...`;
    out += piece;
  }
  return out;
}

function hexEscape(b: number): string {
  return `\\x${b.toString(16).padStart(2, '0')}`;
}

/**
 * JSON text of `value`, or null for null/undefined. Values JSON cannot hold (BigInt,
 * cycles, a throwing toJSON) give a small object naming the problem instead of throwing:
 * an odd protocol field must not cost the whole event.
 */
export function safeJson(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  try {
    return JSON.stringify(value) ?? null; // without a replacer: the common case, much faster
  } catch {
    // a BigInt (or a cycle): retried below
  }
  try {
    return JSON.stringify(value, (_key, v) => (typeof v === 'bigint' ? v.toString() : v)) ?? null;
  } catch (err) {
    return JSON.stringify({ _unserializable: String((err as Error)?.message ?? err) });
  }
}
