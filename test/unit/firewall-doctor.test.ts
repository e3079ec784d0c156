// `firewall doctor` against a fake host: a healthy baseline built from the config (the
// table and routing `apply` would make), and one change per case that breaks one thing.
// Each check has an ok case and a failing case; the assertions pin the message and the fix.
// Fixtures in test/helpers/fixtures/firewall-doctor: docker-* were captured in a namespace running
// a real Docker Engine 20.10 (a container publishing 8080:80) after `honeygate firewall
// apply`; native-nft.json is a hand-written native nftables ruleset as nft 1.0.6 prints it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import {
  doctor,
  type ExecResult,
  exitCode,
  type Finding,
  formatFindings,
  type Host,
  type ProcessInfo,
} from '../../src/firewall/doctor/index.js';
import { fromIptablesSave, fromNftJson, markEffect } from '../../src/firewall/foreign-rules.js';
import { readNftJson } from '../../src/firewall/nft-json.js';
import { planRuleset, protectedFrom, tableComment } from '../../src/firewall/render.js';

const FIXTURES = new URL('../../../test/helpers/fixtures/firewall-doctor/', import.meta.url);
const fixture = (name: string) => readFileSync(new URL(name, FIXTURES), 'utf8');

// ---- the fake host ------------------------------------------------------------------------

type Reply = string | Partial<ExecResult> | ((input: string | undefined) => Partial<ExecResult>);

interface Spec {
  files: Record<string, string>;
  commands: Record<string, Reply>; // "nft -j list ruleset" -> stdout, or a full result
  processes: ProcessInfo[];
}

function fakeHost(spec: Spec): Host {
  return {
    async exec(file, args, input) {
      const reply = spec.commands[[file, ...args].join(' ')];
      if (reply === undefined) return { code: null, stdout: '', stderr: `${file}: not found`, missing: true };
      const r =
        typeof reply === 'function' ? reply(input) : typeof reply === 'string' ? { stdout: reply } : reply;
      return { code: 0, stdout: '', stderr: '', missing: false, ...r };
    },
    async readFile(path) {
      return spec.files[path] ?? null;
    },
    async processes() {
      return spec.processes;
    },
    async sshdSockets() {
      return new Set(['4242']); // SSHD's socket
    },
  };
}

function config(yaml: string): Config {
  const r = loadConfigText(yaml, { fileName: 'test.yaml' });
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return r.config;
}

const BASE_YAML = `
listeners:
  - name: all-ports
    tproxy: { port: 15001 }
    divert: { interface: eth0 }
routes:
  - forward: cowrie
backends:
  cowrie: { servers: ["192.0.2.10:2222"], source: transparent }
`;

const KERNEL_YAML = `
listeners:
  - name: decoys
    tproxy: { port: 15001 }
    divert: { interface: eth0, ports: "80" }
routes:
  - forward: hp
backends:
  hp: { servers: ["192.0.2.100:2222"], engine: kernel }
`;

const KERNEL_SYSCTLS = {
  'net/ipv4/ip_forward': '1',
  'net/netfilter/nf_conntrack_acct': '1',
  'net/netfilter/nf_conntrack_timestamp': '1',
};

const SSHD = 'LISTEN 0 128 0.0.0.0:22 0.0.0.0:* ino:4242 sk:1 cgroup:/ <->\n';

interface Link {
  name: string;
  kind?: string;
  master?: string;
  addrs?: string[]; // CIDRs; scope global
}

const LINKS: Link[] = [
  { name: 'lo', addrs: ['127.0.0.1/8', '::1/128'] },
  { name: 'eth0', kind: 'veth', addrs: ['203.0.113.1/24', '2001:db8::1/64'] },
  { name: 'hp0', kind: 'veth', addrs: ['192.0.2.1/24'] },
];

function ipAddrJson(links: Link[]): string {
  return JSON.stringify(
    links.map((l, i) => ({
      ifindex: i + 1,
      ifname: l.name,
      ...(l.master ? { master: l.master } : {}),
      ...(l.kind ? { linkinfo: { info_kind: l.kind } } : {}),
      addr_info: (l.addrs ?? []).map((c) => ({
        family: c.includes(':') ? 'inet6' : 'inet',
        local: c.split('/')[0],
        prefixlen: Number(c.split('/')[1]),
        scope: l.name === 'lo' ? 'host' : 'global',
      })),
    })),
  );
}

const RULES_BASE = {
  4: [
    { priority: 0, src: 'all', table: '255' },
    { priority: 32766, src: 'all', table: '254' },
    { priority: 32767, src: 'all', table: '253' },
  ],
  6: [
    { priority: 0, src: 'all', table: '255' },
    { priority: 32766, src: 'all', table: '254' },
  ],
};
const OUR_RULE = { priority: 10000, src: 'all', fwmark: '0x1000', fwmask: '0x1000', table: '4210' };

/** A set element in render.ts's syntax as nft's JSON prints it: 22, {"range": [1, 21]}, {"prefix": ...}. */
function nftElement(e: string): unknown {
  const range = /^(\d+)-(\d+)$/.exec(e);
  if (range) return { range: [Number(range[1]), Number(range[2])] };
  if (/^\d+$/.test(e)) return Number(e);
  const [addr, len] = e.split('/');
  return len ? { prefix: { addr, len: Number(len) } } : addr;
}

/** honeygate's table as `nft -j list ruleset` prints it: chains and rules with their comments. */
function ourTableJson(c: Config, sets: Record<string, string[]> = {}): unknown[] {
  const plan = planRuleset(c, { protectedPorts: protectedFrom(c, [{ address: '0.0.0.0:22', port: 22 }]) })!;
  const out: unknown[] = [{ table: { family: 'inet', name: 'honeygate', handle: 1 } }];
  for (const set of plan.sets) {
    out.push({
      set: {
        family: 'inet',
        table: 'honeygate',
        name: set.name,
        type: set.type,
        elem: (sets[set.name] ?? set.elements).map(nftElement),
      },
    });
  }
  for (const ch of plan.chains) {
    out.push({
      chain: {
        family: 'inet',
        table: 'honeygate',
        name: ch.name,
        type: ch.type,
        hook: ch.hook,
        prio: ch.prio,
      },
    });
    for (const comment of ch.rules) {
      out.push({
        rule: { family: 'inet', table: 'honeygate', chain: ch.name, expr: [{ accept: null }], comment },
      });
    }
  }
  return out;
}

/** Other software's objects from a captured ruleset (honeygate's own dropped: ours is generated). */
function foreignObjects(json: string): unknown[] {
  const items = (
    JSON.parse(json) as { nftables: Record<string, { family?: string; table?: string; name?: string }>[] }
  ).nftables;
  return items.filter((o) => {
    const v = Object.values(o)[0]!;
    if (o.metainfo) return false;
    return !((v.table === 'honeygate' || v.name === 'honeygate') && v.family === 'inet');
  });
}

interface Scenario {
  yaml?: string;
  links?: Link[];
  ipAddr?: string; // raw `ip -j -d addr show` output instead of `links`
  sysctl?: Record<string, string>; // "net/ipv4/conf/eth0/rp_filter" -> "1"
  capEff?: string;
  table?: boolean; // honeygate's table present (default true)
  tableComment?: string; // override the live comment
  tableSets?: Record<string, string[]>; // override live set elements
  foreignNft?: unknown[]; // more nftables objects
  iptables4?: string;
  rules?: { 4?: object[]; 6?: object[] }; // replace the rule lists
  routes?: Record<string, object[]>; // "4 4210" -> routes
  routeGet?: Record<string, object[] | null>;
  defaults4?: object[];
  processes?: ProcessInfo[];
  commands?: Record<string, Reply>;
}

