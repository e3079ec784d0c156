// The README's first steps, verbatim: the default example config, an SSH banner grab, an
// HTTP request and an nmap connect scan, then `honeygate events -c` shows every flow. The
// example is copied into a temp dir, since its store is beside it (examples/data/), and the
// run starts elsewhere: relative paths are the config file's, not the working directory's.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { exchange } from '../helpers/client.js';
import { BIN, ROOT, runCli } from '../helpers/honeygate.js';
import { needs, which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

test('README: run examples/honeygate.yaml, attack it, see the events', { timeout: 60_000 }, async (t) => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-readme-'));
  const elsewhere = path.join(cwd, 'elsewhere');
  fs.mkdirSync(path.join(cwd, 'examples'));
  fs.mkdirSync(elsewhere);
  fs.copyFileSync(path.join(ROOT, 'examples/honeygate.yaml'), path.join(cwd, 'examples/honeygate.yaml'));
  const proc = spawn(process.execPath, [BIN, 'run', '-c', '../examples/honeygate.yaml'], {
    cwd: elsewhere,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
  t.after(async () => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    await exited;
    fs.rmSync(cwd, { recursive: true, force: true });
  });

  await waitFor('ready or exit', () => out.includes('"msg":"ready"') || proc.exitCode !== null, 15_000);
  if (proc.exitCode !== null && out.includes('EADDRINUSE')) {
    return t.skip("the example's fixed ports (2222, 2323, 8080, 2300-2310) are taken on this machine");
  }
  assert.ok(out.includes('"msg":"ready"'), out);

  const ssh = await exchange(2222, 'SSH-2.0-libssh_0.9.6\r\n');
  assert.match(ssh.data.toString(), /^SSH-2\.0-OpenSSH/);
  const http = await exchange(8080, 'GET /admin.php HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', {
    replyTimeoutMs: 15_000,
  });
  let expected = 2;
  if (!needs('nmap')) {
    await new Promise<void>((resolve, reject) => {
      const nmap = spawn(which('nmap')!, ['-sT', '-p', '2300-2310', '127.0.0.1'], { stdio: 'ignore' });
      nmap.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`nmap exited ${code}`))));
    });
    expected += 11;
  }

  proc.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.ok(fs.existsSync(path.join(cwd, 'examples/data/events.db')), 'the store is beside the config');
  assert.ok(!fs.existsSync(path.join(elsewhere, 'data')), 'not in the working directory');
  const res = await runCli(['events', '-c', 'examples/honeygate.yaml', '--json', '--limit', '1000'], { cwd });
  assert.equal(res.code, 0, res.stderr);
  const all = res.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const events = all.filter((e) => e.type === 'flow');
  assert.equal(events.length, expected, res.stdout);
  // nmap's 11 ports: a scan, kept as an event with its ports, when more than 10 (the default
  // events.scan.ports) reached one source's track. With the relay, every flow has its source,
  // 127.0.0.1 (with the SSH and HTTP flows). Without it, nmap's resets usually beat Node's
  // accept() and leave no source (''), and the sourceless flows are a track of their own; when
  // a few accepts win the race, neither track may pass 10 ports, and then there is no scan.
  const scans = all.filter((e) => e.type === 'scan');
  const portsBySource = new Map<string, Set<number>>();
  for (const e of events) {
    const ports = portsBySource.get(e.src.ip) ?? new Set<number>();
    ports.add(e.dst.port);
    portsBySource.set(e.src.ip, ports);
  }
  const scanners = [...portsBySource].filter(([, ports]) => ports.size > 10).map(([ip]) => ip);
  assert.deepEqual(scans.map((e) => e.src.ip).sort(), scanners.sort(), res.stdout);
  if (expected > 2 && process.env.HONEYGATE_RELAY !== 'off')
    assert.deepEqual(scanners, ['127.0.0.1'], res.stdout);
  for (const scan of scans)
    assert.equal(scan.targets.portCount, portsBySource.get(scan.src.ip)?.size, res.stdout);
  assert.equal(all.length, events.length + scans.length, res.stdout);
  const sshFlow = events.find((e) => e.src.port === ssh.localPort);
  assert.equal(sshFlow.route, 'ssh-banner');
  assert.equal(sshFlow.protocol, 'ssh');
  const httpFlow = events.find((e) => e.src.port === http.localPort);
  assert.equal(httpFlow.protocolFields.path, '/admin.php');
  const scanned = new Set(events.filter((e) => e.listener === 'misc').map((e) => e.dst.port));
  assert.equal(scanned.size, expected - 2, 'one event per scanned port');

  const table = await runCli(['events', '-c', 'examples/honeygate.yaml'], { cwd });
  assert.match(table.stdout, /ssh-banner/);
});
