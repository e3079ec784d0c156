// `honeygate check -c FILE` as a user runs it: what it prints on each stream and the exit code.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CHECK = fileURLToPath(new URL('../../src/cli/check.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'honeygate-check-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// Runs only the check verb (not main.ts), so this test depends on nothing but config/.
const SCRIPT = `
import { Command } from 'commander';
import { register } from ${JSON.stringify(CHECK)};
const program = new Command('honeygate').exitOverride();
register(program);
try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); }
catch (err) { process.exitCode = 2; }
`;

function check(yaml: string): { code: number | null; stdout: string; stderr: string; file: string } {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', SCRIPT, 'check', '-c', file], {
    encoding: 'utf8',
    cwd: fileURLToPath(new URL('../../../', import.meta.url)), // so 'commander' resolves
    env: { PATH: process.env.PATH },
    timeout: 20_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, file };
}

test('a valid file: the routing table, warnings and unreachable rules; exit 0', () => {
  const r = check(
    [
      'listeners:',
      '  - { name: ssh, bind: "127.0.0.1:2222" }',
      'routes:',
      '  - { match: { dstPorts: "1-1024" }, drop: true }',
      '  - { match: { dstPorts: 22 }, forward: cowrie }',
      '  - { match: { dstPorts: 2222 }, capture: {} }',
      'backends:',
      '  cowrie: { servers: "192.0.2.10:2222", fallback: capture }',
      'events: { createDirectories: true }',
      '',
    ].join('\n'),
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.equal(
    r.stdout,
    [
      `${r.file}: ok`,
      'listeners:',
      '  ssh: 127.0.0.1:2222',
      'backends:',
      '  cowrie: 192.0.2.10:2222; roundrobin, plain; no health check (servers always up); connect timeout 3s, 1 retry; if all down: capture',
      'routes (first match wins):',
      '  #0: flows to port 1-1024 -> drop (close, send nothing)',
      '  #1: flows to port 22 -> forward to backend cowrie (1 server, roundrobin, plain; if all down: capture)',
      '  #2: flows to port 2222 -> capture up to 4096 bytes for 10s, then close',
      '  flows that match no rule are closed (no-route)',
      'unreachable rules:',
      '  #1 can never match: #0 already takes every flow it would',
      '  #0 can never match: no listener it applies to binds port 1-1024',
      '',
    ].join('\n'),
  );
});

test('warnings are printed and the exit code stays 0', () => {
  const r = check('listeners:\n  - { name: ssh, bind: "127.0.0.1:2222" }\n');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\nwarnings:\n {2}.*:1: routes: no routes: every flow is captured/);
  assert.match(r.stdout, /#0: every flow -> capture up to 4096 bytes for 10s, then close\n/);
});

test('an invalid file: every problem on stderr, one per line, a count, exit 2', () => {
  const r = check(
    [
      'listeners:',
      '  - { name: ssh, bind: "127.0.0.1:2222" }',
      'routes:',
      '  - forward: cowie',
      'backends:',
      '  cowrie: { servers: "192.0.2.10:2222", balance: sourcehash }',
      '',
    ].join('\n'),
  );
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.equal(
    r.stderr,
    [
      `${r.file}:4: routes[0].forward: unknown backend "cowie" (known: cowrie)`,
      `${r.file}:6: backends.cowrie.balance: invalid value "sourcehash" (allowed: roundrobin, leastconn, source-hash)`,
      `honeygate check: 2 problems in ${r.file}`,
      '',
    ].join('\n'),
  );
});

test('a missing file is one problem, exit 2', () => {
  const r = check('');
  const missing = `${r.file}.nope`;
  const s = spawnSync(process.execPath, ['--input-type=module', '-e', SCRIPT, 'check', '-c', missing], {
    encoding: 'utf8',
    cwd: fileURLToPath(new URL('../../../', import.meta.url)),
    timeout: 20_000,
  });
  assert.equal(s.status, 2);
  assert.match(s.stderr, /cannot read the configuration file: ENOENT.*\nhoneygate check: 1 problem in /);
});
