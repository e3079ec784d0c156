// Least privilege for `run`: started as root, it binds its sockets, applies its rules and
// starts the relay, then becomes `user:`/`group:` keeping only the capabilities below
// (native/privileges.cc does the switch; docs/security.md explains it to operators).
//
// - CAP_NET_ADMIN: IP_TRANSPARENT and SO_MARK on new sockets (tproxy listeners at reload,
//   transparent upstreams), and `nft`/`ip` for the firewall watch, self-heal and reload.
//   IP_TRANSPARENT also accepts CAP_NET_RAW, but CAP_NET_ADMIN suffices for it and for
//   SO_MARK, and honeygate opens no raw socket: CAP_NET_RAW is not kept.
// - CAP_NET_BIND_SERVICE: a reload that adds a port below 1024.
// Both stay on the main thread (the event loop, where every socket is made) and are ambient,
// so the nft and ip children, and the worker processes a primary starts again, get them.
import { accessSync, chownSync, constants, lstatSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Config } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import type { Logger } from '../log.js';
import { dropPrivileges, threadPrivileges } from '../net/native.js';
import type { Identity } from './identity.js';

export const KEPT_CAPABILITIES = { CAP_NET_BIND_SERVICE: 10, CAP_NET_ADMIN: 12 } as const;

/** The names of the capabilities in a mask (bit N: capability N), for logs. */
export function capabilityNames(mask: bigint): string[] {
  const names: string[] = [];
  for (const [name, bit] of Object.entries(KEPT_CAPABILITIES))
    if (mask & (1n << BigInt(bit))) names.push(name);
  for (let bit = 0; bit < 64; bit++) {
    if (mask & (1n << BigInt(bit)) && !Object.values(KEPT_CAPABILITIES).includes(bit as 10 | 12))
      names.push(`cap ${bit}`);
  }
  return names;
}

/**
 * The event store's files (SQLite with its -wal and -shm, JSON lines, the nats sink's outbox) plus every regular file
 * this process holds open in their directories (a write-ahead file beside them): the files
 * the unprivileged process must go on writing. Not stdin, stdout or stderr: a log file the
 * service manager opened stays its own.
 */
export function eventFiles(config: Config): string[] {
  const files = new Set<string>();
  const dirs = new Set<string>();
  if (config.events.sqlite) {
    for (const suffix of ['', '-wal', '-shm', '-journal']) files.add(config.events.sqlite + suffix);
    dirs.add(dirname(config.events.sqlite));
  }
  if (config.events.jsonl) {
    files.add(config.events.jsonl);
    dirs.add(dirname(config.events.jsonl));
  }
  const outbox = config.events.nats?.outbox;
  if (outbox) {
    for (const suffix of ['', '-wal', '-shm', '-journal']) files.add(outbox + suffix);
    dirs.add(dirname(outbox));
  }
  try {
    for (const fd of readdirSync('/proc/self/fd')) {
      if (Number(fd) <= 2) continue;
      let target: string;
      try {
        target = readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        continue; // closed meanwhile (readdir's own fd)
      }
      if (target.startsWith('/') && dirs.has(dirname(target))) files.add(target.replace(/ \(deleted\)$/, ''));
    }
  } catch {
    // no /proc: the configured paths must do
  }
  return [...files];
}

/** Whether `who` may create files in `dir` by its mode bits (ACLs aside). */
function writableBy(dir: string, who: Identity): boolean {
  const st = statSync(dir);
  if (st.uid === who.uid) return (st.mode & 0o200) !== 0;
  if (st.gid === who.gid) return (st.mode & 0o020) !== 0;
  return (st.mode & 0o002) !== 0;
}

/**
 * Drops to config.user after start-up; `files` (eventFiles()) are handed to that user first.
 * No `user:`: as root, one warning; otherwise nothing. Started as the `user:` itself (systemd
 * User= with AmbientCapabilities=): the capability sets are trimmed to the kept ones and
 * no_new_privs set. Started as any other non-root user: HG_ERR_PRIVILEGES, as for any
 * failed call. `configPath`, read again at each reload, is checked to be readable afterwards.
 */
export function dropToUser(config: Config, log: Logger, files: string[], configPath?: string): void {
  const who = config.user;
  const euid = process.geteuid?.() ?? -1;
  if (!who) {
    if (euid === 0) {
      log.warn(
        'running as root: set user: (and group:) in the config, and honeygate drops to that account after start-up, keeping only CAP_NET_ADMIN and CAP_NET_BIND_SERVICE',
      );
    }
    return;
  }
  if (euid !== 0 && (euid !== who.uid || process.getegid?.() !== who.gid)) {
    throw new HoneygateError(
      'HG_ERR_PRIVILEGES',
      `started as uid ${euid}, gid ${process.getegid?.()}, but user: ${who.user} is uid ${who.uid}, gid ${who.gid}: only root can switch accounts; start as root, or as ${who.user} (systemd User=${who.user} with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE)`,
    );
  }
  if (euid === 0 && process.env.UV_USE_IO_URING !== undefined && process.env.UV_USE_IO_URING !== '0') {
    // libuv's ring, set up at start, keeps root's credentials for the file operations on it.
    throw new HoneygateError(
      'HG_ERR_PRIVILEGES',
      `UV_USE_IO_URING=${process.env.UV_USE_IO_URING}: file operations would keep root's credentials after the drop (CVE-2024-22017); unset it`,
    );
  }
  if (euid === 0) {
    for (const file of files) {
      try {
        if (!lstatSync(file).isFile()) continue;
      } catch {
        continue; // not there (no -journal in WAL mode)
      }
      try {
        chownSync(file, who.uid, who.gid);
      } catch (err) {
        throw new HoneygateError(
          'HG_ERR_PRIVILEGES',
          `chown ${file} to ${who.user}:${who.group}: ${(err as Error).message}`,
        );
      }
    }
    const dirs = new Set(files.map((f) => dirname(f)));
    for (const dir of dirs) {
      try {
        if (!writableBy(dir, who)) {
          log.warn(
            { dir, user: who.user },
            `${dir} is not writable by ${who.user}: the start journal (crash records) cannot turn over, and after a rotation (rename, then SIGUSR1) the event files cannot be created again; chown the directory to ${who.user}:${who.group} or let logrotate create them (create 0640 ${who.user} ${who.group})`,
          );
        }
      } catch {
        // a missing directory has no files to lose
      }
    }
  }
  try {
    dropPrivileges({ uid: who.uid, gid: who.gid, groups: [who.gid], keep: Object.values(KEPT_CAPABILITIES) });
  } catch (err) {
    if (err instanceof HoneygateError)
      throw new HoneygateError('HG_ERR_PRIVILEGES', err.message, { cause: err });
    throw new HoneygateError('HG_ERR_PRIVILEGES', (err as Error).message, { cause: err });
  }
  const now = threadPrivileges();
  log.info(
    {
      user: who.user,
      uid: now.uid,
      group: who.group,
      gid: now.gid,
      capabilities: capabilityNames(now.effective),
    },
    euid === 0 ? 'privileges dropped' : 'running unprivileged',
  );
  if (configPath === undefined) return;
  try {
    accessSync(configPath, constants.R_OK);
  } catch (err) {
    log.warn(
      { config: configPath, user: who.user },
      `${who.user} cannot read ${configPath} (${(err as NodeJS.ErrnoException).code}): a reload (SIGHUP) will be rejected; make it readable by ${who.user}:${who.group} (e.g. chgrp ${who.group} and chmod 0640 the file, its directories searchable)`,
    );
  }
}
