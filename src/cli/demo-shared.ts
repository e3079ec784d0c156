// What `honeygate demo` and `demo --fleet` (demo-fleet.ts) share: where the program and the
// demo's scripts are, the prerequisites, the honeypot, waiting for a child's ready line, and
// the report of what the teardown removed.
import { type ChildProcess, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Topology } from '../netns/topology.js';

const HERE = path.dirname(fileURLToPath(import.meta.url)); // dist/src/cli
export const BIN = path.resolve(HERE, '../../../bin/honeygate.js');
export const DEMO = path.resolve(HERE, '../demo');
export const HONEYPOT_PORTS = [22, 80];
const READY_MS = 15_000;
/** The admin server's port inside the namespace of the gateway whose dashboard --keep opens. */
export const ADMIN_PORT = 9100;
/** Where --keep offers the dashboard in the root namespace (the next free port if taken). */
const DASHBOARD_PORT = 9100;
/** With --keep, the attack repeats this often, so the dashboard's live feed moves. */
const REATTACK_MS = 15_000;

/** --keep: says the farm is up, then attacks again every REATTACK_MS until Ctrl-C (destroyOnExit tears down). */
export async function attackUntilCtrlC(id: string, attack: () => Promise<unknown>): Promise<never> {
  say(
    `\nthe attack repeats every ${REATTACK_MS / 1000} s, for the dashboard's live feed` +
      `\nnamespaces ${id}-* are up; Ctrl-C removes them`,
  );
  for (;;) {
    await new Promise((r) => setTimeout(r, REATTACK_MS));
    await attack().catch(() => {});
  }
}

export function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Resolves with the first stdout line matching `pattern`, or rejects after `ms`. */
export function waitForLine(
  child: ChildProcess,
  pattern: RegExp,
  what: string,
  ms = READY_MS,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    let stderr = '';
    const timer = setTimeout(
      () => done(new Error(`${what}: not ready after ${ms} ms\n${stderr}${buffered}`)),
      ms,
    );
    const onData = (d: Buffer) => {
      buffered += d.toString();
      if (pattern.test(buffered)) done();
    };
    const onErr = (d: Buffer) => {
      stderr += d.toString();
    };
    const onExit = (code: number | null) =>
      done(new Error(`${what} exited (${code}) before it was ready\n${stderr}${buffered}`));
    const done = (err?: Error) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onErr);
    child.once('exit', onExit);
  });
}

/**
 * The routes and backends both demos give the gateway in front of the honeypot: SSH and HTTP
 * to it with `source: transparent`, the rest captured. `fallback`: capture while it is down.
 */
export function honeypotRouting(hp: { ip4: string; ip6: string }, fallback: boolean): string {
  const backend = (port: number) => `
    servers: ["${hp.ip4}:${port}", "[${hp.ip6}]:${port}"]
    source: transparent${fallback ? '\n    fallback: capture' : ''}`;
  return `routes:
  - name: ssh
    match: { dstPorts: [22, 2222] }
    forward: ssh-honeypot
  - name: web
    match: { protocol: http }
    forward: web-honeypot
  - name: everything-else
    capture: { timeout: 2s }
backends:
  ssh-honeypot:${backend(22)}
  web-honeypot:${backend(80)}
`;
}

/** Starts the demo's honeypot (demo/honeypot.js) in `ns`: what it accepted lands in `seen`. */
export function startHoneypot(
  t: Topology,
  ns: string,
): { seen: { peer: string; local: string }[]; ready: Promise<void> } {
  const honeypot = t.spawn(
    ns,
    [process.execPath, path.join(DEMO, 'honeypot.js'), ...HONEYPOT_PORTS.map(String)],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const seen: { peer: string; local: string }[] = [];
  let buffered = '';
  honeypot.stdout!.on('data', (d: Buffer) => {
    buffered += d.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const l of lines) if (l.startsWith('{')) seen.push(JSON.parse(l));
  });
  const ready = waitForLine(honeypot, new RegExp(`listening ${HONEYPOT_PORTS.at(-1)}`), 'the honeypot');
  return { seen, ready };
}

export function missingPrerequisite(): string | null {
  if (process.getuid?.() !== 0)
    return 'honeygate demo needs root (it creates network namespaces and nftables rules)';
  for (const [tool, pkg] of [
    ['ip', 'iproute2'],
    ['nft', 'nftables'],
  ]) {
    if (spawnSync(tool!, ['-V'], { stdio: 'ignore' }).error)
      return `honeygate demo needs ${tool} (apt-get install ${pkg})`;
  }
  return null;
}

/** The network namespaces whose names start with the farm's id. */
export function ownNamespaces(id: string): string[] {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return (list.stdout ?? '')
    .split('\n')
    .map((line) => line.split(' ')[0]!)
    .filter((ns) => ns.startsWith(`${id}-`))
    .sort();
}

/**
 * Prints what the teardown removed, then checks it: no namespace of the farm and no temp dir
 * left. Returns whether nothing is left.
 */
export function reportCleanup(
  id: string,
  made: string[],
  dir: string,
  signal?: NodeJS.Signals,
  files = 'config and events.db',
): boolean {
  say(`\n${signal ? `${signal}: ` : ''}cleaning up`);
  say('  stopped honeygate, the honeypot and the attackers');
  say(`  removed network namespaces ${made.join(', ')}`);
  say("    (with them their veth pairs, routes and honeygate's nftables rules)");
  say(`  removed ${dir} (${files})`);
  const left = [...ownNamespaces(id), ...(existsSync(dir) ? [dir] : [])];
  if (left.length > 0) {
    process.stderr.write(`honeygate demo: left behind: ${left.join(', ')}\n`);
    return false;
  }
  say(`nothing left behind: no ${id}-* namespace, no ${dir}`);
  return true;
}

/**
 * The dashboard from the root namespace without touching its network: a bridge in the
 * gateway's namespace listens on a Unix socket in `dir` and connects to the admin port; this
 * listens on 127.0.0.1 (DASHBOARD_PORT, or any free port) and hands each connection to it.
 */
export async function openDashboard(t: Topology, ns: string, dir: string): Promise<net.Server> {
  const socket = path.join(dir, 'admin.sock');
  const bridge = t.spawn(ns, [process.execPath, path.join(DEMO, 'bridge.js'), socket, String(ADMIN_PORT)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await waitForLine(bridge, /listening/, 'the dashboard bridge');
  const server = net.createServer((browser) => {
    const admin = net.connect(socket);
    browser.on('error', () => admin.destroy());
    admin.on('error', () => browser.destroy());
    browser.pipe(admin).pipe(browser);
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(DASHBOARD_PORT).catch(() => listen(0));
  return server;
}
