// `honeygate run --manage-firewall` in the gateway namespace of a farm (src/netns/topology.ts),
// its JSON log lines parsed as they come, and what honeygate's firewall leaves in that
// namespace: for the e2e tests of transparent mode and of the firewall's lifecycle.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before } from 'node:test';
import { buildFarm, type Farm } from '../../src/netns/topology.js';
import { BIN } from './honeygate.js';
import { rootState } from './netns.js';
import { waitFor } from './wait.js';

export interface FarmSuite {
  farm: Farm;
  dir: string; // a temp dir holding honeygate.yaml
  configPath: string;
}

/**
 * A farm and a config file for the describe block this is called in: built in before(),
 * destroyed in after(), which also checks that the root namespace was left as it was.
 */
export function farmSuite(prefix: string, configText: (dir: string) => string): FarmSuite {
  const suite = {} as FarmSuite;
  let rootBefore: Record<string, string> = {};
  before(async () => {
    rootBefore = rootState();
    suite.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    suite.configPath = path.join(suite.dir, 'honeygate.yaml');
    fs.writeFileSync(suite.configPath, configText(suite.dir));
    suite.farm = await buildFarm();
  });
  after(async () => {
    await suite.farm?.destroy();
    if (suite.dir) fs.rmSync(suite.dir, { recursive: true, force: true });
    assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
  });
  return suite;
}

export interface GatewayProcess {
  proc: ChildProcess;
  records: Array<Record<string, unknown>>;
  /** Resolves to the exit code once the process has exited (by itself or stopped). */
  exited: Promise<number | null>;
  output(): string;
  waitForLog(
    what: string,
    predicate: (r: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<void>;
  /** Waits for the "ready" line; rejects with the output when honeygate exits first. */
  ready(): Promise<void>;
  /** SIGTERM and wait for the exit; resolves to the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `honeygate run -c configPath --manage-firewall` in the farm's gateway namespace. */
export function startManagedGateway(
  farm: Farm,
  configPath: string,
  env: NodeJS.ProcessEnv = {},
): GatewayProcess {
  const proc = farm.topology.spawn(
    farm.gateway.ns,
    [process.execPath, BIN, 'run', '-c', configPath, '--manage-firewall'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  const records: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  let stderr = '';
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    raw.push(line);
    try {
      records.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      records.push({ raw: line });
    }
  });
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const running = () => proc.exitCode === null && proc.signalCode === null;
  const output = () => `honeygate stdout:\n${raw.join('\n')}\nhoneygate stderr:\n${stderr}`;
  const waitForLog: GatewayProcess['waitForLog'] = async (what, predicate, timeoutMs = 15_000) => {
    try {
      await waitFor(
        what,
        () => {
          if (records.some(predicate)) return true;
          if (!running()) throw new Error(`honeygate exited (${proc.exitCode ?? proc.signalCode})`);
          return false;
        },
        timeoutMs,
        20,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${output()}`);
    }
  };
  return {
    proc,
    records,
    exited,
    output,
    waitForLog,
    ready: () => waitForLog('honeygate to be ready', (r) => r.msg === 'ready'),
    async stop() {
      if (running()) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** A command in the farm's gateway namespace, stdout and stderr together, whatever its status. */
export function inGateway(farm: Farm, argv: string[]): string {
  const r = spawnSync('ip', ['netns', 'exec', farm.gateway.ns, ...argv], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`;
}

/** honeygate's table and ip rules (table 4210) in the gateway, as text ('' parts when absent). */
export function honeygateState(farm: Farm): { table: boolean; rules: string } {
  const tables = inGateway(farm, ['nft', 'list', 'tables']);
  const rules = [
    ...inGateway(farm, ['ip', '-4', 'rule']).split('\n'),
    ...inGateway(farm, ['ip', '-6', 'rule']).split('\n'),
  ]
    .filter((l) => l.includes('lookup 4210'))
    .join('\n');
  return { table: tables.includes('inet honeygate'), rules };
}
