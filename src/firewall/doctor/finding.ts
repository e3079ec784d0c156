// What a check returns (a Finding: status, message, fix) and the words its messages share.
// A check is a pure function Facts -> Finding[] for one concern; it never throws.
import type { PortRange } from '../../config/types.js';
import type { NatEntry } from '../foreign-rules.js';
import { formatRange, hex } from '../render.js';
import type { Facts, IpRule } from './facts.js';

export interface Finding {
  check: string;
  status: 'ok' | 'warn' | 'fail';
  message: string;
  fix?: string;
}

export type Check = (f: Facts) => Finding[];

export const ok = (check: string, message: string): Finding => ({ check, status: 'ok', message });

export const warn = (check: string, message: string, fix?: string): Finding =>
  fix ? { check, status: 'warn', message, fix } : { check, status: 'warn', message };

export const fail = (check: string, message: string, fix: string): Finding => ({
  check,
  status: 'fail',
  message,
  fix,
});

export function joinWords(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}

export function portsText(ranges: PortRange[], max = 8): string {
  const shown = ranges.slice(0, max).map(formatRange).join(', ');
  return ranges.length > max ? `${shown}, ... (${ranges.length} ranges)` : shown;
}

export function entryTarget(e: NatEntry): string {
  if (e.kind === 'redirect')
    return e.toPorts ? `local port ${formatRange(e.toPorts)}` : 'the same local port';
  const port = e.toPorts ? `:${formatRange(e.toPorts)}` : '';
  if (!e.toHost) return e.toPorts ? `port ${formatRange(e.toPorts)}` : '(a computed address)';
  return e.toHost.includes(':') ? `[${e.toHost}]${port}` : `${e.toHost}${port}`;
}

export function ruleText(r: IpRule): string {
  const sel: string[] = [];
  for (const [k, v] of Object.entries(r.raw)) {
    if (['priority', 'table', 'fwmark', 'fwmask', 'not', 'action', 'src', 'flags'].includes(k)) continue;
    sel.push(`${k} ${typeof v === 'string' || typeof v === 'number' ? v : JSON.stringify(v)}`);
  }
  if (r.raw.src && r.raw.src !== 'all') sel.unshift(`from ${r.raw.src}`);
  if (r.fwmark !== null)
    sel.unshift(`fwmark ${hex(r.fwmark)}${r.fwmask !== 0xffffffff ? `/${hex(r.fwmask)}` : ''}`);
  const what = r.action && r.action !== 'lookup' ? r.action : `lookup ${r.table}`;
  return `${r.priority}: ${r.not ? 'not ' : ''}${sel.join(' ') || 'from all'} ${what}`;
}
