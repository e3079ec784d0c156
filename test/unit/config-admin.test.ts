// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${VAR} in plain strings is the config syntax under test
// loadAdminText: the admin section alone, for `honeygate collect` (its admin API over the
// central store). Same keys and checks as a gateway's admin:, env substituted in it only.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadAdminText } from '../../src/config/load.js';

test('no admin section: no admin API', () => {
  const r = loadAdminText('events:\n  nats: { servers: ["nats://127.0.0.1:4222"] }\n');
  assert.deepEqual(r, { ok: true, admin: null, warnings: [] });
});

test('the defaults and ${VAR} of a gateway admin section; other sections not substituted', () => {
  const r = loadAdminText('admin:\n  token: "${T}"\nlisteners: "${UNSET_ELSEWHERE}"\n', {
    env: { T: 'abc' },
  });
  assert.ok(r.ok);
  assert.deepEqual(r.admin, { listen: { host: '127.0.0.1', port: 9100 }, token: 'abc' });
});

test('a bad admin section is an error with its line', () => {
  const r = loadAdminText('events: {}\nadmin:\n  listen: "nowhere"\n  token: "a b"\n', {
    fileName: 'c.yaml',
  });
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.ok(
    r.errors.some((e) => /^c\.yaml:3: admin\.listen/.test(e)),
    r.errors.join('\n'),
  );
  assert.ok(
    r.errors.some((e) => /^c\.yaml:4: admin\.token: .*a space/.test(e)),
    r.errors.join('\n'),
  );
});
