// nft-json.ts (the one reader of `nft -j list ...`) and plan-diff.ts (the one comparison of
// the live table with the plan), on nft's own output. Fixtures in test/helpers/fixtures/nft-json
// were captured with nft 1.0.6 in a namespace after `nft -f firewall/basic.nft`;
// firewall-doctor/ holds a Docker host's ruleset and a hand-written native one.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { loadConfigFile } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import {
  commentOf,
  elementText,
  hasTable,
  type LiveTable,
  liveTable,
  parseNftJson,
  readNftJson,
} from '../../src/firewall/nft-json.js';
import { diffLines, sameElements, tableDifferences } from '../../src/firewall/plan-diff.js';
import { planRuleset, protectedFrom, RULE, type RulesetPlan } from '../../src/firewall/render.js';

const FIXTURES = new URL('../../../test/helpers/fixtures/', import.meta.url);
const fixture = (name: string) => readFileSync(new URL(name, FIXTURES), 'utf8');
const OURS = { family: 'inet', name: 'honeygate' };
const SSHD = [{ address: '0.0.0.0:22', port: 22 }];

function basicPlan(): RulesetPlan {
  const r = loadConfigFile(new URL('firewall/basic.yaml', FIXTURES).pathname);
  if (!r.ok) assert.fail(r.errors.join('\n'));
  const c: Config = r.config;
  return planRuleset(c, { protectedPorts: protectedFrom(c, SSHD) })!;
}

/** The captured basic table, read as verify and the doctor read it. */
function basicLive(): LiveTable {
  const rs = parseNftJson(fixture('nft-json/basic-table.json'))!;
  return liveTable(rs, OURS, commentOf(fixture('nft-json/basic-table.nft')));
}

test('readNftJson: tables, chains with hook and priority, rules with comments, sets, version', () => {
  const rs = parseNftJson(fixture('nft-json/basic-table.json'))!;
  assert.equal(rs.version, '1.0.6');
  assert.deepEqual(rs.tables, [OURS]);
  assert.deepEqual(
    rs.chains.map((c) => [c.name, c.type, c.hook, c.prio, c.policy]),
    [
      ['prerouting', 'filter', 'prerouting', -90, 'accept'],
      ['output', 'route', 'output', -140, 'accept'],
    ],
  );
  assert.deepEqual(
    rs.rules.filter((r) => r.chain === 'output').map((r) => r.comment),
    [RULE.ctMark],
  );
  assert.ok(
    rs.rules.every((r) => r.expr.length > 0),
    'every rule keeps its statements',
  );
  assert.deepEqual(
    rs.sets.map((s) => [s.name, s.elem.map(elementText)]),
    [['all_ports_ports', ['1-21', '23-65535']]],
  );
});

test('parseNftJson: null for text that is not JSON; shapes it does not know are skipped', () => {
  assert.equal(parseNftJson('Error: Could not process rule'), null);
  const rs = readNftJson({
    nftables: [{ table: { family: 'inet' } }, { chain: {} }, 7, null, { rule: { expr: 1 } }],
  });
  assert.deepEqual(rs, { version: null, tables: [], chains: [], rules: [], sets: [] });
  assert.deepEqual(readNftJson(null).tables, []);
});

test('hasTable: `nft -j list tables` with and without honeygate', () => {
  assert.equal(hasTable(parseNftJson(fixture('nft-json/tables.json'))!, OURS), true);
  assert.equal(
    hasTable(parseNftJson(fixture('nft-json/tables.json'))!, { family: 'ip', name: 'honeygate' }),
    false,
  );
  assert.equal(hasTable(parseNftJson(fixture('firewall-doctor/native-nft.json'))!, OURS), false);
});

test('liveTable: only the named table, from a whole ruleset with Docker tables in it', () => {
  const rs = parseNftJson(fixture('firewall-doctor/docker-nft.json'))!;
  assert.ok(rs.tables.length > 1);
  const live = liveTable(rs, OURS, null);
  assert.deepEqual([...live.chains.keys()].sort(), ['output', 'prerouting']);
  assert.ok(![...live.chains.values()].some((c) => c.rules.some((r) => r.includes('DOCKER'))));
  const other = liveTable(rs, { family: 'ip', name: 'nat' }, null);
  assert.ok(other.chains.has('DOCKER'));
  assert.ok(other.chains.get('DOCKER')!.rules.includes('(no comment)'));
});

test('elementText: nft JSON set elements in the ruleset text syntax', () => {
  assert.equal(elementText(22), '22');
  assert.equal(elementText({ range: [1, 21] }), '1-21');
  assert.equal(elementText({ prefix: { addr: '203.0.113.0', len: 24 } }), '203.0.113.0/24');
  assert.equal(elementText({ elem: { val: { prefix: { addr: '2001:db8::', len: 32 } } } }), '2001:db8::/32');
});

test("commentOf: the table's own comment, not a set's or a chain's", () => {
  assert.match(commentOf(fixture('nft-json/basic-table.nft'))!, /^honeygate sha256:[0-9a-f]{16}$/);
  assert.equal(commentOf('table inet honeygate {\n\tchain x {\n\t\tcomment "chain"\n\t}\n}\n'), null);
  assert.equal(commentOf(null), null);
});

test('tableDifferences: the captured table matches its plan', () => {
  assert.deepEqual(tableDifferences(basicPlan(), basicLive()), []);
  assert.deepEqual(diffLines(basicPlan(), basicLive()), []);
});

test('tableDifferences: each kind of drift, in the words verify and the doctor print', () => {
  const plan = basicPlan();
  const drift = basicLive();
  drift.comment = 'honeygate sha256:0000000000000000';
  drift.chains.get('output')!.rules = [];
  drift.chains.get('prerouting')!.prio = 0;
  drift.chains.get('prerouting')!.rules.reverse();
  drift.sets.set('all_ports_ports', ['1-21', '23-79', '81-65535']);
  assert.deepEqual(
    tableDifferences(plan, drift).map((d) => d.text),
    [
      `its comment is "honeygate sha256:0000000000000000", the config renders "honeygate sha256:${plan.hash}" ` +
        '(applied from another config, or edited)',
      'chain prerouting is filter hook prerouting priority 0, expected filter hook prerouting priority -90',
      'chain prerouting: rules differ (order changed)',
      `chain output: rules differ (missing "${RULE.ctMark}")`,
      'set all_ports_ports holds { 1-21, 23-79, 81-65535 }, the config renders { 1-21, 23-65535 }',
    ],
  );
  assert.match(diffLines(plan, drift)[0]!, /^table inet honeygate differs from the config: its comment is/);
  drift.chains.delete('output');
  drift.sets.clear();
  assert.deepEqual(
    tableDifferences(plan, drift)
      .filter((d) => d.subject !== 'table' && !d.text.startsWith('chain prerouting'))
      .map((d) => d.text),
    ['chain output is missing', 'set all_ports_ports is missing'],
  );
});

test('diffLines: the table missing, or present when the config needs none', () => {
  assert.deepEqual(diffLines(basicPlan(), null), ['table inet honeygate is missing']);
  assert.deepEqual(diffLines(null, basicLive()), ['table inet honeygate exists, but the config needs none']);
  assert.deepEqual(diffLines(null, null), []);
});

test('sameElements: one spelling per IPv6 element; ports and order do not matter', () => {
  assert.equal(sameElements(['::ffff:198.51.100.0/120'], ['::ffff:c633:6400/120']), true);
  assert.equal(sameElements(['1-21', '23-65535'], ['23-65535', '1-21']), true);
  assert.equal(sameElements(['22'], ['0.0.0.22']), false);
});
