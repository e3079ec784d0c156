// The problems found in one configuration document, each with the line of its key:
// `FILE:LINE: key.path: what is wrong (allowed ...)`.
import { isMap, isScalar, isSeq, type LineCounter, type Node, type parseDocument } from 'yaml';
import type { z } from 'zod';

export type Path = (string | number)[];

/** Where a problem is and whether it may be a side effect of a YAML syntax error. */
export interface Problem {
  line: number;
  col?: number;
  path: Path;
  message: string;
  kind: 'yaml' | 'field' | 'cross';
}

/** `routes[2].forward`, `backends.cowrie.balance`, `backends["a b"].servers`. */
export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function keyText(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key);
}

/** Collects problems for one document and knows the line of every key path. */
export class Report {
  readonly problems: Problem[] = [];
  readonly warnings: Problem[] = [];
  constructor(
    private readonly doc: ReturnType<typeof parseDocument>,
    private readonly lines: LineCounter,
  ) {}

  /** The line of the deepest node on `path` that exists (a key's own line for mappings). */
  lineOf(path: Path): number {
    let node: unknown = this.doc.contents;
    let offset = (node as Node | null)?.range?.[0] ?? 0;
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => keyText(p.key) === String(seg));
        if (!pair) break;
        offset = (pair.key as Node | null)?.range?.[0] ?? offset;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number' && node.items[seg]) {
        node = node.items[seg];
        offset = (node as Node).range?.[0] ?? offset;
      } else {
        break;
      }
    }
    return this.lines.linePos(offset).line;
  }

  error(path: Path, message: string, kind: 'field' | 'cross' = 'cross', linePath: Path = path): void {
    this.problems.push({ line: this.lineOf(linePath), path, message, kind });
  }

  warn(path: Path, message: string): void {
    this.warnings.push({ line: this.lineOf(path), path, message, kind: 'cross' });
  }

  /** Parses `value` at `path` with a schema; returns the output, or undefined after recording its issues. */
  parse<S extends z.ZodType>(schema: S, value: unknown, path: Path): z.output<S> | undefined {
    const res = schema.safeParse(value, { reportInput: true });
    if (res.success) return res.data;
    for (const iss of res.error.issues) {
      const at = [...path, ...(iss.path as Path)];
      if (iss.code === 'unrecognized_keys') {
        for (const key of iss.keys)
          this.error(at, `unknown key '${key}' (${iss.message})`, 'field', [...at, key]);
      } else {
        this.error(at, iss.message, 'field');
      }
    }
    return undefined;
  }
}

/** One problem as a line: `FILE:LINE: key.path: message`. */
export function format(fileName: string, p: Problem): string {
  const where = p.col === undefined ? `${fileName}:${p.line}` : `${fileName}:${p.line}:${p.col}`;
  return p.path.length ? `${where}: ${formatPath(p.path)}: ${p.message}` : `${where}: ${p.message}`;
}

/** By line; problems on one line keep the order they were found in. */
export function sorted(problems: Problem[]): Problem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => a.p.line - b.p.line || a.i - b.i)
    .map((x) => x.p);
}
