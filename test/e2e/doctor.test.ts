// `honeygate firewall doctor` against a real kernel (root): in a fresh namespace where
// `firewall apply` has set everything up it exits 0; then each test breaks one thing the
// way an operator or a VPN tool would (issue #3 item 7: "doctor detects an rp_filter or
// missing route that a test breaks on purpose"), checks that doctor exits 1 naming the
// problem, runs the printed fix verbatim, and checks that doctor is happy again.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Topology } from '../../src/netns/topology.js';
import { BIN, ROOT } from '../helpers/honeygate.js';
import { needsRoot } from '../helpers/netns.js';
import { which } from '../helpers/peers.js';

const skip =
  needsRoot() ||
  (which('nft') ? false : 'nft not installed (Debian package nftables)') ||
  (which('ip') ? false : 'ip not installed (Debian package iproute2)');

// IPv4 only: the namespace's interfaces get no global IPv6 address.
const CONFIG = `
listeners:
  - name: all-ports
    tproxy: { port: 15001, address: 127.0.0.1 }
    divert: { interface: eth0 }
routes:
  - forward: cowrie
backends:
  cowrie: { servers: ["192.0.2.10:2222"], source: transparent }
`;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('firewall doctor in a namespace', { skip }, () => {
  let topology: Topology;
  let ns = '';
  let dir = '';
  let configPath = '';

  function inNs(argv: string[]): Promise<Result> {
    return new Promise((resolve) => {
      execFile(
        'ip',
        ['netns', 'exec', ns, ...argv],
        { cwd: ROOT, timeout: 60_000 },
        (err, stdout, stderr) => {
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
        },
      );
    });
  }

  const doctor = () => inNs([process.execPath, BIN, 'firewall', 'doctor', '-c', configPath]);

  /** The lines of one finding: its status line and, if any, its fix. */
  function finding(out: string, status: string, check: string): { line: string; fix: string | null } {
    const lines = out.split('\n');
    const i = lines.findIndex((l) => l.startsWith(`${status}  ${check} `));
    assert.ok(i >= 0, `no ${status} ${check} line in:\n${out}`);
    const next = lines[i + 1]?.trim() ?? '';
    return { line: lines[i]!, fix: next.startsWith('fix: ') ? next.slice(5) : null };
  }

  async function assertHealthy(): Promise<void> {
    const r = await doctor();
    assert.equal(r.code, 0, `doctor exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stdout, /^FAIL/m);
    assert.match(r.stdout, /, 0 failures: /);
  }

  before(async () => {
    topology = new Topology('hgdoc');
    topology.destroyOnExit();
    ns = await topology.namespace('gw');
    // eth0 toward an attacker, hp0 toward a honeypot (veth pairs: this kernel has no dummy module)
    for (const [dev, role, cidr, peer] of [
      ['eth0', 'att', '203.0.113.1/24', '203.0.113.7/24'],
      ['hp0', 'hp', '192.0.2.1/24', '192.0.2.10/24'],
    ] as const) {
      const other = await topology.namespace(role);
      await topology.veth({ ns, dev }, { ns: other, dev: 'eth0' });
      await topology.address(ns, dev, cidr);
      await topology.address(other, 'eth0', peer);
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hgdoc-'));
    configPath = path.join(dir, 'honeygate.yaml');
    fs.writeFileSync(configPath, CONFIG);
    const r = await inNs([process.execPath, BIN, 'firewall', 'apply', '-c', configPath]);
    assert.equal(r.code, 0, `firewall apply exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  });

  after(async () => {
    await topology?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('after `firewall apply` every check passes and doctor exits 0', async () => {
    const r = await doctor();
    assert.equal(r.code, 0, `doctor exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stdout, /^(FAIL|WARN)/m, r.stdout);
    for (const check of ['capabilities', 'kernel', 'table', 'ip-rule', 'ip-route', 'src_valid_mark']) {
      finding(r.stdout, 'ok  ', check);
    }
    assert.match(r.stdout, /^ok {4}kernel +nft_tproxy \(IPv4\) and nft_socket work/m);
  });

  test('a deleted `local default dev lo` route: exit 1, the route named, its fix works', async (t) => {
    const route = ['local', '0.0.0.0/0', 'dev', 'lo', 'table', '4210'];
    const del = await inNs(['ip', '-4', 'route', 'del', ...route]);
    assert.equal(del.code, 0, del.stderr);
    t.after(() => inNs(['ip', '-4', 'route', 'replace', ...route])); // for the next test, if this one fails
    const r = await doctor();
    assert.equal(r.code, 1, r.stdout);
    const f = finding(r.stdout, 'FAIL', 'ip-route');
    assert.match(f.line, /IPv4: table 4210 has no `local default dev lo` route/);
    assert.equal(
      f.fix,
      `ip -4 route add local 0.0.0.0/0 dev lo table 4210   # or: honeygate firewall apply -c ${configPath}`,
    );
    const fixed = await inNs(['sh', '-c', f.fix!]);
    assert.equal(fixed.code, 0, fixed.stderr);
    await assertHealthy();
  });

  test('src_valid_mark=1 with rp_filter=1 on eth0 (as a VPN tool leaves it): exit 1, its fix works', async (t) => {
    t.after(() => topology.sysctl(ns, 'net.ipv4.conf.eth0.src_valid_mark', '0'));
    for (const [key, value] of [
      ['net.ipv4.conf.eth0.rp_filter', '1'],
      ['net.ipv4.conf.eth0.src_valid_mark', '1'],
    ] as const) {
      await topology.sysctl(ns, key, value);
    }
    const r = await doctor();
    assert.equal(r.code, 1, r.stdout);
    const f = finding(r.stdout, 'FAIL', 'src_valid_mark');
    assert.match(f.line, /src_valid_mark is 1 on eth0 \(diverted connections\): .* martian source/);
    assert.equal(f.fix, 'sysctl -w net.ipv4.conf.eth0.src_valid_mark=0');
    // rp_filter alone is fine: the default route (none here) cannot disagree with eth0
    finding(r.stdout, 'ok  ', 'rp_filter');
    const fixed = await inNs(['sh', '-c', f.fix!]);
    assert.equal(fixed.code, 0, fixed.stderr);
    await assertHealthy();
  });
});
