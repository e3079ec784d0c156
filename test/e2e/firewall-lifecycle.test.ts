// honeygate's own rules over the life of `run --manage-firewall` and `firewall apply`, in the
// standard farm (attacker1 -> gateway; no Docker): all of them or none, left to a running
// gateway by a second run that fails, removed on the way out also when a signal comes while
// they are being applied, and sshd's port kept out of the divert set while sshd restarts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { nativeAvailable } from '../../src/net/native.js';
import { farmSuite, honeygateState, inGateway, startManagedGateway } from '../helpers/farm-gateway.js';
import { BIN } from '../helpers/honeygate.js';
import { needsRoot } from '../helpers/netns.js';
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

describe("honeygate's rules over run --manage-firewall and firewall apply", { skip }, () => {
  const s = farmSuite('hg-fw-life-', configText);

  // Bug: a `run --manage-firewall` that failed to start (here: the tproxy port is taken by the
  // honeygate already running) removed the rules in its exit path, although it never applied
  // any: the running gateway stopped receiving connections until its next check put them back.
  test('a second run that cannot bind leaves the running one its rules', async () => {
    const first = startManagedGateway(s.farm, s.configPath);
    try {
      await first.ready();
      assert.equal(honeygateState(s.farm).table, true);
      const second = startManagedGateway(s.farm, s.configPath);
      assert.notEqual(await second.exited, 0, 'the second run fails: the tproxy port is taken');
      assert.match(second.output(), /EADDRINUSE/);
      const now = honeygateState(s.farm);
      assert.equal(now.table, true, 'the first run keeps its table');
      assert.match(now.rules, /fwmark 0x1000\/0x1000 lookup 4210/);
      assert.ok(
        !first.records.some((r) => r.msg === 'firewall rules changed from outside; applying them again'),
        'nothing had to be put back',
      );
    } finally {
      await first.stop();
    }
    assert.deepEqual(honeygateState(s.farm), { table: false, rules: '' });
  });

  // Bug: every check of run --manage-firewall read sshd's ports afresh; a check while sshd
  // restarted (no listener for a moment) re-applied the table with sshd's port diverted, so
  // the admin's next SSH login could land on the SSH honeypot. The ports seen stay protected.
  test("sshd's port stays out of the divert set while sshd restarts", async () => {
    // a node that calls itself sshd (its comm, which ss -p shows)
    const server = s.farm.topology.spawn(
      s.farm.gateway.ns,
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
    const fast = path.join(s.dir, 'fast-check.yaml');
    fs.writeFileSync(fast, configText(s.dir, 'firewall: { checkInterval: 200ms }'));
    const diverted = (port: number) =>
      spawnSync('ip', [
        'netns',
        'exec',
        s.farm.gateway.ns,
        'nft',
        'get',
        'element',
        'inet',
        'honeygate',
        'every_port_ports',
        `{ ${port} }`,
      ]).status === 0;
    const g = startManagedGateway(s.farm, fast);
    try {
      await g.ready();
      assert.equal(diverted(22222), false, "sshd's port is protected");
      assert.equal(diverted(22), true);
      server.kill('SIGTERM');
      await serverExited;
      // an outside flush makes the next check re-apply, with the ports it sees now
      inGateway(s.farm, ['nft', 'delete', 'table', 'inet', 'honeygate']);
      const putBack = (r: Record<string, unknown>) =>
        r.msg === 'firewall rules changed from outside; applying them again';
      await waitFor(
        'the check to put the table back',
        () => g.records.some(putBack) && honeygateState(s.farm).table,
        10_000,
      );
      assert.equal(diverted(22222), false, "sshd's port stays protected while sshd is away");
      assert.equal(diverted(22), true, 'and 22 is not taken away from the honeypot');
    } finally {
      server.kill('SIGKILL');
      await g.stop();
    }
  });

  // Bug: apply added the ip rules and routes, then loaded the table; when nft refused the
  // table, the routing stayed (README: "all of it or nothing").
  test('apply whose nft load fails leaves no routing behind', async () => {
    const bin = path.join(s.dir, 'failing-nft');
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(
      path.join(bin, 'nft'),
      `#!/bin/sh\nif [ "$1" = "-f" ]; then echo "Error: refused by the test" >&2; exit 1; fi\nexec ${which('nft')} "$@"\n`,
      { mode: 0o755 },
    );
    const r = spawnSync(
      'ip',
      ['netns', 'exec', s.farm.gateway.ns, process.execPath, BIN, 'firewall', 'apply', '-c', s.configPath],
      { encoding: 'utf8', timeout: 30_000, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } },
    );
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /refused by the test/);
    assert.deepEqual(honeygateState(s.farm), { table: false, rules: '' });
  });

  // Bug (src/cli/run.ts): the signal handlers were installed only after start finished; a
  // SIGINT (or SIGTERM, SIGHUP) while the firewall was being applied killed the process with
  // the rules in place. An `nft` that takes 2 s to load holds start in that window.
  test('SIGINT while the rules are being applied: they are removed on the way out', async () => {
    const bin = path.join(s.dir, 'slow-nft');
    fs.mkdirSync(bin, { recursive: true });
    const done = path.join(s.dir, 'nft-done');
    fs.rmSync(done, { force: true });
    const real = which('nft')!;
    fs.writeFileSync(
      path.join(bin, 'nft'),
      `#!/bin/sh\nif [ "$1" = "-f" ]; then sleep 2; fi\n${real} "$@"\nrc=$?\n[ "$1" = "-f" ] && touch ${done}\nexit $rc\n`,
      { mode: 0o755 },
    );
    const g = startManagedGateway(s.farm, s.configPath, { PATH: `${bin}:${process.env.PATH}` });
    try {
      await waitFor(
        'the ip rule, added before the table',
        () => honeygateState(s.farm).rules !== '',
        15_000,
        20,
      );
      g.proc.kill('SIGINT');
      await g.exited;
      await waitFor('the slow nft -f to finish', () => fs.existsSync(done), 10_000);
      assert.deepEqual(honeygateState(s.farm), { table: false, rules: '' }, g.output());
    } finally {
      await g.stop();
      // leave the s.farm clean for the tests after this one whatever happened
      inGateway(s.farm, [process.execPath, BIN, 'firewall', 'remove', '-c', s.configPath]);
    }
  });
});
