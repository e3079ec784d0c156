// What a certificate says, in the words of `honeygate pki`: its name, role, issuer, expiry
// and names. Node's own X509Certificate reads it (no X.509 library needed), so the tunnel
// can use this at start to log which certificate it serves.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { HoneygateError } from '../errors.js';
import { ROLE_USAGE, type Role } from './names.js';

export interface CertInfo {
  name: string; // the subject's CN ('' if none)
  role: Role | 'ca' | null; // from the extended key usage (or CA:TRUE); null when it says neither
  usages: string[]; // extended key usages, by name where known
  subject: string; // one line, RFC 4514-like: CN=..., OU=..., O=...
  issuer: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  sans: string[]; // DNS:..., IP Address:...
  fingerprint256: string;
}

const USAGE_NAMES: Record<string, string> = Object.fromEntries(
  Object.values(ROLE_USAGE).map((u) => [u.oid, u.name]),
);

/** The role a certificate serves: 'ca' for a CA, 'hub' for serverAuth only, 'sensor' for clientAuth only. */
function roleOf(cert: X509Certificate): CertInfo['role'] {
  if (cert.ca) return 'ca';
  const ekus = cert.keyUsage ?? [];
  const server = ekus.includes(ROLE_USAGE.hub.oid);
  const client = ekus.includes(ROLE_USAGE.sensor.oid);
  if (server && !client) return 'hub';
  if (client && !server) return 'sensor';
  return null;
}

/** "CN=a\nOU=b" (Node's multi-line form) as "CN=a, OU=b". */
function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}

/** Reads a certificate's facts. */
export function describeCert(cert: X509Certificate): CertInfo {
  const cn = /^CN=(.*)$/m.exec(cert.subject);
  return {
    name: cn ? cn[1]! : '',
    role: roleOf(cert),
    usages: (cert.keyUsage ?? []).map((oid) => USAGE_NAMES[oid] ?? oid),
    subject: oneLine(cert.subject),
    issuer: oneLine(cert.issuer),
    serial: cert.serialNumber,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    sans: (cert.subjectAltName ?? '').split(', ').filter(Boolean),
    fingerprint256: cert.fingerprint256,
  };
}

/** Reads a PEM certificate file (the first certificate in it). Throws HG_ERR_PKI naming the file. */
export function readCert(path: string): X509Certificate {
  let text: Buffer;
  try {
    text = readFileSync(path);
  } catch (err) {
    throw new HoneygateError('HG_ERR_PKI', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return new X509Certificate(text);
  } catch (err) {
    throw new HoneygateError('HG_ERR_PKI', `${path}: not a PEM certificate (${(err as Error).message})`, {
      cause: err,
    });
  }
}

/** Days from `now` to `to`, rounded (negative once past). */
export function daysLeft(to: Date, now = Date.now()): number {
  return Math.round((to.getTime() - now) / 86_400_000);
}

/** `pki show`'s lines: field, then value. With `ca`, also whether it verifies against it. */
export function formatCert(info: CertInfo, opts: { chain?: string; now?: number } = {}): string {
  const left = daysLeft(info.notAfter, opts.now);
  const validity =
    left < 0
      ? `EXPIRED ${-left} days ago`
      : info.notBefore.getTime() > (opts.now ?? Date.now())
        ? 'not yet valid'
        : `${left} days left`;
  const rows: [string, string][] = [
    ['name', info.name || '(no CN)'],
    ['role', `${info.role ?? 'unknown'}${info.usages.length ? ` (${info.usages.join(', ')})` : ''}`],
    ['subject', info.subject],
    ['issuer', info.issuer],
    ['valid from', info.notBefore.toISOString()],
    ['expires', `${info.notAfter.toISOString()} (${validity})`],
    ['names', info.sans.join(', ') || '(none)'],
    ['serial', info.serial],
    ['sha256', info.fingerprint256],
  ];
  if (opts.chain !== undefined) rows.push(['chain', opts.chain]);
  return rows.map(([k, v]) => `${k.padEnd(11)}${v}\n`).join('');
}