function build(s: Scenario = {}): { config: Config; host: Host } {
  const c = config(s.yaml ?? BASE_YAML);
  const links: Link[] = s.ipAddr
    ? (JSON.parse(s.ipAddr) as { ifname: string }[]).map((l) => ({ name: l.ifname }))
    : (s.links ?? LINKS);
  const files: Record<string, string> = {
    '/proc/self/status': `Name:\tnode\nCapEff:\t${s.capEff ?? '000001ffffffffff'}\n`,
    '/proc/net/ip_tables_names': '',
    '/proc/sys/net/ipv4/ip_forward': '0',
    '/proc/sys/net/ipv6/conf/all/forwarding': '0',
    '/proc/sys/net/ipv6/conf/all/disable_ipv6': '0',
    '/proc/sys/net/ipv4/ip_unprivileged_port_start': '1024',
  };
  for (const dev of ['all', ...links.map((l) => l.name)]) {
    for (const k of ['rp_filter', 'src_valid_mark', 'accept_local', 'route_localnet']) {
      files[`/proc/sys/net/ipv4/conf/${dev}/${k}`] = '0';
    }
  }
  for (const [k, v] of Object.entries(s.sysctl ?? {})) files[`/proc/sys/${k}`] = v;

  const plan = planRuleset(c, { protectedPorts: protectedFrom(c, [{ address: '0.0.0.0:22', port: 22 }]) });
  const withTable = s.table !== false && plan !== null;
  const nft = {
    nftables: [
      { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
      ...(withTable ? ourTableJson(c, s.tableSets) : []),
      ...(s.foreignNft ?? []),
    ],
  };
  const rules = {
    4: s.rules?.[4] ?? [...RULES_BASE[4], ...(plan?.families.includes(4) ? [OUR_RULE] : [])],
    6: s.rules?.[6] ?? [...RULES_BASE[6], ...(plan?.families.includes(6) ? [OUR_RULE] : [])],
  };
  const sortRules = (list: object[]) =>
    [...list].sort((a, b) => (a as { priority: number }).priority - (b as { priority: number }).priority);
  const routes: Record<string, object[]> = {
    '4 4210': [{ type: 'local', dst: 'default', dev: 'lo', scope: 'host', flags: [] }],
    '6 4210': [{ type: 'local', dst: 'default', dev: 'lo', metric: 1024, flags: [], pref: 'medium' }],
    ...s.routes,
  };
  const commands: Record<string, Reply> = {
    'ss -ltnHe': SSHD,
    'nft -j list ruleset': JSON.stringify(nft),
    'nft list table inet honeygate': withTable
      ? `table inet honeygate {\n\tcomment "${s.tableComment ?? tableComment(plan!.hash)}"\n}\n`
      : { code: 1, stderr: 'Error: No such file or directory' },
    'nft --check -f -': '',
    'ip -j -N -4 rule show': JSON.stringify(sortRules(rules[4])),
    'ip -j -N -6 rule show': JSON.stringify(sortRules(rules[6])),
    'ip -j -4 route show default': JSON.stringify(
      s.defaults4 ?? [{ dst: 'default', gateway: '203.0.113.254', dev: 'eth0', flags: [] }],
    ),
    'ip -j -d addr show': s.ipAddr ?? ipAddrJson(links),
    'iptables-nft-save': s.iptables4 ?? '',
    'ip6tables-nft-save': '',
  };
  for (const [key, list] of Object.entries(routes)) {
    const [family, table] = key.split(' ');
    commands[`ip -j -${family} route show table ${table}`] = JSON.stringify(list);
  }
  const routeGet: Record<string, object[] | null> = {
    '192.0.2.10': [{ dst: '192.0.2.10', dev: 'hp0', prefsrc: '192.0.2.1', flags: [], uid: 0, cache: [] }],
    ...s.routeGet,
  };
  for (const [ip, r] of Object.entries(routeGet)) {
    commands[`ip -j route get ${ip}`] = r
      ? JSON.stringify(r)
      : { code: 2, stderr: 'RTNETLINK answers: Network is unreachable' };
  }
  Object.assign(commands, s.commands);
  return { config: c, host: fakeHost({ files, commands, processes: s.processes ?? [] }) };
}

async function run(s: Scenario = {}): Promise<Finding[]> {
  const { config: c, host } = build(s);
  return doctor(c, host, { file: 'test.yaml' });
}

function only(findings: Finding[], check: string): Finding[] {
  return findings.filter((f) => f.check === check);
}

function one(findings: Finding[], check: string, status: Finding['status'], message: RegExp): Finding {
  const hits = only(findings, check).filter((f) => f.status === status && message.test(f.message));
  assert.equal(
    hits.length,
    1,
    `expected one ${status} ${check} finding matching ${message}, got:\n${formatFindings(only(findings, check))}`,
  );
  return hits[0]!;
}

// ---- the healthy host ---------------------------------------------------------------------

test('a host set up as apply does passes every check, and the exit code is 0', async () => {
  const findings = await run();
  const bad = findings.filter((f) => f.status !== 'ok');
  assert.deepEqual(bad, [], formatFindings(bad));
  assert.equal(exitCode(findings), 0);
  const checks = new Set(findings.map((f) => f.check));
  for (const c of [
    'capabilities',
    'nftables',
    'kernel',
    'table',
    'ip-rule',
    'ip-route',
    'fwmark',
    'src_valid_mark',
    'rp_filter',
    'interfaces',
    'nat',
    'transparent-backends',
    'ip_forward',
    'docker-proxy',
    'br_netfilter',
  ]) {
    assert.ok(checks.has(c), `no finding for ${c}`);
  }
  one(
    findings,
    'ip-rule',
    'ok',
    /^IPv6: `ip -6 rule` pref 10000 fwmark 0x1000\/0x1000 lookup 4210 is in place$/,
  );
  one(findings, 'kernel', 'ok', /nft_tproxy \(IPv4\), nft_tproxy \(IPv6\) and nft_socket work/);
});

// ---- one broken thing per case -------------------------------------------------------------

interface Case {
  name: string;
  scenario: Scenario;
  check: string;
  status: 'warn' | 'fail' | 'ok';
  message: RegExp;
  fix?: string | RegExp;
}

const CASES: Case[] = [
  {
    name: 'no CAP_NET_ADMIN',
    scenario: { capEff: '0000000000000000' },
    check: 'capabilities',
    status: 'fail',
    message: /^this process lacks CAP_NET_ADMIN: it cannot read or load nftables rules/,
    fix: /^sudo honeygate firewall doctor -c test\.yaml .*AmbientCapabilities=CAP_NET_ADMIN/,
  },
  {
    name: 'a bind listener below 1024 without CAP_NET_BIND_SERVICE',
    scenario: {
      capEff: '0000000000001000',
      yaml: `${BASE_YAML}  web: { servers: ["192.0.2.11:80"] }\n`.replace(
        'listeners:\n',
        'listeners:\n  - name: http\n    bind: "0.0.0.0:80"\n',
      ),
    },
    check: 'capabilities',
    status: 'warn',
    message: /^listeners bind 0\.0\.0\.0:80, below net\.ipv4\.ip_unprivileged_port_start \(1024\)/,
    fix: 'run honeygate as root, or give its systemd unit AmbientCapabilities=CAP_NET_BIND_SERVICE',
  },
  {
    name: 'nft not installed',
    scenario: {
      commands: { 'nft -j list ruleset': { code: null, missing: true, stderr: 'spawn nft ENOENT' } },
    },
    check: 'nftables',
    status: 'fail',
    message: /^`nft` is not installed$/,
    fix: 'apt-get install nftables',
  },
  {
    name: 'nft_socket missing from the kernel',
    scenario: {
      commands: {
        'nft --check -f -': (input) =>
          input?.includes('socket transparent')
            ? { code: 1, stderr: 'Error: Could not process rule: No such file or directory\n' }
            : { code: 0 },
      },
    },
    check: 'kernel',
    status: 'fail',
    message:
      /^the kernel rejects a rule using nft_socket \(`nft --check`: Error: Could not process rule: No such file or directory\)/,
    fix: 'modprobe nft_socket   # if that fails, the kernel lacks CONFIG_NFT_SOCKET',
  },
  {
    name: 'table missing',
    scenario: { table: false },
    check: 'table',
    status: 'fail',
    message: /^table inet honeygate is missing: nothing is diverted to honeygate/,
    fix: 'honeygate firewall apply -c test.yaml',
  },
  {
    name: 'table from another config',
    scenario: { tableComment: 'honeygate sha256:0000000000000000' },
    check: 'table',
    status: 'fail',
    message:
      /^table inet honeygate differs from the config: its comment is "honeygate sha256:0000000000000000"/,
    fix: 'honeygate firewall apply -c test.yaml',
  },
  {
    name: 'a set element deleted by hand (the comment still matches)',
    scenario: { tableSets: { all_ports_ports: ['1-21', '23-79', '81-65535'] } },
    check: 'table',
    status: 'fail',
    message:
      /^table inet honeygate differs from the config: set all_ports_ports holds \{ 1-21, 23-79, 81-65535 \}, the config renders \{ 1-21, 23-65535 \}$/,
    fix: 'honeygate firewall apply -c test.yaml',
  },
  {
    name: 'IPv4 ip rule missing',
    scenario: { rules: { 4: RULES_BASE[4] } },
    check: 'ip-rule',
    status: 'fail',
    message:
      /^IPv4: `ip -4 rule` pref 10000 fwmark 0x1000\/0x1000 lookup 4210 is missing \(the IPv6 one is there\)/,
    fix: 'ip -4 rule add pref 10000 fwmark 0x1000/0x1000 lookup 4210   # or: honeygate firewall apply -c test.yaml',
  },
  {
    name: 'IPv6 counterpart of the ip rule missing',
    scenario: { rules: { 6: RULES_BASE[6] } },
    check: 'ip-rule',
    status: 'fail',
    message:
      /^IPv6: .* is missing \(the IPv4 one is there\): packets honeygate marks are routed like any other/,
    fix: /^ip -6 rule add pref 10000 fwmark 0x1000\/0x1000 lookup 4210 /,
  },
  {
    name: 'ip rule at another pref',
    scenario: { rules: { 4: [...RULES_BASE[4], { ...OUR_RULE, priority: 9000 }] } },
    check: 'ip-rule',
    status: 'warn',
    message: /^IPv4: honeygate's rule is at pref 9000, the config says 10000/,
    fix: 'ip -4 rule del pref 9000 && ip -4 rule add pref 10000 fwmark 0x1000/0x1000 lookup 4210',
  },
  {
    name: 'local route missing',
    scenario: { routes: { '4 4210': [] } },
    check: 'ip-route',
    status: 'fail',
    message:
      /^IPv4: table 4210 has no `local default dev lo` route: marked packets match honeygate's ip rule, find no route there and fall through to the main table/,
    fix: 'ip -4 route add local 0.0.0.0/0 dev lo table 4210   # or: honeygate firewall apply -c test.yaml',
  },
  {
    name: 'an earlier rule sends everything to a table with a default route',
    scenario: {
      rules: { 4: [...RULES_BASE[4], OUR_RULE, { priority: 100, src: 'all', table: '100' }] },
      routes: { '4 100': [{ dst: 'default', gateway: '198.51.100.1', dev: 'eth0', flags: [] }] },
    },
    check: 'ip-rule-order',
    status: 'warn',
    message:
      /^IPv4: rule `100: from all lookup 100` comes before honeygate's \(pref 10000\) .* follow table 100's default route/,
    fix: /^set firewall\.rulePriority below 100 in test\.yaml/,
  },
  {
    name: 'another ip rule on honeygate’s bit',
    scenario: {
      rules: {
        4: [
          ...RULES_BASE[4],
          OUR_RULE,
          { priority: 20000, src: 'all', fwmark: '0x1000', fwmask: '0x1000', table: '100' },
        ],
      },
    },
    check: 'fwmark',
    status: 'warn',
    message: /^IPv4: rule `20000: fwmark 0x1000\/0x1000 lookup 100` tests bits 0x1000 of honeygate's mark/,
    fix: 'pick unused bits: honeygate firewall remove -c test.yaml; set firewall: { mark: 0x2000 } in test.yaml; honeygate firewall apply -c test.yaml',
  },
  {
    name: 'a native nft rule setting honeygate’s bit on output',
    scenario: { foreignNft: foreignObjects(fixture('native-nft.json')) },
    check: 'fwmark',
    status: 'warn',
    message:
      /^table ip other chain out \(`meta mark set meta mark \| 0x1000`\) sets bits 0x1000 of honeygate's mask 0x1000 on packets: those match honeygate's ip rule and are routed to this host/,
    fix: 'pick unused bits: honeygate firewall remove -c test.yaml; set firewall: { mark: 0x2000 } in test.yaml; honeygate firewall apply -c test.yaml',
  },
  {
    name: 'a rule copying the packet mark into the conntrack mark, with a transparent dial to a published port',
    scenario: {
      yaml: BASE_YAML.replace('192.0.2.10:2222', '203.0.113.1:8080'),
      foreignNft: [
        ...foreignObjects(fixture('docker-nft.json')),
        ...foreignObjects(fixture('native-nft.json')),
      ],
      iptables4: fixture('docker-iptables-nft-save.txt'),
      routeGet: { '203.0.113.1': [{ type: 'local', dst: '203.0.113.1', dev: 'lo', table: 'local' }] },
    },
    check: 'fwmark',
    status: 'warn',
    message:
      /^table ip other chain post \(`ct mark set meta mark`\) can clear bits 0x1000 of the conntrack mark honeygate's output chain sets/,
    fix: "dial the containers' own addresses instead of published ports (see transparent-backends): then the conntrack mark is not needed",
  },
  {
    name: 'src_valid_mark on all (wg-quick)',
    scenario: { sysctl: { 'net/ipv4/conf/all/src_valid_mark': '1' } },
    check: 'src_valid_mark',
    status: 'fail',
    message:
      /^src_valid_mark is 1 on eth0 \(diverted connections\) and hp0 \(honeypot replies\) \(set on `all`, so on every interface\): .* drops the packet as a martian source, whatever rp_filter says/,
    fix: 'sysctl -w net.ipv4.conf.all.src_valid_mark=0',
  },
  {
    name: 'src_valid_mark and strict rp_filter on eth0',
    scenario: {
      sysctl: { 'net/ipv4/conf/eth0/src_valid_mark': '1', 'net/ipv4/conf/eth0/rp_filter': '1' },
    },
    check: 'src_valid_mark',
    status: 'fail',
    message: /^src_valid_mark is 1 on eth0 \(diverted connections\): /,
    fix: 'sysctl -w net.ipv4.conf.eth0.src_valid_mark=0',
  },
  {
    name: 'src_valid_mark with accept_local and loose rp_filter passes',
    scenario: {
      sysctl: {
        'net/ipv4/conf/eth0/src_valid_mark': '1',
        'net/ipv4/conf/eth0/accept_local': '1',
        'net/ipv4/conf/eth0/rp_filter': '2',
      },
    },
    check: 'src_valid_mark',
    status: 'ok',
    message:
      /^src_valid_mark is 1 on eth0, but accept_local=1 with rp_filter 0 or 2 lets marked packets pass$/,
  },
  {
    name: 'strict rp_filter on an interface the default route does not use',
    scenario: {
      yaml: BASE_YAML.replace('interface: eth0', 'interface: eth1'),
      links: [...LINKS, { name: 'eth1', kind: 'veth', addrs: ['198.51.100.1/24'] }],
      sysctl: { 'net/ipv4/conf/all/rp_filter': '1' },
    },
    check: 'rp_filter',
    status: 'warn',
    message:
      /^rp_filter is 1 \(strict\) on eth1, but the default route leaves by eth0: packets from attackers whose address routes back through another interface are dropped/,
    fix: 'sysctl -w net.ipv4.conf.all.rp_filter=2',
  },
  {
    name: 'strict rp_filter on the default route’s interface is fine',
    scenario: { sysctl: { 'net/ipv4/conf/eth0/rp_filter': '1' } },
    check: 'rp_filter',
    status: 'ok',
    message: /^eth0 1 \(strict\), hp0 0 \(off\): the reverse-path check ignores marks/,
  },
  {
    name: 'divert interface that does not exist',
    scenario: { yaml: BASE_YAML.replace('interface: eth0', 'interface: [eth0, eth9]') },
    check: 'interfaces',
    status: 'warn',
    message: /^listener all-ports diverts from eth9, but there is no such interface here/,
  },
  {
    name: 'IPv4-only divert while eth0 has a global IPv6 address',
    scenario: {
      yaml: BASE_YAML.replace('tproxy: { port: 15001 }', 'tproxy: { port: 15001, address: "127.0.0.1" }'),
    },
    check: 'ipv6',
    status: 'warn',
    message:
      /^listener all-ports diverts IPv4 only, but eth0 \(2001:db8::1\) has a global IPv6 address: connections over IPv6 bypass honeygate/,
    fix: 'add "::1" to tproxy.address of listener all-ports in test.yaml, then: honeygate firewall apply -c test.yaml',
  },
  {
    name: 'Docker publishes a diverted port: by design, ok',
    scenario: {
      foreignNft: foreignObjects(fixture('docker-nft.json')),
      iptables4: fixture('docker-iptables-nft-save.txt'),
    },
    check: 'nat',
    status: 'ok',
    message:
      /^iptables-nft -t nat chain DOCKER DNATs tcp port 8080 \(diverted by listener all-ports\) to 192\.0\.2\.130:80: by design these connections pass honeygate \(its rule `ct status dnat accept`\)/,
  },
  {
    name: 'a DNAT chain that runs after honeygate’s divert',
    scenario: { foreignNft: foreignObjects(fixture('native-nft.json')) },
    check: 'nat',
    status: 'warn',
    message:
      /^table ip other chain late \(priority 0\) DNATs tcp port 9000 to 192\.0\.2\.11:9000, but runs after honeygate's divert \(priority dstnat \+ 10 = -90\): .* can reach neither honeygate nor 192\.0\.2\.11:9000/,
    fix: 'give that chain priority dstnat (-100) or lower, or add 9000 to divert.exclude of listener all-ports in test.yaml, then: honeygate firewall apply -c test.yaml',
  },
  {
    name: 'another TPROXY on a diverted port',
    scenario: { foreignNft: foreignObjects(fixture('native-nft.json')) },
    check: 'nat',
    status: 'warn',
    message: /^table inet proxy chain pre TPROXYs tcp port 9999 to 127\.0\.0\.1:3129 as well as honeygate/,
  },
  {
    name: 'transparent backend aimed at a Docker-published port',
    scenario: {
      yaml: BASE_YAML.replace('192.0.2.10:2222', '203.0.113.1:8080'),
      foreignNft: foreignObjects(fixture('docker-nft.json')),
      iptables4: fixture('docker-iptables-nft-save.txt'),
      routeGet: { '203.0.113.1': [{ type: 'local', dst: '203.0.113.1', dev: 'lo', table: 'local' }] },
    },
    check: 'transparent-backends',
    status: 'warn',
    message:
      /^cowrie server 203\.0\.113\.1:8080 is a port that iptables-nft -t nat chain DOCKER DNATs to 192\.0\.2\.130:80 \(a Docker-published port\): .* That rule is in place, so it works while honeygate's table is applied$/,
    fix: `dial the container's own address: servers: ["192.0.2.130:80"] in backend cowrie of test.yaml`,
  },
  {
    name: 'transparent backend on this host',
    scenario: {
      yaml: BASE_YAML.replace('192.0.2.10:2222', '192.0.2.1:2222'),
      routeGet: { '192.0.2.1': [{ type: 'local', dst: '192.0.2.1', dev: 'lo', table: 'local' }] },
    },
    check: 'transparent-backends',
    status: 'fail',
    message:
      /^cowrie server 192\.0\.2\.1:2222 is an address of this host: .* its replies leave for the attacker instead of returning to honeygate/,
  },
  {
    name: 'REDIRECT to an originalDst listener bound to 127.0.0.1',
    scenario: {
      yaml: `${BASE_YAML.replace('listeners:\n', 'listeners:\n  - name: redirected\n    bind: "127.0.0.1:15002"\n    originalDst: true\n')}`,
      iptables4:
        '*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -i eth0 -p tcp -m multiport --dports 3000,3001:3005 -j REDIRECT --to-ports 15002\nCOMMIT\n',
    },
    check: 'original-dst',
    status: 'fail',
    message:
      /^iptables-nft -t nat chain PREROUTING REDIRECTs to port 15002, but listener redirected binds only 127\.0\.0\.1: REDIRECT rewrites the destination to the primary address of the interface/,
    fix: 'bind listener redirected to "0.0.0.0:15002" in test.yaml (originalDst still reports the original destination)',
  },
  {
    name: 'DNAT to 127.0.0.1 without route_localnet',
    scenario: {
      yaml: `${BASE_YAML.replace('listeners:\n', 'listeners:\n  - name: redirected\n    bind: "127.0.0.1:15002"\n    originalDst: true\n')}`,
      iptables4:
        '*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -i eth0 -p tcp --dport 4000 -j DNAT --to-destination 127.0.0.1:15002\nCOMMIT\n',
    },
    check: 'original-dst',
    status: 'fail',
    message:
      /^iptables-nft -t nat chain PREROUTING DNATs to 127\.0\.0\.1:15002 \(listener redirected\), but route_localnet is 0 on eth0: the kernel drops packets to 127\/8/,
    fix: 'sysctl -w net.ipv4.conf.eth0.route_localnet=1',
  },
  {
    name: 'DNAT to 127.0.0.1 with route_localnet',
    scenario: {
      yaml: `${BASE_YAML.replace('listeners:\n', 'listeners:\n  - name: redirected\n    bind: "127.0.0.1:15002"\n    originalDst: true\n')}`,
      iptables4:
        '*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -i eth0 -p tcp --dport 4000 -j DNAT --to-destination 127.0.0.1:15002\nCOMMIT\n',
      sysctl: { 'net/ipv4/conf/eth0/route_localnet': '1' },
    },
    check: 'original-dst',
    status: 'ok',
    message: /route_localnet is 1 where it applies$/,
  },
  {
    name: 'ip_forward off while Docker publishes ports',
    scenario: {
      foreignNft: foreignObjects(fixture('docker-nft.json')),
      iptables4: fixture('docker-iptables-nft-save.txt'),
    },
    check: 'ip_forward',
    status: 'warn',
    message:
      /^net\.ipv4\.ip_forward is 0 while iptables-nft -t nat chain DOCKER DNATs to 192\.0\.2\.130:80: .*honeygate's own diverted connections and transparent upstreams do not need forwarding/,
    fix: 'sysctl -w net.ipv4.ip_forward=1',
  },
  {
    name: 'ip_forward off is fine without forwarding',
    scenario: {},
    check: 'ip_forward',
    status: 'ok',
    message: /^net\.ipv4\.ip_forward is 0: .*need no forwarding; nothing here DNATs to another host$/,
  },
  {
    name: 'kernel routes without forwarding, accounting or timestamps',
    scenario: { yaml: KERNEL_YAML },
    check: 'kernel-path',
    status: 'fail',
    message:
      /^net\.ipv4\.ip_forward is 0, and kernel routes DNAT flows to 192\.0\.2\.100:2222: the kernel drops them/,
    fix: 'sysctl -w net.ipv4.ip_forward=1',
  },
  {
    name: 'kernel routes without conntrack accounting',
    scenario: { yaml: KERNEL_YAML, sysctl: { 'net/netfilter/nf_conntrack_acct': '0' } },
    check: 'kernel-path',
    status: 'warn',
    message: /^net\.netfilter\.nf_conntrack_acct is 0: kernel routes' events lack bytes and packets each way/,
    fix: 'sysctl -w net.netfilter.nf_conntrack_acct=1',
  },
  {
    name: 'kernel routes with all they need',
    scenario: { yaml: KERNEL_YAML, sysctl: KERNEL_SYSCTLS },
    check: 'kernel-path',
    status: 'ok',
    message: /^kernel routes have forwarding, conntrack accounting and timestamps/,
  },
  {
    name: "Docker's FORWARD policy DROP with a kernel route to a container that publishes no port",
    scenario: {
      yaml: KERNEL_YAML,
      sysctl: KERNEL_SYSCTLS,
      foreignNft: foreignObjects(fixture('docker-nft.json')),
      iptables4: fixture('docker-iptables-nft-save.txt'),
    },
    check: 'kernel-path',
    status: 'warn',
    message:
      /^iptables-nft -t filter chain FORWARD has policy DROP, and no rule there accepts new flows to 192\.0\.2\.100:2222: kernel routes' flows DNATed to it are dropped/,
    fix: 'iptables -I DOCKER-USER -d 192.0.2.100 -m conntrack --ctstate DNAT -j ACCEPT',
  },
  {
    name: "Docker's FORWARD policy DROP with the accept in DOCKER-USER",
    scenario: {
      yaml: KERNEL_YAML,
      sysctl: KERNEL_SYSCTLS,
      foreignNft: foreignObjects(fixture('docker-nft.json')),
      iptables4: fixture('docker-iptables-nft-save.txt').replace(
        '-A DOCKER-USER -j RETURN',
        '-A DOCKER-USER -d 192.0.2.100/32 -m conntrack --ctstate DNAT -j ACCEPT\n-A DOCKER-USER -j RETURN',
      ),
    },
    check: 'kernel-path',
    status: 'ok',
    message: /^kernel routes have forwarding/,
  },
  {
    name: "Docker's FORWARD policy DROP with a kernel route to a port Docker publishes",
    scenario: {
      yaml: KERNEL_YAML.replace('192.0.2.100:2222', '192.0.2.130:80'),
      sysctl: KERNEL_SYSCTLS,
      foreignNft: foreignObjects(fixture('docker-nft.json')),
      iptables4: fixture('docker-iptables-nft-save.txt'),
    },
    check: 'kernel-path',
    status: 'ok',
    message: /^kernel routes have forwarding/,
  },
  // Captured with `nft -j list ruleset`: an inet forward chain with policy drop that accepts
  // established flows, docker0's own, 192.0.2.20:80 and DNATed flows to 2001:db8:c::10; and an
  // ip forward chain ending in `counter drop` after `ct status dnat accept`.
  {
    name: 'a native nftables forward chain with policy drop and no accept for the kernel route',
    scenario: {
      yaml: KERNEL_YAML,
      sysctl: KERNEL_SYSCTLS,
      foreignNft: foreignObjects(fixture('native-forward-nft.json')),
    },
    check: 'kernel-path',
    status: 'warn',
    message:
      /^table inet filter chain forward has policy drop, and no rule there accepts new flows to 192\.0\.2\.100:2222: kernel routes' flows DNATed to it are dropped$/,
    fix: 'nft insert rule inet filter forward ip daddr 192.0.2.100 ct status dnat accept',
  },
  {
    name: 'a native nftables forward chain with policy drop that accepts the kernel route',
    scenario: {
      yaml: KERNEL_YAML.replace('192.0.2.100:2222', '192.0.2.20:80'),
      sysctl: KERNEL_SYSCTLS,
      foreignNft: foreignObjects(fixture('native-forward-nft.json')),
    },
    check: 'kernel-path',
    status: 'ok',
    message: /^kernel routes have forwarding/,
  },
  {
    name: 'a native nftables forward chain: accepts for other ports, established flows or one interface do not count',
    scenario: {
      yaml: KERNEL_YAML.replace('192.0.2.100:2222', '192.0.2.20:8080'),
      sysctl: KERNEL_SYSCTLS,
      foreignNft: foreignObjects(fixture('native-forward-nft.json')),
    },
    check: 'kernel-path',
    status: 'warn',
    message:
      /^table inet filter chain forward has policy drop, and no rule there accepts new flows to 192\.0\.2\.20:8080/,
  },
  {
    name: 'Docker userland-proxy running',
    scenario: {
      processes: [
        {
          pid: 2454,
          comm: 'docker-proxy',
          cmdline:
            '/usr/sbin/docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 192.0.2.130 -container-port 80'.split(
              ' ',
            ),
        },
      ],
    },
    check: 'docker-proxy',
    status: 'warn',
    message:
      /^1 docker-proxy process \(Docker's userland-proxy: 0\.0\.0\.0:8080 -> 192\.0\.2\.130:80\): connections it relays .* hiding the client$/,
    fix: 'set "userland-proxy": false in /etc/docker/daemon.json (merge with what is there), then: systemctl restart docker',
  },
  {
    name: 'diverting on a bridge',
    scenario: {
      yaml: BASE_YAML.replace('interface: eth0', 'interface: [eth0, docker0]'),
      links: [...LINKS, { name: 'docker0', kind: 'bridge', addrs: ['192.0.2.129/25'] }],
      sysctl: { 'net/bridge/bridge-nf-call-iptables': '1' },
    },
    check: 'br_netfilter',
    status: 'warn',
    message:
      /^docker0 is a bridge: connections between containers on it are bridged, not routed, so honeygate does not see them/,
  },
  {
    name: 'br_netfilter on beside a Docker bridge honeygate does not divert from',
    scenario: {
      links: [...LINKS, { name: 'docker0', kind: 'bridge', addrs: ['192.0.2.129/25'] }],
      sysctl: { 'net/bridge/bridge-nf-call-iptables': '1', 'net/bridge/bridge-nf-call-ip6tables': '1' },
    },
    check: 'br_netfilter',
    status: 'ok',
    message:
      /^bridge-nf-call-iptables=1 ip6tables=1: frames bridged on docker0 pass the IP hooks; honeygate diverts only from eth0/,
  },
  {
    name: 'a config without transparent mode needs no table',
    scenario: {
      yaml: 'listeners:\n  - name: web\n    bind: "0.0.0.0:8080"\nroutes:\n  - capture: {}\n',
    },
    check: 'table',
    status: 'ok',
    message: /^the config has no tproxy listener and no transparent backend: it needs no firewall rules$/,
  },
];

describe('each check, broken on purpose', () => {
  for (const c of CASES) {
    test(`${c.check}: ${c.name}`, async () => {
      const findings = await run(c.scenario);
      const f = one(findings, c.check, c.status, c.message);
      if (c.fix === undefined) return;
      if (typeof c.fix === 'string') assert.equal(f.fix, c.fix);
      else assert.match(f.fix ?? '', c.fix);
      if (c.status === 'fail') assert.equal(exitCode(findings), 1);
    });
  }
});

test('the real Docker capture: published port, MASQUERADE and FORWARD DROP raise nothing else', async () => {
  const findings = await run({
    foreignNft: foreignObjects(fixture('docker-nft.json')),
    iptables4: fixture('docker-iptables-nft-save.txt'),
    sysctl: { 'net/ipv4/ip_forward': '1' },
  });
  const bad = findings.filter((f) => f.status !== 'ok');
  assert.deepEqual(bad, [], formatFindings(bad));
  one(
    findings,
    'fwmark',
    'ok',
    /^no other ip rule or firewall rule uses the bits of honeygate's mask 0x1000$/,
  );
});

test('rules that exclude each other by mark are not overlaps: fwmark 0x1 and not fwmark 0xca6c', async () => {
  const findings = await run({
    rules: {
      4: [
        ...RULES_BASE[4],
        OUR_RULE,
        { priority: 100, src: 'all', fwmark: '0x1', table: '100' },
        { priority: 5210, src: 'all', fwmark: '0x80000', fwmask: '0xff0000', table: '254' },
        { priority: 32764, not: null, src: 'all', fwmark: '0xca6c', table: '51820' },
      ],
    },
  });
  one(findings, 'fwmark', 'ok', /^no other ip rule/);
  assert.deepEqual(only(findings, 'ip-rule-order'), []);
});

// ---- parsing others' rules ----------------------------------------------------------------

describe('others’ rules', () => {
  test('iptables-save (Docker): the DNAT is reached from PREROUTING and OUTPUT, MASQUERADE is not NAT to us', () => {
    const r = fromIptablesSave(fixture('docker-iptables-nft-save.txt'), 4, 'iptables-nft');
    assert.equal(r.nat.length, 1);
    const e = r.nat[0]!;
    assert.equal(e.where, 'iptables-nft -t nat chain DOCKER');
    assert.equal(e.kind, 'dnat');
    assert.deepEqual(e.ports, [{ from: 8080, to: 8080 }]);
    assert.deepEqual(e.iif, { names: ['docker0'], negated: true });
    assert.equal(e.toHost, '192.0.2.130');
    assert.deepEqual(e.toPorts, { from: 80, to: 80 });
    assert.deepEqual(e.hooks.map((h) => `${h.hook} ${h.prio}`).sort(), ['output -100', 'prerouting -100']);
    assert.deepEqual(r.marks, []);
  });

  test('iptables-nft rules in nft JSON are skipped (their xt targets say nothing), their jumps still count', () => {
    const r = fromNftJson(readNftJson(JSON.parse(fixture('docker-nft.json'))), {
      family: 'inet',
      name: 'honeygate',
    });
    assert.deepEqual(r.nat, []);
    assert.deepEqual(r.marks, []);
  });

  test('native nft: sets, named sets, jumps, redirect, tproxy, and mark writers', () => {
    const r = fromNftJson(readNftJson(JSON.parse(fixture('native-nft.json'))), {
      family: 'inet',
      name: 'honeygate',
    });
    const nat = r.nat.map((e) => ({
      where: e.where,
      kind: e.kind,
      ports: e.ports,
      to: `${e.toHost}:${e.toPorts ? `${e.toPorts.from}` : '-'}`,
      hooks: e.hooks.map((h) => `${h.hook} ${h.prio}`),
    }));
    assert.deepEqual(nat, [
      {
        where: 'table ip other chain pre',
        kind: 'dnat',
        ports: [
          { from: 80, to: 80 },
          { from: 8000, to: 8010 },
        ],
        to: '192.0.2.10:80',
        hooks: ['prerouting -100'],
      },
      {
        where: 'table ip other chain pre',
        kind: 'redirect',
        ports: [{ from: 3000, to: 3000 }],
        to: 'null:15002',
        hooks: ['prerouting -100'],
      },
      {
        // the jump's `tcp dport @webports` (a named set) carries into chain web
        where: 'table ip other chain web',
        kind: 'dnat',
        ports: [
          { from: 8000, to: 8010 },
          { from: 8443, to: 8443 },
        ],
        to: '192.0.2.12:-',
        hooks: ['prerouting -100'],
      },
      {
        where: 'table ip other chain late',
        kind: 'dnat',
        ports: [{ from: 9000, to: 9000 }],
        to: '192.0.2.11:9000',
        hooks: ['prerouting 0'],
      },
      {
        where: 'table inet proxy chain pre',
        kind: 'tproxy',
        ports: [{ from: 9999, to: 9999 }],
        to: '127.0.0.1:3129',
        hooks: ['prerouting -150'],
      },
    ]);
    const marks = r.marks.map(
      (m) => `${m.where}: ${m.key} +${m.set.toString(16)} -${m.clear.toString(16)} (${m.text})`,
    );
    assert.deepEqual(marks, [
      'table ip other chain out: meta +1000 -0 (meta mark set meta mark | 0x1000)',
      'table ip other chain out: meta +0 -1000 (meta mark set meta mark & 0xffffefff)',
      // chain wg's `meta l4proto udp meta mark set ct mark` cannot touch TCP: left out
      'table ip other chain post: ct +0 -ffffffff (ct mark set meta mark)',
      'table ip other chain post: meta +4000 -ffffbfff (meta mark set 0x4000)',
      'table inet proxy chain pre: meta +1 -fffffffe (meta mark set 0x1)',
    ]);
  });

  test('MARK, CONNMARK and TPROXY targets: the bits they set and clear', () => {
    const save = [
      '*mangle',
      ':PREROUTING ACCEPT [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      ':KUBE-MARK-MASQ - [0:0]',
      '-A PREROUTING -p tcp -m tcp --dport 9999 -j TPROXY --on-port 3129 --on-ip 0.0.0.0 --tproxy-mark 0x1/0x1',
      '-A PREROUTING -p udp -j MARK --set-xmark 0x1000/0xffffffff',
      '-A OUTPUT -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff',
      '-A OUTPUT -m comment --comment "-j MARK --or-mark 0x1" -j MARK --or-mark 0x2000',
      '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000',
      'COMMIT',
    ].join('\n');
    const r = fromIptablesSave(save, 4, 'iptables-legacy');
    const marks = r.marks.map(
      (m) =>
        `${m.where}: ${m.key} +${m.set.toString(16)} -${m.clear.toString(16)} [${m.hooks.map((h) => h.hook).join(',')}]`,
    );
    assert.deepEqual(marks, [
      'iptables-legacy -t mangle chain PREROUTING: meta +1 -0 [prerouting]',
      // the udp-only MARK is left out
      'iptables-legacy -t mangle chain OUTPUT: meta +0 -ff [output]',
      'iptables-legacy -t mangle chain OUTPUT: meta +2000 -0 [output]',
      'iptables-legacy -t mangle chain KUBE-MARK-MASQ: meta +4000 -0 []',
    ]);
    assert.deepEqual(
      r.nat.map((e) => `${e.kind} ${e.toPorts?.from}`),
      ['tproxy 3129'],
    );
  });

  test('markEffect: or, and, xor, constants and copies', () => {
    const meta = { meta: { key: 'mark' } };
    assert.deepEqual(markEffect({ '|': [meta, 0x1000] }, 'meta'), { set: 0x1000, clear: 0 });
    assert.deepEqual(markEffect({ '|': [{ '&': [meta, 0xffff0fff] }, 0x1000] }, 'meta'), {
      set: 0x1000,
      clear: 0xe000,
    });
    assert.deepEqual(markEffect({ '^': [meta, 0x10] }, 'meta'), { set: 0x10, clear: 0x10 });
    assert.deepEqual(markEffect(0, 'meta'), { set: 0, clear: 0xffffffff });
    assert.deepEqual(markEffect({ ct: { key: 'mark' } }, 'meta'), { set: 0, clear: 0xffffffff });
  });
});

test('formatFindings: one line per finding, the fix under it, a summary last', () => {
  const text = formatFindings([
    { check: 'table', status: 'ok', message: 'in place' },
    {
      check: 'ip-route',
      status: 'fail',
      message: 'missing',
      fix: 'ip -4 route add local 0.0.0.0/0 dev lo table 4210',
    },
    { check: 'nat', status: 'warn', message: 'hm' },
  ]);
  assert.equal(
    text,
    [
      'ok    table     in place',
      'FAIL  ip-route  missing',
      '                fix: ip -4 route add local 0.0.0.0/0 dev lo table 4210',
      'WARN  nat       hm',
      '1 ok, 1 warning, 1 failure: transparent mode will not work until the failures are fixed',
      '',
    ].join('\n'),
  );
  assert.match(
    formatFindings([{ check: 'a', status: 'ok', message: 'x' }]),
    /\n1 ok, 0 warnings, 0 failures: all is well\n$/,
  );
});

test('without a readable ruleset, checks of others’ rules stay silent instead of reporting "none"', async () => {
  const findings = await run({
    capEff: '0000000000000000',
    commands: {
      'nft -j list ruleset': {
        code: 1,
        stderr: 'netlink: Error: cache initialization failed: Operation not permitted\n',
      },
    },
  });
  one(
    findings,
    'nftables',
    'fail',
    /^nft cannot read the ruleset: netlink: Error: cache initialization failed: Operation not permitted \(needs CAP_NET_ADMIN\)$/,
  );
  for (const check of ['table', 'kernel', 'nat', 'transparent-backends', 'original-dst', 'ip_forward']) {
    assert.deepEqual(only(findings, check), [], check);
  }
  one(findings, 'fwmark', 'ok', /^no other ip rule \(firewall rules unread\) uses/);
  assert.equal(exitCode(findings), 1);
});

test('the Docker capture as doctor sees it: the transparent dial to the published port, docker-proxy, IPv6', async () => {
  const findings = await run({
    yaml: BASE_YAML.replace(
      'tproxy: { port: 15001 }',
      'tproxy: { port: 15001, address: "127.0.0.1" }',
    ).replace('192.0.2.10:2222', '203.0.113.1:8080'),
    ipAddr: fixture('docker-ip-addr.json'),
    foreignNft: foreignObjects(fixture('docker-nft.json')),
    iptables4: fixture('docker-iptables-nft-save.txt'),
    routeGet: { '203.0.113.1': [{ type: 'local', dst: '203.0.113.1', dev: 'lo', table: 'local' }] },
    sysctl: { 'net/ipv4/ip_forward': '1', 'net/bridge/bridge-nf-call-iptables': '1' },
    processes: [
      {
        pid: 2302,
        comm: 'dockerd',
        cmdline: ['dockerd', '--bip', '192.0.2.129/25'],
      },
      {
        pid: 2454,
        comm: 'docker-proxy',
        cmdline:
          '/usr/sbin/docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 192.0.2.130 -container-port 80'.split(
            ' ',
          ),
      },
      {
        pid: 2460,
        comm: 'docker-proxy',
        cmdline:
          '/usr/sbin/docker-proxy -proto tcp -host-ip :: -host-port 8080 -container-ip 192.0.2.130 -container-port 80'.split(
            ' ',
          ),
      },
    ],
  });
  const notOk = findings.filter((f) => f.status !== 'ok').map((f) => `${f.status} ${f.check}`);
  assert.deepEqual(
    notOk,
    ['warn ipv6', 'warn transparent-backends', 'warn docker-proxy'],
    formatFindings(findings),
  );
  one(findings, 'ipv6', 'warn', /but eth0 \(2001:db8:1::1\) has a global IPv6 address/);
  one(
    findings,
    'docker-proxy',
    'warn',
    /^2 docker-proxy processes \(Docker's userland-proxy: 0\.0\.0\.0:8080 -> 192\.0\.2\.130:80, \[::\]:8080 -> 192\.0\.2\.130:80\)/,
  );
  one(
    findings,
    'br_netfilter',
    'ok',
    /frames bridged on docker0 pass the IP hooks; honeygate diverts only from eth0/,
  );
  one(findings, 'src_valid_mark', 'ok', /^src_valid_mark is 0 on eth0 and all$/);
});

// Review finding: with a drop policy on the input hook (ufw, `iptables -P INPUT DROP`, firewalld's
// final reject) TPROXY'd connections are dropped in INPUT, yet doctor said "all is well".
describe('input: a default-drop input chain drops what honeygate diverts', () => {
  const inputChain = (family: string, table: string, name: string, policy: string) => ({
    chain: { family, table, name, type: 'filter', hook: 'input', prio: 0, policy },
  });
  const rule = (family: string, table: string, chain: string, expr: unknown[]) => ({
    rule: { family, table, chain, expr },
  });
  const established = {
    match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] },
  };
  const markAccept = [
    {
      match: {
        op: '==',
        left: { '&': [{ meta: { key: 'mark' } }, 4096] },
        right: 4096,
      },
    },
    { accept: null },
  ];

  test('iptables-nft INPUT policy DROP: warn, the fix an iptables rule accepting the mark', async () => {
    const findings = await run({
      foreignNft: [
        { table: { family: 'ip', name: 'filter' } },
        inputChain('ip', 'filter', 'INPUT', 'drop'),
        rule('ip', 'filter', 'INPUT', [established, { accept: null }]),
      ],
    });
    const f = one(
      findings,
      'input',
      'warn',
      /^table ip filter chain INPUT has policy drop: connections honeygate diverts/,
    );
    assert.match(f.fix ?? '', /^iptables -t filter -I INPUT -m mark --mark 0x1000\/0x1000 -j ACCEPT/);
  });

  test('the same with a rule accepting the mark: ok', async () => {
    const findings = await run({
      foreignNft: [
        { table: { family: 'ip', name: 'filter' } },
        inputChain('ip', 'filter', 'INPUT', 'drop'),
        rule('ip', 'filter', 'INPUT', [established, { accept: null }]),
        rule('ip', 'filter', 'INPUT', markAccept),
      ],
    });
    one(findings, 'input', 'ok', /^table ip filter chain INPUT drops by default but accepts marked/);
  });

  test('an IPv6-only drop policy does not matter to an IPv4-only config', async () => {
    const findings = await run({
      yaml: BASE_YAML.replace('tproxy: { port: 15001 }', 'tproxy: { port: 15001, address: "127.0.0.1" }'),
      foreignNft: [
        { table: { family: 'ip6', name: 'filter' } },
        inputChain('ip6', 'filter', 'INPUT', 'drop'),
      ],
    });
    one(findings, 'input', 'ok', /^no input chain drops by default/);
  });

  test('firewalld: a final reject after a jump; a mark accept in the jumped-to chain counts', async () => {
    const firewalld = (zone: unknown[][]) => [
      { table: { family: 'inet', name: 'firewalld' } },
      inputChain('inet', 'firewalld', 'filter_INPUT', 'accept'),
      { chain: { family: 'inet', table: 'firewalld', name: 'filter_INPUT_ZONES' } },
      rule('inet', 'firewalld', 'filter_INPUT', [established, { accept: null }]),
      rule('inet', 'firewalld', 'filter_INPUT', [{ jump: { target: 'filter_INPUT_ZONES' } }]),
      rule('inet', 'firewalld', 'filter_INPUT', [{ reject: { type: 'icmpx', expr: 'admin-prohibited' } }]),
      ...zone.map((expr) => rule('inet', 'firewalld', 'filter_INPUT_ZONES', expr)),
    ];
    const sshOnly = [
      { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 22 } },
      { accept: null },
    ];
    const bad = await run({ foreignNft: firewalld([sshOnly]) });
    const f = one(bad, 'input', 'warn', /^table inet firewalld chain filter_INPUT ends with `reject`/);
    assert.match(
      f.fix ?? '',
      /^nft insert rule inet firewalld filter_INPUT 'meta mark & 0x1000 == 0x1000 accept'/,
    );
    const good = await run({ foreignNft: firewalld([sshOnly, markAccept]) });
    one(good, 'input', 'ok', /^table inet firewalld chain filter_INPUT drops by default but accepts/);
  });

  test('iptables-legacy: :INPUT DROP, and -m socket ... -j ACCEPT as the exception', async () => {
    const save = (extra: string) =>
      `*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n${extra}COMMIT\n`;
    // legacy tables are read only when /proc/net/ip_tables_names lists some
    const { config: c, host } = build({ commands: { 'iptables-legacy-save': save('') } });
    const withTables: Host = {
      ...host,
      readFile: async (p) => (p === '/proc/net/ip_tables_names' ? 'filter\n' : host.readFile(p)),
    };
    const bad = await doctor(c, withTables, { file: 'test.yaml' });
    const f = one(bad, 'input', 'warn', /^iptables-legacy -t filter chain INPUT has policy DROP/);
    assert.match(f.fix ?? '', /^iptables -t filter -I INPUT -m mark --mark 0x1000\/0x1000 -j ACCEPT/);

    const r = fromIptablesSave(save('-A INPUT -m socket --transparent -j ACCEPT\n'), 4, 'iptables-legacy');
    assert.deepEqual(r.inputDrops, [
      { where: 'iptables-legacy -t filter chain INPUT', family: 4, how: 'has policy DROP', excepts: true },
    ]);
    const reject = fromIptablesSave(
      '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -j REJECT\nCOMMIT\n',
      4,
      'iptables-legacy',
    );
    assert.equal(reject.inputDrops[0]?.how, 'ends with `-j REJECT`');
    assert.equal(reject.inputDrops[0]?.excepts, false);
  });
});

