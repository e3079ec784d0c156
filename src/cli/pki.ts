// `honeygate pki init|issue|show`: the farm's certificate authority and the certificates of
// its hub and sensors for the mutual-TLS tunnel (docs/pki.md). Exit 0 ok, 1 a file could not
// be read or written (HG_ERR_PKI), 2 usage: a bad name, --days, --san or --role.
import { type Command, Option } from 'commander';
import { HoneygateError } from '../errors.js';
import { checkName, parseDays, parseSans, ROLES, type Role, type San } from '../pki/names.js';
import { describeCert, formatCert, readCert } from '../pki/show.js';

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);

/** Our errors become one line and exit 1; a usage error (thrown by a parser) exit 2; anything else keeps its stack. */
async function guarded(verb: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    if (e instanceof UsageError) {
      err(`honeygate pki ${verb}: ${e.message}`);
      process.exitCode = 2;
    } else if (e instanceof HoneygateError) {
      err(`honeygate pki ${verb}: ${e.message}`);
      process.exitCode = 1;
    } else {
      err(`honeygate pki ${verb}: ${(e as Error).stack ?? e}`);
      process.exitCode = 1;
    }
  }
}

class UsageError extends Error {}

/** Runs a parser of ../pki/names.ts; its Error becomes a usage error. */
function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

const day = (d: Date) => d.toISOString().slice(0, 10);

export function register(program: Command): void {
  const pki = program
    .command('pki')
    .description(
      "the farm's certificate authority and its hub and sensor certificates for the mutual-TLS tunnel",
    );

  pki
    .command('init')
    .description('create a CA: DIR/ca.key (mode 0600, keep it off the sensors) and DIR/ca.crt (self-signed)')
    .requiredOption('--dir <dir>', 'the PKI directory (created with mode 0700 if missing)')
    .option('--days <n>', 'validity in days (default 3650)')
    .option('--name <cn>', 'the CA\'s common name (default "honeygate CA" and 8 random hex digits)')
    .option('--force', 'replace an existing CA (every certificate it issued stops verifying)')
    .action((opts: { dir: string; days?: string; name?: string; force?: boolean }) =>
      guarded('init', async () => {
        const days = opts.days === undefined ? undefined : usage(() => parseDays(opts.days!));
        if (opts.name !== undefined && opts.name.trim() === '') throw new UsageError('--name is empty');
        const { initCa } = await import('../pki/ca.js');
        const made = await initCa({ dir: opts.dir, days, name: opts.name, force: opts.force === true });
        out(`CA ${made.subject}, expires ${day(made.notAfter)}`);
        out(`  certificate ${made.cert}`);
        out(`  key         ${made.key} (mode 0600: keep it on this machine only)`);
        out(
          `next: honeygate pki issue NAME --role hub --dir ${opts.dir} --san HUB-ADDRESS, and --role sensor for each sensor`,
        );
      }),
    );

  pki
    .command('issue')
    .description(
      "issue a certificate signed by DIR's CA: DIR/NAME.crt and DIR/NAME.key (0600), CN=NAME and DNS:NAME, serverAuth for a hub, clientAuth for a sensor",
    )
    .argument(
      '<name>',
      "the hub's or sensor's name (letters, digits, '-', '.'; e.g. sensor-fra1): the sensor name events carry",
    )
    .addOption(
      new Option('--role <role>', 'hub (serves the tunnel) or sensor (dials it)')
        .choices(ROLES)
        .makeOptionMandatory(),
    )
    .requiredOption('--dir <dir>', 'the PKI directory holding ca.crt and ca.key')
    .option('--days <n>', 'validity in days (default 365; not beyond the CA)')
    .option(
      '--san <names...>',
      "more subject alternative names: DNS names or IP addresses (DNS:x, IP:y, or bare; comma-separated or repeated); the hub's address as sensors dial it",
    )
    .option('--force', 'replace an existing NAME.crt and NAME.key (a renewal)')
    .action(
      (name: string, opts: { role: Role; dir: string; days?: string; san?: string[]; force?: boolean }) =>
        guarded('issue', async () => {
          usage(() => checkName(name));
          const days = opts.days === undefined ? undefined : usage(() => parseDays(opts.days!));
          const sans: San[] = usage(() => (opts.san ?? []).flatMap(parseSans));
          const { issueCert } = await import('../pki/ca.js');
          const made = await issueCert({
            dir: opts.dir,
            name,
            role: opts.role,
            days,
            sans,
            force: opts.force === true,
          });
          const info = describeCert(readCert(made.cert));
          out(`${opts.role} certificate ${name}, expires ${day(made.notAfter)}`);
          out(`  certificate ${made.cert}`);
          out(`  key         ${made.key} (mode 0600)`);
          out(`  names       ${info.sans.join(', ')}`);
          out(`  issuer      ${info.issuer}`);
        }),
    );

  pki
    .command('show')
    .description("print a certificate's name, role, issuer, expiry and names")
    .argument('<file>', 'a PEM certificate (e.g. DIR/sensor-fra1.crt)')
    .option('--ca <file>', 'also check that this CA certificate issued it')
    .action((file: string, opts: { ca?: string }) =>
      guarded('show', async () => {
        const cert = readCert(file);
        let chain: string | undefined;
        if (opts.ca !== undefined) {
          const ca = readCert(opts.ca);
          const ok = cert.checkIssued(ca) && cert.verify(ca.publicKey);
          chain = ok ? `issued by ${opts.ca}` : `NOT issued by ${opts.ca}`;
          if (!ok) process.exitCode = 1;
        }
        out(formatCert(describeCert(cert), { chain }));
      }),
    );
}
