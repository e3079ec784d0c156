// Every example in examples/ loads without errors, and its meaning (listeners, backends,
// routing table) matches a golden file in test/helpers/fixtures/config/. After an intended
// change, regenerate with: UPDATE_GOLDEN=1 node --test dist/test/unit/config-examples.test.js
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkReport } from '../../src/cli/check.js';
import { loadConfigFile } from '../../src/config/load.js';

// dist/test/unit -> repository root
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLES = `${ROOT}examples/`;
const GOLDEN = `${ROOT}test/helpers/fixtures/config/`;
const ENV = { HONEYGATE_TOKEN: 'example-token' };

const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml'));

test('the three documented examples exist', () => {
  for (const f of ['honeygate.yaml', 'proxy-protocol.yaml', 'farm.yaml']) assert.ok(files.includes(f), f);
});

for (const file of files) {
  test(`examples/${file} loads and matches its golden routing table`, () => {
    const saved = process.env.HONEYGATE_TOKEN;
    process.env.HONEYGATE_TOKEN = ENV.HONEYGATE_TOKEN;
    let result: ReturnType<typeof loadConfigFile>;
    try {
      result = loadConfigFile(`${EXAMPLES}${file}`);
    } finally {
      if (saved === undefined) delete process.env.HONEYGATE_TOKEN;
      else process.env.HONEYGATE_TOKEN = saved;
    }
    if (!result.ok) assert.fail(result.errors.join('\n'));
    assert.deepEqual(result.warnings, [], 'examples should load without warnings');
    const actual = `${checkReport(`examples/${file}`, result.config, result.warnings).join('\n')}\n`;
    const golden = `${GOLDEN}${file.replace(/\.yaml$/, '.txt')}`;
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(golden, actual);
    assert.equal(actual, readFileSync(golden, 'utf8'));
  });
}