// Review finding: npm ci only warns when the addon does not build, and doctor said "all is
// well" for a config that `run` then refused (HG_ERR_NATIVE).
test('native: a config needing the addon, which does not load: fail, with the build steps', async () => {
  const { config: c, host } = build();
  const reason = 'native addon not available: tried /opt/honeygate/build/Release/honeygate.node (not found)';
  const missing = await doctor(c, { ...host, native: () => ({ ok: false, reason }) }, { file: 'test.yaml' });
  const f = one(
    missing,
    'native',
    'fail',
    /^listener all-ports and backend cowrie need honeygate's native addon, which does not load \(native addon not available: tried/,
  );
  assert.match(f.fix ?? '', /node scripts\/build-native\.mjs/);
  assert.equal(exitCode(missing), 1);
  const loads = await doctor(c, { ...host, native: () => ({ ok: true }) }, { file: 'test.yaml' });
  one(loads, 'native', 'ok', /^the native addon loads/);
  const plain = build({
    yaml: 'listeners:\n  - name: web\n    bind: "0.0.0.0:8080"\nroutes:\n  - capture: {}\n',
  });
  const none = await doctor(plain.config, { ...plain.host, native: () => ({ ok: false, reason }) });
  assert.deepEqual(only(none, 'native'), [], 'a config without transparent mode does not need it');
});

