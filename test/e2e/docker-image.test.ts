// Issue 13, item 2: deploy/docker/Dockerfile and compose.yaml, run by the real docker-compose
// (Debian's, v1) against a real Docker Engine in the farm's gateway namespace (the "host" of
// the container). No registry is reachable, so the image is built the way the Dockerfile
// offers for that case: the packed npm package plus its production node_modules beside it
// (`npm ci --omit=dev`, from this host's npm cache), on a local base image
// (test/helpers/node-image.ts). The container runs as compose.yaml says (host network,
// NET_ADMIN, events on a volume) with the shipped deploy/docker/honeygate.yaml; an
// attacker's connection ends up in the volume's events, and `docker-compose stop` ends
// honeygate cleanly.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import YAML from 'yaml';
import { DockerEngine, dockerMissing } from '../../src/netns/docker.js';
import { buildFarm, command, type Farm } from '../../src/netns/topology.js';
import { ROOT } from '../helpers/honeygate.js';
import { connectFrom, needsRoot } from '../helpers/netns.js';
import { importNodeBase, nodeImageMissing } from '../helpers/node-image.js';
import { packHoneygate, packMissing } from '../helpers/pack.js';
import { which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

const DEPLOY = path.join(ROOT, 'deploy/docker');
const PROJECT = 'hgtest';
const CONTAINER = `${PROJECT}_honeygate_1`;
const VOLUME = `${PROJECT}_events`;
// The checkout's own build of native/ (the one every other test loads) stands in as the
// package's prebuild: compiling one with prebuildify is test/e2e/no-compiler.test.ts's job.
const ADDON = path.join(ROOT, 'build/Release/honeygate.node');

/** The image is the same whichever Node runs this file: once, on the machine's `node`. */
function otherNode(): string | null {
  const node = which('node');
  return node && fs.realpathSync(node) !== fs.realpathSync(process.execPath)
    ? `the image does not depend on the Node that runs the test: run once, on ${node}`
    : null;
}

const skip =
  otherNode() ||
  needsRoot() ||
  dockerMissing() ||
  (which('docker-compose') ? null : 'docker-compose not installed (apt-get install docker-compose)') ||
  nodeImageMissing() ||
  packMissing() ||
  false;

interface ComposeService {
  build?: { context: string; args?: Record<string, string> };
  image?: string;
  network_mode?: string;
  cap_add?: string[];
  volumes?: string[];
  command?: string[];
  stop_signal?: string;
}

/** Runs `npm ci` for the production dependencies in `dir`, from the npm cache when it has them. */
function productionModules(dir: string): void {
  fs.mkdirSync(dir);
  for (const file of ['package.json', 'package-lock.json'])
    fs.copyFileSync(path.join(ROOT, file), path.join(dir, file));
  // --ignore-scripts: honeygate's own install script is the package's business, not this copy's.
  const r = spawnSync(
    'npm',
    [
      'ci',
      '--omit=dev',
      '--omit=optional',
      '--ignore-scripts',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
    ],
    { cwd: dir, encoding: 'utf8', timeout: 300_000 },
  );
  assert.equal(r.status, 0, `npm ci --omit=dev: ${r.stdout}${r.stderr}`);
}

describe('the Docker image and compose file', () => {
  let farm: Farm;
  let engine: DockerEngine;
  let work: string;
  let context: string;
  let service: ComposeService;
  const timings: Record<string, number> = {};

  /** docker-compose against the test's engine, in the build context. */
  const compose = async (args: string[], timeoutMs = 60_000) => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DOCKER_HOST: `unix://${engine.sock}`,
      COMPOSE_INTERACTIVE_NO_CLI: '1',
    };
    for (const k of ['DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'COMPOSE_FILE'])
      delete env[k];
    const r = await command(
      ['docker-compose', '--ansi', 'never', '-p', PROJECT, '-f', path.join(context, 'compose.yaml'), ...args],
      { env, timeoutMs },
      'HG_ERR_DOCKER',
    );
    assert.equal(r.code, 0, `docker-compose ${args.join(' ')}: exit ${r.code}\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    if (skip) return;
    let t = Date.now();
    const lap = (name: string) => {
      timings[name] = Date.now() - t;
      t = Date.now();
    };
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-image-'));
    context = path.join(work, 'context');
    fs.cpSync(DEPLOY, context, { recursive: true });
    packHoneygate(context, fs.existsSync(ADDON) ? { addon: ADDON } : {});
    lap('pack');
    productionModules(path.join(work, 'prod'));
    fs.renameSync(path.join(work, 'prod/node_modules'), path.join(context, 'node_modules'));
    lap('npm ci --omit=dev');
    farm = await buildFarm();
    engine = await DockerEngine.start(farm.topology, farm.gateway.ns);
    lap('farm and dockerd');
    const base = await importNodeBase(engine, work);
    lap('base image');
    service = YAML.parse(await compose(['config'])).services.honeygate;
    await compose(['build', '--build-arg', `BASE=${base}`], 300_000);
    lap('docker-compose build');
    await compose(['up', '-d', '--no-build']);
    await waitFor(
      'honeygate in the container to be ready',
      async () => {
        const logs = await engine.cli(['logs', CONTAINER]);
        if (/"msg":"ready"/.test(logs.stdout)) return true;
        const state = await engine.cli(['inspect', '-f', '{{.State.Running}}', CONTAINER]);
        if (state.stdout.trim() === 'false')
          throw new Error(`the container stopped:\n${logs.stdout}${logs.stderr}`);
        return false;
      },
      30_000,
      100,
    );
    lap('up, ready');
  });

  after(async () => {
    await farm?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
    if (!skip) console.log(`timings (ms): ${JSON.stringify(timings)}`);
  });

  test('compose.yaml: host network, NET_ADMIN, the events on a volume, the config read-only', {
    skip,
  }, () => {
    assert.equal(service.network_mode, 'host');
    assert.ok(service.cap_add!.includes('NET_ADMIN'));
    // docker-compose v1 prints the short syntax, with the bind's source made absolute.
    assert.deepEqual(service.volumes, [
      `${context}/honeygate.yaml:/etc/honeygate/honeygate.yaml:ro`,
      'events:/var/lib/honeygate:rw',
    ]);
    assert.equal(service.stop_signal, 'SIGTERM');
  });

  test('the container runs as compose.yaml says', { skip }, async () => {
    const info = JSON.parse(await engine.docker(['inspect', CONTAINER]))[0];
    assert.equal(info.HostConfig.NetworkMode, 'host');
    assert.deepEqual(
      info.Mounts.map((m: { Type: string; Destination: string; RW: boolean; Name?: string }) => [
        m.Type,
        m.Destination,
        m.RW,
        m.Name ?? '',
      ]).sort(),
      [
        ['bind', '/etc/honeygate/honeygate.yaml', false, ''],
        ['volume', '/var/lib/honeygate', true, VOLUME],
      ],
    );
    const pid = await engine.containerPid(CONTAINER);
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const capEff = BigInt(`0x${/^CapEff:\s*(\w+)/m.exec(status)![1]}`);
    assert.equal((capEff >> 12n) & 1n, 1n, 'CAP_NET_ADMIN (bit 12) in the effective set');
    const netns = (file: string) => fs.statSync(file).ino;
    assert.equal(
      netns(`/proc/${pid}/ns/net`),
      netns(`/var/run/netns/${farm.gateway.ns}`),
      "the host's network",
    );
  });

  test("an attacker's connection is recorded in the events volume", { skip }, async () => {
    // host network: the container's listener is on the gateway's own addresses.
    const client = await connectFrom(farm.topology, farm.attacker1.ns, farm.attacker1.gw4, 2323);
    client.write('root\n');
    const [attackerIp, attackerPort] = [client.local.split(':')[0], Number(client.local.split(':')[1])];
    await client.close();
    const volume = JSON.parse(await engine.docker(['volume', 'inspect', VOLUME]))[0].Mountpoint as string;
    const jsonl = path.join(volume, 'events.jsonl');
    const event = await waitFor(
      'the event in the volume',
      () =>
        fs.existsSync(jsonl) &&
        fs
          .readFileSync(jsonl, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l))
          .find((e) => e.source?.ip === attackerIp && e.source?.port === attackerPort),
      15_000,
    );
    assert.equal(event.destination.ip, farm.attacker1.gw4);
    assert.equal(event.destination.port, 2323);
    assert.equal(fs.existsSync(path.join(volume, 'events.db')), true);
    // The same event through the CLI in the container, from the SQLite store on the volume.
    const listed = await compose([
      'exec',
      '-T',
      'honeygate',
      'honeygate',
      'events',
      '-c',
      '/etc/honeygate/honeygate.yaml',
      '--json',
    ]);
    assert.ok(
      listed
        .split('\n')
        .filter(Boolean)
        .some((l) => JSON.parse(l).src?.port === attackerPort),
      listed,
    );
  });

  test('docker-compose stop: SIGTERM, honeygate exits 0', { skip }, async () => {
    await compose(['stop', '-t', '30']);
    const code = await engine.docker(['inspect', '-f', '{{.State.ExitCode}}', CONTAINER]);
    assert.equal(code, '0');
    const logs = await engine.cli(['logs', CONTAINER]);
    assert.match(logs.stdout, /"msg":"stopped"/);
  });
});
