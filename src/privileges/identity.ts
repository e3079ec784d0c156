// `user:` and `group:` of the config, looked up on this host: the account `run` drops to
// after start-up (see drop.ts). Lookups go through getent, so NSS sources (LDAP, sssd,
// systemd's DynamicUser) count as well as /etc/passwd.
import { execFileSync } from 'node:child_process';

/** The account `run` switches to; groups holds only gid (no supplementary groups). */
export interface Identity {
  user: string; // the name, or the number when the account has no name
  uid: number;
  group: string;
  gid: number;
}

/** A `user:`/`group:` value: an account name or a numeric id. Throws on anything else. */
export function account(v: unknown): string | number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 4294967294) return v;
  if (typeof v === 'string' && /^[0-9]+$/.test(v) && Number(v) <= 4294967294) return Number(v);
  if (typeof v === 'string' && /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/.test(v)) return v;
  throw new Error(`expected a user or group name, or a numeric id, got ${JSON.stringify(v)}`);
}

/** One getent(1) entry split at ':', or null when the database has none. */
function getent(db: 'passwd' | 'group', key: string | number): string[] | null {
  try {
    const out = execFileSync('getent', [db, String(key)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const line = out.split('\n')[0];
    return line ? line.split(':') : null;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { status?: number };
    if (e.status === 2) return null; // getent: key not found
    throw new Error(
      `cannot look up ${db} entry ${JSON.stringify(String(key))}: getent: ${e.code ?? e.message}`,
    );
  }
}

export type IdentityResult =
  | { ok: true; identity: Identity | null }
  | { ok: false; errors: { key: 'user' | 'group'; message: string }[] };

/**
 * Resolves `user:` and `group:` (already passed through account()). No `user:`: no identity.
 * `group:` defaults to the user's primary group. Root (uid 0) is refused: it would drop
 * nothing. A numeric user without a passwd entry needs `group:`.
 */
export function resolveIdentity(
  user: string | number | undefined,
  group: string | number | undefined,
): IdentityResult {
  if (user === undefined) {
    if (group === undefined) return { ok: true, identity: null };
    return { ok: false, errors: [{ key: 'group', message: 'group: needs user: (the account to run as)' }] };
  }
  const errors: { key: 'user' | 'group'; message: string }[] = [];
  let uid: number | null = null;
  let userName = String(user);
  let primary: number | null = null;
  try {
    const pw = getent('passwd', user);
    if (pw) {
      userName = pw[0]!;
      uid = Number(pw[2]);
      primary = Number(pw[3]);
    } else if (typeof user === 'number') {
      uid = user; // an id without a name is allowed (containers), but has no primary group
    } else {
      errors.push({
        key: 'user',
        message: `no user "${user}" on this host (getent passwd ${user} finds none)`,
      });
    }
  } catch (err) {
    errors.push({ key: 'user', message: (err as Error).message });
  }
  if (uid === 0)
    errors.push({
      key: 'user',
      message: `user ${userName} is root (uid 0): it would drop nothing; name an unprivileged account`,
    });

  let gid: number | null = null;
  let groupName = '';
  if (group === undefined) {
    if (primary !== null) {
      gid = primary;
      groupName = String(primary);
      try {
        groupName = getent('group', primary)?.[0] ?? groupName;
      } catch {
        // the number names it well enough
      }
    } else if (uid !== null) {
      errors.push({
        key: 'group',
        message: `user ${userName} has no passwd entry, so no primary group: set group:`,
      });
    }
  } else {
    try {
      const gr = getent('group', group);
      if (gr) {
        groupName = gr[0]!;
        gid = Number(gr[2]);
      } else if (typeof group === 'number') {
        gid = group;
        groupName = String(group);
      } else {
        errors.push({
          key: 'group',
          message: `no group "${group}" on this host (getent group ${group} finds none)`,
        });
      }
    } catch (err) {
      errors.push({ key: 'group', message: (err as Error).message });
    }
  }
  if (gid === 0)
    errors.push({
      key: 'group',
      message: `group ${groupName} is root's (gid 0): name an unprivileged group`,
    });
  if (errors.length || uid === null || gid === null) return { ok: false, errors };
  return { ok: true, identity: { user: userName, uid, group: groupName, gid } };
}
