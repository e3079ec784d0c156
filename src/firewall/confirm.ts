// Commit-confirm, as network gear does it: `firewall apply --confirm 60s` saves the state
// before the change, applies, and leaves a detached child that puts the old state back when
// the time is up, unless `firewall confirm` removed the state file first. A lock-out by a
// bad divert rule then lasts a minute, not until someone reaches the console.
//
// The state file is the handshake: confirm deletes it, the rollback claims it by renaming
// it (an atomic step, so exactly one of the two wins).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config, FirewallConfig } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import {
  type ApplyResult,
  addRouting,
  apply,
  deleteRouting,
  deleteTable,
  liveRouting,
  liveTable,
  loadRuleset,
} from './apply.js';
import { FAMILY, type RoutingEntry, routingEntries, TABLE } from './render.js';

export interface ConfirmState {
  version: 1;
  createdAt: string;
  deadline: number; // ms since the epoch
  pid: number | null; // the rollback child
  firewall: FirewallConfig; // the settings naming the routing entries below
  previousTable: string | null; // `nft list table inet honeygate` before the change
  previousRouting: RoutingEntry[]; // honeygate's routing entries that existed before
  rollbackError?: string; // set when the rollback ran and failed
}

const BIN = fileURLToPath(new URL('../../../bin/honeygate.js', import.meta.url));
const CLAIM = '.rolling-back';

export function stateDir(): string {
  return process.env.HONEYGATE_STATE_DIR || '/run/honeygate';
}

/** `root` in the host's network namespace, else the namespace's inode: one file per namespace. */
export function namespaceId(): string {
  const self = fs.readlinkSync('/proc/self/ns/net');
  try {
    if (fs.readlinkSync('/proc/1/ns/net') === self) return 'root';
  } catch {
    // /proc/1 unreadable (not root, or a container): the inode still names the namespace
  }
  return /\[(\d+)\]/.exec(self)?.[1] ?? 'unknown';
}

export function defaultStateFile(): string {
  return path.join(stateDir(), `confirm-${namespaceId()}.json`);
}

export function readState(file: string): ConfirmState | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as ConfirmState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new HoneygateError(
      'HG_ERR_FIREWALL',
      `cannot read the confirm state ${file}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

function writeState(file: string, state: ConfirmState): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** Stops the rollback child recorded in `state`, if it still is that child (pids get reused), and waits up to 2 s for it. */
async function stopChild(state: ConfirmState, file: string): Promise<void> {
  if (!isRollback(state.pid, file)) return;
  try {
    process.kill(state.pid!, 'SIGTERM');
  } catch {
    return; // gone already
  }
  const deadline = Date.now() + 2000;
  while (isRollback(state.pid, file) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

/** True while `pid` is a `honeygate firewall rollback` for `file`. */
function isRollback(pid: number | null, file: string): boolean {
  if (!pid) return false;
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return cmdline.includes('rollback') && cmdline.includes(file);
  } catch {
    return false;
  }
}

/**
 * A rollback in progress takes a few nft/ip calls: wait for it rather than race it. A claim
 * whose process is gone (killed mid-restore) would block every later apply: it becomes a
 * state file with rollbackError, which `show` and `confirm` report. False on timeout.
 */
async function waitForRollback(file: string, timeoutMs: number): Promise<boolean> {
  const claimed = `${file}${CLAIM}`;
  const deadline = Date.now() + timeoutMs;
  while (fs.existsSync(claimed)) {
    let state: ConfirmState | null = null;
    try {
      state = readState(claimed);
    } catch {
      // half written: look again
    }
    if (state && !isRollback(state.pid, file)) {
      const why = `the rollback process (pid ${state.pid}) ended before it finished: the firewall may be half restored`;
      writeState(file, { ...state, pid: null, rollbackError: why });
      fs.rmSync(claimed, { force: true });
      return true;
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

export interface ConfirmedApply {
  result: ApplyResult;
  state: ConfirmState;
  stateFile: string;
  resumed: boolean; // an earlier unconfirmed apply's snapshot was kept
}

/**
 * Snapshot, apply, start the rollback child. A second `apply --confirm` before the first is
 * confirmed keeps the first snapshot (the last state someone confirmed) and restarts the clock.
 */
export async function applyWithConfirm(
  config: Config,
  timeoutMs: number,
  stateFile: string,
): Promise<ConfirmedApply> {
  if (!(await waitForRollback(stateFile, 15_000)))
    throw new HoneygateError('HG_ERR_FIREWALL', `a rollback is still running (${stateFile}${CLAIM} exists)`);
  const fw = config.firewall;
  let state = readState(stateFile);
  if (state && JSON.stringify(state.firewall) !== JSON.stringify(fw)) {
    throw new HoneygateError(
      'HG_ERR_FIREWALL',
      `an unconfirmed apply with other firewall settings is pending (${stateFile}): run \`honeygate firewall confirm\` or wait for its rollback`,
    );
  }
  if (state) {
    // The pending rollback may come due right now: take the snapshot from it by renaming the
    // file (the same atomic step it claims with), so exactly one of us has it. Its child then
    // finds the file gone and ends; it is stopped as well, so it cannot see the file we write.
    const taken = `${stateFile}.${process.pid}.resume`;
    try {
      fs.renameSync(stateFile, taken);
      await stopChild(state, stateFile);
      fs.rmSync(taken, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // the rollback (or a confirm) got there first: wait for it, then start from what is live
      if (!(await waitForRollback(stateFile, 15_000)))
        throw new HoneygateError(
          'HG_ERR_FIREWALL',
          `a rollback is still running (${stateFile}${CLAIM} exists)`,
        );
      state = readState(stateFile); // a rollback that failed leaves its snapshot here
    }
  }
  const resumed = state !== null;
  if (state) {
    state = { ...state, deadline: Date.now() + timeoutMs, pid: null, rollbackError: undefined };
  } else {
    state = {
      version: 1,
      createdAt: new Date().toISOString(),
      deadline: Date.now() + timeoutMs,
      pid: null,
      firewall: fw,
      previousTable: await liveTable(),
      previousRouting: await liveRouting(fw),
    };
  }
  writeState(stateFile, state);
  let result: ApplyResult;
  try {
    result = await apply(config);
  } catch (err) {
    // Half done (routing added, nft refused): put the old state back now, not in a minute.
    try {
      await restore(state);
      fs.rmSync(stateFile, { force: true });
    } catch (restoreErr) {
      writeState(stateFile, { ...state, rollbackError: (restoreErr as Error).message });
    }
    throw err;
  }
  const child = spawn(process.execPath, [BIN, 'firewall', 'rollback', '--state', stateFile], {
    detached: true, // its own session: closing the terminal (SIGHUP) does not reach it
    stdio: 'ignore',
  });
  child.on('error', () => {
    // reported below through the missing pid
  });
  child.unref();
  if (!child.pid) {
    await restore(state);
    fs.rmSync(stateFile, { force: true });
    throw new HoneygateError(
      'HG_ERR_FIREWALL',
      'cannot start the rollback process; the previous state is back',
    );
  }
  state = { ...state, pid: child.pid };
  writeState(stateFile, state);
  return { result, state, stateFile, resumed };
}

