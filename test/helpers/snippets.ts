// The configuration blocks of a doc, so that a test runs what the doc shows: a block is the
// fenced code right after an `<!-- snippet: NAME -->` line.
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './honeygate.js';

/** The text of the block named `name` in `doc` (relative to the repository root). */
export function snippet(doc: string, name: string): string {
  const text = fs.readFileSync(path.join(ROOT, doc), 'utf8');
  const marker = `<!-- snippet: ${name} -->\n`;
  const at = text.indexOf(marker);
  if (at < 0) throw new Error(`${doc} has no snippet "${name}"`);
  const m = /^```[\w-]*\n([\s\S]*?)^```$/m.exec(text.slice(at + marker.length));
  if (m?.index !== 0) throw new Error(`${doc}: snippet "${name}" is not followed by a fenced block`);
  return m[1]!;
}

/**
 * `text` with each `from` replaced by its `to`; throws when a `from` is absent, so a doc
 * edit that moves a port or path fails the test instead of silently testing the default.
 */
export function substitute(text: string, pairs: Record<string, string>): string {
  let out = text;
  for (const [from, to] of Object.entries(pairs)) {
    if (!out.includes(from)) throw new Error(`snippet has no "${from}" to substitute:\n${text}`);
    out = out.replaceAll(from, to);
  }
  return out;
}
