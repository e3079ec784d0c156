// apply, remove, verify and show against a fake nft/ip/ss (apply.ts's exec seam): which
// commands they issue in which order, and what they do when one fails. The fake keeps the
// state a namespace would (table present, ip rule and local route per family).
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfigFile } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import type { HoneygateError } from '../../src/errors.js';
import { apply, type Exec, remove, type Spawned, show, useExec, verify } from '../../src/firewall/apply.js';
import { hex, type ProtectedPort, planRuleset, tableComment } from '../../src/firewall/render.js';

const FIXTURES = fileURLToPath(new URL('../../../test/helpers/fixtures/firewall/', import.meta.url));
const PROT: ProtectedPort[] = [{ port: 22, why: 'sshd' }];

function load(file: string): Config {
  const r = loadConfigFile(`${FIXTURES}${file}`);
  if (!r.ok) assert.fail(r.errors.join('\n'));
  return r.config;
}

interface FakeNs {
  calls: string[];
  table: string | null; // the loaded ruleset text
  rule: Record<4 | 6, boolean>;
  route: Record<4 | 6, boolean>;
  failLoad?: string; // stderr of a failing `nft -f -`
  missing?: string; // a tool that is not installed
}

/** A namespace behind nft/ip/ss, as far as apply.ts asks about it. */
function fakeNs(config: Config): FakeNs & { exec: Exec } {
  const fw = config.firewall;
  const plan = planRuleset(config, { protectedPorts: PROT });
  const ns: FakeNs = { calls: [], table: null, rule: { 4: false, 6: false }, route: { 4: false, 6: false } };
  const ok = (stdout = ''): Spawned => ({ code: 0, stdout, stderr: '' });
  const exec: Exec = async (file, args, input) => {
    ns.calls.push([file, ...args].join(' '));
    if (file === ns.missing) {
      const error = Object.assign(new Error(`spawn ${file} ENOENT`), { code: 'ENOENT' });
      return { code: null, stdout: '', stderr: '', error };
    }
    const cmd = args.join(' ');
    if (file === 'ss') return ok('');
    if (file === 'nft') {
      if (cmd === '-j list tables inet')
        return ok(
          JSON.stringify({ nftables: ns.table ? [{ table: { family: 'inet', name: 'honeygate' } }] : [] }),
        );
      if (cmd === '-f -') {
        if (ns.failLoad) return { code: 1, stdout: '', stderr: ns.failLoad };
        ns.table = input ?? '';
        return ok();
      }
      if (cmd === 'delete table inet honeygate') {
        ns.table = null;
        return ok();
      }
      if (cmd === 'list table inet honeygate')
        return ok(`table inet honeygate {\n\tcomment "${tableComment(plan!.hash)}"\n}\n`);
      if (cmd === '-j list table inet honeygate') {
        const objs = [
          ...plan!.chains.flatMap((c) => [
            { chain: { name: c.name, type: c.type, hook: c.hook, prio: c.prio } },
            ...c.rules.map((comment) => ({ rule: { chain: c.name, comment } })),
          ]),
          ...plan!.sets.map((s) => ({ set: { name: s.name, elem: s.elements } })),
        ];
        return ok(JSON.stringify({ nftables: objs }));
      }
    }
    if (file === 'ip') {
      const family = args[0] === '-6' ? 6 : 4;
      if (cmd.endsWith('rule show')) {
        const rule = {
          priority: fw.rulePriority,
          src: 'all',
          fwmark: hex(fw.mark),
          fwmask: hex(fw.mask),
          table: String(fw.table),
        };
        return ok(JSON.stringify(ns.rule[family] ? [rule] : []));
      }
      if (cmd.includes('route show table'))
        return ok(JSON.stringify(ns.route[family] ? [{ type: 'local', dst: 'default', dev: 'lo' }] : []));
      const kind = args[1] === 'rule' ? 'rule' : 'route';
      ns[kind][family] = args[2] === 'add';
      return ok();
    }
    return { code: 1, stdout: '', stderr: `fake: unexpected ${file} ${cmd}` };
  };
  return Object.assign(ns, { exec });
}

let restore: (() => void) | undefined;
afterEach(() => restore?.());

const changes = (calls: string[]) => calls.filter((c) => / (add|del|delete) |-f -/.test(c));

