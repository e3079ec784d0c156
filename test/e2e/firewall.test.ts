// `honeygate firewall` against a real kernel, in a throwaway network namespace (root):
// apply is idempotent, remove leaves the namespace exactly as it was (also beside a foreign
// nft table and foreign ip rules), verify notices a flushed ruleset and a deleted ip rule,
// and `apply --confirm` rolls back by itself unless confirmed.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BIN, ROOT } from '../helpers/honeygate.js';
import { needsRoot, rootState } from '../helpers/netns.js';
import { which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

const NS = `hgfw-${process.pid}`;
const skip =
  needsRoot() ||
  (which('nft') ? false : 'nft not installed (Debian package nftables)') ||
  (which('ip') ? false : 'ip not installed (Debian package iproute2)');

const CONFIG = `
listeners:
  - name: all-ports
    tproxy: { port: 15001 }
    divert: { interface: eth0, exclude: ["8000-8010"] }
routes:
  - forward: cowrie
backends:
  cowrie: { servers: ["192.0.2.10:2222"], source: transparent }
admin: { listen: "127.0.0.1:9100" }
`;
// The same firewall settings, IPv4 only: the state a confirm rollback must come back to.
const CONFIG_V4 = `
listeners:
  - name: v4-only
    tproxy: { port: 15001, address: 127.0.0.1 }
    divert: { interface: eth0, ports: "1-1024" }
`;

let dir = '';
let configPath = '';
let configV4Path = '';
let stateDir = '';
let rootBefore: Record<string, string> = {};

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A command inside the namespace. */
function inNs(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      'ip',
      ['netns', 'exec', NS, ...argv],
      { cwd: ROOT, timeout: 30_000, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** `honeygate ARGS` inside the namespace, with the commit-confirm state in the test's dir. */
function hg(...args: string[]): Promise<Result> {
  return inNs([process.execPath, BIN, ...args], { HONEYGATE_STATE_DIR: stateDir });
}

async function ok(...args: string[]): Promise<string> {
  const r = await hg(...args);
  assert.equal(r.code, 0, `honeygate ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function sh(...argv: string[]): Promise<string> {
  const r = await inNs(argv);
  assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Everything apply and remove may touch, as text. */
async function netState(): Promise<Record<string, string>> {
  return {
    'nft list ruleset': await sh('nft', 'list', 'ruleset'),
    'ip rule': await sh('ip', 'rule'),
    'ip -6 rule': await sh('ip', '-6', 'rule'),
    'ip route show table all': await sh('ip', 'route', 'show', 'table', 'all'),
    'ip -6 route show table all': await sh('ip', '-6', 'route', 'show', 'table', 'all'),
  };
}

/** verify(config) run inside the namespace (it reads the current namespace's state). */
async function verifyInNs(file: string): Promise<string[]> {
  const script = `
    import { loadConfigFile } from ${JSON.stringify(path.join(ROOT, 'dist/src/config/load.js'))};
    import { verify } from ${JSON.stringify(path.join(ROOT, 'dist/src/firewall/apply.js'))};
    const r = loadConfigFile(process.argv[1]);
    if (!r.ok) throw new Error(r.errors.join('\\n'));
    console.log(JSON.stringify(await verify(r.config)));
  `;
  const r = await inNs([process.execPath, '--input-type=module', '-e', script, file]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as string[];
}

function stateFiles(): string[] {
  return fs.existsSync(stateDir) ? fs.readdirSync(stateDir) : [];
}

/** The rollback child recorded in the (only) state file, if any. */
function rollbackPid(): number | null {
  const f = stateFiles().find((n) => n.endsWith('.json'));
  if (!f) return null;
  return (JSON.parse(fs.readFileSync(path.join(stateDir, f), 'utf8')) as { pid: number | null }).pid;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

before(() => {
  if (skip) return;
  rootBefore = rootState();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-fw-e2e-'));
  stateDir = path.join(dir, 'state');
  configPath = path.join(dir, 'honeygate.yaml');
  configV4Path = path.join(dir, 'v4.yaml');
  fs.writeFileSync(configPath, CONFIG);
  fs.writeFileSync(configV4Path, CONFIG_V4);
  const run = (...argv: string[]) => {
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  };
  run('ip', 'netns', 'add', NS);
  run('ip', '-n', NS, 'link', 'set', 'lo', 'up');
  run('ip', '-n', NS, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0-peer');
  run('ip', '-n', NS, 'addr', 'add', '203.0.113.1/24', 'dev', 'eth0');
  run('ip', '-n', NS, 'addr', 'add', '2001:db8:f::1/64', 'dev', 'eth0', 'nodad');
  // No IPv6 link-local addresses: they appear a moment after `up` and would change the
  // routing tables under the before/after comparisons.
  run('ip', '-n', NS, 'link', 'set', 'eth0', 'addrgenmode', 'none');
  run('ip', '-n', NS, 'link', 'set', 'eth0-peer', 'addrgenmode', 'none');
  run('ip', '-n', NS, 'link', 'set', 'eth0', 'up');
  run('ip', '-n', NS, 'link', 'set', 'eth0-peer', 'up');
});

after(() => {
  if (skip) return;
  const pid = rollbackPid();
  if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
  spawnSync('ip', ['netns', 'del', NS]);
  fs.rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
});

test('apply twice: the second changes nothing; show says the state is in place', { skip }, async () => {
  const empty = await netState();
  const first = await ok('firewall', 'apply', '-c', configPath);
  assert.match(first, /applied table inet honeygate \(2 divert rules\)/);
  assert.match(
    first,
    /lock-out protection: 22 \(SSH: the default port, no listening sshd found\), 9100 \(admin API/,
  );
  assert.match(first, /added: {3}ip -4 rule pref 10000 fwmark 0x1000\/0x1000 lookup 4210/);
  const once = await netState();
  assert.notDeepEqual(once, empty);
  assert.match(
    once['nft list ruleset']!.replace(/\s+/g, ' '),
    /set all_ports_ports \{[^}]*elements = \{ 1-21, 23-7999, 8011-9099, 9101-65535 \}/,
  );
  assert.match(once['ip -6 rule']!, /10000:\s+from all fwmark 0x1000\/0x1000 lookup 4210/);
  assert.match(once['ip -6 route show table all']!, /local default dev lo table 4210/);

  const second = await ok('firewall', 'apply', '-c', configPath);
  assert.match(second, /present: ip -4 rule pref 10000/);
  assert.doesNotMatch(second, /added:/);
  assert.deepEqual(await netState(), once);

  const shown = await ok('firewall', 'show', '-c', configPath);
  assert.match(shown, /tproxy ip to 127\.0\.0\.1:15001/);
  assert.match(shown, /# in place: the live state matches the config/);
  assert.deepEqual(await verifyInNs(configPath), []);
});

test('verify notices a flushed ruleset and a deleted ip rule; apply puts them back', { skip }, async () => {
  await ok('firewall', 'apply', '-c', configPath);
  await sh('nft', 'flush', 'ruleset');
  assert.deepEqual(await verifyInNs(configPath), ['table inet honeygate is missing']);
  assert.match(
    await ok('firewall', 'show', '-c', configPath),
    /# differences[^\n]*\n#\s+table inet honeygate is missing/,
  );

  await ok('firewall', 'apply', '-c', configPath);
  await sh('ip', 'rule', 'del', 'pref', '10000', 'fwmark', '0x1000/0x1000', 'lookup', '4210');
  assert.deepEqual(await verifyInNs(configPath), [
    'missing: ip -4 rule add pref 10000 fwmark 0x1000/0x1000 lookup 4210',
  ]);

  await ok('firewall', 'apply', '-c', configPath);
  await sh('nft', 'delete', 'rule', 'inet', 'honeygate', 'output', 'handle', await outputRuleHandle());
  assert.deepEqual(await verifyInNs(configPath), [
    'chain output: rules differ (missing "honeygate: mark transparent upstream flows")',
  ]);

  await ok('firewall', 'apply', '-c', configPath);
  assert.deepEqual(await verifyInNs(configPath), []);
  // Another config's table (same settings) is not this config's table.
  assert.match((await verifyInNs(configV4Path)).join('\n'), /table inet honeygate differs from the config/);
});

async function outputRuleHandle(): Promise<string> {
  const text = await sh('nft', '-a', 'list', 'chain', 'inet', 'honeygate', 'output');
  const m = /socket transparent 1 ct mark set .* # handle (\d+)/.exec(text);
  assert.ok(m, text);
  return m[1]!;
}

test('remove restores the namespace exactly, beside a foreign table and foreign ip rules', {
  skip,
}, async () => {
  await ok('firewall', 'remove', '-c', configPath);
  // Foreign state that shares what it can with honeygate's: the same pref and fwmark with
  // another table, a DNAT rule, a route in a neighbouring table.
  await sh('nft', 'add', 'table', 'ip', 'other');
  await sh('nft', 'add chain ip other pre { type nat hook prerouting priority dstnat; policy accept; }');
  await sh('nft', 'add rule ip other pre tcp dport 8080 dnat to 192.0.2.10:80');
  await sh('ip', 'rule', 'add', 'pref', '10000', 'fwmark', '0x1000/0x1000', 'lookup', '4211');
  await sh('ip', '-6', 'rule', 'add', 'pref', '9000', 'fwmark', '0x2000', 'lookup', '100');
  await sh('ip', 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '4211');
  const before = await netState();

  await ok('firewall', 'apply', '-c', configPath);
  await ok('firewall', 'apply', '-c', configPath);
  const applied = await netState();
  assert.match(applied['nft list ruleset']!, /table ip other/);
  assert.match(applied['nft list ruleset']!, /table inet honeygate/);

  const removed = await ok('firewall', 'remove', '-c', configPath);
  assert.match(removed, /deleted table inet honeygate/);
  assert.deepEqual(await netState(), before);
  // Removing again finds nothing and still changes nothing.
  assert.match(await ok('firewall', 'remove', '-c', configPath), /table inet honeygate was not there/);
  assert.deepEqual(await netState(), before);
});

test('apply --confirm without confirm rolls back to the previous state by itself', { skip }, async () => {
  // From nothing: the rollback deletes the table and the routing it added.
  await ok('firewall', 'remove', '-c', configPath);
  const nothing = await netState();
  const out = await ok('firewall', 'apply', '-c', configPath, '--confirm', '2s');
  assert.match(out, /commit-confirm: the previous firewall state comes back at .* \(in 2 s\)/);
  assert.match(out, /honeygate firewall confirm/);
  const pid = rollbackPid();
  assert.ok(pid && alive(pid), 'a rollback process is waiting');
  // Detached: it leads its own session, so closing the terminal (SIGHUP) cannot reach it.
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const session = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
  assert.equal(session, pid);
  assert.match((await netState())['nft list ruleset']!, /table inet honeygate/);
  await waitFor(
    'the rollback to restore the empty state',
    async () => {
      const now = await netState();
      return JSON.stringify(now) === JSON.stringify(nothing) && stateFiles().length === 0;
    },
    15_000,
    200,
  );
  assert.deepEqual(await netState(), nothing);

  // From another applied config: the rollback loads its table again and drops the IPv6 routing.
  await ok('firewall', 'apply', '-c', configV4Path);
  const v4 = await netState();
  await ok('firewall', 'apply', '-c', configPath, '--confirm', '2s');
  assert.match((await netState())['ip -6 rule']!, /fwmark 0x1000\/0x1000 lookup 4210/);
  await waitFor(
    'the rollback to restore the IPv4-only state',
    async () => {
      const now = await netState();
      return JSON.stringify(now) === JSON.stringify(v4) && stateFiles().length === 0;
    },
    15_000,
    200,
  );
  assert.deepEqual(await verifyInNs(configV4Path), []);
});

test('apply --confirm then confirm: the new state stays', { skip }, async () => {
  await ok('firewall', 'remove', '-c', configPath);
  const r = await hg('firewall', 'confirm');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /nothing to confirm/);

  // 10 s: on a loaded machine (load average 10 on 2 cores) starting the CLI twice took
  // longer than the 2 s this used, and the rollback came first.
  await ok('firewall', 'apply', '-c', configPath, '--confirm', '10s');
  const applied = await netState();
  const pid = rollbackPid()!;
  const deadline = Date.now() + 10_000;
  assert.equal((await ok('firewall', 'confirm')).trim(), 'kept');
  assert.deepEqual(stateFiles(), []);
  // Past the deadline, with the rollback process gone, nothing has changed.
  await waitFor(
    'the deadline to pass and the rollback process to end',
    () => Date.now() > deadline + 1000 && !alive(pid),
    15_000,
    100,
  );
  assert.deepEqual(await netState(), applied);
  assert.deepEqual(await verifyInNs(configPath), []);
  await ok('firewall', 'remove', '-c', configPath);
});

test('a config with nothing to divert: show says so, apply removes an old table', { skip }, async () => {
  const plain = path.join(dir, 'plain.yaml');
  fs.writeFileSync(plain, 'listeners:\n  - name: ssh\n    bind: "127.0.0.1:2222"\n');
  await ok('firewall', 'apply', '-c', configPath);
  assert.match(await ok('firewall', 'show', '-c', plain), /honeygate needs no firewall rules/);
  assert.match(await ok('firewall', 'apply', '-c', plain), /deleted table inet honeygate/);
  assert.doesNotMatch((await netState())['nft list ruleset']!, /honeygate/);
  await ok('firewall', 'remove', '-c', configPath);
});

test('usage and config errors exit 2', { skip }, async () => {
  const bad = path.join(dir, 'bad.yaml');
  fs.writeFileSync(bad, 'listeners: []\nfirewall: { table: 254 }\n');
  const r = await hg('firewall', 'apply', '-c', bad);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /firewall\.table: table 254 is one of the kernel's own/);
  assert.equal((await hg('firewall', 'apply', '-c', configPath, '--confirm', 'soon')).code, 2);
  assert.equal((await hg('firewall', 'apply')).code, 2);
});
