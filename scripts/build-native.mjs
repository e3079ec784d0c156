#!/usr/bin/env node
// Builds the native addon (native/honeygate.cc -> build/Release/honeygate.node) with node-gyp;
// package.json's "install" script runs it at `npm install` / `npm ci`. Offline: when this
// Node has its headers beside it (Debian's /usr/include/node, the official tarballs'
// include/node) node-gyp is pointed at them instead of downloading them.
//
// A failed build is a warning, not a failed install: only tproxy listeners, originalDst
// listeners and `source: transparent` backends need the addon.
// HONEYGATE_REQUIRE_NATIVE=1 makes it an error (CI, packaging).
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const output = path.join(root, 'build', 'Release', 'honeygate.node');

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

const nodeGyp = findNodeGyp();
if (!nodeGyp) warn('node-gyp not found (it ships with npm)');
const [command, ...args] = nodeGyp;
args.push('rebuild', ...nodedirArgs());
const run = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
if (run.error) warn(`${command}: ${run.error.message}`);
if (run.status !== 0) warn(`node-gyp rebuild exited ${run.status ?? run.signal}`);
if (!existsSync(output)) warn(`node-gyp succeeded but ${output} is missing`);