describe('external-tproxy: a tproxy listener without divert, fed by TPROXY rules managed elsewhere', () => {
  const yaml = `
listeners:
  - name: outside
    tproxy: { port: 15001, address: 127.0.0.1 }
routes:
  - capture: {}
`;
  /** The operator's own table: TPROXY to port 15001 setting mark 0x1. */
  const operator = (port: number) => [
    { table: { family: 'inet', name: 'operator' } },
    {
      chain: {
        family: 'inet',
        table: 'operator',
        name: 'pre',
        type: 'filter',
        hook: 'prerouting',
        prio: -150,
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'operator',
        chain: 'pre',
        expr: [
          { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
          { tproxy: { family: 'ip', addr: '127.0.0.1', port } },
          { mangle: { key: { meta: { key: 'mark' } }, value: 1 } },
          { accept: null },
        ],
      },
    },
  ];
  const markRule = { priority: 9000, src: 'all', fwmark: '0x1', fwmask: '0x1', table: '100' };
  const localRoute = { '4 100': [{ type: 'local', dst: 'default', dev: 'lo', scope: 'host', flags: [] }] };

  test('the TPROXY rule and the ip rule for its mark: ok, no table needed, nothing fails', async () => {
    const findings = await run({
      yaml,
      foreignNft: operator(15001),
      rules: { 4: [...RULES_BASE[4], markRule] },
      routes: localRoute,
    });
    one(
      findings,
      'external-tproxy',
      'ok',
      /^listener outside \(127\.0\.0\.1:15001\) has no divert: honeygate adds no rules for it, and table inet operator chain pre TPROXYs connections to it$/,
    );
    one(
      findings,
      'external-tproxy',
      'ok',
      /^IPv4: the TPROXY rule's chain sets a mark that `9000: fwmark 0x1\/0x1 lookup 100` delivers to this host/,
    );
    one(
      findings,
      'table',
      'ok',
      /^the config diverts nothing \(no tproxy listener has divert:\) and no transparent backend/,
    );
    assert.equal(exitCode(findings), 0);
  });

  test('no TPROXY rule to its port and no policy routing: two warnings, each with a fix', async () => {
    const findings = await run({ yaml, foreignNft: operator(15999) });
    const w = one(
      findings,
      'external-tproxy',
      'warn',
      /^listener outside .* no TPROXY rule readable here sends connections to port 15001/,
    );
    assert.match(w.fix!, /tproxy ip to 127\.0\.0\.1:15001 meta mark set 0x1 accept$/);
    const r = one(
      findings,
      'external-tproxy',
      'warn',
      /^IPv4: no ip rule sends marked packets to a table with a local default route/,
    );
    assert.match(
      r.fix!,
      /^ip -4 rule add fwmark 0x1\/0x1 lookup 100 && ip -4 route add local 0\.0\.0\.0\/0 dev lo table 100/,
    );
  });
});
