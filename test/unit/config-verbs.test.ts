// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${VAR} in plain strings is the config syntax under test
// #13, found by a new user: what each verb reads of a config file. Relative paths are the
// config file's, not the working directory's; a missing store directory is an error naming
// it unless the config asks to create it; `events -c` and `check` do not trip over an
// environment variable that only another section uses.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfigFile, loadEventsFile } from '../../src/config/load.js';
import { missingStoreDirs, prepareStoreDirs } from '../../src/config/store-dirs.js';
import { SqliteSink } from '../../src/events/sqlite.js';
import { sampleEvent, tempDir } from '../helpers/events.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin/honeygate.js');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** `honeygate ARGS` in `cwd` with exactly `env` (plus PATH): no HONEYGATE_TOKEN leaks in. */
function honeygate(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd, timeout: 20_000, env: { PATH: process.env.PATH ?? '', ...env } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const tmp = tempDir();
after(tmp.cleanup);

/** A directory under the temp dir, made. */
function dir(...parts: string[]): string {
  const d = join(tmp.dir, ...parts);
  mkdirSync(d, { recursive: true });
  return d;
}

describe('relative paths are the config file’s', () => {
  it('cd elsewhere && honeygate events -c /abs/examples/honeygate.yaml reads the store beside the example', async () => {
    const examples = dir('rel', 'examples');
    const elsewhere = dir('rel', 'elsewhere');
    const config = join(examples, 'honeygate.yaml');
    copyFileSync(join(ROOT, 'examples/honeygate.yaml'), config);
    mkdirSync(join(examples, 'data'));
    const event = sampleEvent();
    const sink = new SqliteSink(join(examples, 'data/events.db'));
    sink.write([event]);
    sink.close();

    const r = await honeygate(['events', '-c', config, '--json'], elsewhere);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, r.stdout);
    assert.equal(JSON.parse(lines[0]!).id, event.id);
    assert.equal(
      existsSync(join(elsewhere, 'data')),
      false,
      'nothing looked for or made in the working directory',
    );
  });

  it('loadConfigFile resolves events.sqlite and events.jsonl against the file’s directory', () => {
    const d = dir('rel2', 'etc');
    const config = join(d, 'gw.yaml');
    writeFileSync(
      config,
      'listeners: [{ name: l, bind: "127.0.0.1:0" }]\nevents: { sqlite: store/e.db, jsonl: ../log/e.jsonl }\n',
    );
    const r = loadConfigFile(config, { openFiles: null });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.config.events.sqlite, join(d, 'store/e.db'));
    assert.equal(r.config.events.jsonl, join(tmp.dir, 'rel2/log/e.jsonl'));
  });
});

describe('a missing store directory', () => {
  it('run refuses to start, naming the directory and the key that creates it; nothing is created', async () => {
    const d = dir('missing');
    const store = join(d, 'nonexistent/dir/events.db');
    const config = join(d, 'gw.yaml');
    writeFileSync(
      config,
      `listeners: [{ name: l, bind: "127.0.0.1:0" }]\nevents: { sqlite: ${JSON.stringify(store)} }\n`,
    );
    const r = await honeygate(['run', '-c', config], d);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const fatal = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .find((l) => l.level === 60);
    assert.equal(fatal?.code, 'HG_ERR_SINK');
    assert.match(
      fatal.msg,
      new RegExp(
        `events\\.sqlite: directory ${join(d, 'nonexistent/dir')} does not exist \\(create it, or set events\\.createDirectories: true\\)`,
      ),
    );
    assert.equal(existsSync(join(d, 'nonexistent')), false, 'no directory made');

    const c = await honeygate(['check', '-c', config], d);
    assert.equal(c.code, 0, c.stderr);
    assert.match(
      c.stdout,
      /warnings:\n(?: {2}.*\n)* {2}.*events\.sqlite: directory .*nonexistent\/dir does not exist .*run would not start/,
    );
  });

  it('events.createDirectories: true creates it (0750), and a file in the way is still an error', () => {
    const d = dir('create');
    const events = {
      sensor: 's',
      sqlite: join(d, 'a/b/events.db'),
      jsonl: join(d, 'c/events.jsonl'),
      createDirectories: true,
      updateIntervalMs: 1000,
      queueSize: 10,
      batchMs: 10,
    };
    assert.deepEqual(missingStoreDirs(events).length, 2);
    prepareStoreDirs(events);
    assert.deepEqual(missingStoreDirs(events), []);
    assert.equal(statSync(join(d, 'a/b')).mode & 0o777, 0o750 & ~process.umask());

    writeFileSync(join(d, 'file'), '');
    const blocked = { ...events, sqlite: join(d, 'file/events.db'), createDirectories: false };
    assert.throws(() => prepareStoreDirs(blocked), /events\.sqlite: directory .*\/file is not a directory/);
  });
});

