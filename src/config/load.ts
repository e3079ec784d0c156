// Loads a configuration: YAML text -> ${VAR} substitution (env.ts) -> every check
// (checks.ts: the sections against schema.ts, then the cross-field checks) -> the defaulted
// Config (assemble.ts). Every problem in the file is collected and reported at once, each
// as "FILE:LINE: key.path: what is wrong (allowed ...)" (report.ts).
//
// Relative paths in a config file (events.sqlite, events.jsonl) resolve against the
// directory of the file, not the working directory: `honeygate events -c /etc/x.yaml` from
// anywhere, a systemd unit and a shell all read and write the same store. Text without a
// file resolves against the working directory.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isCollection, isMap, isPair, LineCounter, type Node, parseDocument } from 'yaml';
import { ERRORS } from '../errors.js';
import { kernelProblems } from '../kernel/plan.js';
import { openFileLimit } from '../net/fd-limit.js';
import { assemble, assembleEvents, type Checked } from './assemble.js';
import { checkDocument, checkEvents, checkShape, type Parsed, warnAbout } from './checks.js';
import { substituteEnv, type UnsetEnv } from './env.js';
import { format, isRecord, keyText, type Problem, Report, sorted } from './report.js';
import { adminSchema } from './schema.js';
import type { AdminConfig, Config, EventsConfig } from './types.js';

export { DEFAULT_CAPTURE } from './assemble.js';
export { formatPath } from './report.js';

export type LoadResult = { ok: true; config: Config; warnings: string[] } | { ok: false; errors: string[] };

export interface LoadOptions {
  env?: NodeJS.ProcessEnv; // for ${VAR}; default process.env
  baseDir?: string; // relative paths resolve against this; default the file's directory, or process.cwd() for text
  fileName?: string; // shown in messages; default "config"
  openFiles?: number | null; // the open-file limit maxConnections is checked against; default this process's
  unsetEnv?: UnsetEnv; // an unset ${VAR}: 'error' (default) or, for `check`, 'warn'
}

/** The events section alone, for `events -c FILE`: the other sections are neither substituted nor checked. */
export type EventsLoadResult =
  | { ok: true; config: { events: EventsConfig }; warnings: string[] }
  | { ok: false; errors: string[] };

// The deepest key a configuration has is 5 levels down (backends.NAME.health.rise); the limit
// leaves room for flow-style values while keeping every recursive step far from the stack's end.
const MAX_DEPTH = 64;
const MAX_LEAD = 512;
const TOO_DEEP = `nesting too deep: at most ${MAX_DEPTH} levels of maps and lists`;

/**
 * The line where the text may nest too deep to parse safely, or null. The yaml parser recurses
 * per level, and a stack overflow inside V8's regex compiler aborts the process instead of
 * throwing, so depth is bounded on the text first: open flow brackets (any, even quoted: no
 * config needs 64), and a line's indentation and `- `/`? `/`: ` indicators (a level takes at
 * least one of those characters; far below the depth that overflows).
 */
function deepTextLine(text: string): number | null {
  let flow = 0;
  let line = 1;
  let lineStart = true;
  let lead = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) {
      line++;
      lineStart = true;
      lead = 0;
      continue;
    }
    if (lineStart) {
      // space, tab, '-', '?', ':'
      if (c === 0x20 || c === 0x09 || c === 0x2d || c === 0x3f || c === 0x3a) {
        if (++lead > MAX_LEAD) return line;
      } else lineStart = false;
    }
    if (c === 0x5b || c === 0x7b) {
      if (++flow > MAX_DEPTH) return line;
    } else if ((c === 0x5d || c === 0x7d) && flow > 0) flow--;
  }
  return null;
}

/**
 * The first node of a shape no configuration has, walked without recursion: a collection
 * nested deeper than `max` levels, or a map or list used as a key (yaml's toJS() turns such
 * a key into a string, which takes seconds, or throws, for nested ones). Null when none.
 */
function oddNode(root: unknown, max: number): { node: Node; message: string } | null {
  const stack: [unknown, number][] = [[root, 0]];
  while (stack.length) {
    const [node, depth] = stack.pop()!;
    if (!isCollection(node)) continue;
    if (depth > max) return { node, message: TOO_DEEP };
    for (const item of node.items as unknown[]) {
      if (!isPair(item)) {
        stack.push([item, depth + 1]);
        continue;
      }
      if (isCollection(item.key)) return { node: item.key, message: 'a map or list used as a key' };
      stack.push([item.value, depth + 1]);
    }
  }
  return null;
}

