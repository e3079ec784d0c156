// What the process and the kernel provide: capabilities, the native addon, nft itself, and
// the nftables modules honeygate's rules use (probed with `nft --check`).

import type { Endpoint } from '../../../config/types.js';
import { anyContains, formatEndpoint, ipFamily } from '../../../net/address.js';
import { type Check, type Finding, fail, joinWords, ok, warn } from '../finding.js';
import { num } from '../query.js';

const CAP_NET_BIND_SERVICE = 10n;

const CAP_NET_ADMIN = 12n;

export const capabilities: Check = (f) => {
  const C = 'capabilities';
  if (f.capEff === null) return [warn(C, 'cannot read CapEff from /proc/self/status')];
  const out: Finding[] = [];
  const has = (bit: bigint) => ((f.capEff! >> bit) & 1n) === 1n;
  if (!has(CAP_NET_ADMIN)) {
    out.push(
      fail(
        C,
        'this process lacks CAP_NET_ADMIN: it cannot read or load nftables rules, add ip rules, ' +
          'or set IP_TRANSPARENT and SO_MARK on sockets, ' +
          "and the checks of other software's firewall rules are left out",
        `sudo honeygate firewall doctor -c ${f.file}   # as a service: AmbientCapabilities=CAP_NET_ADMIN ` +
          'CAP_NET_BIND_SERVICE in the systemd unit',
      ),
    );
  } else {
    // IP_TRANSPARENT would accept CAP_NET_RAW instead, but nft and SO_MARK need NET_ADMIN anyway.
    out.push(ok(C, 'CAP_NET_ADMIN is effective (nftables, ip rules, IP_TRANSPARENT, SO_MARK)'));
  }
  const start = num(f, 'net/ipv4/ip_unprivileged_port_start') ?? 1024;
  const low = f.config.listeners.flatMap((l) => l.bind.filter((b) => b.port > 0 && b.port < start));
  if (low.length && !has(CAP_NET_BIND_SERVICE)) {
    out.push(
      warn(
        C,
        `listeners bind ${formatEndpoint(low[0]!)}` +
          (low.length > 1 ? ` and ${low.length - 1} more` : '') +
          `, below net.ipv4.ip_unprivileged_port_start (${start}), and ` +
          'this process lacks CAP_NET_BIND_SERVICE',
        'run honeygate as root, or give its systemd unit AmbientCapabilities=CAP_NET_BIND_SERVICE',
      ),
    );
  }
  return out;
};

/**
 * tproxy listeners, originalDst listeners and transparent backends need the addon; a failed
 * build only warned at npm ci.
 */
export const native: Check = (f) => {
  const C = 'native';
  const c = f.config;
  const needs = [
    ...c.listeners.filter((l) => l.tproxy || l.originalDst).map((l) => `listener ${l.name}`),
    ...[...c.backends.values()].filter((b) => b.source === 'transparent').map((b) => `backend ${b.name}`),
  ];
  if (needs.length === 0 || f.native === null) return [];
  if (f.native.ok) return [ok(C, 'the native addon loads (IP_TRANSPARENT sockets, SO_ORIGINAL_DST)')];
  return [
    fail(
      C,
      `${joinWords(needs)} need${needs.length > 1 ? '' : 's'} honeygate's ` +
        `native addon, which does not load (${f.native.reason}): \`honeygate ` +
        `run\` refuses to start`,
      "apt-get install g++ make python3, then in honeygate's directory: node scripts/build-native.mjs",
    ),
  ];
};

export const nftables: Check = (f) => {
  const C = 'nftables';
  switch (f.nft.status) {
    case 'missing':
      return [fail(C, '`nft` is not installed', 'apt-get install nftables')];
    case 'denied':
      return [
        fail(
          C,
          `nft cannot read the ruleset: ${f.nft.detail} (needs CAP_NET_ADMIN)`,
          `sudo honeygate firewall doctor -c ${f.file}`,
        ),
      ];
    case 'error':
      return [
        fail(C, `\`nft -j list ruleset\` failed: ${f.nft.detail}`, 'nft list ruleset   # see what nft says'),
      ];
    default: {
      const iptables = f.iptables.length
        ? `; iptables rules read with ${f.iptables.map((t) => `${t}-save`).join(', ')}`
        : '';
      const version = f.nft.rs?.version ? ` ${f.nft.rs.version}` : '';
      return [ok(C, `nft${version} reads the ruleset${iptables}`)];
    }
  }
};