/** Puts back the table and honeygate's routing as the snapshot recorded them. */
export async function restore(state: ConfirmState): Promise<void> {
  const fw = state.firewall;
  if (state.previousTable !== null) {
    await loadRuleset(`table ${FAMILY} ${TABLE} {}\ndelete table ${FAMILY} ${TABLE}\n${state.previousTable}`);
  }
  const had = (e: RoutingEntry) => state.previousRouting.some((p) => p.argv.join(' ') === e.argv.join(' '));
  for (const family of [4, 6] as const) {
    for (const e of routingEntries(fw, family)) {
      if (had(e)) await addRouting(e, fw);
      else await deleteRouting(e, fw);
    }
  }
  if (state.previousTable === null) await deleteTable();
}

/**
 * The hidden `firewall rollback --state FILE` verb: waits for the deadline (or not, with
 * `now`), then restores the snapshot unless the state file was removed by `confirm`.
 */
export async function rollbackWhenDue(
  file: string,
  opts: { now?: boolean } = {},
): Promise<'confirmed' | 'rolled back'> {
  const state = readState(file);
  if (!state) return 'confirmed';
  while (!opts.now && Date.now() < state.deadline) {
    await new Promise((r) => setTimeout(r, Math.min(250, Math.max(1, state.deadline - Date.now()))));
    if (!fs.existsSync(file)) return 'confirmed';
  }
  const claimed = `${file}${CLAIM}`;
  try {
    fs.renameSync(file, claimed);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'confirmed';
    throw err;
  }
  const snapshot = readState(claimed) ?? state;
  try {
    // our own pid in the claim: a claim whose process is gone is known to be stale
    writeState(claimed, { ...snapshot, pid: process.pid });
    await restore(snapshot);
    fs.rmSync(claimed, { force: true });
  } catch (err) {
    // Leave the file for `show` and `confirm` to report, then let the operator decide.
    writeState(file, { ...state, pid: null, rollbackError: (err as Error).message });
    fs.rmSync(claimed, { force: true });
    throw err;
  }
  return 'rolled back';
}

export type ConfirmOutcome =
  | { kind: 'kept'; rollbackError?: string }
  | { kind: 'nothing-pending' }
  | { kind: 'too-late' }; // the rollback already claimed the state

/** `firewall confirm`: keeps the applied state by deleting the state file and stopping the child. */
export function confirm(file: string): ConfirmOutcome {
  const state = readState(file);
  if (!state) return fs.existsSync(`${file}${CLAIM}`) ? { kind: 'too-late' } : { kind: 'nothing-pending' };
  try {
    fs.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'too-late' };
    throw err;
  }
  void stopChild(state, file);
  return state.rollbackError ? { kind: 'kept', rollbackError: state.rollbackError } : { kind: 'kept' };
}

/** Cancels a pending rollback (plain `apply` and `remove` supersede it). True when one was pending. */
export async function cancelPending(file: string): Promise<boolean> {
  await waitForRollback(file, 15_000);
  return confirm(file).kind === 'kept';
}
