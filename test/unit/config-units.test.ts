// Scalar forms users write in the YAML: durations, sizes, rates, ports, bind addresses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseBind, parsePortRange } from '../../src/config/schema.js';
import { parseDuration, parseRate, parseSize, sizeUpTo } from '../../src/config/zod.js';

test('durations: ms, s, m, h, d and plain seconds', () => {
  const cases: [unknown, number][] = [
    ['500ms', 500],
    ['5s', 5000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    [30, 30_000],
    [0.25, 250],
    ['30', 30_000],
  ];
  for (const [input, ms] of cases) assert.equal(parseDuration(input), ms, String(input));
  for (const bad of ['5x', '-1s', 's', '', null, true, [1], -3]) {
    assert.throws(
      () => parseDuration(bad),
      /invalid duration .*use 500ms, 5s, 5m, 1h, 1d or a number of seconds/,
    );
  }
  // Regression: Node fires longer timers after 1 ms, so `maxDuration: 30d` ended every flow at once.
  assert.equal(parseDuration('24d'), 24 * 86_400_000);
  for (const tooLong of ['30d', '25d', 2_200_000]) {
    assert.throws(() => parseDuration(tooLong), /at most 24d/);
  }
});

test('sizes: bytes, KiB/MiB/GiB (1024) and KB/MB/GB (1000)', () => {
  const cases: [unknown, number][] = [
    [4096, 4096],
    ['4096', 4096],
    ['4KiB', 4096],
    ['10MiB', 10 * 1024 * 1024],
    ['1GiB', 1024 ** 3],
    ['4KB', 4000],
    ['2MB', 2_000_000],
    ['1GB', 1e9],
    ['0', 0],
  ];
  for (const [input, bytes] of cases) assert.equal(parseSize(input), bytes, String(input));
  for (const bad of ['4XB', '-1', 'KiB', 1.5, null]) assert.throws(() => parseSize(bad), /invalid size/);
});

test('rates: per second, minute, hour', () => {
  assert.deepEqual(parseRate('50/s'), { count: 50, perMs: 1000 });
  assert.deepEqual(parseRate('600/m'), { count: 600, perMs: 60_000 });
  assert.deepEqual(parseRate('1000/h'), { count: 1000, perMs: 3_600_000 });
  assert.deepEqual(parseRate(20), { count: 20, perMs: 1000 });
  for (const bad of ['50', '0/s', '5/x', '/s', null]) {
    assert.throws(() => parseRate(bad), /invalid rate .* \(use 50\/s, 600\/m or 1000\/h\)/);
  }
});

test('ports and ranges: 1-65535, from <= to', () => {
  assert.deepEqual(parsePortRange(22), { from: 22, to: 22 });
  assert.deepEqual(parsePortRange('8000-8099'), { from: 8000, to: 8099 });
  assert.deepEqual(parsePortRange('1-65535'), { from: 1, to: 65535 });
  assert.throws(() => parsePortRange('0'), /invalid port "0" \(a port 1-65535/);
  assert.throws(() => parsePortRange('65536'), /invalid port/);
  assert.throws(
    () => parsePortRange('99-3'),
    /invalid port range "99-3" \(the first port must not exceed the last\)/,
  );
});

test('bind addresses: IPv4, IPv6 in brackets, ranges, port 0 for tests', () => {
  assert.deepEqual(parseBind('0.0.0.0:2000-2999'), { host: '0.0.0.0', ports: { from: 2000, to: 2999 } });
  assert.deepEqual(parseBind('[::]:80'), { host: '::', ports: { from: 80, to: 80 } });
  assert.deepEqual(parseBind('127.0.0.1:0'), { host: '127.0.0.1', ports: { from: 0, to: 0 } });
  assert.throws(() => parseBind('localhost:80'), /"localhost" is not an IP address/);
  assert.throws(() => parseBind('::1:80'), /invalid bind address/);
  assert.throws(() => parseBind('127.0.0.1:0-5'), /port 0 cannot start a range/);
});

// Regression: "99999999999999999999GiB" passed as 1e29 bytes; firstBytes is held per flow.
test('sizes must be safe integers, and firstBytes at most 1 MiB', () => {
  assert.throws(() => parseSize('99999999999999999999GiB'), /too large/);
  assert.equal(sizeUpTo(1024 ** 2, '1MiB')('1MiB'), 1024 ** 2);
  assert.throws(() => sizeUpTo(1024 ** 2, '1MiB')('2MiB'), /at most 1MiB/);
});
