// `npm run bench` appends one line per run to bench/results/history.md: the run's name,
// commit, Node version and honeygate / HAProxy ratios, read from the results it writes.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

type History = {
  historyLine(name: string, results: unknown): string;
  appendHistory(file: string, name: string, results: unknown): void;
  HISTORY_HEADER: string[];
};
const { historyLine, appendHistory, HISTORY_HEADER }: History = await import(
  new URL('../../../bench/lib/history.mjs', import.meta.url).href
);

const best = (haproxy: number, honeygate: number, pp?: [number, number]) => ({
  targets: {
    haproxy: { best: haproxy },
    honeygate: { best: honeygate },
    ...(pp ? { 'haproxy-pp': { best: pp[0] }, 'honeygate-pp': { best: pp[1] } } : {}),
  },
});

const full = {
  machine: { node: 'v24.21.0', honeygate: '0.1.0 (commit 9a27451)' },
  layouts: [
    { id: 'shared', figures: { connrate: best(1, 5) } },
    {
      id: 'pinned',
      figures: {
        connrate: best(14_810, 13_232, [13_650, 12_618]),
        keepalive: best(46_239, 45_814),
        bulk: best(1485, 2027),
      },
    },
  ],
  idleMemory: best(3.29, 3.21),
  burst: best(0.89, 1),
  completeness: [
    { requests: 100, missing: 0, dropped: 0 },
    { requests: 300, missing: 1, dropped: 1 },
  ],
};

test('a full run: the pinned layout, PROXY v2, memory, burst and the share recorded', () => {
  assert.equal(
    historyLine('2026-11-26', full),
    '| 2026-11-26 | 9a27451 | v24.21.0 | 0.89 | 0.99 | 1.36 | 0.92 | 0.98 | 1.12 | 99.5 |',
  );
});

test('a partial run shows — for what it did not measure; uncommitted builds are marked', () => {
  const partial = {
    machine: { node: 'v20.20.2', honeygate: '0.1.0 (commit 9268cea plus lever 1, uncommitted)' },
  };
  assert.equal(
    historyLine('2026-11-25-x', partial),
    '| 2026-11-25-x | 9268cea+ | v20.20.2 | — | — | — | — | — | — | — |',
  );
});

test('appendHistory writes the header once, then one line per run', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hg-history-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'history.md');
  appendHistory(file, 'a', full);
  appendHistory(file, 'b', full);
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  assert.deepEqual(lines.slice(0, HISTORY_HEADER.length), HISTORY_HEADER);
  assert.deepEqual(
    lines.slice(HISTORY_HEADER.length).map((l) => l.split(' | ')[0]),
    ['| a', '| b'],
  );
});

test("bench/results/history.md opens with the appender's header", () => {
  const file = new URL('../../../bench/results/history.md', import.meta.url);
  const lines = readFileSync(file, 'utf8').split('\n');
  assert.deepEqual(lines.slice(0, HISTORY_HEADER.length), HISTORY_HEADER);
});
