// A tproxy listener without `divert`: the TPROXY rule and its policy routing are the
// operator's own (hand-written here, in a table of their own), honeygate only listens. An
// attacker in the standard farm connects to a decoy address nobody owns; the connection
// reaches honeygate with the attacker's real address and is recorded. `firewall apply`,
// `show` and `doctor` say what honeygate does and does not do for that listener.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { nativeAvailable } from '../../src/net/native.js';
import { farmSuite, inGateway, startManagedGateway } from '../helpers/farm-gateway.js';
import { BIN, type EventRecord, runCli } from '../helpers/honeygate.js';
import { connectFrom, needsRoot } from '../helpers/netns.js';
import { which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

function skipReason(): string | false {
  const root = needsRoot();
  if (root) return root;
  if (!which('nft')) return 'nft not installed (Debian package nftables)';
  const native = nativeAvailable();
  return native.ok ? false : `transparent mode needs the native addon: ${native.reason}`;
}
const skip = skipReason();

const TPROXY_PORT = 15001;

function configText(dir: string): string {
  return `
listeners:
  - name: outside-rules
    tproxy: { port: ${TPROXY_PORT}, address: 127.0.0.1 }
routes:
  - capture: { timeout: 5s }
events: { sqlite: ${dir}/events.db, batch: 50ms }
log: { level: info }
`;
}

/** The operator's own TPROXY rule for ports 8000-8099 on att1, mark 0x1, and its routing. */
const OPERATOR_RULES = `table inet operator {
	chain prerouting {
		type filter hook prerouting priority mangle; policy accept;
		meta l4proto tcp socket transparent 1 meta mark set 0x1 accept
		iifname "att1" meta nfproto ipv4 meta l4proto tcp tcp dport 8000-8099 tproxy ip to 127.0.0.1:${TPROXY_PORT} meta mark set 0x1 accept
	}
}
`;

function inGw(ns: string, argv: string[], input?: string): void {
  const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], { input, encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, `${argv.join(' ')}: ${r.stderr}`);
}

async function events(dbPath: string): Promise<EventRecord[]> {
  const r = await runCli(['events', '--db', dbPath, '--json', '--limit', '1000']);
  if (r.code !== 0) throw new Error(`honeygate events exited ${r.code}: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as EventRecord);
}

describe('a tproxy listener with TPROXY rules managed elsewhere', { skip }, () => {
  const s = farmSuite('hg-tproxy-ext-', configText);
  const hg = (...args: string[]) => inGateway(s.farm, [process.execPath, BIN, ...args]);

  test("the attacker's connection arrives with its real address; apply, show and doctor say who diverts", async () => {
    const ns = s.farm.gateway.ns;
    inGw(ns, ['nft', '-f', '-'], OPERATOR_RULES);
    inGw(ns, ['ip', '-4', 'rule', 'add', 'pref', '9000', 'fwmark', '0x1/0x1', 'lookup', '100']);
    inGw(ns, ['ip', '-4', 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100']);

    const applied = hg('firewall', 'apply', '-c', s.configPath);
    assert.match(applied, /the config needs no firewall rules \(no divert on its tproxy listeners/);
    assert.match(
      applied,
      /listener outside-rules: nothing is diverted to it \(no divert:\); honeygate only listens on 127\.0\.0\.1:15001/,
    );
    assert.match(hg('firewall', 'show', '-c', s.configPath), /# the config diverts nothing/);

    const doctor = hg('firewall', 'doctor', '-c', s.configPath);
    assert.match(
      doctor,
      /ok {2}\s*external-tproxy\s+listener outside-rules \(127\.0\.0\.1:15001\) has no divert: honeygate adds no rules for it, and table inet operator chain prerouting TPROXYs connections to it/,
    );
    assert.match(
      doctor,
      /ok {2}\s*external-tproxy\s+IPv4: the TPROXY rule's chain sets a mark that `9000: fwmark 0x1\/0x1 lookup 100` delivers to this host/,
    );
    assert.doesNotMatch(doctor, /FAIL/);

    const g = startManagedGateway(s.farm, s.configPath);
    try {
      await g.ready();
      const db = path.join(s.dir, 'events.db');
      const c = await connectFrom(s.farm.topology, s.farm.attacker1.ns, s.farm.decoys.ip4, 8080);
      c.write('GET / HTTP/1.0\r\n\r\n');
      const e = await waitFor(
        'the event of the connection to the decoy',
        async () => (await events(db)).find((x) => x.dst.ip === s.farm.decoys.ip4 && x.dst.port === 8080),
        15_000,
        100,
      );
      await c.close();
      assert.equal(e.listener, 'outside-rules');
      assert.equal(e.src.ip, s.farm.attacker1.ip4, "the attacker's real address");
      // the operator's rules are theirs: honeygate's run left them, and added no table of its own
      assert.match(inGateway(s.farm, ['nft', 'list', 'tables']), /table inet operator/);
      assert.doesNotMatch(inGateway(s.farm, ['nft', 'list', 'tables']), /honeygate/);
    } finally {
      await g.stop();
    }
    assert.match(inGateway(s.farm, ['nft', 'list', 'tables']), /table inet operator/);
  });
});
