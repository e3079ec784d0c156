// `honeygate pki init|issue`: a farm's certificate authority and the hub's and sensors'
// certificates, made with @peculiar/x509 over Node's WebCrypto (no hand-written ASN.1, no
// openssl needed on a sensor). Keys are ECDSA P-256, signatures ECDSA with SHA-256: what
// TLS 1.3 and every current OpenSSL, Go and Node accept, and small enough for many sensors.
//
// Loaded only by the `pki` verb (src/cli/pki.ts imports it on demand): reflect-metadata,
// which @peculiar/x509's dependency tsyringe requires, patches the global Reflect, and the
// gateway has no business with that.
import 'reflect-metadata';
import { createPrivateKey, X509Certificate as NodeX509, randomBytes, webcrypto } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import * as x509 from '@peculiar/x509';
import { HoneygateError } from '../errors.js';
import { CERT_MODE, KEY_MODE, refuseOverwrite, writeFileAtomic } from './files.js';
import { caFiles, certFiles, checkName, ROLE_USAGE, type Role, type San } from './names.js';

const crypto = webcrypto as unknown as Crypto;
x509.cryptoProvider.set(crypto);

const KEY_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** Certificates start this much before now, so a sensor whose clock is a little behind accepts them. */
const BACKDATE_MS = 5 * 60_000;

export const CA_DAYS = 3650;
export const CERT_DAYS = 365;

export interface Made {
  cert: string; // path of the certificate
  key: string; // path of the private key (0600)
  subject: string;
  notAfter: Date;
}

/** A positive serial number of 128 random bits, as hex (RFC 5280: at most 20 octets, not negative). */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', key));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
}

/**
 * `pki init`: a CA key (DIR/ca.key, 0600) and its self-signed certificate (DIR/ca.crt),
 * valid `days`. Creates DIR (0700) when missing. Throws HG_ERR_PKI, also when either file
 * exists and not `force`.
 */
