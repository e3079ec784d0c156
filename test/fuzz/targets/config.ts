// The config loader: loadConfigText over arbitrary text. Invariants: it never throws; it
// returns {ok: true, config, warnings} or {ok: false, errors} with at least one error, each
// "FILE:LINE[:COL]: [path: ]message".
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as Load from '../../../src/config/load.js';
import { type Check, KnownFinding, moduleUrl, ROOT, type Target } from '../engine.js';

// Defects already filed: the fuzzer counts them and says so once, without failing. Empty
// since the loader stops a document nested past 64 levels at the parse (the corpus keeps
// deep-5000, which once overflowed the stack).
const KNOWN: Array<{ issue: string; error: RegExp }> = [];

const EXAMPLES = join(ROOT, 'examples');
const examples = (): Buffer[] =>
  readdirSync(EXAMPLES)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => readFileSync(join(EXAMPLES, f)));

/** The config schema's keys as they appear in the examples, plus YAML syntax. */
function dictionary(): Buffer[] {
  const keys = new Set<string>();
  for (const text of examples()) {
    for (const m of text.toString('utf8').matchAll(/^\s*(?:- )?([A-Za-z_][A-Za-z0-9_]*):/gm)) keys.add(m[1]!);
  }
  const yaml = [
    '\n',
    '\n  ',
    '\n    - ',
    '- ',
    ': ',
    '{',
    '}',
    '[',
    ']',
    ', ',
    '&a ',
    '*a',
    '<<: ',
    '!!str ',
    '!!int ',
    '!!binary ',
    '? ',
    '|\n',
    '>-\n',
    '"',
    "'",
    '#',
    '---\n',
    '...\n',
    '%YAML 1.2\n',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the config's ${VAR} syntax
    '${HOME}',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the config's ${VAR} syntax
    '${X:-y}',
    '$${X}',
    'null',
    'true',
    '0x10',
    '1e9',
    '-1',
    '65536',
    '0.0.0.0',
    '::',
    '127.0.0.1:2222',
    '10.0.0.0/8',
    'ssh',
    'http',
    'tls',
    '22-25',
    '30s',
    '1h',
    '10mb',
    '~',
  ];
  return [...[...keys].map((k) => `${k}: `), ...yaml].map((s) => Buffer.from(s, 'utf8'));
}

const WHERE = /^fuzz\.yaml:\d+(?::\d+)?: \S/;

export const config: Target = {
  name: 'config',
  covers: [
    'config/load.js',
    'config/schema.js',
    'config/zod.js',
    'config/checks.js',
    'config/assemble.js',
    'config/env.js',
    'config/report.js',
  ],
  maxLength: 2048,
  dictionary: dictionary(),
  seeds: examples,
  async prepare(src: string): Promise<Check> {
    const { loadConfigText } = (await import(moduleUrl(src, 'config/load.js'))) as typeof Load;
    return (input) => {
      const text = input.toString('utf8');
      const r = loadConfigText(text, {
        env: {},
        baseDir: '/nonexistent/honeygate-fuzz',
        fileName: 'fuzz.yaml',
      });
      if (r.ok) {
        if (typeof r.config !== 'object' || r.config === null || !Array.isArray(r.warnings))
          throw new Error(`ok result without a config or warnings: ${JSON.stringify(r).slice(0, 200)}`);
        return undefined;
      }
      if (!Array.isArray(r.errors) || r.errors.length === 0) throw new Error('not ok, and no errors');
      for (const e of r.errors) {
        const k = KNOWN.find((x) => x.error.test(e));
        if (k) return new KnownFinding(k.issue, e);
        if (typeof e !== 'string' || !WHERE.test(e))
          throw new Error(`error not "FILE:LINE: ...": ${JSON.stringify(e)}`);
      }
      return undefined;
    };
  },
};