test('apply on an empty namespace: routing first (rule, route per family), then one nft -f', async () => {
  const config = load('basic.yaml');
  const ns = fakeNs(config);
  restore = useExec(ns.exec);
  const r = await apply(config, { protectedPorts: PROT });
  const fw = config.firewall;
  const mark = `${hex(fw.mark)}/${hex(fw.mask)}`;
  assert.deepEqual(changes(ns.calls), [
    `ip -4 rule add pref ${fw.rulePriority} fwmark ${mark} lookup ${fw.table}`,
    `ip -4 route add local 0.0.0.0/0 dev lo table ${fw.table}`,
    `ip -6 rule add pref ${fw.rulePriority} fwmark ${mark} lookup ${fw.table}`,
    `ip -6 route add local ::/0 dev lo table ${fw.table}`,
    'nft -f -',
  ]);
  assert.equal(r.added.length, 4);
  assert.equal(ns.table, r.ruleset);
  assert.ok(r.ruleset.includes('table inet honeygate'));
  // a second apply adds no routing: it is all there
  ns.calls = [];
  const again = await apply(config, { protectedPorts: PROT });
  assert.deepEqual(again.added, []);
  assert.deepEqual(changes(ns.calls), ['nft -f -']);
});

test('apply: a failing nft -f throws its stderr and takes back the routing it added', async () => {
  const config = load('basic.yaml');
  const ns = fakeNs(config);
  ns.failLoad = 'Error: Could not process rule: No such file or directory\n';
  restore = useExec(ns.exec);
  await assert.rejects(apply(config, { protectedPorts: PROT }), (err: HoneygateError) => {
    assert.equal(err.code, 'HG_ERR_FIREWALL');
    assert.match(err.message, /`nft -f -` exited 1: Error: Could not process rule/);
    return true;
  });
  assert.deepEqual(ns.rule, { 4: false, 6: false });
  assert.deepEqual(ns.route, { 4: false, 6: false });
  assert.equal(changes(ns.calls).filter((c) => c.includes(' del ')).length, 4);
});

test('apply: a config that needs no table deletes an old one and removes its routing', async () => {
  const config = load('none.yaml');
  const ns = fakeNs(load('basic.yaml'));
  ns.table = 'old';
  ns.rule = { 4: true, 6: true };
  ns.route = { 4: true, 6: true };
  restore = useExec(ns.exec);
  const r = await apply(config, { protectedPorts: PROT });
  assert.equal(r.ruleset, '');
  assert.equal(r.tableRemoved, true);
  assert.equal(r.removed.length, 4);
  assert.equal(ns.table, null);
  assert.ok(!ns.calls.includes('nft -f -'));
});

test('remove: deletes the table and both families routing; on an empty namespace, nothing', async () => {
  const config = load('basic.yaml');
  const ns = fakeNs(config);
  restore = useExec(ns.exec);
  assert.deepEqual(await remove(config), { table: false, routing: [] });
  assert.deepEqual(changes(ns.calls), []);
  await apply(config, { protectedPorts: PROT });
  const r = await remove(config);
  assert.equal(r.table, true);
  assert.equal(r.routing.length, 4);
  assert.equal(ns.table, null);
  assert.deepEqual({ ...ns.rule, ...ns.route }, { 4: false, 6: false });
});

test('verify: lists the missing table and routing; empty once apply ran', async () => {
  const config = load('basic.yaml');
  const ns = fakeNs(config);
  restore = useExec(ns.exec);
  const before = await verify(config, { protectedPorts: PROT });
  assert.equal(before[0], 'table inet honeygate is missing');
  assert.equal(before.filter((p) => p.startsWith('missing: ip ')).length, 4);
  await apply(config, { protectedPorts: PROT });
  assert.deepEqual(await verify(config, { protectedPorts: PROT }), []);
  ns.route[6] = false;
  assert.deepEqual(await verify(config, { protectedPorts: PROT }), [
    `missing: ip -6 route add local ::/0 dev lo table ${config.firewall.table}`,
  ]);
});

test('show: the plan, then the live state and its differences', async () => {
  const config = load('basic.yaml');
  const ns = fakeNs(config);
  restore = useExec(ns.exec);
  const text = await show(config);
  assert.match(text, /# what `honeygate firewall apply` loads/);
  assert.match(text, /# table inet honeygate: absent/);
  assert.match(
    text,
    /# differences \(run `honeygate firewall apply`\):\n# {3}table inet honeygate is missing/,
  );
  assert.ok(!ns.calls.some((c) => / (add|del|delete) |-f -/.test(c)), 'show changes nothing');
});

test('a missing nft says which Debian package to install', async () => {
  const config = load('basic.yaml');
  const ns = fakeNs(config);
  ns.missing = 'nft';
  restore = useExec(ns.exec);
  await assert.rejects(remove(config), /`nft` not found: install the Debian package nftables/);
});
