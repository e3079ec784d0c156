// Fingerprints and enrichment through a real `run`, with real clients as the attackers:
// OpenSSL's s_client and curl (JA4 of their ClientHellos) and OpenSSH (HASSH of its
// KEXINIT) against capture routes on loopback. The expected values do not come from our
// parser: the recorded first bytes go through text2pcap into tshark, whose TLS dissector
// gives the lists JA4 is made of (tshark 4.0 has no JA4 field of its own) and whose SSH
// dissector gives its own ssh.kex.hassh. Enrichment: a PROXY header from a trusted peer
// gives the flow a documentation source address, which the test's own .mmdb names; a new
// file and SIGHUP name it anew.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FlowEvent } from '../../src/events/event.js';
import { queryEvents } from '../../src/events/query.js';
import { type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { TEST_NETWORKS, writeMmdb } from '../helpers/mmdb.js';
import { needs, tempDir } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

const SSH_BANNER = 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3';

function run(cmd: string, args: string[], input?: string, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, encoding: 'latin1' }, (_err, stdout) =>
      resolve(stdout),
    );
    child.stdin?.end(input ?? '');
  });
}

/** tshark's fields of the one TCP segment `payload` to `port`, as text2pcap frames it. */
async function dissect(dir: string, payload: Buffer, port: number, fields: string[]): Promise<string[]> {
  const hex: string[] = [];
  for (let i = 0; i < payload.length; i += 16) {
    const row = [...payload.subarray(i, i + 16)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    hex.push(`${i.toString(16).padStart(6, '0')}  ${row}`);
  }
  const pcap = path.join(dir, `p${port}-${payload.length}.pcap`);
  fs.writeFileSync(`${pcap}.txt`, `${hex.join('\n')}\n`);
  await run('text2pcap', ['-q', '-T', `40000,${port}`, `${pcap}.txt`, pcap]);
  const args = ['-r', pcap, '-T', 'fields', '-E', 'separator=/t', '-E', 'aggregator=,'];
  for (const f of fields) args.push('-e', f);
  const out = await run('tshark', args);
  return out.split('\n')[0]!.split('\t');
}

const isGrease = (v: number) => (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
const hex4 = (v: number) => v.toString(16).padStart(4, '0');
const sha12 = (s: string) => (s ? createHash('sha256').update(s).digest('hex').slice(0, 12) : '000000000000');

/** JA4 from tshark's dissection of a ClientHello (the spec's recipe, as FoxIO's ja4.py does it). */
async function ja4ByTshark(dir: string, hello: Buffer): Promise<string> {
  const [ciphers, exts, sigs, alpn, versions, version, sni] = await dissect(dir, hello, 443, [
    'tls.handshake.ciphersuite',
    'tls.handshake.extension.type',
    'tls.handshake.sig_hash_alg',
    'tls.handshake.extensions_alpn_str',
    'tls.handshake.extensions.supported_version',
    'tls.handshake.version',
    'tls.handshake.extensions_server_name',
  ]);
  const nums = (s: string | undefined) => (s ? s.split(',').map((x) => Number(x)) : []);
  const c = nums(ciphers).filter((v) => !isGrease(v));
  const e = nums(exts).filter((v) => !isGrease(v));
  const v = nums(versions).filter((x) => !isGrease(x));
  const ver = v.length ? Math.max(...v) : Number(version);
  const names: Record<number, string> = { 772: '13', 771: '12', 770: '11', 769: '10' };
  const first = (alpn ?? '').split(',')[0] ?? '';
  const a = first ? `${first[0]}${first[first.length - 1]}` : '00';
  const count = (n: number) => String(Math.min(n, 99)).padStart(2, '0');
  const sorted = (l: number[]) =>
    [...l]
      .sort((x, y) => x - y)
      .map(hex4)
      .join(',');
  const extText = sorted(e.filter((x) => x !== 0 && x !== 0x10));
  const sigText = nums(sigs).map(hex4).join(',');
  const head = `t${names[ver] ?? '00'}${sni ? 'd' : 'i'}${count(c.length)}${count(e.length)}${a}`;
  return `${head}_${sha12(sorted(c))}_${sha12(sigText ? `${extText}_${sigText}` : extText)}`;
}

describe('fingerprints and enrichment with real clients', { timeout: 115_000 }, () => {
  let hg: Honeygate;
  let dir: string;

  before(async () => {
    dir = tempDir('hg-fp-');
    writeMmdb(path.join(dir, 'country.mmdb'), 'GeoLite2-Country', TEST_NETWORKS.country);
    writeMmdb(path.join(dir, 'asn.mmdb'), 'GeoLite2-ASN', TEST_NETWORKS.asn);
    hg = await startHoneygate(`
listeners:
  - name: tls
    bind: "127.0.0.1:0"
  - name: ssh
    bind: "127.0.0.1:0"
  - name: proxied
    bind: "127.0.0.1:0"
    acceptProxy: { versions: [v1], from: ["127.0.0.1/32"] }
routes:
  - match: { listeners: [ssh] }
    capture: { timeout: 2s, banner: "${SSH_BANNER}\\r\\n" }
  - capture: { timeout: 1s }
events:
  sqlite: {{dir}}/events.db
  batch: 50ms
  enrich: { country: ${dir}/country.mmdb, asn: ${dir}/asn.mmdb }
`);
  });
  after(async () => {
    await hg?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  // The store read in-process (read-only, as `events` does): a CLI per poll costs seconds on a loaded machine.
  const flow = (what: string, pick: (e: FlowEvent) => boolean): Promise<FlowEvent> =>
    waitFor(
      what,
      () => {
        try {
          return queryEvents(hg.dbPath, { type: 'flow', limit: 1000 }).find(pick);
        } catch {
          return undefined; // the store's first batch is not written yet
        }
      },
      20_000,
    );

  /** Runs a client and finds its flow: the first of its listener since `since`. */
  async function clientFlow(
    listener: string,
    cmd: string,
    args: string[],
    since: number,
  ): Promise<FlowEvent> {
    const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'ignore'] });
    child.stdin.end();
    const done = new Promise((resolve) => child.on('exit', resolve));
    try {
      return await flow(`${cmd}'s flow`, (e) => e.listener === listener && e.openedAt >= since);
    } finally {
      child.kill();
      await done;
    }
  }

  for (const client of ['openssl', 'curl'] as const) {
    test(`${client} with SNI: ja4 as tshark's dissection gives it`, {
      skip: needs(client, 'tshark', 'text2pcap'),
    }, async () => {
      const port = hg.port('tls');
      const since = Date.now() - 1;
      const args =
        client === 'openssl'
          ? ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'honeypot.example']
          : [
              '-sk',
              '--max-time',
              '5',
              '--resolve',
              `honeypot.example:${port}:127.0.0.1`,
              `https://honeypot.example:${port}/`,
            ];
      const flow = await clientFlow('tls', client, args, since);
      assert.equal(flow.protocol, 'tls');
      assert.equal(flow.protocolFields?.sni, 'honeypot.example');
      const ja4 = flow.protocolFields?.ja4 as string;
      assert.match(ja4, /^t1[23]d\d{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$/);
      assert.equal(ja4, await ja4ByTshark(dir, flow.firstBytes));
      if (client === 'curl') assert.match(ja4, /^t13d\d{4}(h2|h1)_/, 'curl offers ALPN');
    });
  }

  test('OpenSSH against a capture with a banner: hassh as tshark computes it', {
    skip: needs('ssh', 'tshark', 'text2pcap'),
  }, async () => {
    const port = hg.port('ssh');
    const since = Date.now() - 1;
    const flow = await clientFlow(
      'ssh',
      'ssh',
      [
        '-o',
        'BatchMode=yes',
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        'UserKnownHostsFile=/dev/null',
        '-o',
        'ConnectTimeout=5',
        '-p',
        String(port),
        'root@127.0.0.1',
        'true',
      ],
      since,
    );
    assert.equal(flow.protocol, 'ssh');
    assert.match(flow.protocolFields?.clientVersion as string, /^SSH-2\.0-OpenSSH_/);
    const hassh = flow.protocolFields?.hassh as string;
    assert.match(hassh, /^[0-9a-f]{32}$/);
    const [byTshark, algorithms] = await dissect(dir, flow.firstBytes, 22, [
      'ssh.kex.hassh',
      'ssh.kex.hassh_algorithms',
    ]);
    assert.equal(hassh, byTshark);
    assert.equal(flow.protocolFields?.hasshAlgorithms, algorithms);
  });

  test('a truncated ClientHello and garbage are recorded, without a fingerprint', async () => {
    const port = hg.port('tls');
    const send = (bytes: Buffer) =>
      new Promise<number>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => {
          const local = s.localPort!;
          s.end(bytes);
          s.on('close', () => resolve(local));
        });
        s.on('error', reject);
      });
    // A ClientHello header that promises 512 bytes and brings 60
    const cut = Buffer.concat([Buffer.from('160301020401000200', 'hex'), Buffer.alloc(51, 3)]);
    const cutPort = await send(cut);
    const garbagePort = await send(Buffer.from('16030100ff01ffffff0303deadbeef', 'hex'));
    const truncated = await flow('the truncated hello', (e) => e.src.port === cutPort);
    assert.equal(truncated.protocol, 'tls');
    assert.equal(truncated.protocolFields?.truncated, true);
    assert.equal(truncated.protocolFields?.ja4, undefined);
    const garbage = await flow('the garbage', (e) => e.src.port === garbagePort);
    assert.equal(garbage.protocolFields?.ja4, undefined);
    assert.equal(garbage.bytesIn, 15);
  });

  test('the source behind a PROXY header gets country and AS; a new database after SIGHUP', async () => {
    const port = hg.port('proxied');
    const send = (src: string) =>
      new Promise<void>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () =>
          s.end(`PROXY TCP4 ${src} 192.0.2.1 40001 22\r\nhello\r\n`),
        );
        s.on('close', () => resolve());
        s.on('error', reject);
      });
    await send('192.0.2.10');
    await send('203.0.113.10');
    const named = await flow('192.0.2.10', (e) => e.src.ip === '192.0.2.10');
    assert.deepEqual(named.geo, { country: 'DE', asn: 64500, asOrg: 'Example Networks A' });
    assert.equal((await flow('203.0.113.10', (e) => e.src.ip === '203.0.113.10')).geo, undefined);
    const byCountry = await hg.events(['--country', 'de']);
    assert.deepEqual(
      byCountry.map((e) => e.src.ip),
      ['192.0.2.10'],
    );
    assert.deepEqual(
      (await hg.events(['--asn', 'AS64500'])).map((e) => e.src.ip),
      ['192.0.2.10'],
    );
    const ecs = (await hg.events(['--country', 'DE', '--json', '--format', 'ecs'])) as unknown as {
      source: { geo?: object; as?: object };
    }[];
    assert.deepEqual(ecs[0]!.source.geo, { country_iso_code: 'DE' });
    assert.deepEqual(ecs[0]!.source.as, { number: 64500, organization: { name: 'Example Networks A' } });

    // geoipupdate replaced the file: SIGHUP reads it again
    const from = hg.logs().length;
    writeMmdb(path.join(dir, 'country.mmdb'), 'GeoLite2-Country', [
      { cidr: '192.0.2.0/24', data: { country: { iso_code: 'FR' } } },
    ]);
    hg.signal('SIGHUP');
    await hg.waitForLine((r) => r.msg === 'config reloaded', 10_000, from);
    await send('192.0.2.11');
    assert.equal((await flow('192.0.2.11', (e) => e.src.ip === '192.0.2.11')).geo?.country, 'FR');

    // A broken file rejects the reload; the old databases stay
    const bad = hg.logs().length;
    fs.writeFileSync(path.join(dir, 'country.mmdb'), 'not a database');
    hg.signal('SIGHUP');
    const rejected = await hg.waitForLine((r) => r.msg === 'reload rejected', 10_000, bad);
    assert.match(String(rejected.errors), /events\.enrich\.country: .* is not a MaxMind DB file/);
    await send('192.0.2.12');
    assert.equal((await flow('192.0.2.12', (e) => e.src.ip === '192.0.2.12')).geo?.country, 'FR');
  });
});