/** True when every section parsed, so the document can be assembled. */
function complete(p: Parsed | undefined): p is Checked {
  return (
    p !== undefined &&
    !!p.limits &&
    !!p.events &&
    !!p.log &&
    !!p.firewall &&
    p.workers !== undefined &&
    (!p.adminWritten || !!p.admin)
  );
}

/** The document as read: its problems so far, and its value (undefined when it could not be read). */
interface Read {
  report: Report;
  yamlProblems: Problem[];
  raw: unknown;
}

/**
 * Parses the YAML and substitutes ${VAR}: in the whole document, or in the section `only`
 * (what a verb that reads one section needs; an unset variable elsewhere is none of its
 * business). Returns the lines to print when the text is too deep to parse at all.
 */
function read(text: string, opts: LoadOptions, only?: string): Read | string[] {
  const fileName = opts.fileName ?? 'config';
  const env = opts.env ?? process.env;
  const deepLine = deepTextLine(text);
  if (deepLine !== null) return [`${fileName}:${deepLine}: ${TOO_DEEP}`];
  const lines = new LineCounter();
  // logLevel error: yaml would print its own warnings to stderr; ours are collected below.
  const doc = parseDocument(text, {
    lineCounter: lines,
    prettyErrors: true,
    uniqueKeys: true,
    logLevel: 'error',
  });
  const report = new Report(doc, lines);
  const yamlProblems: Problem[] = [];
  for (const e of doc.errors) {
    const line = e.linePos?.[0]?.line ?? 1;
    // One syntax error tends to echo as "unexpected token" for every token after it on
    // the line; the first one per line is the one to read.
    if (yamlProblems.some((y) => y.line === line)) continue;
    let message = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    if (message.includes('Maximum call stack size exceeded')) {
      if (yamlProblems.some((y) => y.message === TOO_DEEP)) continue;
      message = TOO_DEEP; // the parser's own recursion gave up: say what is wrong with the file
    }
    yamlProblems.push({ line, col: e.linePos?.[0]?.col, path: [], message, kind: 'yaml' });
  }
  // Every later step (substitution, toJS, the checks) recurses: a document the parser survived
  // may still be too deep for them.
  const odd = yamlProblems.length ? null : oddNode(doc.contents, MAX_DEPTH);
  if (odd) {
    const pos = lines.linePos(odd.node.range?.[0] ?? 0);
    yamlProblems.push({ line: pos.line, col: pos.col, path: [], message: odd.message, kind: 'yaml' });
  }
  for (const w of doc.warnings)
    report.warn([], w.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''));

  let raw: unknown;
  if (!odd && !yamlProblems.some((y) => y.message === TOO_DEEP)) {
    if (only === undefined) substituteEnv(report, doc.contents, [], env, opts.unsetEnv);
    else if (isMap(doc.contents)) {
      const section = doc.contents.items.find((pair) => keyText(pair.key) === only);
      if (section) substituteEnv(report, section.value, [only], env, opts.unsetEnv);
    }
    try {
      raw = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      report.error([], `cannot read the document: ${(err as Error).message}`);
    }
  }
  return { report, yamlProblems, raw };
}

/**
 * The problems to print, sorted and formatted. After a syntax error the document is a
 * guess: only field problems above the first one are kept, since the rest (and every
 * cross-field check) may be echoes of it.
 */
function problemLines(fileName: string, { report, yamlProblems }: Read): string[] {
  let problems = report.problems;
  if (yamlProblems.length) {
    const firstBad = Math.min(...yamlProblems.map((y) => y.line));
    // Document-level problems (an odd top-level key) are the syntax error seen from above.
    const above = (x: Problem) => x.kind === 'field' && x.line < firstBad && x.path.length > 0;
    problems = [...yamlProblems, ...problems.filter(above)];
  }
  return sorted(problems).map((x) => format(fileName, x));
}

/** Loads configuration text. Never throws on bad input: every problem is in `errors`. */
export function loadConfigText(text: string, opts: LoadOptions = {}): LoadResult {
  const fileName = opts.fileName ?? 'config';
  const doc = read(text, opts);
  if (Array.isArray(doc)) return { ok: false, errors: doc };
  const { report, yamlProblems, raw } = doc;

  const baseDir = opts.baseDir ?? process.cwd();
  let p: Parsed | undefined;
  if (raw === undefined || raw === null) {
    if (!yamlProblems.length && !report.problems.length)
      report.error([], 'the configuration is empty (at least listeners: is needed)');
  } else if (!isRecord(raw)) {
    checkShape(report, raw);
  } else {
    p = checkDocument(report, raw, baseDir);
  }

  const errors = problemLines(fileName, doc);
  if (errors.length || !complete(p)) {
    if (!errors.length) errors.push(`${fileName}:1: ${ERRORS.HG_ERR_CONFIG}`);
    return { ok: false, errors };
  }

  const config = assemble(p, baseDir);
  // engine: kernel asks what only the assembled routes and listeners can answer
  for (const k of kernelProblems(config)) report.error(k.path, k.message);
  const late = problemLines(fileName, doc);
  if (late.length) return { ok: false, errors: late };
  warnAbout(report, config, opts.openFiles === undefined ? openFileLimit() : opts.openFiles);
  return { ok: true, config, warnings: sorted(report.warnings).map((x) => format(fileName, x)) };
}