describe('environment variables only the other sections use', () => {
  const farm = readFileSync(join(ROOT, 'examples/farm.yaml'), 'utf8');
  assert.match(farm, /token: "\$\{HONEYGATE_TOKEN\}"/, 'the example this guards');

  it('events -c examples/farm.yaml does not need HONEYGATE_TOKEN', async () => {
    const r = await honeygate(['events', '-c', join(ROOT, 'examples/farm.yaml')], tmp.dir);
    assert.doesNotMatch(r.stderr, /HONEYGATE_TOKEN|admin\.token|problem/, r.stderr);
    assert.notEqual(r.code, 2, r.stderr);

    const d = dir('env');
    const config = join(d, 'farm.yaml');
    writeFileSync(config, farm.replace('/var/lib/honeygate/events.db', './events.db'));
    const sink = new SqliteSink(join(d, 'events.db'));
    sink.write([sampleEvent()]);
    sink.close();
    const q = await honeygate(['events', '-c', config, '--json'], tmp.dir);
    assert.equal(q.code, 0, q.stderr);
    assert.equal(q.stdout.trim().split('\n').length, 1);
  });

  it('an unset variable in the events section is still an error for events', () => {
    const d = dir('env2');
    const config = join(d, 'gw.yaml');
    writeFileSync(config, 'listeners: [{ name: l, bind: "${NOPE}" }]\nevents:\n  sqlite: ${STORE}\n');
    const r = loadEventsFile(config, { env: {} });
    assert.deepEqual(r, {
      ok: false,
      errors: [
        `${config}:3: events.sqlite: environment variable STORE is not set (write \${STORE:-default} to give a default, \${STORE:-} for an empty one)`,
      ],
    });
    const set = loadEventsFile(config, { env: { STORE: 'x.db' } });
    assert.ok(set.ok);
    assert.equal(set.config.events.sqlite, join(d, 'x.db'));
  });

  it('check warns about an unset variable, naming it and its key, and exits 0; run refuses', async () => {
    const d = dir('env3');
    const config = join(d, 'gw.yaml');
    writeFileSync(
      config,
      'listeners: [{ name: l, bind: "127.0.0.1:0" }]\nevents: { sqlite: false, jsonl: ./e.jsonl }\nadmin:\n  token: "${HONEYGATE_TOKEN}"\n',
    );
    const c = await honeygate(['check', '-c', config], d);
    assert.equal(c.code, 0, c.stdout + c.stderr);
    assert.match(
      c.stdout,
      /warnings:\n(?: {2}.*\n)* {2}.*gw\.yaml:4: admin\.token: environment variable HONEYGATE_TOKEN is not set here: checked as the text \$\{HONEYGATE_TOKEN\}; run needs it set/,
    );
    const r = await honeygate(['run', '-c', config], d);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /gw\.yaml:4: admin\.token: environment variable HONEYGATE_TOKEN is not set/);
    assert.match(r.stderr, /honeygate run: 1 problem in .*; not started/);

    // A key that needs a number cannot be checked without its value: still an error.
    writeFileSync(config, 'listeners: [{ name: l, bind: "127.0.0.1:${PORT}" }]\n');
    const n = await honeygate(['check', '-c', config], d);
    assert.equal(n.code, 2);
    assert.match(n.stderr, /listeners\[0\]\.bind: invalid port "\$\{PORT\}"/);
  });
});
