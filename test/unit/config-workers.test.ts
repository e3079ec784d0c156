// `workers:`: a number of processes or auto (one per CPU); port 0 cannot be shared.
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { test } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';

const load = (text: string) => loadConfigText(text, { env: {}, baseDir: '/srv', fileName: 'config.yaml' });
const listener = (port: number) => `listeners:\n  - name: web\n    bind: "127.0.0.1:${port}"\n`;

test('workers: a number, auto, and 1 by default', () => {
  const cases: [string, number][] = [
    ['', 1],
    ['workers: 1\n', 1],
    ['workers: 4\n', 4],
    ['workers: auto\n', availableParallelism()],
  ];
  for (const [text, want] of cases) {
    const r = load(listener(8080) + text);
    assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
    assert.equal(r.config.workers, want, text);
  }
});

test('workers: anything else names the allowed values', () => {
  for (const bad of ['0', '-1', '1.5', '257', 'many', '"2"']) {
    const r = load(`${listener(8080)}workers: ${bad}\n`);
    assert.ok(!r.ok, bad);
    assert.match(
      r.errors.join('\n'),
      /config\.yaml:4: workers: expected a number of worker processes from 1 to 256, or auto/,
    );
  }
});

test('workers above 1 refuse port 0: each worker would get a port of its own', () => {
  const r = load(`${listener(0)}workers: 2\n`);
  assert.ok(!r.ok);
  assert.deepEqual(r.errors, [
    'config.yaml:3: listeners[0].bind: port 0 with workers: 2: every worker would get a port of its own (name the port)',
  ]);
  assert.ok(load(`${listener(0)}workers: 1\n`).ok, 'one process may let the kernel pick');
});
