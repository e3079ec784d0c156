// Docker's side of the host: forwarding for its published ports, docker-proxy hiding the
// client's address, and bridges that br_netfilter may or may not make visible.
import { formatEndpoint, ipFamily } from '../../../net/address.js';
import { type Check, entryTarget, type Finding, joinWords, ok, warn } from '../finding.js';
import type { ProcessInfo } from '../host.js';
import { divertInterfaces, localAddress, num, rulesRead } from '../query.js';

export const ipForward: Check = (f) => {
  const C = 'ip_forward';
  if (!rulesRead(f)) return [];
  const out: Finding[] = [];
  const docker = f.processes.some((p) => p.comm === 'dockerd');
  for (const family of [4, 6] as const) {
    const key = family === 4 ? 'net/ipv4/ip_forward' : 'net/ipv6/conf/all/forwarding';
    const value = num(f, key);
    if (value === null) continue;
    const forwarded = f.foreign.nat.filter(
      (e) =>
        e.kind === 'dnat' &&
        e.hooks.some((h) => h.hook === 'prerouting') &&
        e.toHost !== null &&
        ipFamily(e.toHost) === family &&
        !localAddress(f, e.toHost),
    );
    const name = family === 4 ? 'net.ipv4.ip_forward' : 'net.ipv6.conf.all.forwarding';
    if (value === 0 && (forwarded.length || (docker && family === 4))) {
      const why = forwarded.length
        ? `${forwarded[0]!.where} DNATs to ${entryTarget(forwarded[0]!)}` +
          (forwarded.length > 1 ? ` (and ${forwarded.length - 1} more)` : '')
        : 'dockerd runs here';
      out.push(
        warn(
          C,
          `${name} is 0 while ${why}: those connections (Docker's published ` +
            `ports, anything routed through this host) are dropped. honeygate's ` +
            'own diverted connections and transparent upstreams do not need forwarding: ' +
            'they are delivered to this host',
          `sysctl -w ${name}=1`,
        ),
      );
    } else if (value === 0 && kernelServes(f, family)) {
      // kernel-path says why this 0 drops flows
    } else if (family === 4 || forwarded.length) {
      out.push(
        ok(
          C,
          `${name} is ${value}: honeygate's diverted connections and the honeypots' ` +
            'replies are delivered to this host and need no forwarding' +
            (value === 0 ? '; nothing here DNATs to another host' : ''),
        ),
      );
    }
  }
  return out;
};

const kernelServes = (f: Parameters<Check>[0], family: 4 | 6) =>
  f.kernelRoutes.some((k) => k.backend.servers.some((s) => ipFamily(s.host) === family));

export const dockerProxy: Check = (f) => {
  const C = 'docker-proxy';
  const proxies = f.processes.filter((p) => p.comm === 'docker-proxy');
  if (proxies.length === 0) {
    const docker = f.processes.some((p) => p.comm === 'dockerd');
    return [
      ok(
        C,
        docker
          ? 'no docker-proxy process: Docker runs with userland-proxy off or publishes no ports'
          : 'Docker is not running in this network namespace',
      ),
    ];
  }
  const arg = (p: ProcessInfo, k: string) => {
    const i = p.cmdline.indexOf(k);
    return i >= 0 ? p.cmdline[i + 1] : undefined;
  };
  const published = proxies.slice(0, 6).map((p) => {
    const host = arg(p, '-host-ip') ?? '?';
    const to = arg(p, '-container-ip') ?? '?';
    return (
      `${formatEndpoint({ host, port: Number(arg(p, '-host-port') ?? 0) })} ` +
      `-> ${formatEndpoint({ host: to, port: Number(arg(p, '-container-port') ?? 0) })}`
    );
  });
  return [
    warn(
      C,
      `${proxies.length} docker-proxy process${proxies.length > 1 ? 'es' : ''} ` +
        `(Docker's userland-proxy: ${published.join(', ')}${proxies.length > 6 ? ', ...' : ''}): ` +
        'connections it relays — from this host itself, over IPv6 to ports ' +
        'published on IPv4 only, hairpin connections between containers — ' +
        `reach the container from docker-proxy's address, hiding the client`,
      'set "userland-proxy": false in /etc/docker/daemon.json (merge with ' +
        'what is there), then: systemctl restart docker',
    ),
  ];
};

// Checked on Linux 6.18: with br_netfilter on, frames bridged between ports of a bridge pass
// the IPv4 prerouting hook with iifname = the bridge, and a tproxy rule there matches them,
// yet they are still bridged to the other port: bridged packets are routed again only when a
// DNAT changed their destination. So diverting on a bridge never takes container-to-container
// connections, with or without br_netfilter.
export const brNetfilter: Check = (f) => {
  const C = 'br_netfilter';
  const v4 = num(f, 'net/bridge/bridge-nf-call-iptables');
  const v6 = num(f, 'net/bridge/bridge-nf-call-ip6tables');
  const bridges = (f.links ?? []).filter((l) => l.kind === 'bridge').map((l) => l.name);
  const divertBridges = divertInterfaces(f).filter((d) => bridges.includes(d));
  const out: Finding[] = [];
  for (const b of divertBridges) {
    out.push(
      warn(
        C,
        `${b} is a bridge: connections between containers on it are bridged, ` +
          'not routed, so honeygate does not see them (with br_netfilter they ' +
          'pass the IP hooks, but TPROXY does not take bridged packets); connections ' +
          'from its containers to other networks are diverted',
        'put containers whose lateral connections honeygate should see on ' +
          'separate bridges, so that traffic between them is routed through this host',
      ),
    );
  }
  if (v4 === null && v6 === null) {
    if (out.length === 0)
      out.push(ok(C, 'br_netfilter is not loaded: bridged frames do not pass the IP hooks'));
    return out;
  }
  if (out.length === 0) {
    const on = v4 === 1 || v6 === 1;
    out.push(
      ok(
        C,
        on && bridges.length
          ? `bridge-nf-call-iptables=${v4 ?? '-'} ip6tables=${v6 ?? '-'}: frames ` +
              `bridged on ${joinWords(bridges)} pass the IP hooks; honeygate diverts ` +
              `only from ${joinWords(divertInterfaces(f)) || 'no interface'}, so ` +
              'this changes nothing for it'
          : `bridge-nf-call-iptables=${v4 ?? '-'} ip6tables=${v6 ?? '-'}` +
              (bridges.length ? '' : '; no bridges here'),
      ),
    );
  }
  return out;
};
