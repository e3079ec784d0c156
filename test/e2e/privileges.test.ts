// Least privilege (issue 14, item 1): `run --manage-firewall` started as root with `user:
// nobody` binds, applies its rules, then drops to nobody keeping only CAP_NET_ADMIN and
// CAP_NET_BIND_SERVICE, with no_new_privs, on every thread of every process (one process, and
// a primary with its workers). Afterwards, as a user would check: transparent mode still
// shows the honeypot the attacker's address, events are still recorded (also after SIGUSR1),
// a reload adds a listener on port 80, and the firewall puts its table back when it vanishes.
// Started already as nobody with ambient capabilities (systemd User= + AmbientCapabilities=,
// here util-linux's setpriv), it runs; started as nobody for `user: daemon`, it says why not.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { nativeAvailable } from '../../src/net/native.js';
import { buildFarm, type Farm } from '../../src/netns/topology.js';
import {
  type GatewayProcess,
  honeygateState,
  inGateway,
  startManagedGateway,
} from '../helpers/farm-gateway.js';
import { BIN, type EventRecord, runCli } from '../helpers/honeygate.js';
import { connectFrom, needsRoot, rootState, startPeerServer } from '../helpers/netns.js';
import { which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

const NOBODY = { uid: 65534, gid: 65534 };

function skipReason(): string | false {
  const root = needsRoot();
  if (root) return root;
  for (const bin of ['nft', 'setpriv', 'getent']) if (!which(bin)) return `${bin} not installed`;
  const native = nativeAvailable();
  if (!native.ok) return `dropping privileges needs the native addon: ${native.reason}`;
  const pw = fs.readFileSync('/etc/passwd', 'utf8');
  const gr = fs.readFileSync('/etc/group', 'utf8');
  if (!/^nobody:[^:]*:65534:65534:/m.test(pw) || !/^nogroup:[^:]*:65534:/m.test(gr))
    return 'needs the nobody user and nogroup group (65534), as Debian has them';
  return false;
}
const skip = skipReason();

// CAP_NET_BIND_SERVICE (10) and CAP_NET_ADMIN (12).
const KEPT = 0x1400n;

/** The fields of /proc/PID[/task/TID]/status a user checks. */
interface Status {
  uid: number[];
  gid: number[];
  groups: number[];
  capInh: bigint;
  capPrm: bigint;
  capEff: bigint;
  capBnd: bigint;
  capAmb: bigint;
  noNewPrivs: number;
}

function readStatus(file: string): Status {
  const text = fs.readFileSync(file, 'utf8');
  const field = (name: string) => {
    const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(text);
    assert.ok(m, `${file} has no ${name}`);
    return m[1]!.trim();
  };
  const ids = (name: string) => field(name).split(/\s+/).filter(Boolean).map(Number);
  const cap = (name: string) => BigInt(`0x${field(name)}`);
  return {
    uid: ids('Uid'),
    gid: ids('Gid'),
    groups: ids('Groups'),
    capInh: cap('CapInh'),
    capPrm: cap('CapPrm'),
    capEff: cap('CapEff'),
    capBnd: cap('CapBnd'),
    capAmb: cap('CapAmb'),
    noNewPrivs: Number(field('NoNewPrivs')),
  };
}

/**
 * Asserts that process `pid` runs as nobody: the main thread with exactly the kept
 * capabilities (permitted, effective, inheritable, ambient; bounding too when it was root),
 * every other thread with none, all with no_new_privs. Returns how many threads it checked.
 */
function assertUnprivileged(pid: number, opts: { bounding: boolean }): number {
  const main = readStatus(`/proc/${pid}/status`);
  const where = `process ${pid}`;
  assert.deepEqual(main.uid, Array(4).fill(NOBODY.uid), `${where}: Uid`);
  assert.deepEqual(main.gid, Array(4).fill(NOBODY.gid), `${where}: Gid`);
  assert.ok(
    main.groups.every((g) => g === NOBODY.gid),
    `${where}: Groups ${main.groups}`,
  );
  assert.equal(main.capEff, KEPT, `${where}: CapEff`);
  assert.equal(main.capPrm, KEPT, `${where}: CapPrm`);
  assert.equal(main.capInh, KEPT, `${where}: CapInh`);
  assert.equal(main.capAmb, KEPT, `${where}: CapAmb`);
  if (opts.bounding) assert.equal(main.capBnd, KEPT, `${where}: CapBnd`);
  assert.equal(main.noNewPrivs, 1, `${where}: NoNewPrivs`);
  const tasks = fs.readdirSync(`/proc/${pid}/task`);
  for (const tid of tasks) {
    if (Number(tid) === pid) continue;
    const t = readStatus(`/proc/${pid}/task/${tid}/status`);
    const at = `${where} thread ${tid}`;
    assert.ok(!t.uid.includes(0), `${at}: Uid ${t.uid}`);
    assert.ok(!t.gid.includes(0), `${at}: Gid ${t.gid}`);
    for (const [name, set] of [
      ['CapEff', t.capEff],
      ['CapPrm', t.capPrm],
      ['CapAmb', t.capAmb],
      ['CapInh', t.capInh],
    ] as const) {
      assert.equal(set & ~KEPT, 0n, `${at}: ${name} ${set.toString(16)} has more than the kept set`);
    }
    assert.equal(t.noNewPrivs, 1, `${at}: NoNewPrivs`);
  }
  return tasks.length;
}

/** The pid honeygate logs in every line (pino's `pid`): the node process, not `ip netns exec`. */
function pidOf(g: { records: Array<Record<string, unknown>> }, msg = 'ready'): number {
  const r = g.records.find((x) => x.msg === msg);
  assert.ok(r && typeof r.pid === 'number', `no ${msg} line with a pid`);
  return r.pid as number;
}

async function events(db: string): Promise<EventRecord[]> {
  const r = await runCli(['events', '--db', db, '--json', '--limit', '1000']);
  if (r.code !== 0) throw new Error(`honeygate events exited ${r.code}: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as EventRecord);
}

function jsonlLines(file: string): Array<Record<string, unknown>> {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('run as root with user: nobody', { skip }, () => {
  let farm: Farm;
  let dir: string;
  let rootBefore: Record<string, string>;
  let honeypot: ChildProcess | undefined;
  const config = (extra: { listeners?: string; user?: string; workers?: number } = {}) => `
${extra.user ?? 'user: nobody\ngroup: nogroup'}
workers: ${extra.workers ?? 1}
listeners:
  - name: every-port
    tproxy: { port: 15001 }
    divert: { interface: att1 }
${extra.listeners ?? ''}
routes:
  - name: ssh
    match: { dstPorts: [8022] }
    forward: hp
  - capture: { timeout: 2s }
backends:
  hp:
    servers: ["${farm.honeypot!.ip4}:22"]
    source: transparent
events: { sqlite: ${dir}/events.db, jsonl: ${dir}/events.jsonl, batch: 50ms }
firewall: { checkInterval: 1s }
log: { level: info }
`;
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text, { mode: 0o644 });
    return file;
  };

  before(async () => {
    rootBefore = rootState();
    // Searchable and readable for nobody: a reload reads the config again after the drop.
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h4-privs-'));
    fs.chmodSync(dir, 0o755);
    farm = await buildFarm({ honeypotHost: true });
    honeypot = await startPeerServer(farm.topology, farm.honeypot!.ns, 22);
  });
  after(async () => {
    honeypot?.kill();
    await farm?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
  });

  /** A transparent flow from attacker1 to a decoy's port 8022 (22 is protected from divert): the peer line the honeypot printed. */
  async function transparentPeer(): Promise<string> {
    const c = await connectFrom(farm.topology, farm.attacker1.ns, farm.decoys.ip4, 8022);
    try {
      const line = await c.line();
      const local = c.local;
      assert.equal(line, `peer ${local}`, "the honeypot saw the attacker's own address and port");
      return local;
    } finally {
      await c.close();
    }
  }

  test('one process: every thread unprivileged; transparent mode, events, reopen, reload, self-heal still work', async () => {
    const configPath = write('one.yaml', config());
    const g: GatewayProcess = startManagedGateway(farm, configPath);
    try {
      await g.ready();
      const pid = pidOf(g);
      assert.ok(
        g.records.some((r) => r.msg === 'privileges dropped' && r.user === 'nobody'),
        'the drop is logged',
      );
      const threads = assertUnprivileged(pid, { bounding: true });
      assert.ok(threads > 4, `node runs several threads (${threads}): all were checked`);

      // Transparent mode: the upstream socket (IP_TRANSPARENT + bind to the attacker's address)
      // is made on the main thread, which kept CAP_NET_ADMIN.
      const local = await transparentPeer();
      const db = path.join(dir, 'events.db');
      const jsonl = path.join(dir, 'events.jsonl');
      const recorded = await waitFor(
        'the transparent flow in SQLite',
        async () =>
          (await events(db)).find((e) => `${e.src.ip}:${e.src.port}` === local && e.closedAt !== null),
        10_000,
        100,
      );
      assert.equal(recorded.sourceMode, 'transparent');
      assert.equal(recorded.dst.ip, farm.decoys.ip4);
      await waitFor('the flow in the JSON lines file', () => jsonlLines(jsonl).length > 0, 10_000);

      // SIGUSR1 reopens the JSON lines file as nobody; events keep coming to both sinks.
      const before = jsonlLines(jsonl).length;
      process.kill(pid, 'SIGUSR1');
      await g.waitForLog('event files reopened', (r) => r.msg === 'event files reopened');
      const again = await transparentPeer();
      await waitFor(
        'the flow after the reopen in both sinks',
        async () =>
          jsonlLines(jsonl).length > before &&
          (await events(db)).some((e) => `${e.src.ip}:${e.src.port}` === again),
        10_000,
        100,
      );

      // A reload adds a listener on port 80 (CAP_NET_BIND_SERVICE) and moves the firewall (nft
      // as nobody, with the ambient CAP_NET_ADMIN).
      write('one.yaml', config({ listeners: '  - name: low\n    bind: "0.0.0.0:80"' }));
      process.kill(pid, 'SIGHUP');
      await g.waitForLog('config reloaded', (r) => r.msg === 'config reloaded');
      assert.ok(!g.records.some((r) => r.msg === 'reload rejected'), g.output());
      // (The watch may log a HG_ERR_FIREWALL warning when its periodic check falls inside
      // the reload; what must not appear is the reload's own failure.)
      assert.ok(!g.records.some((r) => String(r.msg).includes('its firewall rules failed')), g.output());
      const c = await connectFrom(farm.topology, farm.attacker1.ns, farm.attacker1.gw4, 80);
      c.write('GET / HTTP/1.0\r\n\r\n');
      await waitFor(
        'an event of the new port-80 listener',
        async () => (await events(db)).find((e) => e.listener === 'low' && e.dst.port === 80),
        10_000,
        100,
      );
      await c.close();

      // Self-heal: someone deletes honeygate's table; the watch (nft as nobody) puts it back.
      inGateway(farm, ['nft', 'delete', 'table', 'inet', 'honeygate']);
      assert.equal(honeygateState(farm).table, false, 'the table was deleted');
      await waitFor('the table to come back', () => honeygateState(farm).table, 10_000, 100);
      await transparentPeer();
      assertUnprivileged(pid, { bounding: true });
    } finally {
      assert.equal(await g.stop(), 0, g.output());
    }
    // The stop, also as nobody, removed the rules.
    assert.deepEqual(honeygateState(farm), { table: false, rules: '' });
  });

  test('workers: 2: the primary and every worker, also one started again, are unprivileged', async () => {
    const configPath = write('workers.yaml', config({ workers: 2 }));
    const g = startManagedGateway(farm, configPath);
    try {
      await g.ready();
      const primary = pidOf(g);
      // The primary's children, less the nft it runs for the firewall watch now and then.
      const workers = () =>
        fs
          .readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8')
          .trim()
          .split(/\s+/)
          .filter(Boolean)
          .map(Number)
          .filter((p) => {
            try {
              return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() !== 'nft';
            } catch {
              return false; // gone already
            }
          });
      assertUnprivileged(primary, { bounding: true });
      const first = workers();
      assert.equal(first.length, 2, `two workers: ${first}`);
      for (const w of first) assertUnprivileged(w, { bounding: true });
      await transparentPeer();

      // A worker the primary starts again is exec'd by nobody: it gets the ambient set and no
      // more (no_new_privs holds across exec).
      process.kill(first[0]!, 'SIGKILL');
      const next = await waitFor(
        'a new worker',
        () => {
          const now = workers();
          const fresh = now.find((p) => !first.includes(p));
          return now.length === 2 && fresh !== undefined && fresh;
        },
        15_000,
        100,
      );
      // A worker's start-up (load the config, bind, drop) can take seconds on a loaded machine.
      await g.waitForLog(
        'the new worker to be ready',
        (r) => r.msg === 'worker ready' && r.pid === next,
        45_000,
      );
      assertUnprivileged(next, { bounding: true });
      await transparentPeer();

      // A reload: every worker, unprivileged, binds port 80 beside its siblings (SO_REUSEPORT).
      write('workers.yaml', config({ workers: 2, listeners: '  - name: low\n    bind: "0.0.0.0:80"' }));
      process.kill(primary, 'SIGHUP');
      await g.waitForLog('config reloaded', (r) => r.msg === 'config reloaded');
      assert.ok(!g.records.some((r) => r.msg === 'reload rejected'), g.output());
      const c = await connectFrom(farm.topology, farm.attacker1.ns, farm.attacker1.gw4, 80);
      await c.close();
      await transparentPeer();
    } finally {
      assert.equal(await g.stop(), 0, g.output());
    }
  });

  /** honeygate run under setpriv as nobody with the two capabilities ambient, as systemd would. */
  function startAsNobody(configPath: string): {
    proc: ChildProcess;
    lines: string[];
    exited: Promise<number | null>;
  } {
    const caps = '+net_admin,+net_bind_service';
    const proc = farm.topology.spawn(
      farm.gateway.ns,
      [
        'setpriv',
        '--reuid=nobody',
        '--regid=nogroup',
        '--clear-groups',
        `--inh-caps=${caps}`,
        `--ambient-caps=${caps}`,
        process.execPath,
        BIN,
        'run',
        '-c',
        configPath,
        '--manage-firewall',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const lines: string[] = [];
    createInterface({ input: proc.stdout! }).on('line', (l) => lines.push(l));
    createInterface({ input: proc.stderr! }).on('line', (l) => lines.push(l));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    return { proc, lines, exited };
  }

  test('started as nobody with ambient capabilities (systemd User=): runs; user: daemon is refused', async () => {
    const own = fs.mkdtempSync(path.join(dir, 'nobody-'));
    fs.chmodSync(own, 0o755);
    fs.chownSync(own, NOBODY.uid, NOBODY.gid);
    const text = config().replace(`${dir}/events`, `${own}/events`).replace(`${dir}/events`, `${own}/events`);
    const ok = startAsNobody(write('nobody.yaml', text));
    try {
      await waitFor(
        'ready',
        () => {
          if (ok.proc.exitCode !== null)
            throw new Error(`exited ${ok.proc.exitCode}:\n${ok.lines.join('\n')}`);
          return ok.lines.some((l) => l.includes('"msg":"ready"'));
        },
        15_000,
      );
      const line = JSON.parse(ok.lines.find((l) => l.includes('"msg":"ready"'))!) as { pid: number };
      assert.ok(
        ok.lines.some((l) => l.includes('"msg":"running unprivileged"')),
        ok.lines.join('\n'),
      );
      assertUnprivileged(line.pid, { bounding: false });
      await transparentPeer();
    } finally {
      ok.proc.kill('SIGTERM');
      assert.equal(await ok.exited, 0, ok.lines.join('\n'));
    }

    const refused = startAsNobody(
      write('daemon.yaml', config({ user: 'user: daemon' }).replace(`${dir}/events`, `${own}/events`)),
    );
    assert.equal(await refused.exited, 1, refused.lines.join('\n'));
    const out = refused.lines.join('\n');
    assert.match(out, /HG_ERR_PRIVILEGES/);
    assert.match(out, /only root can switch accounts/);
    assert.deepEqual(honeygateState(farm), { table: false, rules: '' }, 'the refused start left no rules');
  });
});
