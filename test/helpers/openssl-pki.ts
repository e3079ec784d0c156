// A throw-away CA and certificates made with the openssl CLI, for the tunnel tests: each
// certificate's name is its CN and a DNS subjectAltName (plus IP 127.0.0.1, so a sensor can
// dial a hub on loopback by address), usable for both TLS server and client auth.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface TestCa {
  dir: string;
  ca: string; // the CA certificate's path
  /** Issues NAME's certificate and key under the CA; returns their paths. */
  issue(name: string, opts?: { days?: number; file?: string }): { cert: string; key: string };
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA named `name` in `dir` (created if missing). */
export function makeCa(dir: string, name = 'test-ca'): TestCa {
  fs.mkdirSync(dir, { recursive: true });
  const ca = path.join(dir, `${name}.pem`);
  const caKey = path.join(dir, `${name}-key.pem`);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      caKey,
      '-out',
      ca,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  return {
    dir,
    ca,
    issue(leaf, opts = {}) {
      const base = path.join(dir, opts.file ?? leaf);
      const ext = `${base}.ext`;
      fs.writeFileSync(
        ext,
        `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:${leaf},IP:127.0.0.1\n`,
      );
      openssl(
        ['req', '-new', ...ec, '-keyout', `${base}-key.pem`, '-out', `${base}.csr`, '-subj', `/CN=${leaf}`],
        dir,
      );
      openssl(
        [
          'x509',
          '-req',
          '-in',
          `${base}.csr`,
          '-CA',
          ca,
          '-CAkey',
          caKey,
          '-CAcreateserial',
          '-out',
          `${base}.pem`,
          '-days',
          String(opts.days ?? 2),
          '-extfile',
          ext,
        ],
        dir,
      );
      return { cert: `${base}.pem`, key: `${base}-key.pem` };
    },
  };
}
