// What `honeygate pki` accepts and where it keeps things: the certificate names, the roles,
// the subject alternative names, and the file layout of a farm's PKI directory. Pure; no
// X.509 library here, so the tunnel and `check` can use it without loading one.
import { isIP } from 'node:net';
import { join } from 'node:path';

/** A hub serves the tunnel (serverAuth); a sensor dials it (clientAuth). */
export type Role = 'hub' | 'sensor';
export const ROLES: readonly Role[] = ['hub', 'sensor'];

/** The extended key usage OID each role's certificate carries. */
export const ROLE_USAGE: Record<Role, { oid: string; name: 'serverAuth' | 'clientAuth' }> = {
  hub: { oid: '1.3.6.1.5.5.7.3.1', name: 'serverAuth' },
  sensor: { oid: '1.3.6.1.5.5.7.3.2', name: 'clientAuth' },
};

/** The CA's files in a PKI directory: `ca.crt` (public) and `ca.key` (0600). */
export function caFiles(dir: string): { cert: string; key: string } {
  return { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
}

/** A certificate's files in a PKI directory: `NAME.crt` and `NAME.key` (0600). */
export function certFiles(dir: string, name: string): { cert: string; key: string } {
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Why `host` is not a DNS name (dot-separated labels of letters, digits and '-'), or null. */
function hostProblem(host: string): string | null {
  if (host.length === 0) return 'is empty';
  if (host.length > 253) return 'is longer than 253 characters';
  for (const label of host.split('.')) {
    if (!LABEL.test(label)) {
      return "must be dot-separated labels of letters, digits and '-' (each 1-63 long, not starting or ending with '-')";
    }
  }
  return null;
}

/**
 * A certificate name (a sensor's or the hub's): a DNS-style name, the CN and the first DNS
 * SAN, also its file name in the directory. Returns it, or throws an Error saying why not.
 */
export function checkName(name: string): string {
  const why = hostProblem(name);
  if (why !== null) throw new Error(`invalid name "${name}": ${why}, e.g. sensor-fra1 or hub.example.net`);
  if (name.toLowerCase() === 'ca')
    throw new Error('invalid name "ca": the CA\'s own files are ca.crt and ca.key');
  return name;
}

export interface San {
  type: 'dns' | 'ip';
  value: string;
}

/**
 * One `--san` value, or several separated by commas: `DNS:host`, `IP:addr`, or a bare host
 * name or address (an address is an IP SAN). Throws an Error naming the bad one.
 */
export function parseSans(arg: string): San[] {
  return arg
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((item) => {
      const m = /^(dns|ip):(.*)$/i.exec(item);
      const kind = m ? (m[1]!.toLowerCase() as 'dns' | 'ip') : null;
      const value = m ? m[2]!.trim() : item;
      const addr = value.replace(/^\[(.*)\]$/, '$1');
      if (kind === 'ip' || (kind === null && isIP(addr) !== 0)) {
        if (isIP(addr) === 0) throw new Error(`invalid --san "${item}": not an IPv4 or IPv6 address`);
        return { type: 'ip', value: addr };
      }
      const why = hostProblem(value);
      if (why !== null) throw new Error(`invalid --san "${item}": a DNS name ${why} (or give IP:ADDRESS)`);
      return { type: 'dns', value };
    });
}

/** `--days`: a whole number of days, 1 to 36500. Throws an Error saying why not. */
export function parseDays(arg: string): number {
  const n = /^\d+$/.test(arg.trim()) ? Number(arg) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > 36_500) {
    throw new Error(`invalid --days "${arg}": a whole number of days from 1 to 36500`);
  }
  return n;
}
