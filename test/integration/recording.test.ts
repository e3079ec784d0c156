// Session recording (routes[].record, backends.<name>.record): a forwarded flow (through
// the native relay's gateway and through Node with HONEYGATE_RELAY=off), a captured flow,
// IPv6 and 256 KiB of binary data are recorded both ways; `honeygate replay` prints them and
// `honeygate pcap` writes a file that tshark follows byte for byte with valid checksums.
// The disk budget evicts the oldest recordings, and a file system short of minFree stops
// recording, not the gateway.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decode, KIND } from '../../src/record/format.js';
import { type Honeygate, runCli, startHoneygate } from '../helpers/honeygate.js';
import { needs, type Peer, startProcessPeer, tempDir } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

const SKIP = needs('socat', 'tshark');

/** socat as the attacker: sends `data`, half-closes, returns what came back. */
function socatClient(host: string, port: number, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const p = spawn('socat', ['-t', '5', '-', `TCP:${host.includes(':') ? `[${host}]` : host}:${port}`]);
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    p.on('error', reject);
    p.on('exit', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`socat ${code}: ${err}`)),
    );
    p.stdin.end(data);
  });
}

/** socat echo server (EXEC:cat) on 127.0.0.1. */
async function startSocatEcho(): Promise<Peer> {
  const port = await freePort();
  return startProcessPeer(
    'socat echo',
    tempDir('echo'),
    port,
    'socat',
    [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, 'EXEC:cat'],
    null,
  );
}

