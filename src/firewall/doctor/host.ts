// The doctor's first layer: where its raw facts come from. realHost() reads the live system
// (files under /proc, tool output, processes) in the current network namespace; unit tests
// pass a fake Host built from fixtures.
import { readdir, readFile, readlink } from 'node:fs/promises';
import { nativeAvailable } from '../../net/native.js';
import { spawnCollect, sshdSocketInodes } from '../apply.js';

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
  missing: boolean; // the program is not installed
}

export interface ProcessInfo {
  pid: number;
  comm: string;
  cmdline: string[];
}

/** Where the doctor's raw facts come from. */
export interface Host {
  /** Runs a program to completion; never rejects (a missing program gives missing: true). */
  exec(file: string, args: string[], input?: string): Promise<ExecResult>;
  /** A file's text (e.g. /proc/sys/net/ipv4/ip_forward), or null when it cannot be read. */
  readFile(path: string): Promise<string | null>;
  /** The socket inodes sshd processes hold (absent: none). */
  sshdSockets?(): Promise<Set<string>>;
  /** dockerd and docker-proxy processes in this network namespace (others cannot matter here). */
  processes(): Promise<ProcessInfo[]>;
  /** Whether honeygate's native addon loads (absent: not checked). */
  native?(): { ok: true } | { ok: false; reason: string };
}

const EXEC_TIMEOUT_MS = 15_000;

const WATCHED_PROCESSES = new Set(['dockerd', 'docker-proxy']);

/** The live system: the current process's network namespace. */
export function realHost(): Host {
  return {
    async exec(file, args, input) {
      const r = await spawnCollect(file, args, input, { env: { LC_ALL: 'C' }, timeout: EXEC_TIMEOUT_MS });
      if (r.error)
        return { code: null, stdout: r.stdout, stderr: r.error.message, missing: r.error.code === 'ENOENT' };
      return { code: r.code, stdout: r.stdout, stderr: r.stderr, missing: false };
    },
    async readFile(path) {
      try {
        return await readFile(path, 'utf8');
      } catch {
        return null;
      }
    },
    native: nativeAvailable,
    sshdSockets: sshdSocketInodes,
    async processes() {
      const self = await readlink('/proc/self/ns/net').catch(() => null);
      const out: ProcessInfo[] = [];
      for (const name of await readdir('/proc').catch(() => [] as string[])) {
        if (!/^\d+$/.test(name)) continue;
        try {
          const comm = (await readFile(`/proc/${name}/comm`, 'utf8')).trim();
          if (!WATCHED_PROCESSES.has(comm)) continue;
          // Another user's process (root's dockerd, seen without privileges) hides its namespace:
          // count it, as on the usual host with one Docker in the root namespace.
          const ns = await readlink(`/proc/${name}/ns/net`).catch(() => null);
          if (ns !== null && ns !== self) continue;
          const cmdline = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0').filter(Boolean);
          out.push({ pid: Number(name), comm, cmdline });
        } catch {
          // the process ended while we looked
        }
      }
      return out;
    },
  };
}
