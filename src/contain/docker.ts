// Docker networks by name -> the bridge interface and subnets the firewall matches, read
// from the Docker Engine API over its unix socket (GET /networks/NAME), at every apply and
// check: a network that was removed and created again gets a new bridge, and the next check
// finds the difference and applies the rules again.
import { request } from 'node:http';
import type { ContainConfig } from './config.js';

export interface ContainNetwork {
  name: string;
  bridge: string; // the Linux bridge of the network (docker0, br-0123456789ab)
  subnets: string[];
}

/** What render.ts needs of contain: the networks found, and the ones that could not be used. */
export interface ContainTargets {
  networks: ContainNetwork[];
  missing: { name: string; why: string }[];
}

const TIMEOUT_MS = 5_000;

interface NetworkJson {
  Id?: string;
  Name?: string;
  Driver?: string;
  Options?: Record<string, string>;
  IPAM?: { Config?: { Subnet?: string }[] | null };
}

/** GET `path` on the Docker API; resolves to the status and the parsed body (null if none). */
function dockerGet(socket: string, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method: 'GET', timeout: TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = null;
        try {
          body = text ? JSON.parse(text) : null;
        } catch {
          body = text;
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** The bridge Docker made for a bridge network: its option, or br- and the id's first 12. */
export function bridgeOf(n: NetworkJson): string | null {
  const named = n.Options?.['com.docker.network.bridge.name'];
  if (named) return named;
  if (n.Name === 'bridge') return 'docker0';
  return n.Id ? `br-${n.Id.slice(0, 12)}` : null;
}

/** One network's API answer -> a target, or why it cannot be contained. */
export function fromInspect(name: string, n: NetworkJson): ContainNetwork | { why: string } {
  if (n.Driver !== 'bridge') {
    return {
      why: `its driver is ${n.Driver ?? 'unknown'}: only bridge networks pass this host's forward hook (contain its subnets under contain.honeypots instead)`,
    };
  }
  const bridge = bridgeOf(n);
  if (!bridge) return { why: 'Docker reported no bridge for it' };
  const subnets = (n.IPAM?.Config ?? []).flatMap((c) => (c.Subnet ? [c.Subnet] : []));
  return { name, bridge, subnets };
}

/** Resolves contain.networks; never throws (an unreachable engine makes every network missing). */
export async function resolveNetworks(contain: ContainConfig | null): Promise<ContainTargets> {
  const out: ContainTargets = { networks: [], missing: [] };
  for (const name of contain?.networks ?? []) {
    try {
      const r = await dockerGet(contain!.docker, `/networks/${encodeURIComponent(name)}`);
      if (r.status === 404) {
        out.missing.push({ name, why: `Docker has no network "${name}" (docker network ls)` });
        continue;
      }
      if (r.status !== 200) {
        const msg = (r.body as { message?: string } | null)?.message ?? `HTTP ${r.status}`;
        out.missing.push({ name, why: `the Docker API answered ${msg}` });
        continue;
      }
      const t = fromInspect(name, r.body as NetworkJson);
      if ('why' in t) out.missing.push({ name, why: t.why });
      else out.networks.push(t);
    } catch (err) {
      out.missing.push({
        name,
        why: `the Docker API at ${contain!.docker} cannot be read: ${(err as Error).message}`,
      });
    }
  }
  return out;
}
