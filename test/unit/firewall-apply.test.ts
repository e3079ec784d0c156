// The pure parts of applying: recognising honeygate's own ip rule among others (remove must
// delete exactly that), reading nft's JSON set elements back, and the commit-confirm
// handshake on the state file (no root needed: nothing here touches the kernel).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { elementText, isOurRule } from '../../src/firewall/apply.js';
import { type ConfirmState, confirm, readState } from '../../src/firewall/confirm.js';

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
