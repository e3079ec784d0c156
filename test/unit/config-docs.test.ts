// Keeps docs/configuration.md and the config schema in sync, in both directions: every key
// the schema accepts has a row, every row names a key the schema accepts, and each row's
// default is the schema's (the documented text parsed through the key's own schema).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import {
  accountSchema,
  adminSchema,
  backendSchema,
  eventsSchema,
  firewallSchema,
  limitsSchema,
  listenerSchema,
  logSchema,
  routeSchema,
  TOP_KEYS,
  workers,
} from '../../src/config/schema.js';
import { conv } from '../../src/config/zod.js';
import { containSchema } from '../../src/contain/schema.js';

type Schema = z.ZodType;
type Def = {
  type: string;
  innerType?: Schema;
  in?: Schema;
  out?: Schema;
  shape?: Record<string, Schema>;
  element?: Schema;
};
const def = (s: Schema): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

// How each top-level section is read (src/config/load.ts parses each on its own); the
// `workers` default of 1 is load.ts's.
const SECTIONS: Record<(typeof TOP_KEYS)[number], { prefix: string; schema: Schema }> = {
  listeners: { prefix: 'listeners[].', schema: listenerSchema },
  routes: { prefix: 'routes[].', schema: routeSchema },
  backends: { prefix: 'backends.<name>.', schema: backendSchema },
  limits: { prefix: 'limits.', schema: limitsSchema },
  events: { prefix: 'events.', schema: eventsSchema },
  admin: { prefix: 'admin.', schema: adminSchema },
  firewall: { prefix: 'firewall.', schema: firewallSchema },
  contain: { prefix: 'contain.', schema: containSchema },
  log: { prefix: 'log.', schema: logSchema },
  workers: { prefix: 'workers', schema: conv(workers).default(1) },
  user: { prefix: 'user', schema: accountSchema },
  group: { prefix: 'group', schema: accountSchema },
};

/** The object inside optional/default/preprocess wrappers, or undefined for a leaf. */
function objectOf(s: Schema): Record<string, Schema> | undefined {
  const d = def(s);
  if (d.type === 'object') return d.shape;
  if ((d.type === 'optional' || d.type === 'default') && d.innerType) return objectOf(d.innerType);
  if (d.type === 'pipe' && d.out) return objectOf(d.out);
  return undefined;
}

/** The element schema of a list (inside optional/default wrappers), or undefined. */
function listOf(s: Schema): Schema | undefined {
  const d = def(s);
  if (d.type === 'array') return d.element;
  if ((d.type === 'optional' || d.type === 'default') && d.innerType) return listOf(d.innerType);
  return undefined;
}

/** Every key path of the schema, each with the schema that parses its value. */
function walk(prefix: string, s: Schema, out: Map<string, Schema>): void {
  const shape = objectOf(s);
  if (!shape) return;
  for (const [key, child] of Object.entries(shape)) {
    out.set(prefix + key, child);
    walk(`${prefix}${key}.`, child, out);
    // a list of mappings (contain.allow): its keys as `key[].name`
    const items = listOf(child);
    if (items) walk(`${prefix}${key}[].`, items, out);
  }
}

function schemaKeys(): Map<string, Schema> {
  const keys = new Map<string, Schema>();
  for (const { prefix, schema } of Object.values(SECTIONS)) {
    if (objectOf(schema)) walk(prefix, schema, keys);
    else keys.set(prefix, schema);
  }
  return keys;
}

const doc = readFileSync(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');
const rows = new Map(
  [...doc.matchAll(/^\| `([A-Za-z<>[\].]+)` \| ([^|]+) \|/gm)].map((m) => [m[1]!, m[2]!.trim()] as const),
);

test('docs/configuration.md has a row for exactly the keys of the schema', () => {
  assert.deepEqual([...rows.keys()].sort(), [...schemaKeys().keys()].sort());
  assert.deepEqual(Object.keys(SECTIONS).sort(), [...TOP_KEYS].sort(), 'every top-level section is walked');
});

test("each documented default is the schema's", () => {
  for (const [key, schema] of schemaKeys()) {
    const cell = rows.get(key);
    if (cell === undefined) continue; // reported by the test above
    const actual = schema.safeParse(undefined);
    const value = /^`([^`]*)`$/.exec(cell);
    if (value) {
      assert.ok(actual.success, `${key}: documented default ${cell}, but the schema requires it`);
      assert.deepEqual(schema.parse(parseYaml(value[1]!)), actual.data, `${key}: default ${cell}`);
    } else if (/^required($| with )/.test(cell)) {
      // "required without `tproxy`" is a rule between keys, checked in load.ts: optional here
      assert.ok(!actual.success, `${key}: documented as required, but the schema has it optional`);
    } else {
      assert.ok(actual.success, `${key}: documented as optional (${cell}), but the schema requires it`);
      assert.ok(
        actual.data == null,
        `${key}: documented without a default (${cell}), schema: ${JSON.stringify(actual.data)}`,
      );
    }
  }
});