function tshark(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('tshark', args, { maxBuffer: 64 * 1024 * 1024, timeout: 60_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`tshark ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

/** Both directions of TCP stream `n` of a pcap file, as tshark's `follow,tcp,raw` reassembles them. */
async function follow(file: string, n: number): Promise<{ client: Buffer; server: Buffer }> {
  const out = await tshark(['-r', file, '-qz', `follow,tcp,raw,${n}`]);
  const client: Buffer[] = [];
  const server: Buffer[] = [];
  for (const line of out.split('\n')) {
    const m = /^(\t?)([0-9a-f]+)$/.exec(line);
    if (m) (m[1] ? server : client).push(Buffer.from(m[2]!, 'hex'));
  }
  return { client: Buffer.concat(client), server: Buffer.concat(server) };
}

/** Frames whose IP or TCP checksum tshark finds wrong, and its expert warnings and errors. */
async function badFrames(file: string): Promise<string> {
  return tshark([
    '-r',
    file,
    '-o',
    'tcp.check_checksum:TRUE',
    '-o',
    'ip.check_checksum:TRUE',
    '-Y',
    'tcp.checksum.status == 0 || ip.checksum.status == 0 || _ws.expert.severity >= warning',
  ]);
}

interface EcsLine {
  event: { id: string };
  source?: { ip?: string; port?: number };
  honeygate: { recording?: string; first_bytes_text: string; listener: string };
}

/** The JSON lines file's events (ECS), read as they are written. */
function jsonl(hg: Honeygate): EcsLine[] {
  try {
    return fs
      .readFileSync(path.join(hg.dir, 'events.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as EcsLine);
  } catch {
    return [];
  }
}

/** Waits for the event of the flow whose first bytes hold `token`; its recording id (or undefined). */
async function eventOf(hg: Honeygate, token: string): Promise<EcsLine> {
  return waitFor(
    `the event of ${token}`,
    () => jsonl(hg).find((e) => e.honeygate.first_bytes_text.includes(token)),
    15_000,
  );
}

/** Waits until recording `id` is written to its end: our FIN to the attacker is in the file. */
function complete(dir: string, id: string): Promise<true> {
  return waitFor(
    `recording ${id} to be complete`,
    () => {
      const { chunks } = decode(fs.readFileSync(path.join(dir, `${id}.hgrec`)));
      return chunks.some((c) => c.kind === KIND.finOut);
    },
    10_000,
  );
}

/** `honeygate pcap` of the recordings, into a file beside the test's config. */
async function pcapOf(hg: Honeygate, ids: string[]): Promise<string> {
  const file = path.join(hg.dir, `${ids[0]}.pcap`);
  const res = await runCli(['pcap', '--dir', path.join(hg.dir, 'recordings'), '-o', file, ...ids]);
  assert.equal(res.code, 0, res.stderr);
  return file;
}

const config = (echo: number, extra = '') => `
listeners:
  - name: fwd
    bind: "127.0.0.1:0"
  - name: fwd6
    bind: "[::1]:0"
  - name: cap
    bind: "127.0.0.1:0"
routes:
  - match: { listeners: [cap] }
    capture: { banner: "SSH-2.0-OpenSSH_9.2\\r\\n", timeout: 5s, maxBytes: 64KiB }
    record: {}
  - forward: echo
backends:
  echo:
    servers: ["127.0.0.1:${echo}"]
    record: { maxBytes: 4MiB }
limits: { perSourceRate: 10000/s }
events:
  sqlite: {{dir}}/events.db
  jsonl: {{dir}}/events.jsonl
  batch: 50ms
  recordings: { minFree: 1MiB }
${extra}`;

for (const relay of ['on', 'off'] as const) {
  describe(`recording, relay ${relay}`, { skip: SKIP, timeout: 90_000 }, () => {
    let echo: Peer;
    let hg: Honeygate;

    before(async () => {
      echo = await startSocatEcho();
      hg = await startHoneygate(
        config(echo.port),
        relay === 'off' ? { env: { HONEYGATE_RELAY: 'off' } } : {},
      );
    });
    after(async () => {
      await hg?.close();
      await echo?.stop();
    });

    test('a forwarded text flow: replay shows both directions, tshark follows the pcap', async () => {
      const token = `hello-${relay}-${Date.now()}`;
      const sent = Buffer.from(`${token}\r\nsecond line\r\n`);
      assert.deepEqual(await socatClient('127.0.0.1', hg.port('fwd'), sent), sent);
      const ev = await eventOf(hg, token);
      assert.equal(ev.honeygate.recording, ev.event.id, 'the event names its recording');
      // The link is in the SQLite store too: `events --json` gives the id `replay` takes.
      const stored = await waitFor(
        `the flow's row in the store`,
        async () => {
          const { stdout } = await runCli(['events', '--db', path.join(hg.dir, 'events.db'), '--json']);
          return stdout
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as { id: string; type: string; recording?: string })
            .find((e) => e.id === ev.event.id && e.type === 'flow');
        },
        10_000,
        200,
      );
      const id = stored.recording;
      assert.equal(id, ev.event.id, 'the stored event names its recording');

      await complete(path.join(hg.dir, 'recordings'), id!);
      const { stdout: replay } = await runCli(['replay', '--dir', path.join(hg.dir, 'recordings'), id!]);
      assert.match(
        replay,
        new RegExp(`^# flow ${id} 127\\.0\\.0\\.1:${ev.source!.port} -> 127\\.0\\.0\\.1:${hg.port('fwd')}`),
      );
      assert.match(replay, /## \+\d+\.\d{3}s attacker > \d+ bytes\n/);
      assert.ok(replay.includes(`${token}\r\nsecond line`), replay);
      assert.match(replay, /attacker > FIN/);

      const file = await pcapOf(hg, [id!]);
      const ascii = await tshark(['-r', file, '-qz', 'follow,tcp,ascii,0']);
      assert.ok(ascii.includes(`Node 0: 127.0.0.1:${ev.source!.port}`), ascii);
      // Both directions, each as sent (the byte-exact raw comparison and the checksums: below).
      assert.equal(ascii.split(token).length - 1, 2, ascii);
    });

    // Recorded flows take Node's path either way: the large flow needs one run only.
    test('256 KiB of binary data: replay prints hex, the pcap carries every byte with valid checksums', {
      skip: relay === 'off',
    }, async () => {
      const tag = Buffer.from(`bin-${relay}-${Date.now()}`);
      const data = Buffer.concat([tag, randomBytes(256 * 1024)]);
      assert.ok(
        (await socatClient('127.0.0.1', hg.port('fwd'), data)).equals(data),
        'the echo came back whole',
      );
      const ev = await eventOf(hg, tag.toString());
      const id = ev.honeygate.recording!;
      const recFile = path.join(hg.dir, 'recordings', `${id}.hgrec`);
      await complete(path.join(hg.dir, 'recordings'), id);
      assert.ok(fs.statSync(recFile).size > 2 * data.length);
      const replay = await runCli(['replay', recFile]);
      assert.match(replay.stdout, /attacker > \d+ bytes \(hex\)\n00000000 {2}62 69 6e 2d/);
      const file = await pcapOf(hg, [id]);
      const both = await follow(file, 0);
      assert.ok(both.client.equals(data), `client bytes ${both.client.length} of ${data.length}`);
      assert.ok(both.server.equals(data), `server bytes ${both.server.length} of ${data.length}`);
      assert.equal(await badFrames(file), '');
    });

    test('a captured flow and an IPv6 forwarded flow, followed in one pcap', {
      skip: relay === 'off',
    }, async () => {
      const token = `cap-${Date.now()}`;
      const reply = await socatClient('127.0.0.1', hg.port('cap'), Buffer.from(`SSH-2.0-${token}\r\n`));
      assert.equal(reply.toString(), 'SSH-2.0-OpenSSH_9.2\r\n');
      const cap = await eventOf(hg, token);
      const token6 = `six-${Date.now()}`;
      const sent6 = Buffer.from(`GET /${token6} HTTP/1.0\r\n\r\n`);
      assert.deepEqual(await socatClient('::1', hg.port('fwd6'), sent6), sent6);
      const six = await eventOf(hg, token6);
      assert.equal(six.source!.ip, '::1');

      const dir = path.join(hg.dir, 'recordings');
      for (const id of [cap.honeygate.recording!, six.honeygate.recording!]) await complete(dir, id);
      const replay = await runCli(['replay', '--dir', dir, cap.honeygate.recording!]);
      assert.match(replay.stdout, /attacker < 21 bytes\nSSH-2.0-OpenSSH_9.2\r\n/);

      const file = await pcapOf(hg, [cap.honeygate.recording!, six.honeygate.recording!]);
      const first = await follow(file, 0);
      assert.equal(first.client.toString(), `SSH-2.0-${token}\r\n`);
      assert.equal(first.server.toString(), 'SSH-2.0-OpenSSH_9.2\r\n');
      const second = await follow(file, 1);
      assert.deepEqual(second.client, sent6);
      assert.deepEqual(second.server, sent6);
      const v6 = await tshark([
        '-r',
        file,
        '-Y',
        'ipv6 && tcp.flags.syn == 1 && tcp.flags.ack == 0',
        '-T',
        'fields',
        '-e',
        'ipv6.src',
        '-e',
        'tcp.srcport',
      ]);
      assert.equal(v6.trim(), `::1\t${six.source!.port}`);
      assert.equal(await badFrames(file), '');
    });

    test('an unknown id or a foreign file is a clear error, exit 1', { skip: relay === 'off' }, async () => {
      const missing = await runCli(['replay', '--dir', path.join(hg.dir, 'recordings'), 'f'.repeat(32)]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /no recording f{32} in .*evicted/);
      const foreign = path.join(hg.dir, 'x.hgrec');
      fs.writeFileSync(foreign, 'not a recording');
      const bad = await runCli(['pcap', '-o', path.join(hg.dir, 'x.pcap'), foreign]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /not a honeygate recording/);
    });
  });
}

