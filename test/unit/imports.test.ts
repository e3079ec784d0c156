// No import cycles in src/: a cycle ties modules that should stand in layers (flow, pump and
// the deadline sweep imported each other, as did the listener and the relay). Read from the
// .ts sources, since the compiled JS has lost `import type`, and a type import ties two
// modules together as much as a value import does.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

// `import ... from './x.js'`, `import type ...`, `export ... from`, `import './x.js'` and
// `import('./x.js')` (in code or in a type), over several lines too.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g;

/** Each module under src/ (a path relative to src/, .ts) with the modules of src/ it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8').replace(/^\s*\/\/.*$/gm, '');
    const deps = new Set<string>();
    for (const m of text.matchAll(SPECIFIER)) {
      const target = path.resolve(path.dirname(file), m[1]!).replace(/\.js$/, '.ts');
      if (target.startsWith(SRC)) deps.add(path.relative(SRC, target));
    }
    graph.set(path.relative(SRC, file), [...deps].sort());
  }
  return graph;
}

/** Every cycle found by a depth-first walk, each as the path that closes it (a -> b -> a). */
function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (m: string): void => {
    state.set(m, 'open');
    stack.push(m);
    for (const d of graph.get(m) ?? []) {
      if (state.get(d) === 'open') found.push([...stack.slice(stack.indexOf(d)), d]);
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(m, 'done');
  };
  for (const m of [...graph.keys()].sort()) if (!state.has(m)) visit(m);
  return found;
}

test('the walk finds a cycle, through type imports too', () => {
  const graph = new Map([
    ['a.ts', ['b.ts']],
    ['b.ts', ['c.ts']],
    ['c.ts', ['a.ts']],
    ['d.ts', ['a.ts']],
  ]);
  assert.deepEqual(cycles(graph), [['a.ts', 'b.ts', 'c.ts', 'a.ts']]);
  assert.deepEqual(
    cycles(
      new Map([
        ['a.ts', ['b.ts']],
        ['b.ts', []],
      ]),
    ),
    [],
  );
});

test('the import graph reads every kind of import', () => {
  const graph = importGraph();
  assert.ok(graph.size > 50, `${graph.size} modules`);
  // A type-only import (the actions only name Flow as a type) is an edge too.
  assert.ok(graph.get(path.join('actions', 'reject.ts'))?.includes(path.join('gateway', 'flow.ts')));
  for (const [m, deps] of graph)
    for (const d of deps) assert.ok(graph.has(d), `${m} imports ${d}: not found`);
});

test('no module in src/ imports itself through other modules', () => {
  const found = cycles(importGraph()).map((c) => c.join(' -> '));
  assert.deepEqual(found, []);
});

/** Every module `from` loads, itself included. */
function reachable(graph: Map<string, string[]>, from: string): Set<string> {
  const seen = new Set<string>();
  const stack = [from];
  while (stack.length) {
    const m = stack.pop()!;
    if (seen.has(m)) continue;
    seen.add(m);
    stack.push(...(graph.get(m) ?? []));
  }
  return seen;
}

// #12: an action's definition (config key, options, words) is config; its code is the data
// path. `check` and the config loader read the definitions and never load the code, the
// gateway, the native addon's wrapper or the event sinks.
test('check and the config loader do not import the data path', () => {
  const graph = importGraph();
  const dataPath = (m: string) =>
    (m.startsWith(`actions${path.sep}`) && !m.startsWith(path.join('actions', 'definitions'))) ||
    m.startsWith(`gateway${path.sep}`) ||
    m.startsWith(`events${path.sep}`) ||
    m === path.join('net', 'native.ts');
  for (const root of [path.join('cli', 'check.ts'), path.join('config', 'load.ts')]) {
    assert.ok(graph.has(root), root);
    const loaded = [...reachable(graph, root)];
    assert.ok(
      loaded.includes(path.join('actions', 'definitions', 'index.ts')),
      `${root} reads the definitions`,
    );
    assert.deepEqual(loaded.filter(dataPath).sort(), [], `${root} loads the data path`);
  }
  // The walk would see it: the gateway does load the action code.
  assert.ok(reachable(graph, path.join('gateway', 'gateway.ts')).has(path.join('actions', 'capture.ts')));
});
