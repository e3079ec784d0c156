// #16, found after the fleet sink landed: `run` as root with `user: nobody` handed the
// event store to nobody but not the nats sink's outbox, so the outbox (and a directory
// events.createDirectories made for it) stayed root's, and the next start as the user
// itself (systemd User=) could not open it. Now the outbox's files and the directories made
// for it belong to the user after the drop, and a start as nobody publishes from it.
// Loopback only (127.0.0.1 in this namespace, as the fleet integration test); root for the
// drop.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import { assembleNats, natsSchema } from '../../src/fleet/config.js';
import { ensureStream } from '../../src/fleet/stream.js';
import { connect } from '../helpers/client.js';
import { BIN, type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { type NatsServer, natsServer } from '../helpers/nats.js';
import { needsRoot } from '../helpers/netns.js';
import { needs } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

const NOBODY = 65534;

function skipReason(): string | false {
  const root = needsRoot();
  if (root) return root;
  const missing = needs('nats-server', 'setpriv');
  if (missing) return missing;
  const pw = fs.readFileSync('/etc/passwd', 'utf8');
  if (!/^nobody:[^:]*:65534:65534:/m.test(pw)) return 'needs the account nobody (65534:65534)';
  return false;
}

/** One flow to the gateway's drop listener: accepted and closed, so one event. */
async function flow(port: number): Promise<void> {
  const s = await connect(port);
  await new Promise<void>((resolve) => {
    s.on('close', () => resolve());
    s.on('error', () => {});
    s.end();
  });
}

describe('fleet outbox ownership after the privilege drop', { skip: skipReason(), timeout: 120_000 }, () => {
  const cleanup: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('the outbox and the directories made for it belong to user:, and a start as that user publishes from it', async () => {
    const work = fs.mkdtempSync('/tmp/t2-fleet-privs-');
    cleanup.push(() => fs.rmSync(work, { recursive: true, force: true }));
    const nats: NatsServer = natsServer(await freePort(), path.join(work, 'jetstream'));
    await nats.start();
    cleanup.push(() => nats.stop());
    const cfg = assembleNats(natsSchema.parse({ servers: [nats.url] }), work);
    const nc = await natsConnect({ servers: nats.url });
    cleanup.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    await ensureStream(jsm, cfg);
    const messages = async () => (await jsm.streams.info(cfg.stream)).state.messages;

    const port = await freePort();
    const config = `
user: nobody
group: nogroup
listeners:
  - name: pot
    bind: "127.0.0.1:${port}"
routes:
  - drop: {}
events:
  sensor: privs
  sqlite: "{{dir}}/events.db"
  batch: 50ms
  createDirectories: true
  nats:
    servers: ["${nats.url}"]
    outbox: "{{dir}}/fleet/outbox/nats-outbox.db"
    ackTimeout: 2s
`;
    const hg: Honeygate = await startHoneygate(config);
    cleanup.push(() => hg.close());
    // nobody must reach its files when it starts on its own below.
    fs.chmodSync(hg.dir, 0o755);
    await hg.waitForLine((r) => r.msg === 'privileges dropped' && r.user === 'nobody');
    await flow(port);
    await waitFor('the first event in the stream', async () => (await messages()) >= 1, 20_000, 100);

    const outboxDir = path.join(hg.dir, 'fleet/outbox');
    const owned = [
      path.join(hg.dir, 'fleet'),
      outboxDir,
      path.join(outboxDir, 'nats-outbox.db'),
      path.join(outboxDir, 'nats-outbox.db-wal'),
      path.join(outboxDir, 'nats-outbox.db-shm'),
    ];
    for (const f of owned) {
      const st = fs.statSync(f);
      assert.deepEqual([st.uid, st.gid], [NOBODY, NOBODY], `${f} belongs to nobody:nogroup`);
    }
    assert.equal(fs.statSync(hg.dir).uid, 0, 'a directory honeygate did not make keeps its owner');
    assert.equal(await hg.stop(), 0, hg.stderr());
    const left = fs.readdirSync(outboxDir).map((f) => [f, fs.statSync(path.join(outboxDir, f)).uid]);
    assert.ok(
      left.every(([, uid]) => uid === NOBODY),
      `after the stop, every file in the outbox directory is nobody's: ${JSON.stringify(left)}`,
    );

    // The same config started as nobody itself (systemd User=): it opens the outbox and publishes.
    const proc: ChildProcess = spawn(
      'setpriv',
      [
        '--reuid=nobody',
        '--regid=nogroup',
        '--clear-groups',
        process.execPath,
        BIN,
        'run',
        '-c',
        hg.configPath,
      ],
      { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
    });
    proc.stderr!.on('data', (c: Buffer) => {
      out += c.toString();
    });
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    cleanup.push(() => proc.kill('SIGKILL'));
    await waitFor(
      'ready as nobody',
      () => {
        if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}:\n${out}`);
        return out.includes('"msg":"ready"');
      },
      20_000,
      50,
    );
    assert.match(out, /"msg":"running unprivileged"/);
    const before = await messages();
    await flow(port);
    await waitFor(
      'the event of the run as nobody in the stream',
      async () => (await messages()) > before,
      20_000,
      100,
    );
    proc.kill('SIGTERM');
    assert.equal(await exited, 0, out);
  });
});