describe('recording: disk budget and free space', { skip: needs('socat'), timeout: 90_000 }, () => {
  let echo: Peer;
  after(async () => {
    await echo?.stop();
  });
  before(async () => {
    echo = await startSocatEcho();
  });

  test('over events.recordings.maxSize the oldest recordings are deleted first', async () => {
    const hg = await startHoneygate(
      config(echo.port).replace(
        'recordings: { minFree: 1MiB }',
        'recordings: { minFree: 1MiB, maxSize: 64KiB }',
      ),
    );
    try {
      const dir = path.join(hg.dir, 'recordings');
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) {
        const tag = `budget-${i}-${Date.now()}-`;
        const data = Buffer.concat([Buffer.from(tag), randomBytes(10 * 1024)]);
        await socatClient('127.0.0.1', hg.port('fwd'), data);
        ids.push((await eventOf(hg, tag)).honeygate.recording!);
        // Each file is finished before the next flow, so eviction order is recording order.
        await complete(dir, ids[i]!);
      }
      const left = fs.readdirSync(dir).sort();
      const total = left.reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
      assert.ok(total <= 64 * 1024, `recordings take ${total} bytes`);
      assert.ok(!left.includes(`${ids[0]}.hgrec`), 'the oldest recording was deleted');
      assert.ok(left.includes(`${ids[3]}.hgrec`), 'the newest is kept');
      assert.equal(fs.readdirSync(dir).length, left.length);
    } finally {
      await hg.close();
    }
  });

  test('a file system short of minFree: recording stops with a warning, flows go on', async () => {
    const hg = await startHoneygate(
      config(echo.port).replace('recordings: { minFree: 1MiB }', 'recordings: { minFree: 8000000GiB }'),
    );
    try {
      const token = `nospace-${Date.now()}`;
      const sent = Buffer.from(`${token}\n`);
      assert.deepEqual(await socatClient('127.0.0.1', hg.port('fwd'), sent), sent, 'the flow is forwarded');
      const ev = await eventOf(hg, token);
      assert.equal(ev.honeygate.recording, undefined, 'no recording is linked');
      await hg.waitForLine(
        (r) =>
          r.code === 'HG_ERR_RECORD' &&
          /session recording stopped or cut short: .*minFree/.test(String(r.msg)),
      );
      assert.deepEqual(fs.readdirSync(path.join(hg.dir, 'recordings')), []);
      // Still serving after the warning.
      assert.deepEqual(await socatClient('127.0.0.1', hg.port('fwd'), sent), sent);
    } finally {
      await hg.close();
    }
  });
});