/**
 * The events section of configuration text, checked and defaulted; the rest of the document
 * is only parsed as YAML (a syntax error anywhere is still one). Never throws.
 */
export function loadEventsText(text: string, opts: LoadOptions = {}): EventsLoadResult {
  const fileName = opts.fileName ?? 'config';
  const doc = read(text, opts, 'events');
  if (Array.isArray(doc)) return { ok: false, errors: doc };
  const { report, raw } = doc;
  const baseDir = opts.baseDir ?? process.cwd();
  let events: EventsConfig | null = null;
  if (raw !== undefined && raw !== null && !isRecord(raw)) checkShape(report, raw);
  else if (!doc.yamlProblems.length) {
    const parsed = checkEvents(report, isRecord(raw) ? raw.events : undefined, baseDir);
    if (parsed) events = assembleEvents(parsed, baseDir);
  }
  const errors = problemLines(fileName, doc);
  if (errors.length || !events) {
    if (!errors.length) errors.push(`${fileName}:1: ${ERRORS.HG_ERR_CONFIG}`);
    return { ok: false, errors };
  }
  return { ok: true, config: { events }, warnings: sorted(report.warnings).map((x) => format(fileName, x)) };
}

/** The text of a config file, or the problem line that says why it cannot be read. */
function readText(path: string): { text: string } | { errors: string[] } {
  try {
    return { text: readFileSync(path, 'utf8') };
  } catch (err) {
    return { errors: [`${path}: ${ERRORS.HG_ERR_CONFIG_READ}: ${(err as Error).message}`] };
  }
}

/**
 * Reads and loads a configuration file; messages start with the path as given, and relative
 * paths in it resolve against its directory.
 */
export function loadConfigFile(path: string, opts: Omit<LoadOptions, 'fileName'> = {}): LoadResult {
  const file = readText(path);
  if ('errors' in file) return { ok: false, errors: file.errors };
  return loadConfigText(file.text, { baseDir: dirname(resolve(path)), ...opts, fileName: path });
}

/** loadEventsText of a file (`events -c FILE`). */
export function loadEventsFile(path: string, opts: Omit<LoadOptions, 'fileName'> = {}): EventsLoadResult {
  const file = readText(path);
  if ('errors' in file) return { ok: false, errors: file.errors };
  return loadEventsText(file.text, { baseDir: dirname(resolve(path)), ...opts, fileName: path });
}

/** The admin section alone, for `collect` (which serves the admin API over its central store). */
export type AdminLoadResult =
  | { ok: true; admin: AdminConfig | null; warnings: string[] }
  | { ok: false; errors: string[] };

/**
 * The admin section of configuration text, checked and defaulted (null when the document
 * has none); the rest is only parsed as YAML, as for loadEventsText. Never throws.
 */
export function loadAdminText(text: string, opts: LoadOptions = {}): AdminLoadResult {
  const fileName = opts.fileName ?? 'config';
  const doc = read(text, opts, 'admin');
  if (Array.isArray(doc)) return { ok: false, errors: doc };
  const { report, raw } = doc;
  let admin: AdminConfig | null = null;
  let parsed = true;
  if (raw !== undefined && raw !== null && !isRecord(raw)) checkShape(report, raw);
  else if (!doc.yamlProblems.length && isRecord(raw) && raw.admin !== undefined) {
    const a = report.parse(adminSchema, raw.admin ?? {}, ['admin']);
    if (a) admin = { listen: a.listen, token: a.token };
    else parsed = false;
  }
  const errors = problemLines(fileName, doc);
  if (errors.length || !parsed) {
    if (!errors.length) errors.push(`${fileName}:1: ${ERRORS.HG_ERR_CONFIG}`);
    return { ok: false, errors };
  }
  return { ok: true, admin, warnings: sorted(report.warnings).map((x) => format(fileName, x)) };
}

/** loadAdminText of a file (`collect -c FILE`). */
export function loadAdminFile(path: string, opts: Omit<LoadOptions, 'fileName'> = {}): AdminLoadResult {
  const file = readText(path);
  if ('errors' in file) return { ok: false, errors: file.errors };
  return loadAdminText(file.text, { baseDir: dirname(resolve(path)), ...opts, fileName: path });
}
