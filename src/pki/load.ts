// Loads a CA, a certificate and its key (the files `honeygate pki` writes, or any PEM of the
// same kind) into a TLS secure context for the tunnel, checking first what would otherwise
// surface as an OpenSSL error at the first handshake: a missing file, a key of another
// certificate, a certificate of another CA, an expired one, one of the wrong role. Each
// error names the file and says what to do. Called at start and on SIGHUP (renewal).
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import { HoneygateError } from '../errors.js';
import { ROLE_USAGE, type Role } from './names.js';
import { describeCert } from './show.js';

export interface TlsFiles {
  ca: string; // the farm's CA certificate(s), PEM
  cert: string; // this side's certificate, PEM (a chain may follow it)
  key: string; // its private key, PEM
}

export interface LoadedTls {
  /** For a client: tls.connect / http2.connect ({ secureContext }). */
  context: SecureContext;
  /**
   * The same as PEM options, for a server: spread into tls.createServer or
   * http2.createSecureServer (they ignore a `secureContext` option and build their own, and
   * without a certificate every handshake fails with "no suitable signature algorithm"),
   * and server.setSecureContext(options) on a reload.
   */
  options: { ca: Buffer; cert: Buffer; key: Buffer; minVersion: 'TLSv1.3' };
  name: string; // the certificate's CN
  role: Role | 'ca' | null; // from its extended key usage
  notAfter: Date;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function fail(msg: string, cause?: unknown): never {
  throw new HoneygateError('HG_ERR_PKI', msg, cause === undefined ? undefined : { cause });
}

function read(path: string, what: string, prefix: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    return fail(`${prefix}${what} ${path}: ${(err as Error).message}`, err);
  }
}

/**
 * Reads and checks `files`, then builds the TLS context (TLS 1.3 only). With `role`, the
 * certificate must carry that role's extended key usage (hub: serverAuth, sensor:
 * clientAuth). `label` starts every message (e.g. the config key). Throws HG_ERR_PKI.
 */
export function loadTls(
  files: TlsFiles,
  opts: { role?: Role; label?: string; now?: number } = {},
): LoadedTls {
  const prefix = opts.label ? `${opts.label}: ` : '';
  const caPem = read(files.ca, 'CA', prefix);
  const certPem = read(files.cert, 'certificate', prefix);
  const keyPem = read(files.key, 'key', prefix);

  const caBlocks = caPem.toString('latin1').match(PEM_CERT) ?? [];
  if (caBlocks.length === 0) fail(`${prefix}CA ${files.ca}: no PEM certificate in it`);
  const cas = caBlocks.map((pem, i) => {
    try {
      return new X509Certificate(pem);
    } catch (err) {
      return fail(
        `${prefix}CA ${files.ca}: certificate ${i + 1} does not parse (${(err as Error).message})`,
        err,
      );
    }
  });
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    return fail(`${prefix}certificate ${files.cert}: not a PEM certificate (${(err as Error).message})`, err);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    return fail(`${prefix}key ${files.key}: not a PEM private key (${(err as Error).message})`, err);
  }
  if (!cert.checkPrivateKey(key)) {
    fail(`${prefix}key ${files.key} does not belong to certificate ${files.cert}`);
  }
  const info = describeCert(cert);
  if (!cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
    fail(
      `${prefix}certificate ${files.cert} (issuer ${info.issuer}) is not issued by the CA in ${files.ca} (${cas.map((c) => describeCert(c).subject).join('; ')}): issue it with that CA's \`honeygate pki issue\`, or point at the CA that issued it`,
    );
  }
  const now = opts.now ?? Date.now();
  if (now > info.notAfter.getTime()) {
    fail(
      `${prefix}certificate ${files.cert} expired ${info.notAfter.toISOString()}: issue a new one (honeygate pki issue ${info.name || 'NAME'} --force) and send SIGHUP`,
    );
  }
  if (now < info.notBefore.getTime()) {
    fail(
      `${prefix}certificate ${files.cert} is not valid before ${info.notBefore.toISOString()} (check the clock)`,
    );
  }
  if (opts.role) {
    const want = ROLE_USAGE[opts.role];
    if (!(cert.keyUsage ?? []).includes(want.oid)) {
      const has =
        info.role && info.role !== 'ca'
          ? `a ${info.role} certificate (${info.usages.join(', ')})`
          : `a certificate without ${want.name}`;
      fail(
        `${prefix}certificate ${files.cert} is ${has}; a ${opts.role} needs ${want.name}: honeygate pki issue ${info.name || 'NAME'} --role ${opts.role}`,
      );
    }
  }
  const options = { ca: caPem, cert: certPem, key: keyPem, minVersion: 'TLSv1.3' as const };
  let context: SecureContext;
  try {
    context = createSecureContext(options);
  } catch (err) {
    return fail(`${prefix}cannot use ${files.cert} and ${files.key}: ${(err as Error).message}`, err);
  }
  return { context, options, name: info.name, role: info.role, notAfter: info.notAfter };
}