export async function initCa(opts: {
  dir: string;
  days?: number;
  name?: string;
  force?: boolean;
}): Promise<Made> {
  const files = caFiles(opts.dir);
  try {
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new HoneygateError('HG_ERR_PKI', `cannot create ${opts.dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  refuseOverwrite([files.key, files.cert], opts.force === true);
  const keys = await newKeys();
  const now = Date.now();
  // A name of its own per CA: two farms' CAs never look alike to a verifier building a chain.
  const cn = opts.name ?? `honeygate CA ${randomBytes(4).toString('hex')}`;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: [{ CN: [cn] }, { O: ['honeygate'] }],
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + (opts.days ?? CA_DAYS) * DAY_MS),
    signingAlgorithm: SIGN_ALG,
    keys,
    extensions: [
      // pathlen 0: it signs hub and sensor certificates, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
    ],
  });
  // The key first: a certificate without its key is useless, a key without its certificate harmless.
  writeFileAtomic(files.key, await keyPem(keys.privateKey), KEY_MODE);
  writeFileAtomic(files.cert, cert.toString('pem'), CERT_MODE);
  return { ...files, subject: cert.subject, notAfter: cert.notAfter };
}

/** Reads DIR's CA, checking that its key belongs to its certificate. Throws HG_ERR_PKI. */
async function loadCa(dir: string): Promise<{ cert: x509.X509Certificate; key: CryptoKey; node: NodeX509 }> {
  const files = caFiles(dir);
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const hint =
        code === 'ENOENT' ? ` (no CA in ${dir}: run \`honeygate pki init --dir ${dir}\` first)` : '';
      throw new HoneygateError('HG_ERR_PKI', `cannot read ${path}: ${(err as Error).message}${hint}`, {
        cause: err,
      });
    }
  };
  const certPem = read(files.cert);
  const keyPemText = read(files.key);
  let node: NodeX509;
  let cert: x509.X509Certificate;
  try {
    node = new NodeX509(certPem);
    cert = new x509.X509Certificate(certPem);
  } catch (err) {
    throw new HoneygateError(
      'HG_ERR_PKI',
      `${files.cert}: not a PEM certificate (${(err as Error).message})`,
      {
        cause: err,
      },
    );
  }
  if (!node.ca)
    throw new HoneygateError('HG_ERR_PKI', `${files.cert}: not a CA certificate (basicConstraints CA:FALSE)`);
  let keyObject: ReturnType<typeof createPrivateKey>;
  try {
    keyObject = createPrivateKey(keyPemText);
  } catch (err) {
    throw new HoneygateError(
      'HG_ERR_PKI',
      `${files.key}: not a PEM private key (${(err as Error).message})`,
      {
        cause: err,
      },
    );
  }
  if (!node.checkPrivateKey(keyObject)) {
    throw new HoneygateError('HG_ERR_PKI', `${files.key} does not belong to ${files.cert}`);
  }
  if (keyObject.asymmetricKeyType !== 'ec' || keyObject.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new HoneygateError(
      'HG_ERR_PKI',
      `${files.key}: not an ECDSA P-256 key (the kind \`pki init\` makes)`,
    );
  }
  const der = keyObject.export({ type: 'pkcs8', format: 'der' });
  const key = await crypto.subtle.importKey('pkcs8', der, KEY_ALG, false, ['sign']);
  return { cert, key, node };
}

/**
 * `pki issue NAME --role ROLE`: a key (DIR/NAME.key, 0600) and a certificate (DIR/NAME.crt)
 * signed by DIR's CA, valid `days`, with CN=NAME, OU=ROLE, the SANs DNS:NAME plus `sans`,
 * and the role's extended key usage (hub: serverAuth, sensor: clientAuth). Throws HG_ERR_PKI.
 */
export async function issueCert(opts: {
  dir: string;
  name: string;
  role: Role;
  days?: number;
  sans?: San[];
  force?: boolean;
}): Promise<Made & { issuer: string }> {
  let name: string;
  try {
    name = checkName(opts.name);
  } catch (err) {
    throw new HoneygateError('HG_ERR_PKI', (err as Error).message);
  }
  const files = certFiles(opts.dir, name);
  const ca = await loadCa(opts.dir);
  refuseOverwrite([files.key, files.cert], opts.force === true);
  const now = Date.now();
  const notAfter = new Date(now + (opts.days ?? CERT_DAYS) * DAY_MS);
  if (notAfter.getTime() > ca.cert.notAfter.getTime()) {
    throw new HoneygateError(
      'HG_ERR_PKI',
      `--days ${opts.days ?? CERT_DAYS} would outlive the CA, which expires ${ca.cert.notAfter.toISOString()}: ask for fewer days, or make a new CA`,
    );
  }
  if (ca.cert.notAfter.getTime() < now) {
    throw new HoneygateError('HG_ERR_PKI', `the CA expired ${ca.cert.notAfter.toISOString()}`);
  }
  const seen = new Set<string>();
  const names = [{ type: 'dns' as const, value: name }, ...(opts.sans ?? [])].filter((s) => {
    const k = `${s.type}:${s.value.toLowerCase()}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  const keys = await newKeys();
  const usage = ROLE_USAGE[opts.role];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: [{ CN: [name] }, { OU: [opts.role] }, { O: ['honeygate'] }],
    issuer: ca.cert.subjectName,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter,
    signingAlgorithm: SIGN_ALG,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([usage.oid], false),
      new x509.SubjectAlternativeNameExtension(
        names.map((s) => ({ type: s.type === 'dns' ? ('dns' as const) : ('ip' as const), value: s.value })),
        false,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey, false, crypto),
    ],
  });
  writeFileAtomic(files.key, await keyPem(keys.privateKey), KEY_MODE);
  writeFileAtomic(files.cert, cert.toString('pem'), CERT_MODE);
  return { ...files, subject: cert.subject, issuer: cert.issuer, notAfter: cert.notAfter };
}
