// Regression tests from a security review of transparent mode (tproxy listeners, transparent
// backends, run --manage-firewall), each in the standard farm: attacker1 -> gateway, where
// honeygate runs with a tproxy listener diverting att1, and decoy addresses nobody owns.
import assert from 'node:assert/strict';
import { type ChildProcess, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { nativeAvailable } from '../../src/net/native.js';
import { buildFarm, type Farm } from '../../src/netns/topology.js';
import { BIN, type EventRecord, runCli } from '../helpers/honeygate.js';
import { connectFrom, needsRoot, rootState } from '../helpers/netns.js';
import { which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

function skipReason(): string | false {
  const root = needsRoot();
  if (root) return root;
  if (!which('nft')) return 'nft not installed (Debian package nftables)';
  const native = nativeAvailable();
  return native.ok ? false : `transparent mode needs the native addon: ${native.reason}`;
}
const skip = skipReason();

const TPROXY_PORT = 15001;

/** A tproxy listener on att1 (every port) and an ordinary listener on the gateway's 2222. */
function configText(dir: string, extra = ''): string {
  return `
listeners:
  - name: every-port
    tproxy: { port: ${TPROXY_PORT} }
    divert: { interface: att1 }
  - name: direct
    bind: "0.0.0.0:2222"
routes:
  - capture: { timeout: 5s }
events: { sqlite: ${dir}/events.db, batch: 50ms }
log: { level: info }
${extra}`;
}

interface Gateway {
  proc: ChildProcess;
  logs: Record<string, unknown>[];
  exited: Promise<number | null>;
  output(): string;
}

function startGateway(farm: Farm, configPath: string, env: NodeJS.ProcessEnv = {}): Gateway {
  const proc = farm.topology.spawn(
    farm.gateway.ns,
    [process.execPath, BIN, 'run', '-c', configPath, '--manage-firewall'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  const logs: Record<string, unknown>[] = [];
  const raw: string[] = [];
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    raw.push(line);
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      logs.push({ raw: line });
    }
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, logs, exited, output: () => `stdout:\n${raw.join('\n')}\nstderr:\n${stderr}` };
}

async function ready(g: Gateway): Promise<void> {
  await waitFor(
    'honeygate to log "ready"',
    () => {
      if (g.proc.exitCode !== null) throw new Error(`honeygate exited ${g.proc.exitCode}\n${g.output()}`);
      return g.logs.some((r) => r.msg === 'ready');
    },
    15_000,
  );
}

async function stop(g: Gateway): Promise<void> {
  if (g.proc.exitCode === null && g.proc.signalCode === null) g.proc.kill('SIGTERM');
  await g.exited;
}

function inGateway(farm: Farm, argv: string[]): string {
  const r = spawnSync('ip', ['netns', 'exec', farm.gateway.ns, ...argv], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`;
}

/** honeygate's table and ip rules in the gateway, as text ('' parts when absent). */
function ours(farm: Farm): { table: boolean; rules: string } {
  const tables = inGateway(farm, ['nft', 'list', 'tables']);
  const rules = [
    ...inGateway(farm, ['ip', '-4', 'rule']).split('\n'),
    ...inGateway(farm, ['ip', '-6', 'rule']).split('\n'),
  ]
    .filter((l) => l.includes('lookup 4210'))
    .join('\n');
  return { table: tables.includes('inet honeygate'), rules };
}

async function events(dbPath: string): Promise<EventRecord[]> {
  const r = await runCli(['events', '--db', dbPath, '--json', '--limit', '1000']);
  if (r.code !== 0) throw new Error(`honeygate events exited ${r.code}: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as EventRecord);
}

describe('transparent mode: review findings', { skip }, () => {
  let farm: Farm;
  let dir = '';
  let configPath = '';
  let rootBefore: Record<string, string> = {};

  before(async () => {
    rootBefore = rootState();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-review-'));
    configPath = path.join(dir, 'honeygate.yaml');
    fs.writeFileSync(configPath, configText(dir));
    farm = await buildFarm();
  });

  after(async () => {
    await farm?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
  });

  // Bug: a `run --manage-firewall` that failed to start (here: the tproxy port is taken by the
  // honeygate already running) removed the rules in its exit path, although it never applied
  // any: the running gateway stopped receiving connections until its next check put them back.
  test('a second run that cannot bind leaves the running one its rules', async () => {
    const first = startGateway(farm, configPath);
    try {
      await ready(first);
      assert.equal(ours(farm).table, true);
      const second = startGateway(farm, configPath);
      assert.notEqual(await second.exited, 0, 'the second run fails: the tproxy port is taken');
      assert.match(second.output(), /EADDRINUSE/);
      const now = ours(farm);
      assert.equal(now.table, true, 'the first run keeps its table');
      assert.match(now.rules, /fwmark 0x1000\/0x1000 lookup 4210/);
      assert.ok(
        !first.logs.some((r) => r.msg === 'firewall rules changed from outside; applying them again'),
        'nothing had to be put back',
      );
    } finally {
      await stop(first);
    }
    assert.deepEqual(ours(farm), { table: false, rules: '' });
  });

  // Bug: tproxy took every connection arriving on att1, also those to the gateway's own address
  // on the port of honeygate's own `bind` listener (an inbound-PROXY listener would see its load
  // balancer's connections land on the tproxy listener, header and all).
  test("a bind listener's port on the gateway's address reaches it; a decoy on that port is diverted", async () => {
    const g = startGateway(farm, configPath);
    try {
      await ready(g);
      const db = path.join(dir, 'events.db');
      for (const host of [farm.attacker1.gw4, farm.decoys.ip4]) {
        const c = await connectFrom(farm.topology, farm.attacker1.ns, host, 2222);
        c.write('hello\n');
        await waitFor(
          `the event of ${host}:2222`,
          async () => (await events(db)).find((e) => e.dst.ip === host && e.dst.port === 2222),
          10_000,
          100,
        );
        await c.close();
      }
      const all = await events(db);
      const listenerOf = (host: string) =>
        all.find((e) => e.dst.ip === host && e.dst.port === 2222)?.listener;
      assert.equal(listenerOf(farm.attacker1.gw4), 'direct');
      assert.equal(listenerOf(farm.decoys.ip4), 'every-port');
    } finally {
      await stop(g);
    }
  });

  // Bug (found by the transparent benchmark): rule 2 (`socket transparent 1`) also took a new
  // SYN that met the TIME_WAIT socket of the previous flow from the same source port; the
  // kernel answered with an ACK instead of a SYN-ACK, the attacker reset and tried again. A
  // client reusing ports at a high rate (wrk, scanners with a fixed source port) lost a
  // retry per connection. New SYNs now go to tproxy, which ends the TIME_WAIT.
  test('an attacker reusing its source port at once gets a SYN-ACK, not an ACK to reset', async () => {
    const g = startGateway(farm, configPath);
    try {
      await ready(g);
      const resets = () => {
        const out = spawnSync('ip', ['netns', 'exec', farm.attacker1.ns, 'nstat', '-az', 'TcpOutRsts']);
        return Number(/TcpOutRsts\s+(\d+)/.exec(out.stdout.toString())?.[1] ?? Number.NaN);
      };
      // Each round: connect from port 40404, send capture's 4096 bytes, read until honeygate
      // closes first (so the gateway keeps the TIME_WAIT), close.
      const script = `
        const net = require('node:net');
        const [host, port] = process.argv.slice(1);
        let round = 0;
        const once = () => {
          const s = net.connect({ host, port: Number(port), localPort: 40404 });
          s.on('connect', () => s.write(Buffer.alloc(4096, 120)));
          s.on('error', (e) => { console.log('round ' + round + ': ' + e.code); process.exit(0); });
          s.on('end', () => s.end());
          s.on('close', (hadError) => {
            if (hadError) return;
            console.log('round ' + round + ': ok');
            if (++round < 3) once();
          });
        };
        once();`;
      const before = resets();
      const client = farm.topology.spawn(
        farm.attacker1.ns,
        [process.execPath, '-e', script, farm.decoys.ip4, '8081'],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const lines: string[] = [];
      createInterface({ input: client.stdout! }).on('line', (l) => lines.push(l));
      const exited = new Promise((r) => client.on('exit', r));
      await waitFor(
        'three rounds or a failure',
        () => lines.length === 3 || lines.some((l) => !l.endsWith('ok')),
        20_000,
      );
      client.kill();
      await exited;
      assert.deepEqual(lines, ['round 0: ok', 'round 1: ok', 'round 2: ok']);
      assert.equal(resets() - before, 0, 'the attacker never had to reset a stray ACK');
    } finally {
      await stop(g);
    }
  });

  // Bug: every check of run --manage-firewall read sshd's ports afresh; a check while sshd
  // restarted (no listener for a moment) re-applied the table with sshd's port diverted, so
  // the admin's next SSH login could land on the SSH honeypot. The ports seen stay protected.
  test("sshd's port stays out of the divert set while sshd restarts", async () => {
    // a node that calls itself sshd (its comm, which ss -p shows)
    const server = farm.topology.spawn(
      farm.gateway.ns,
      [
        process.execPath,
        '-e',
        "process.title = 'sshd'; require('net').createServer().listen(22222, () => console.log('listening'))",
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const serverExited = new Promise((resolve) => server.once('exit', resolve));
    await new Promise<void>((resolve) =>
      createInterface({ input: server.stdout! }).once('line', () => resolve()),
    );
    const fast = path.join(dir, 'fast-check.yaml');
    fs.writeFileSync(fast, configText(dir, 'firewall: { checkInterval: 200ms }'));
    const diverted = (port: number) =>
      spawnSync('ip', [
        'netns',
        'exec',
        farm.gateway.ns,
        'nft',
        'get',
        'element',
        'inet',
        'honeygate',
        'every_port_ports',
        `{ ${port} }`,
      ]).status === 0;
    const g = startGateway(farm, fast);
    try {
      await ready(g);
      assert.equal(diverted(22222), false, "sshd's port is protected");
      assert.equal(diverted(22), true);
      server.kill('SIGTERM');
      await serverExited;
      // an outside flush makes the next check re-apply, with the ports it sees now
      inGateway(farm, ['nft', 'delete', 'table', 'inet', 'honeygate']);
      const putBack = (r: Record<string, unknown>) =>
        r.msg === 'firewall rules changed from outside; applying them again';
      await waitFor(
        'the check to put the table back',
        () => g.logs.some(putBack) && ours(farm).table,
        10_000,
      );
      assert.equal(diverted(22222), false, "sshd's port stays protected while sshd is away");
      assert.equal(diverted(22), true, 'and 22 is not taken away from the honeypot');
    } finally {
      server.kill('SIGKILL');
      await stop(g);
    }
  });

  // Bug: apply added the ip rules and routes, then loaded the table; when nft refused the
  // table, the routing stayed (README: "all of it or nothing").
  test('apply whose nft load fails leaves no routing behind', async () => {
    const bin = path.join(dir, 'failing-nft');
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(
      path.join(bin, 'nft'),
      `#!/bin/sh\nif [ "$1" = "-f" ]; then echo "Error: refused by the test" >&2; exit 1; fi\nexec ${which('nft')} "$@"\n`,
      { mode: 0o755 },
    );
    const r = spawnSync(
      'ip',
      ['netns', 'exec', farm.gateway.ns, process.execPath, BIN, 'firewall', 'apply', '-c', configPath],
      { encoding: 'utf8', timeout: 30_000, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } },
    );
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /refused by the test/);
    assert.deepEqual(ours(farm), { table: false, rules: '' });
  });

  // Bug (src/gateway/listener.ts): `server.listen({ fd, backlog })` ignores `backlog` for an fd
  // (Node 20 and 24 read it only from the positional argument), so the tproxy socket, which
  // receives every diverted port, listened with Node's default 511 instead of 4096.
  test('the tproxy socket listens with a backlog of 4096', async () => {
    const g = startGateway(farm, configPath);
    try {
      await ready(g);
      const ss = inGateway(farm, ['ss', '-tlnH', `sport = :${TPROXY_PORT}`]);
      const backlogs = ss
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => Number(l.trim().split(/\s+/)[2]));
      assert.deepEqual(backlogs, [4096, 4096], ss);
    } finally {
      await stop(g);
    }
  });

  // Bug (src/cli/run.ts): the signal handlers were installed only after start finished; a
  // SIGINT (or SIGTERM, SIGHUP) while the firewall was being applied killed the process with
  // the rules in place. An `nft` that takes 2 s to load holds start in that window.
  test('SIGINT while the rules are being applied: they are removed on the way out', async () => {
    const bin = path.join(dir, 'slow-nft');
    fs.mkdirSync(bin, { recursive: true });
    const done = path.join(dir, 'nft-done');
    fs.rmSync(done, { force: true });
    const real = which('nft')!;
    fs.writeFileSync(
      path.join(bin, 'nft'),
      `#!/bin/sh\nif [ "$1" = "-f" ]; then sleep 2; fi\n${real} "$@"\nrc=$?\n[ "$1" = "-f" ] && touch ${done}\nexit $rc\n`,
      { mode: 0o755 },
    );
    const g = startGateway(farm, configPath, { PATH: `${bin}:${process.env.PATH}` });
    try {
      await waitFor('the ip rule, added before the table', () => ours(farm).rules !== '', 15_000, 20);
      g.proc.kill('SIGINT');
      await g.exited;
      await waitFor('the slow nft -f to finish', () => fs.existsSync(done), 10_000);
      assert.deepEqual(ours(farm), { table: false, rules: '' }, g.output());
    } finally {
      await stop(g);
      // leave the farm clean for the tests after this one whatever happened
      inGateway(farm, [process.execPath, BIN, 'firewall', 'remove', '-c', configPath]);
    }
  });
});
