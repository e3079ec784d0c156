// `npm pack` of this checkout as the npm package users install: the compiled dist/src, the
// addon's sources and its prebuild (prebuilds/linux-x64, made by `build-native.mjs --prebuild`,
// as package.json's prepack does), and everything else package.json's "files" lists. The
// prebuild is compiled in a staging copy, so the checkout's own build/ is left alone (other
// tests load it meanwhile); dist/ is the one these tests run, not recompiled.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './honeygate.js';

/** What a test needs to pack and install: null when all is there, else why not. */
export function packMissing(): string | null {
  if (!fs.existsSync(path.join(ROOT, 'node_modules', 'prebuildify')))
    return 'prebuildify not installed (npm ci)';
  if (spawnSync('npm', ['--version']).status !== 0) return 'npm not on PATH';
  return null;
}

/**
 * Packs honeygate into `dest` (a directory) and resolves to the tarball's path. Throws with
 * the command's output when a step fails. `opts.addon`: an addon already built from this
 * checkout's native/ (build/Release/honeygate.node) goes in as the prebuild, which saves the
 * half minute of compiling one, for tests about what is around the addon rather than the addon.
 */
export function packHoneygate(dest: string, opts: { addon?: string } = {}): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-pack-'));
  try {
    for (const entry of [...pkg.files, 'package.json', 'README.md', 'CHANGELOG.md']) {
      const from = path.join(ROOT, entry);
      if (!fs.existsSync(from)) continue; // prebuilds/ is made below
      fs.cpSync(from, path.join(stage, entry), { recursive: true });
    }
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(stage, 'node_modules'));
    fs.rmSync(path.join(stage, 'prebuilds'), { recursive: true, force: true });
    if (opts.addon) {
      const prebuild = path.join(stage, 'prebuilds/linux-x64/honeygate.glibc.node');
      fs.mkdirSync(path.dirname(prebuild), { recursive: true });
      fs.copyFileSync(opts.addon, prebuild);
    } else {
      run(stage, process.execPath, ['scripts/build-native.mjs', '--prebuild']);
    }
    const out = run(stage, 'npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dest]);
    const [{ filename }] = JSON.parse(out) as [{ filename: string }];
    return path.join(dest, filename);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

function run(cwd: string, cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
  }
  return r.stdout;
}
