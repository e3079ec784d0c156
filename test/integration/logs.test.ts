// What `run` prints (#13): JSON lines when stdout is a pipe, one readable line per record on
// a terminal (a pseudo-terminal from script(1)); either way the ready line says where events
// go and where the admin API listens, and a port range is one `listening` line.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { BIN } from '../helpers/honeygate.js';
import { needs } from '../helpers/peers.js';
import { freePort, freePortRange } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-logs-'));
const running: ChildProcess[] = [];
after(async () => {
  for (const p of running) {
    if (p.exitCode === null && p.signalCode === null) {
      const gone = new Promise((resolve) => p.once('exit', resolve));
      p.kill('SIGKILL');
      await gone;
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

async function writeConfig(
  name: string,
  format: string,
): Promise<{ file: string; first: number; admin: number }> {
  const first = await freePortRange(3);
  const admin = await freePort();
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(
    file,
    [
      'listeners:',
      `  - { name: range, bind: "127.0.0.1:${first}-${first + 2}" }`,
      'routes:',
      '  - capture: {}',
      'events:',
      '  sqlite: ./data/events.db',
      `  jsonl: ./${name}.jsonl`,
      '  createDirectories: true',
      `admin: { listen: "127.0.0.1:${admin}" }`,
      `log: { format: ${format} }`,
      '',
    ].join('\n'),
  );
  return { file, first, admin };
}

/** Starts `argv`, collects its stdout, and waits for `ready` to appear in it. */
async function start(argv: string[], ready: RegExp): Promise<{ proc: ChildProcess; out: () => string }> {
  const proc = spawn(argv[0]!, argv.slice(1), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(proc);
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  proc.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  await waitFor(`ready in:\n${out}`, () => ready.test(out) || proc.exitCode !== null, 15_000);
  assert.match(out, ready);
  return { proc, out: () => out };
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const gone = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGTERM');
  await gone;
}

test('log.format auto, stdout a pipe: JSON lines; ready names the sinks and the admin address', async () => {
  const { file, first, admin } = await writeConfig('pipe', 'auto');
  const { proc, out } = await start([process.execPath, BIN, 'run', '-c', file], /"msg":"ready"/);
  await stop(proc);
  const records = out()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const ready = records.find((r) => r.msg === 'ready');
  assert.deepEqual(ready.events, {
    sqlite: path.join(dir, 'data/events.db'),
    jsonl: path.join(dir, 'pipe.jsonl'),
  });
  assert.equal(ready.admin, `127.0.0.1:${admin}`);
  const listening = records.filter((r) => r.msg === 'listening');
  assert.deepEqual(
    listening.map(({ listener, address, ports }) => ({ listener, address, ports })),
    [{ listener: 'range', address: `127.0.0.1:${first}-${first + 2}`, ports: 3 }],
  );
});

test('log.format auto on a terminal: one readable line per record, colour on the level', async (t) => {
  const missing = needs('script');
  if (missing) return t.skip(missing);
  const { file, first, admin } = await writeConfig('tty', 'auto');
  const cmd = [process.execPath, BIN, 'run', '-c', file].map((a) => `'${a}'`).join(' ');
  // script(1) gives honeygate a pseudo-terminal as stdout and copies what it prints to ours.
  const { proc, out } = await start(['script', '-qfec', cmd, '/dev/null'], /ready .*admin=/);
  await stop(proc);
  const text = out().replaceAll('\r', '');
  assert.doesNotMatch(text, /"msg":/, 'no JSON on a terminal');
  assert.match(
    text,
    new RegExp(
      `^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} \\x1b\\[32mINFO \\x1b\\[0m listening listener=range address=127\\.0\\.0\\.1:${first}-${first + 2} ports=3$`,
      'm',
    ),
  );
  const ready = text.split('\n').find((l) => / ready /.test(l)) ?? '';
  assert.ok(ready.includes(`events.sqlite=${path.join(dir, 'data/events.db')}`), ready);
  assert.ok(ready.includes(`events.jsonl=${path.join(dir, 'tty.jsonl')}`), ready);
  assert.ok(ready.includes(`admin=127.0.0.1:${admin}`), ready);
});

test('log.format json on a terminal stays JSON; pretty through a pipe is pretty, without colour', async (t) => {
  const missing = needs('script');
  if (missing) return t.skip(missing);
  const json = await writeConfig('tty-json', 'json');
  const cmd = [process.execPath, BIN, 'run', '-c', json.file].map((a) => `'${a}'`).join(' ');
  const a = await start(['script', '-qfec', cmd, '/dev/null'], /"msg":"ready"/);
  await stop(a.proc);

  const pretty = await writeConfig('pipe-pretty', 'pretty');
  const b = await start([process.execPath, BIN, 'run', '-c', pretty.file], / INFO {2}ready /);
  await stop(b.proc);
  assert.doesNotMatch(b.out(), /\x1b\[/, 'no escape codes into a pipe');
  assert.doesNotMatch(b.out(), /"msg":/);
});
