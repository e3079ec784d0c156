// The native relay's epoll core (native/relay_core.cc) without Node: its C++ test
// (native/test/relay_core_test.cc) compiled with g++ into a temp dir and run. It copies
// both ways over loopback, half-closes each way, resets from each side, hits a byte cap and
// a refused connect, and checks the records the core reports. Also the ctnetlink parser's
// test (native/test/conntrack_test.cc): malformed conntrack events, every truncation and bad
// length, under AddressSanitizer where it links. Skipped, with the reason, where g++ is
// missing (the addon itself then comes prebuilt or not at all).
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // dist/test/unit -> the package
const NATIVE = path.join(ROOT, 'native');

const gxx = spawnSync('g++', ['--version'], { encoding: 'utf8' });
const skip = gxx.error
  ? `g++ is not installed (${gxx.error.message}): the relay core's C++ test needs it`
  : false;

test("relay core: native/test/relay_core_test.cc's cases pass", { skip }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hg-relay-core-'));
  try {
    const binary = path.join(dir, 'relay_core_test');
    // -O0: the build is most of this test's time; the core's speed is bench/'s business.
    await run('g++', [
      '-std=c++17',
      '-O0',
      '-Wall',
      '-Wextra',
      '-Werror',
      `-I${NATIVE}`,
      path.join(NATIVE, 'relay_core.cc'),
      path.join(NATIVE, 'test', 'relay_core_test.cc'),
      '-o',
      binary,
    ]);
    const result = spawnSync(binary, { encoding: 'utf8', timeout: 60_000 });
    const output = `${result.stdout}${result.stderr}`;
    assert.equal(result.status, 0, `relay_core_test failed:\n${output}`);
    assert.match(result.stdout, /^ok /m);
    assert.doesNotMatch(result.stdout, /^not ok /m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// AddressSanitizer and UBSan make a read past a message a failure, not luck; where they do
// not link (no libasan), the test still runs without them.
const sanitize = spawnSync('g++', ['-fsanitize=address,undefined', '-x', 'c++', '-', '-o', '/dev/null'], {
  input: 'int main() { return 0; }',
  encoding: 'utf8',
});
const SANITIZE = sanitize.status === 0 ? ['-fsanitize=address,undefined', '-fno-sanitize-recover=all'] : [];

test("ctnetlink parser: native/test/conntrack_test.cc's cases pass", { skip }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hg-conntrack-'));
  try {
    const binary = path.join(dir, 'conntrack_test');
    await run('g++', [
      '-std=c++17',
      '-O0',
      '-Wall',
      '-Wextra',
      '-Werror',
      ...SANITIZE,
      `-I${NATIVE}`,
      path.join(NATIVE, 'conntrack.cc'),
      path.join(NATIVE, 'test', 'conntrack_test.cc'),
      '-o',
      binary,
    ]);
    const result = spawnSync(binary, { encoding: 'utf8', timeout: 60_000 });
    const output = `${result.stdout}${result.stderr}`;
    assert.equal(result.status, 0, `conntrack_test failed:\n${output}`);
    assert.match(result.stdout, /^ok /m);
    assert.doesNotMatch(result.stdout, /^not ok /m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
