// The pure parts of applying: recognising honeygate's own ip rule among others (remove must
// delete exactly that), reading nft's JSON set elements back, and the commit-confirm
// handshake on the state file (no root needed: nothing here touches the kernel).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { isOurRule } from '../../src/firewall/apply.js';
import { type ConfirmState, cancelPending, confirm, readState } from '../../src/firewall/confirm.js';
import { elementText } from '../../src/firewall/nft-json.js';
import { sameElements } from '../../src/firewall/plan-diff.js';

const FW = { mark: 0x1000, mask: 0x1000, table: 4210, rulePriority: 10000, checkIntervalMs: 5000 };

test('isOurRule: preference, fwmark/mask and table must all match, and nothing else be set', () => {
  const ours = { priority: 10000, src: 'all', fwmark: '0x1000', fwmask: '0x1000', table: '4210' };
  assert.equal(isOurRule(ours, FW), true);
  assert.equal(isOurRule({ ...ours, table: '4211' }, FW), false);
  assert.equal(isOurRule({ ...ours, priority: 10001 }, FW), false);
  assert.equal(isOurRule({ ...ours, fwmark: '0x2000' }, FW), false);
  assert.equal(isOurRule({ ...ours, fwmask: undefined }, FW), false, 'no fwmask means 0xffffffff');
  assert.equal(isOurRule({ ...ours, iif: 'eth0' } as typeof ours, FW), false);
  assert.equal(isOurRule({ priority: 10000, src: 'all', table: '4210' }, FW), false);
  const wide = { ...FW, mask: 0xffffffff };
  assert.equal(isOurRule({ priority: 10000, src: 'all', fwmark: '0x1000', table: '4210' }, wide), true);
});

test('elementText: nft JSON set elements in the ruleset text syntax', () => {
  assert.equal(elementText(22), '22');
  assert.equal(elementText({ range: [1, 21] }), '1-21');
  assert.equal(elementText('198.51.100.7'), '198.51.100.7');
  assert.equal(elementText({ prefix: { addr: '203.0.113.0', len: 24 } }), '203.0.113.0/24');
  assert.equal(elementText({ elem: { val: { prefix: { addr: '2001:db8::', len: 32 } } } }), '2001:db8::/32');
});

// Review finding: nft prints an IPv4-mapped block as ::ffff:198.51.100.0/120, render.ts writes
// ::ffff:c633:6400/120; verify saw a difference on every check and --manage-firewall re-applied
// the table (and recorded a firewall event) every checkInterval, forever.
test('sameElements: one spelling per IPv6 element; ports and order do not matter', () => {
  assert.equal(
    sameElements(['::ffff:198.51.100.0/120', '2001:db8::/32'], ['2001:db8::/32', '::ffff:c633:6400/120']),
    true,
  );
  assert.equal(sameElements(['2001:db8:0:0:1::/80'], ['2001:db8::1:0:0:0/80']), true);
  assert.equal(sameElements(['1-21', '23-65535'], ['23-65535', '1-21']), true);
  assert.equal(sameElements(['22'], ['0.0.0.22']), false, 'a port is not an address');
  assert.equal(sameElements(['2001:db8::/32'], ['2001:db8::/48']), false);
});

test('confirm: nothing pending, kept (and the file gone), too late once the rollback claimed it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-confirm-'));
  try {
    const file = path.join(dir, 'confirm-test.json');
    assert.deepEqual(confirm(file), { kind: 'nothing-pending' });
    const state: ConfirmState = {
      version: 1,
      createdAt: new Date().toISOString(),
      deadline: Date.now() + 60_000,
      pid: null,
      firewall: FW,
      previousTable: null,
      previousRouting: [],
    };
    fs.writeFileSync(file, JSON.stringify(state));
    assert.deepEqual(readState(file), state);
    assert.deepEqual(confirm(file), { kind: 'kept' });
    assert.equal(fs.existsSync(file), false);
    fs.writeFileSync(`${file}.rolling-back`, JSON.stringify(state));
    assert.deepEqual(confirm(file), { kind: 'too-late' });
    fs.writeFileSync(file, JSON.stringify({ ...state, rollbackError: 'nft -f - exited 1' }));
    assert.deepEqual(confirm(file), { kind: 'kept', rollbackError: 'nft -f - exited 1' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// Review finding: a rollback process killed mid-restore left its claim (.rolling-back) behind;
// every later `apply --confirm` waited 15 s and failed with "a rollback is still running", and
// plain apply/remove waited 15 s each. A claim whose process is gone is stale: it becomes a
// state file carrying rollbackError, which confirm (and show) report.
test('a stale rollback claim (its process gone) is reported, not waited on', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-confirm-'));
  try {
    const file = path.join(dir, 'confirm-test.json');
    const state: ConfirmState = {
      version: 1,
      createdAt: new Date().toISOString(),
      deadline: Date.now() - 1000,
      pid: 2 ** 22 + 1, // above pid_max's default ceiling: no such process
      firewall: FW,
      previousTable: null,
      previousRouting: [],
    };
    fs.writeFileSync(`${file}.rolling-back`, JSON.stringify(state));
    const started = Date.now();
    assert.equal(await cancelPending(file), true);
    assert.ok(Date.now() - started < 5000, 'no 15 s wait');
    assert.equal(fs.existsSync(`${file}.rolling-back`), false);
    assert.equal(fs.existsSync(file), false, 'confirm took the reported state');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