export const kernel: Check = (f) => {
  const C = 'kernel';
  if (!f.plan || f.nft.status !== 'ok') return [];
  const out: Finding[] = [];
  for (const p of f.probes) {
    if (p.ok === true) continue;
    if (p.ok === null) {
      out.push(warn(C, `cannot probe ${p.feature}: ${p.detail} (needs CAP_NET_ADMIN)`));
      continue;
    }
    const module = p.feature.split(' ')[0]!;
    const config =
      module === 'nft_socket'
        ? 'CONFIG_NFT_SOCKET'
        : module === 'nft_fib_inet'
          ? 'CONFIG_NFT_FIB_INET'
          : `CONFIG_NFT_TPROXY and CONFIG_NF_TPROXY_IPV${p.feature.includes('IPv6') ? 6 : 4}`;
    out.push(
      fail(
        C,
        `the kernel rejects a rule using ${p.feature} (\`nft --check\`: ${p.detail}); ` +
          `honeygate's table cannot load without it`,
        `modprobe ${module}   # if that fails, the kernel lacks ${config}`,
      ),
    );
  }
  if (out.length === 0) {
    out.push(ok(C, `${joinWords(f.probes.map((p) => p.feature))} work (probed with nft --check)`));
  }
  return out;
};

/**
 * Kernel routes (`engine: kernel`) DNAT flows to their servers, so the kernel forwards them, and
 * their events come from conntrack, whose bytes and times need accounting and timestamps.
 * `firewall apply` sets both of those; doctor shows them for a host where something reset them
 * or where the firewall is not honeygate's to manage.
 */
export const kernelPath: Check = (f) => {
  const C = 'kernel-path';
  const routes = f.kernelRoutes;
  if (routes.length === 0) return [];
  const out: Finding[] = [];
  for (const [key, what] of [
    ['nf_conntrack_acct', "bytes and packets each way (the events' bytesIn/bytesOut)"],
    ['nf_conntrack_timestamp', "start and end times (the events' openedAt/closedAt and duration)"],
  ] as const) {
    const value = num(f, `net/netfilter/${key}`);
    if (value === 1) continue;
    out.push(
      warn(
        C,
        (value === null
          ? `net.netfilter.${key} cannot be read (conntrack not loaded yet?)`
          : `net.netfilter.${key} is 0`) +
          `: kernel routes' events lack ${what}. \`firewall apply\` sets it in the namespace it manages`,
        `sysctl -w net.netfilter.${key}=1`,
      ),
    );
  }
  for (const family of [4, 6] as const) {
    const servers = routes.flatMap((k) => k.backend.servers.filter((s) => ipFamily(s.host) === family));
    if (servers.length === 0) continue;
    const name = family === 4 ? 'net.ipv4.ip_forward' : 'net.ipv6.conf.all.forwarding';
    const value = num(f, family === 4 ? 'net/ipv4/ip_forward' : 'net/ipv6/conf/all/forwarding');
    if (value === 0) {
      out.push(
        fail(
          C,
          `${name} is 0, and kernel routes DNAT flows to ${formatEndpoint(servers[0]!)}` +
            (servers.length > 1 ? ` (and ${servers.length - 1} more)` : '') +
            ': the kernel drops them instead of forwarding them',
          `sysctl -w ${name}=1`,
        ),
      );
    }
  }
  // Docker's FORWARD policy DROP (a container that publishes no port gets no accept of Docker's),
  // or a native nftables forward chain that drops.
  for (const drop of f.foreign.forwardDrops) {
    const servers = routes.flatMap((k) => k.backend.servers.filter((s) => ipFamily(s.host) === drop.family));
    const covered = (s: Endpoint) =>
      drop.accepts.some(
        (a) =>
          (!a.daddr || anyContains(a.daddr.cidrs, s.host) !== a.daddr.negated) &&
          (!a.ports || a.ports.some((r) => s.port >= r.from && s.port <= r.to)),
      );
    const dropped = servers.filter((s) => !covered(s));
    if (dropped.length === 0) continue;
    const tool = drop.family === 4 ? 'iptables' : 'ip6tables';
    const ip = drop.family === 4 ? 'ip' : 'ip6';
    out.push(
      warn(
        C,
        `${drop.where} ${drop.how}, and no rule there accepts new flows to ${formatEndpoint(dropped[0]!)}` +
          (dropped.length > 1 ? ` (and ${dropped.length - 1} more)` : '') +
          ": kernel routes' flows DNATed to it are dropped" +
          (drop.nft ? '' : ' (Docker accepts only the ports a container publishes)'),
        drop.nft
          ? `nft insert rule ${drop.nft.family} ${drop.nft.table} ${drop.nft.chain} ${ip} daddr ${dropped[0]!.host} ct status dnat accept`
          : `${tool} -I ${drop.userChain} -d ${dropped[0]!.host} -m conntrack --ctstate DNAT -j ACCEPT`,
      ),
    );
  }
  if (out.length === 0) {
    out.push(
      ok(
        C,
        'kernel routes have forwarding, conntrack accounting and timestamps (nf_conntrack_acct, nf_conntrack_timestamp)',
      ),
    );
  }
  return out;
};
