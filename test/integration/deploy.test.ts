// Issue 13, item 2: the deployment files, each checked by the tool that reads it.
// deploy/systemd/honeygate.service passes `systemd-analyze verify` and scores an exposure of
// at most 2.0 in `systemd-analyze security`; its signals are the ones `run` handles.
// deploy/logrotate/honeygate rotates a running gateway's JSON lines file: after logrotate -f
// (its postrotate sending SIGUSR1), the old events are in events.jsonl.1 and new ones in a
// new events.jsonl, none lost or split.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { exchange } from '../helpers/client.js';
import { BIN, type Honeygate, ROOT, startHoneygate } from '../helpers/honeygate.js';
import { needs } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

const UNIT = path.join(ROOT, 'deploy/systemd/honeygate.service');
const LOGROTATE = path.join(ROOT, 'deploy/logrotate/honeygate');
const unitText = fs.readFileSync(UNIT, 'utf8');
// Part of systemd: on every systemd host, not installed by scripts/test.sh for containers without it.
const noAnalyze = needs('systemd-analyze') && 'systemd-analyze not installed (apt-get install systemd)';

/** The unit's value(s) for `key`, in order. */
function directive(key: string): string[] {
  return [...unitText.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);
}

describe('deploy/systemd/honeygate.service', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-unit-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('systemd-analyze verify accepts it', { skip: noAnalyze }, () => {
    // verify checks that ExecStart's program exists: point it at this checkout's.
    const copy = path.join(tmp, 'honeygate.service');
    fs.writeFileSync(copy, unitText.replaceAll('/usr/local/bin/honeygate', BIN));
    const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'no warnings either');
  });

  test('systemd-analyze security: exposure 2.0 or lower', { skip: noAnalyze }, () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', UNIT], { encoding: 'utf8' });
    const m = /Overall exposure level for honeygate\.service: (\d+\.\d)/.exec(r.stdout);
    assert.ok(m, `${r.stdout}${r.stderr}`);
    const exposure = Number(m[1]);
    console.log(`exposure: ${exposure}`);
    assert.ok(exposure <= 2.0, `exposure ${exposure}\n${r.stdout}`);
  });

  test('an unprivileged user with only the capabilities honeygate needs', () => {
    assert.deepEqual(directive('User'), ['honeygate']);
    assert.deepEqual(directive('AmbientCapabilities'), ['CAP_NET_ADMIN CAP_NET_BIND_SERVICE']);
    assert.deepEqual(directive('CapabilityBoundingSet'), ['CAP_NET_ADMIN CAP_NET_BIND_SERVICE']);
    assert.deepEqual(directive('NoNewPrivileges'), ['yes']);
    assert.deepEqual(directive('ProtectSystem'), ['strict']);
    assert.deepEqual(directive('ReadWritePaths'), ['/var/lib/honeygate /var/log/honeygate']);
    assert.ok(
      directive('RestrictAddressFamilies')[0]!.split(' ').includes('AF_NETLINK'),
      'nft needs netlink',
    );
    assert.ok(directive('SystemCallFilter').length > 0);
    assert.match(directive('LimitNOFILE')[0]!, /^\d+$/);
  });

  test("its signals are run's: SIGHUP reloads, SIGTERM stops", () => {
    const signals = fs.readFileSync(path.join(ROOT, 'src/cli/signals.ts'), 'utf8');
    assert.match(signals, /process\.on\('SIGHUP', onHup\)/);
    assert.match(signals, /process\.on\('SIGTERM', onStop\)/);
    assert.deepEqual(directive('ExecReload'), ['/bin/kill -HUP $MAINPID']);
    assert.deepEqual(directive('KillSignal'), ['SIGTERM']);
  });
});

describe('deploy/logrotate/honeygate', () => {
  let hg: Honeygate | undefined;
  after(() => hg?.close());

  test('logrotate -d reads it as shipped', { skip: needs('logrotate') }, () => {
    const state = path.join(os.tmpdir(), `hg-logrotate-${process.pid}.state`);
    try {
      const r = spawnSync('logrotate', ['-d', '-s', state, LOGROTATE], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
      assert.doesNotMatch(`${r.stdout}${r.stderr}`, /error/i);
    } finally {
      fs.rmSync(state, { force: true });
    }
  });

  test("logrotate -f rotates a running gateway's events.jsonl through SIGUSR1, losing nothing", {
    skip: needs('logrotate'),
    timeout: 60_000,
  }, async () => {
    const gw = await startHoneygate(`
listeners:
  - name: trap
    bind: "127.0.0.1:0"
routes:
  - capture: { timeout: 2s }
events:
  jsonl: "{{dir}}/log/events.jsonl"
  createDirectories: true
  batch: 20ms
`);
    hg = gw;
    const logDir = path.join(gw.dir, 'log');
    const live = path.join(logDir, 'events.jsonl');
    const lines = (file: string) =>
      fs.existsSync(file)
        ? fs
            .readFileSync(file, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as { source: { port: number } })
        : [];
    const before = await exchange(gw.port('trap'), 'before');
    await waitFor('the first event in events.jsonl', () =>
      lines(live).some((e) => e.source.port === before.localPort),
    );

    // The shipped file, with this test's directory and this gateway's pid.
    const conf = fs
      .readFileSync(LOGROTATE, 'utf8')
      .replace(/^\/var\/log\/honeygate\//m, `${logDir}/`)
      .replace(/systemctl kill [^\n]*/, `kill -USR1 ${gw.proc.pid}`);
    assert.ok(conf.includes(`kill -USR1 ${gw.proc.pid}`), 'the postrotate line was found');
    const confFile = path.join(gw.dir, 'logrotate.conf');
    fs.writeFileSync(confFile, conf);
    const r = spawnSync('logrotate', ['-f', '-s', path.join(gw.dir, 'logrotate.state'), confFile], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    const rotated = path.join(logDir, 'events.jsonl.1'); // delaycompress: the newest stays plain
    assert.ok(
      lines(rotated).some((e) => e.source.port === before.localPort),
      'the old event was rotated',
    );
    await waitFor('honeygate to reopen events.jsonl', () => fs.existsSync(live));
    assert.equal((fs.statSync(live).mode & 0o777).toString(8), '640');

    const afterRotate = await exchange(gw.port('trap'), 'after');
    const now = await waitFor('the new event in the new events.jsonl', () => {
      const all = lines(live);
      return all.some((e) => e.source.port === afterRotate.localPort) && all;
    });
    assert.equal(
      now.some((e) => e.source.port === before.localPort),
      false,
      'the old event is not repeated',
    );
    assert.equal(lines(rotated).length + now.length, 2, 'every line parses: none split');
  });
});
