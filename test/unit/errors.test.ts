// Keeps docs/errors.md and the error table in sync, in both directions.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERRORS } from '../../src/errors.js';

test('docs/errors.md lists exactly the codes of src/errors.ts, with the same messages', () => {
  const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
  const rows = new Map(
    [...doc.matchAll(/^\| (HG_ERR_[A-Z_]+) \| ([^|]+) \|/gm)].map((m) => [m[1]!, m[2]!.trim()] as const),
  );
  assert.deepEqual([...rows.keys()].sort(), Object.keys(ERRORS).sort());
  for (const [code, message] of Object.entries(ERRORS)) assert.equal(rows.get(code), message, code);
});
