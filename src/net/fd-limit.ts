// The process's open-file limit (RLIMIT_NOFILE, soft): it bounds how many flows can be open
// at once. Node has no getrlimit(); Linux shows the limit in /proc/self/limits.
import { readFileSync } from 'node:fs';

/** Descriptors kept free of flows: the admin API, the sinks, health checks, reloads, logs. */
export const FD_RESERVE = 64;

/** The soft limit on open files, or null where it is unlimited or cannot be read. */
export function openFileLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The flows (two descriptors each when forwarded) that fit in `limit` beside `sockets` and the reserve. */
export function flowsWithin(limit: number, sockets: number): number {
  return Math.max(0, Math.floor((limit - sockets - FD_RESERVE) / 2));
}
