// What the process and the kernel provide: capabilities, the native addon, nft itself, and
// the nftables modules honeygate's rules use (probed with `nft --check`).
import { formatEndpoint } from '../../../net/address.js';
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
