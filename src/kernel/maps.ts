// Health checks move flows in the kernel by rewriting a backend's map (slot -> server) in one
// `nft -f` transaction: flush and refill, never the rules, never a full reload. Existing flows
// keep their conntrack NAT; new ones follow the new map.
import type { BackendConfig, Endpoint } from '../config/types.js';
import { runTool } from '../firewall/apply.js';
import { FAMILY, TABLE } from '../firewall/render.js';
import { familyServers, isKernel, slotElements } from './plan.js';
import { mapName } from './render.js';

/** The nft input that sets `backend`'s maps to the servers `up` accepts. */
export function mapUpdate(backend: BackendConfig, up: (s: Endpoint) => boolean): string {
  const lines: string[] = [];
  for (const family of [4, 6] as const) {
    const servers = familyServers(backend, family);
    if (!servers.length) continue;
    const map = `${FAMILY} ${TABLE} ${mapName(backend.name, family)}`;
    lines.push(`flush map ${map}`);
    const elements = slotElements(servers, up);
    if (elements.length) lines.push(`add element ${map} { ${elements.join(', ')} }`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/**
 * Puts the backend's live servers into its maps; resolves to null, or to why nft refused
 * (the table is not applied: `firewall apply` or `run --manage-firewall` renders the maps).
 */
export async function syncMaps(backend: BackendConfig, up: (s: Endpoint) => boolean): Promise<string | null> {
  if (!isKernel(backend)) return null;
  const text = mapUpdate(backend, up);
  if (!text) return null;
  try {
    const r = await runTool('nft', ['-f', '-'], text);
    return r.code === 0
      ? null
      : r.stderr.trim().split('\n').slice(0, 2).join(' | ') || `nft exited ${r.code}`;
  } catch (err) {
    return (err as Error).message;
  }
}
