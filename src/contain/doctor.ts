// `firewall doctor`'s check of egress containment: the contain chains are in honeygate's live
// table on the forward and input hooks, ahead of every other table's filter chains (in
// nftables an earlier drop is final, so nothing later, Docker's rules included, can let a
// contained flow out), every contained network resolves to a bridge that is still there,
// and traffic between containers on a contained bridge passes the IP hooks at all.
import type { Facts } from '../firewall/doctor/facts.js';
import type { Finding } from '../firewall/doctor/finding.js';
import { FAMILY, TABLE } from '../firewall/render.js';

const C = 'contain';

/** Findings for config.contain; none when the config contains nothing. */
export function containment(f: Facts): Finding[] {
  const contain = f.config.contain;
  if (!contain) return [];
  const apply = `honeygate firewall apply -c ${f.file}`;
  if (f.nft.status !== 'ok') {
    return [
      {
        check: C,
        status: 'warn',
        message: `cannot read the ruleset (${f.nft.detail}): containment not checked`,
      },
    ];
  }
  const out: Finding[] = [];
  const chains = f.nft.rs?.chains ?? [];
  const ours = (name: string) =>
    chains.find((c) => c.family === FAMILY && c.table === TABLE && c.name === name);
  const rules = (name: string) =>
    (f.nft.rs?.rules ?? []).filter((r) => r.family === FAMILY && r.table === TABLE && r.chain === name)
      .length;
  const missing: string[] = [];
  for (const hook of ['forward', 'input'] as const) {
    const c = ours(`contain_${hook}`);
    if (!c || c.hook !== hook || typeof c.prio !== 'number' || rules(`contain_${hook}`) === 0) {
      missing.push(`contain_${hook}`);
      continue;
    }
    // Another base chain on the same hook that runs first and drops is harmless; one that runs
    // first can only let packets on to us. What matters is that we run before anything that
    // could change them (a NAT'd destination is still recorded by its new address).
    const earlier = chains
      .filter((o) => o.hook === hook && typeof o.prio === 'number' && (o.prio as number) < (c.prio as number))
      .filter((o) => !(o.family === FAMILY && o.table === TABLE))
      .filter((o) => o.type === 'nat');
    for (const e of earlier) {
      out.push({
        check: C,
        status: 'warn',
        message: `chain ${e.family} ${e.table} ${e.name} (nat, hook ${hook}, priority ${e.prio}) runs before contain_${hook}: the addresses it rewrites are what containment sees`,
      });
    }
  }
  if (missing.length) {
    return [
      {
        check: C,
        status: 'fail',
        message: `contain: is configured but ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not in table ${FAMILY} ${TABLE}: the honeypots can start connections of their own`,
        fix: `${apply} (or run with --manage-firewall)`,
      },
    ];
  }
  for (const m of f.contain?.missing ?? []) {
    out.push({
      check: C,
      status: 'fail',
      message: `network ${m.name} is not contained: ${m.why}`,
      fix: `create the network, or remove it from contain.networks; then ${apply}`,
    });
  }
  const links = new Set((f.links ?? []).map((l) => l.name));
  const liveSet = (f.nft.rs?.sets ?? []).find(
    (s) => s.family === FAMILY && s.table === TABLE && s.name === 'contain_ifaces',
  );
  const liveBridges = (liveSet?.elem ?? []).map(String);
  for (const n of f.contain?.networks ?? []) {
    if (!liveBridges.includes(n.bridge)) {
      out.push({
        check: C,
        status: 'fail',
        message: `network ${n.name} (bridge ${n.bridge}) is not in the live rules: it was created or re-created after they were applied`,
        fix: apply,
      });
    } else if (f.links && !links.has(n.bridge)) {
      out.push({
        check: C,
        status: 'warn',
        message: `network ${n.name}: bridge ${n.bridge} does not exist in this namespace (doctor must run where dockerd runs)`,
      });
    }
  }
  const brnf = f.sysctl.get('net/bridge/bridge-nf-call-iptables');
  const bridges = (f.contain?.networks ?? []).map((n) => n.bridge);
  if (bridges.length && brnf !== '1') {
    out.push({
      check: C,
      status: 'warn',
      message: `bridge-nf-call-iptables is ${brnf ?? 'absent (br_netfilter not loaded)'}: connections between containers on ${bridges.join(', ')} are bridged without passing any IP hook, so a honeypot can reach its neighbours on the same network`,
      fix: 'modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1, or give each honeypot a network of its own',
    });
  }
  const who = [
    ...(contain.honeypots.length
      ? [`${contain.honeypots.length} honeypot block${contain.honeypots.length > 1 ? 's' : ''}`]
      : []),
    ...(f.contain?.networks ?? []).map((n) => `network ${n.name} (${n.bridge})`),
  ];
  if (!out.some((x) => x.status === 'fail')) {
    out.push({
      check: C,
      status: 'ok',
      message: `contain_forward and contain_input (priority filter - 10, before Docker's filter chains) hold in ${who.join(', ')}; ${contain.allow.length} allow rule${contain.allow.length === 1 ? '' : 's'}`,
    });
  }
  return out;
}
