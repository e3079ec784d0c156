// What the benchmark needs before it starts: the peers from apt (like scripts/test.sh),
// honeygate built, and a description of the machine for the results file.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { output } from './util.mjs';

// binary -> Debian package. go-mmproxy, nft, conntrack and curl are for the transparent figures.
const TOOLS = {
  nginx: 'nginx',
  haproxy: 'haproxy',
  'go-mmproxy': 'go-mmproxy',
  wrk: 'wrk',
  ip: 'iproute2',
  ss: 'iproute2',
  taskset: 'util-linux',
  nft: 'nftables',
  conntrack: 'conntrack',
  curl: 'curl',
  'nats-server': 'nats-server',
  cc: 'gcc', // the recording floor (bench/sqlite-floor.c), the UDP load (bench/udp-load.c)
};
// Files that are not commands -> Debian package.
const FILES = {
  '/usr/include/sqlite3.h': 'libsqlite3-dev',
  '/usr/lib/nginx/modules/ngx_stream_module.so': 'libnginx-mod-stream', // the UDP figures' nginx
};

function have(bin) {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Installs missing peers with apt as root; without root, names what is missing and throws. */
export function ensureTools(log) {
  // Debian keeps haproxy and nginx in /usr/sbin, which a non-root PATH often lacks.
  process.env.PATH = `${process.env.PATH}:/usr/sbin:/sbin`;
  const missing = [
    ...new Set([
      ...Object.entries(TOOLS).flatMap(([bin, pkg]) => (have(bin) ? [] : [pkg])),
      ...Object.entries(FILES).flatMap(([file, pkg]) => (existsSync(file) ? [] : [pkg])),
    ]),
  ];
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`missing: ${missing.join(' ')} (run as root to install them with apt)`);
  }
  log(`installing with apt: ${missing.join(' ')}`);
  // Keep apt from starting the system nginx/haproxy (they would take port 80 and outlive
  // us): invoke-rc.d and deb-systemd-invoke obey policy-rc.d's exit 101.
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !existsSync(policy);
  if (ownPolicy) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } finally {
    if (ownPolicy) rmSync(policy, { force: true });
  }
  // Belt and braces: a policy that allowed the start, or systemd enabling the unit.
  for (const svc of ['nginx', 'haproxy']) {
    if (!missing.includes(svc)) continue;
    if (existsSync('/run/systemd/system')) output('systemctl', ['disable', '--now', svc]);
    else if (existsSync(`/run/${svc}.pid`)) output('service', [svc, 'stop']);
  }
}

/** Runs `npm ci` when node_modules is missing and `npm run build` when dist/ is. */
export function ensureBuilt(root, log) {
  if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) {
    log('npm ci');
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  }
  if (!existsSync(join(root, 'dist', 'src', 'main.js'))) {
    log('npm run build');
    execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  }
}

export function machineInfo(root, honeygateNode) {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryMiB: Math.round(os.totalmem() / 1024 ** 2),
    kernel: `${os.type()} ${os.release()}`,
    os: /^PRETTY_NAME="?([^"\n]*)/m.exec(safeRead('/etc/os-release'))?.[1] ?? 'unknown',
    node: output(honeygateNode, ['-v']),
    haproxy: /version (\S+)/.exec(output('haproxy', ['-v']))?.[1] ?? 'unknown',
    nginx: /nginx\/(\S+)/.exec(output('nginx', ['-v']))?.[1] ?? 'unknown',
    wrk: /^wrk (?:debian\/)?(\S+)/.exec(output('wrk', ['-v']))?.[1] ?? 'unknown',
    goMmproxy: output('dpkg-query', ['-W', 'go-mmproxy']).split('\t')[1] || 'unknown',
    honeygate: `${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version} (${gitRevision(root)})`,
    openFilesLimit: Number(output('sh', ['-c', 'ulimit -n'])),
  };
}

/** "commit abc1234", or "commit abc1234-dirty" when the tree measured has uncommitted changes. */
function gitRevision(root) {
  const res = spawnSync('git', ['-C', root, 'describe', '--always', '--dirty'], { encoding: 'utf8' });
  return res.status === 0 ? `commit ${res.stdout.trim()}` : `${root}, not a git checkout`;
}

function safeRead(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
