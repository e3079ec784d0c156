// A recording as text for a person: one line per chunk (who sent it, when, how much),
// then the bytes: as they are when they read as text, else as a hex dump.
import { type Chunk, KIND } from './format.js';
import type { Session } from './read.js';

/** True when the bytes read as text: printable UTF-8, tabs and line ends. */
export function looksLikeText(b: Buffer): boolean {
  const s = b.toString('utf8');
  if (s.includes('\ufffd')) return false;
  return !/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(s);
}

/** `xxd`-like lines: offset, 16 bytes in hex, the printable ones. */
export function hexDump(b: Buffer): string {
  let out = '';
  for (let off = 0; off < b.length; off += 16) {
    const row = b.subarray(off, off + 16);
    const hex = [...row].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...row].map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
    out += `${off.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}\n`;
  }
  return out;
}

const WHO: Record<number, string> = {
  [KIND.in]: 'attacker >',
  [KIND.out]: 'attacker <',
  [KIND.finIn]: 'attacker > FIN',
  [KIND.finOut]: 'attacker < FIN',
  [KIND.truncated]: 'recording truncated',
};

/** The session's opening line. */
export function formatHeader(s: Session): string {
  const h = s.header;
  const ep = (a: { ip: string; port: number }) =>
    a.ip.includes(':') ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`;
  const via = [h.action, h.route && `route ${h.route}`, h.backend && `backend ${h.backend}`]
    .filter(Boolean)
    .join(', ');
  return `# flow ${h.id} ${ep(h.src)} -> ${ep(h.dst)} at ${new Date(h.startedAt).toISOString()} (${via})\n`;
}

/** One chunk as text. */
export function formatChunk(c: Chunk): string {
  const at = `+${c.t.toFixed(3)}s`;
  if (c.kind === KIND.truncated) return `## ${at} ${WHO[c.kind]}: ${c.data.toString('latin1')}\n`;
  if (c.kind === KIND.finIn || c.kind === KIND.finOut) return `## ${at} ${WHO[c.kind]}\n`;
  const text = looksLikeText(c.data);
  const head = `## ${at} ${WHO[c.kind]} ${c.data.length} byte${c.data.length === 1 ? '' : 's'}${text ? '' : ' (hex)'}\n`;
  if (!text) return head + hexDump(c.data);
  const body = c.data.toString('utf8');
  return head + body + (body.endsWith('\n') ? '' : '\n');
}
