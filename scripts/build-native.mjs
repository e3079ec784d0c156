#!/usr/bin/env node
// The native addon (native/*.cc), for package.json's "install" script (`npm install`,
// `npm ci`) and for packaging:
//
//   node scripts/build-native.mjs             the package's prebuild loads on this Node: done;
//                                             otherwise build build/Release/honeygate.node
//   node scripts/build-native.mjs --source    always build from source (also: npm install
//                                             --build-from-source, HONEYGATE_BUILD_FROM_SOURCE=1)
//   node scripts/build-native.mjs --prebuild  build prebuilds/linux-x64/honeygate.glibc.node with
//                                             prebuildify, for `npm pack` (package.json "prepack")
//
// The npm package carries the prebuild, so installing it needs no compiler: the addon uses only
// N-API (NAPI_VERSION 8), and one build loads on every Node >= 20 (node-gyp-build picks it,
// src/net/native.ts loads it). Offline: when this Node has its headers beside it (Debian's
// /usr/include/node, the official tarballs' include/node) node-gyp is pointed at them instead
// of downloading them.
//
// A failed build is a warning, not a failed install: only tproxy listeners, originalDst
// listeners and `source: transparent` backends need the addon.
// HONEYGATE_REQUIRE_NATIVE=1 makes it an error (CI, packaging).
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const output = path.join(root, 'build', 'Release', 'honeygate.node');
const mode = process.argv[2] ?? '';
if (!['', '--source', '--prebuild'].includes(mode)) {
  process.stderr.write('Usage: node scripts/build-native.mjs [--source | --prebuild]\n');
  process.exit(2);
}

/** The node-gyp to run, as [command, ...args], or null. */
function findNodeGyp() {
  // npm sets npm_config_node_gyp to its bundled copy in lifecycle scripts.
  const scripts = [process.env.npm_config_node_gyp];
  if (process.env.npm_execpath) {
    scripts.push(
      path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules/node-gyp/bin/node-gyp.js'),
    );
  }
  scripts.push(
    path.join(
      path.dirname(process.execPath),
      '..',
      'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    ),
  );
  for (const script of scripts) {
    if (script?.endsWith('.js') && existsSync(script)) return [process.execPath, script];
  }
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const dir of dirs) {
    const candidate = path.join(dir, 'node-gyp');
    if (isExecutable(candidate)) return [candidate];
  }
  // Run outside npm (node scripts/build-native.mjs): the copy bundled with the npm on PATH.
  for (const dir of dirs) {
    const npm = path.join(dir, 'npm');
    if (!isExecutable(npm)) continue;
    const script = path.join(path.dirname(realpathSync(npm)), '..', 'node_modules/node-gyp/bin/node-gyp.js');
    if (existsSync(script)) return [process.execPath, script];
  }
  return null;
}

function isExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** --nodedir when this Node's own headers are at hand and npm names no nodedir. */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return []; // node-gyp reads it from the environment
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const headers = path.join(prefix, 'include', 'node');
  if (existsSync(path.join(headers, 'node_api.h')) && existsSync(path.join(headers, 'common.gypi'))) {
    return [`--nodedir=${prefix}`];
  }
  return []; // node-gyp downloads the headers (needs the internet)
}

function warn(reason) {
  const lines = [
    '',
    `honeygate: WARNING: the native addon was not built: ${reason}`,
    '  tproxy listeners, originalDst listeners and `source: transparent` backends are unavailable;',
    '  everything else works. To build it: install a C++ toolchain (Debian: apt-get install g++ make',
    "  python3) and Node's headers (they come with Node; offline, point npm at them:",
    '  npm config set nodedir /usr), then run `npm rebuild honeygate` or, in its directory,',
    '  `node scripts/build-native.mjs`.',
    '',
  ];
  process.stderr.write(lines.join('\n'));
  process.exit(process.env.HONEYGATE_REQUIRE_NATIVE === '1' ? 1 : 0);
}

/**
 * The shipped prebuild that fits this Node and loads, or null. The same choice as
 * src/net/native.ts's loader: node-gyp-build's platform, arch, libc and N-API tags.
 */
function loadablePrebuild() {
  const folder = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  if (!existsSync(folder)) return null;
  let ngb;
  try {
    ngb = createRequire(import.meta.url)('node-gyp-build');
  } catch {
    return null; // a dependency: missing only in a broken install
  }
  const fits = readdirSync(folder)
    .filter((f) => f.endsWith('.node'))
    .map((f) => ngb.parseTags(f))
    .filter(ngb.matchTags('node', process.versions.modules))
    .sort(ngb.compareTags('node'));
  if (!fits[0]) return null;
  const file = path.join(folder, fits[0].file);
  // Loaded in a child: a prebuild that crashes on load must not take the install with it.
  const check = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', file], { stdio: 'ignore' });
  return check.status === 0 ? file : null;
}

/** prebuildify --napi: one build for every Node with N-API 8, into prebuilds/. */
function prebuild() {
  const bin = path.join(root, 'node_modules', 'prebuildify', 'bin.js');
  if (!existsSync(bin)) {
    process.stderr.write('honeygate: prebuildify is not installed (npm ci installs it)\n');
    process.exit(1);
  }
  const nodeGyp = findNodeGyp();
  // prebuildify spawns node-gyp itself: a script it can execute, not [node, script].
  const gypBin = nodeGyp?.at(-1);
  if (!gypBin || !isExecutable(gypBin)) {
    process.stderr.write('honeygate: node-gyp not found (it ships with npm)\n');
    process.exit(1);
  }
  const env = { ...process.env, PREBUILD_NODE_GYP: gypBin };
  // --target is this Node; nodedir makes node-gyp use its local headers (offline).
  const nodedir = nodedirArgs()[0];
  if (nodedir) env.npm_config_nodedir = nodedir.slice('--nodedir='.length);
  const args = [bin, '--napi', '--strip', '--tag-libc', '--target', `node@${process.versions.node}`];
  const run = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env });
  if (run.status !== 0) {
    process.stderr.write(`honeygate: prebuildify exited ${run.status ?? run.signal}\n`);
    process.exit(1);
  }
}

if (mode === '--prebuild') {
  prebuild();
  process.exit(0);
}
const fromSource =
  mode === '--source' ||
  process.env.HONEYGATE_BUILD_FROM_SOURCE === '1' ||
  process.env.npm_config_build_from_source === 'true';
if (!fromSource && loadablePrebuild()) process.exit(0); // nothing to build

const nodeGyp = findNodeGyp();
if (!nodeGyp) warn('node-gyp not found (it ships with npm)');
const [command, ...args] = nodeGyp;
args.push('rebuild', ...nodedirArgs());
const run = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
if (run.error) warn(`${command}: ${run.error.message}`);
if (run.status !== 0) warn(`node-gyp rebuild exited ${run.status ?? run.signal}`);
if (!existsSync(output)) warn(`node-gyp succeeded but ${output} is missing`);
