// `honeygate firewall doctor`: inspects this host (the current network namespace) for what
// transparent mode needs and reports each problem with its fix. Layers, one file each:
//   host.ts    raw facts: files under /proc, tool output (ip, nft, iptables-save, ss),
//              processes; realHost() reads the live system, unit tests pass a fake;
//   facts.ts   gather() parses them once into Facts (query.ts answers questions about them);
//   checks/    small pure functions Facts -> Finding[], one concern each, never throwing;
//   format.ts  findings as text and the exit status.
// Other software's rules (Docker, kube-proxy, VPNs) are parsed in ../foreign-rules.ts.
// Kernel behaviour the messages state was checked on Linux 6.18 in network namespaces
// (src_valid_mark, rp_filter, route_localnet, br_netfilter, transparent dials to local and
// DNATed addresses); where a claim depends on someone else's rules, messages say "can".
import type { Config } from '../../config/types.js';
import { containment } from '../../contain/doctor.js';
import { udpConntrack } from './checks/conntrack.js';
import { brNetfilter, dockerProxy, ipForward } from './checks/docker.js';
import { capabilities, kernel, kernelPath, native, nftables } from './checks/kernel.js';
import { fwmark } from './checks/marks.js';
import { input, nat, originalDst } from './checks/nat.js';
import {
  externalTproxy,
  interfaces,
  ipRoute,
  ipRule,
  ipRuleOrder,
  ipv6,
  rpFilter,
  srcValidMark,
  transparentBackends,
} from './checks/routing.js';
import { table } from './checks/table.js';
import { type Facts, gather } from './facts.js';
import { type Check, type Finding, warn } from './finding.js';
import { type Host, realHost } from './host.js';

export type { Facts } from './facts.js';
export { gather } from './facts.js';
export type { Finding } from './finding.js';
export { exitCode, formatFindings } from './format.js';
export type { ExecResult, Host, ProcessInfo } from './host.js';
export { realHost } from './host.js';

const CHECKS: [string, Check][] = [
  ['capabilities', capabilities],
  ['native', native],
  ['nftables', nftables],
  ['kernel', kernel],
  ['table', table],
  ['ip-rule', ipRule],
  ['ip-route', ipRoute],
  ['ip-rule-order', ipRuleOrder],
  ['external-tproxy', externalTproxy],
  ['fwmark', fwmark],
  ['src_valid_mark', srcValidMark],
  ['rp_filter', rpFilter],
  ['interfaces', interfaces],
  ['ipv6', ipv6],
  ['nat', nat],
  ['udp-conntrack', udpConntrack],
  ['input', input],
  ['transparent-backends', transparentBackends],
  ['original-dst', originalDst],
  ['ip_forward', ipForward],
  ['kernel-path', kernelPath],
  ['docker-proxy', dockerProxy],
  ['br_netfilter', brNetfilter],
  ['contain', containment],
];

/** Runs every check over facts already gathered. */
export function check(facts: Facts): Finding[] {
  const out: Finding[] = [];
  for (const [name, run] of CHECKS) {
    try {
      out.push(...run(facts));
    } catch (err) {
      out.push(warn(name, `this check failed to run: ${(err as Error).message}`));
    }
  }
  return out;
}

/**
 * Inspects `host` (the live system by default) against `config`. `opts.file` is the config
 * file's path as the user typed it, used in the fixes (default "FILE").
 */
export async function doctor(
  config: Config,
  host: Host = realHost(),
  opts: { file?: string } = {},
): Promise<Finding[]> {
  return check(await gather(config, host, opts.file));
}
