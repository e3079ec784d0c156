// The one comparison of honeygate's live table with the plan render.ts makes of the config,
// for `firewall verify`/`show` (and --manage-firewall's checks) and for the doctor's `table`
// check. Pure: the live side comes from nft-json.ts. Detects a table replaced by another
// config's (its comment carries the plan's hash), missing or re-hooked chains, missing,
// extra or reordered rules (found by their comments), and set elements deleted one by one
// with `nft delete element` (the hash covers the rendered text, not later edits).
import ipaddr from 'ipaddr.js';
import type { LiveTable } from './nft-json.js';
import { FAMILY, type RulesetPlan, TABLE, tableComment } from './render.js';

/**
 * One spelling per element, for comparing rendered and live sets: nft prints an IPv4-mapped
 * block as ::ffff:198.51.100.0/120 where render.ts writes ::ffff:c633:6400/120 (a difference
 * that made --manage-firewall re-apply the table every check). Ports and IPv4 stay as they are.
 */
export function normalElement(e: string): string {
  const [addr, len] = e.split('/');
  if (!addr?.includes(':') || !ipaddr.IPv6.isValid(addr)) return e;
  const text = ipaddr.IPv6.parse(addr).toString();
  return len === undefined ? text : `${text}/${len}`;
}

/** True when two element lists hold the same elements, whatever their order and spelling. */
export function sameElements(a: string[], b: string[]): boolean {
  const norm = (list: string[]) => list.map(normalElement).sort().join(',');
  return norm(a) === norm(b);
}

/** One way the live table differs from the plan; `subject` says what the text is about. */
export interface Difference {
  subject: 'table' | 'chain' | 'set';
  text: string;
}

const quoted = (list: string[]) => list.map((r) => `"${r}"`).join(', ');

/** Every difference between the live table and the plan; [] when they match. */
export function tableDifferences(plan: RulesetPlan, live: LiveTable): Difference[] {
  const out: Difference[] = [];
  const want = tableComment(plan.hash);
  if (live.comment !== want) {
    const have = live.comment === null ? 'missing' : `"${live.comment}"`;
    out.push({
      subject: 'table',
      text: `its comment is ${have}, the config renders "${want}" (applied from another config, or edited)`,
    });
  }
  for (const c of plan.chains) {
    const l = live.chains.get(c.name);
    if (!l) {
      out.push({ subject: 'chain', text: `chain ${c.name} is missing` });
      continue;
    }
    if (l.type !== c.type || l.hook !== c.hook || l.prio !== c.prio) {
      out.push({
        subject: 'chain',
        text:
          `chain ${c.name} is ${l.type} hook ${l.hook} priority ${l.prio}, ` +
          `expected ${c.type} hook ${c.hook} priority ${c.prio}`,
      });
    }
    if (l.rules.join('\n') !== c.rules.join('\n')) {
      const missing = c.rules.filter((r) => !l.rules.includes(r));
      const extra = l.rules.filter((r) => !c.rules.includes(r));
      const what = [
        missing.length ? `missing ${quoted(missing)}` : '',
        extra.length ? `unexpected ${quoted(extra)}` : '',
      ].filter(Boolean);
      out.push({
        subject: 'chain',
        text: `chain ${c.name}: rules differ (${what.join('; ') || 'order changed'})`,
      });
    }
  }
  for (const s of plan.sets) {
    const have = live.sets.get(s.name);
    if (!have) out.push({ subject: 'set', text: `set ${s.name} is missing` });
    else if (!sameElements(have, s.elements)) {
      out.push({
        subject: 'set',
        text: `set ${s.name} holds { ${have.join(', ')} }, the config renders { ${s.elements.join(', ')} }`,
      });
    }
  }
  return out;
}

/**
 * The differences as `verify` lists them, one standalone line each: the table's presence
 * first (`live` null: the table is absent), then what differs inside it.
 */
export function diffLines(plan: RulesetPlan | null, live: LiveTable | null): string[] {
  const name = `table ${FAMILY} ${TABLE}`;
  if (!plan) return live ? [`${name} exists, but the config needs none`] : [];
  if (!live) return [`${name} is missing`];
  return tableDifferences(plan, live).map((d) =>
    d.subject === 'table' ? `${name} differs from the config: ${d.text}` : d.text,
  );
}
