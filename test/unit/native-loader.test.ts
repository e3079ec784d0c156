// The addon's loader (src/net/native.ts): a local build first, then the prebuild the npm
// package carries (prebuilds/linux-x64, chosen by node-gyp-build's tags), and every path tried
// when neither loads.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { nativeAvailable, prebuildFor } from '../../src/net/native.js';

const DIST = fileURLToPath(new URL('../../', import.meta.url)); // dist/
const REPO = path.resolve(DIST, '..');

/** A copy of the wrapper in a package root of its own, with node_modules; `setup` adds files. */
async function copyWith(setup: (root: string) => void) {
  const root = mkdtempSync(path.join(tmpdir(), 'hg-loader-'));
  mkdirSync(path.join(root, 'dist/src/net'), { recursive: true });
  copyFileSync(path.join(DIST, 'src/errors.js'), path.join(root, 'dist/src/errors.js'));
  copyFileSync(path.join(DIST, 'src/net/native.js'), path.join(root, 'dist/src/net/native.js'));
  symlinkSync(path.join(REPO, 'node_modules'), path.join(root, 'node_modules'));
  setup(root);
  const mod = await import(pathToFileURL(path.join(root, 'dist/src/net/native.js')).href);
  return { root, mod, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

const built = nativeAvailable();

test('without build/, the prebuild for this platform loads', {
  skip: built.ok ? false : 'no addon built',
}, async () => {
  const { root, mod, cleanup } = await copyWith((r) => {
    const dir = path.join(r, 'prebuilds', `${process.platform}-${process.arch}`);
    mkdirSync(dir, { recursive: true });
    copyFileSync((built as { path: string }).path, path.join(dir, 'honeygate.glibc.node'));
  });
  try {
    const available = mod.nativeAvailable();
    assert.deepEqual(available, {
      ok: true,
      path: path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'honeygate.glibc.node'),
    });
    assert.equal(typeof mod.relayBoundary().records.accepted, 'number');
  } finally {
    cleanup();
  }
});

test('a prebuild for another libc or N-API-less ABI is passed over, and named in the reason', async () => {
  const { root, mod, cleanup } = await copyWith((r) => {
    const dir = path.join(r, 'prebuilds', `${process.platform}-${process.arch}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'honeygate.musl.node'), 'not for glibc');
    writeFileSync(path.join(dir, 'honeygate.abi1.node'), 'Node 0.x');
  });
  try {
    const available = mod.nativeAvailable();
    assert.equal(available.ok, false);
    assert.ok(
      available.reason.includes(`${root}/build/Release/honeygate.node (not found)`),
      available.reason,
    );
    assert.match(
      available.reason,
      /prebuilds\/linux-x64\/ \(none of honeygate\.(musl|abi1)\.node, honeygate\.(musl|abi1)\.node fits this Node\)/,
    );
  } finally {
    cleanup();
  }
});

test('prebuildFor: no prebuilds directory', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hg-loader-'));
  try {
    assert.deepEqual(prebuildFor(dir), {
      none: `${dir}/prebuilds/${process.platform}-${process.arch}/ (not found)`,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
