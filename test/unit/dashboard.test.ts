// The dashboard's pure parts: CSV cells (attacker text must not become a spreadsheet
// formula) and the views' time ranges.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { csvCell } from '../../src/admin/dashboard.js';
import { RANGES, toRange } from '../../src/admin/dashboard-stats.js';

test('csvCell quotes per RFC 4180 and defuses formulas', () => {
  const cases: [string | number | null, string][] = [
    [null, ''],
    [42, '42'],
    [-1, '-1'], // a number is a number
    ['plain', 'plain'],
    ['a,b', '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ['line\r\nbreak', '"line\r\nbreak"'],
    ['=1+1', "'=1+1"],
    ['+cmd', "'+cmd"],
    ['-2+3', "'-2+3"],
    ['@SUM(A1)', "'@SUM(A1)"],
    ['\tx', "'\tx"],
    ['=HYPERLINK("x","y")', `"'=HYPERLINK(""x"",""y"")"`],
  ];
  for (const [input, want] of cases) assert.equal(csvCell(input), want, JSON.stringify(input));
});

test('toRange: slots start on a boundary and cover now', () => {
  const now = Date.UTC(2024, 4, 1, 12, 34, 56, 789);
  for (const name of Object.keys(RANGES)) {
    const r = toRange(name, now);
    assert.equal(r.since % r.bucketMs, 0, name);
    assert.ok(r.until > now, name);
    assert.ok(r.until - r.since >= RANGES[name as keyof typeof RANGES].spanMs, name);
    assert.ok(r.until - r.since < RANGES[name as keyof typeof RANGES].spanMs + r.bucketMs + 1, name);
  }
  assert.equal(toRange(null, now).name, '24h');
  assert.throws(() => toRange('30d', now), /range: "30d" is not one of 1h, 24h, 7d/);
  assert.throws(() => toRange('__proto__', now), /is not one of/);
});
