// The one reader of nft's JSON output (`nft -j list ruleset`, `nft -j list table ...`,
// `nft -j list tables`): typed tables, chains, rules and sets, and honeygate's own table as
// `apply`'s verify and the doctor compare it with the plan. Only the fields honeygate reads
// are typed; a rule's `expr` stays raw JSON for foreign-rules.ts to walk. Pure: no I/O.
// nft 1.0.6 leaves a table's comment out of its JSON, so the comment comes from the text
// listing (`nft list table`), see commentOf.

type Json = Record<string, unknown>;

function obj(v: unknown): Json | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : null;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export interface NftTable {
  family: string;
  name: string;
}

/** A chain; `hook` and `prio` only for base chains. */
export interface NftChain {
  family?: string; // absent only in hand-made fixtures: then the chain belongs to any table
  table?: string;
  name: string;
  type?: string;
  hook?: string;
  prio?: number;
  policy?: string;
}

export interface NftRule {
  family?: string;
  table?: string;
  chain: string;
  comment?: string;
  expr: unknown[]; // the statements, as nft prints them
}

export interface NftSet {
  family?: string;
  table?: string;
  name: string;
  elem: unknown[];
}

/** One `nft -j list ...` document, in the order nft printed it. */
export interface NftRuleset {
  version: string | null; // from metainfo
  tables: NftTable[];
  chains: NftChain[];
  rules: NftRule[];
  sets: NftSet[];
}

/** The document `doc` (parsed JSON) as typed lists; objects of unknown shape are skipped. */
export function readNftJson(doc: unknown): NftRuleset {
  const out: NftRuleset = { version: null, tables: [], chains: [], rules: [], sets: [] };
  const items = obj(doc)?.nftables;
  if (!Array.isArray(items)) return out;
  for (const item of items) {
    const o = obj(item);
    if (!o) continue;
    const meta = obj(o.metainfo);
    if (meta && typeof meta.version === 'string') out.version = meta.version;
    const t = obj(o.table);
    if (t && typeof t.family === 'string' && typeof t.name === 'string')
      out.tables.push({ family: t.family, name: t.name });
    const c = obj(o.chain);
    if (c && c.name !== undefined) {
      out.chains.push({
        family: str(c.family),
        table: str(c.table),
        name: String(c.name),
        type: str(c.type),
        hook: str(c.hook),
        prio: typeof c.prio === 'number' ? c.prio : undefined,
        policy: str(c.policy),
      });
    }
    const r = obj(o.rule);
    if (r && r.chain !== undefined) {
      out.rules.push({
        family: str(r.family),
        table: str(r.table),
        chain: String(r.chain),
        comment: str(r.comment),
        expr: Array.isArray(r.expr) ? r.expr : [],
      });
    }
    const s = obj(o.set);
    if (s && s.name !== undefined) {
      out.sets.push({
        family: str(s.family),
        table: str(s.table),
        name: String(s.name),
        elem: Array.isArray(s.elem) ? s.elem : [],
      });
    }
  }
  return out;
}

/** `text` (nft's stdout) read as above; null when it is not JSON. */
export function parseNftJson(text: string): NftRuleset | null {
  try {
    return readNftJson(JSON.parse(text));
  } catch {
    return null;
  }
}

/** Whether the document lists table `family name`. */
export function hasTable(rs: NftRuleset, t: NftTable): boolean {
  return rs.tables.some((x) => x.family === t.family && x.name === t.name);
}

/** Whether an object belongs to table `t` (objects without family/table belong to any). */
function inTable(o: { family?: string; table?: string }, t: NftTable): boolean {
  return (o.family === undefined || o.family === t.family) && (o.table === undefined || o.table === t.name);
}

/** Set elements as nft's JSON prints them, in render.ts's element syntax. */
export function elementText(e: unknown): string {
  if (typeof e === 'number' || typeof e === 'string') return String(e);
  const o = e as { range?: unknown[]; prefix?: { addr: string; len: number }; elem?: { val: unknown } };
  if (o?.range) return `${o.range[0]}-${o.range[1]}`;
  if (o?.prefix) return `${o.prefix.addr}/${o.prefix.len}`;
  if (o?.elem) return elementText(o.elem.val);
  return JSON.stringify(e);
}

/** A live chain of one table: its place in the packet path and its rules' comments in order. */
export interface LiveChain {
  type?: string;
  hook?: string;
  prio?: number;
  rules: string[]; // each rule's comment, "(no comment)" for a rule without one
}

/** One table as the plan describes it: comment, chains by name, set elements by set name. */
export interface LiveTable {
  comment: string | null;
  chains: Map<string, LiveChain>;
  sets: Map<string, string[]>;
}

/**
 * Table `t` in `rs` (a listing of the ruleset or of that table alone), with `comment` taken
 * from the text listing (see commentOf).
 */
export function liveTable(rs: NftRuleset, t: NftTable, comment: string | null): LiveTable {
  const chains = new Map<string, LiveChain>();
  for (const c of rs.chains) {
    if (inTable(c, t) && !chains.has(c.name))
      chains.set(c.name, { type: c.type, hook: c.hook, prio: c.prio, rules: [] });
  }
  for (const r of rs.rules) if (inTable(r, t)) chains.get(r.chain)?.rules.push(r.comment ?? '(no comment)');
  const sets = new Map<string, string[]>();
  for (const s of rs.sets) if (inTable(s, t) && !sets.has(s.name)) sets.set(s.name, s.elem.map(elementText));
  return { comment, chains, sets };
}

/** The table's own comment in `nft list table` text (not a set's or chain's), or null. */
export function commentOf(text: string | null): string | null {
  if (!text) return null;
  const head = text.split(/\n\s*(?:set|chain|map|flowtable) /)[0] ?? '';
  return /^\s*comment "([^"]*)"/m.exec(head)?.[1] ?? null;
}
