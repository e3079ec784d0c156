// #15 item 4: `honeygate pki init|issue|show` as an operator uses it. Certificates from the
// command complete a mutual-TLS handshake over real sockets (node:tls, TLS 1.3, the hub
// requiring client certificates), a sensor certificate of another farm's CA is refused,
// `openssl verify` accepts them for their purpose, and expiry and roles are what was asked.
// Also loadTls(), which the tunnel uses, on the same files.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { issueCert } from '../../src/pki/ca.js';
import { loadTls } from '../../src/pki/load.js';
import { checkName, parseDays, parseSans } from '../../src/pki/names.js';
import { describeCert, formatCert, readCert } from '../../src/pki/show.js';
import { runCli } from '../helpers/honeygate.js';
import { needs, tempDir } from '../helpers/peers.js';

const DAY = 86_400_000;

const dir = tempDir('pki');
const farm = join(dir, 'farm');
const other = join(dir, 'other');
after(() => rmSync(dir, { recursive: true, force: true }));

/** `honeygate pki ARGS`, asserting the exit code; returns stdout. */
async function pki(args: string[], code = 0): Promise<{ stdout: string; stderr: string }> {
  const r = await runCli(['pki', ...args]);
  assert.equal(r.code, code, `honeygate pki ${args.join(' ')}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  return r;
}

const files = (d: string, name: string) => ({
  ca: join(d, 'ca.crt'),
  cert: join(d, `${name}.crt`),
  key: join(d, `${name}.key`),
});

/**
 * A hub (TLS 1.3 server requiring a client certificate of `hub.ca`) and one sensor dialing
 * it with `sensor`. Resolves to what each side saw: the hub the sensor's CN, the sensor
 * whether it trusted the hub; or how the client saw it end.
 */
async function handshake(
  hub: { ca: string; cert: string; key: string },
  sensor: { ca: string; cert: string; key: string },
  client: { servername?: string; loaded?: boolean; hubRejects?: boolean } = {},
): Promise<{ ok: true; peerName: string; authorized: boolean } | { ok: false; client: string }> {
  const hubTls = loadTls(hub, { role: 'hub' });
  // hubRejects false: the hub completes the handshake and tells the client why it would
  // refuse it (Node's server with rejectUnauthorized closes without a word).
  const server = tls.createServer({
    ...hubTls.options,
    requestCert: true,
    rejectUnauthorized: client.hubRejects ?? true,
  });
  server.on('secureConnection', (s) => {
    s.on('error', () => {});
    if (!s.authorized) s.end(`refused ${s.authorizationError}\n`);
    else s.end(`hello ${(s.getPeerCertificate() as { subject: { CN: string } }).subject.CN}\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const result = await new Promise<
      { ok: true; peerName: string; authorized: boolean } | { ok: false; client: string }
    >((resolve) => {
      // loaded: as the tunnel will, through loadTls(); else the files as they are, even a
      // certificate of another CA than the one the sensor trusts.
      const pems = client.loaded
        ? { secureContext: loadTls(sensor, { role: 'sensor' }).context }
        : {
            ca: readFileSync(sensor.ca),
            cert: readFileSync(sensor.cert),
            key: readFileSync(sensor.key),
            minVersion: 'TLSv1.3' as const,
          };
      const s = tls.connect({
        host: '127.0.0.1',
        port,
        servername: client.servername ?? 'hub.example.net',
        ...pems,
      });
      let data = '';
      s.on('data', (c: Buffer) => {
        data += c.toString();
      });
      s.on('end', () => {
        const m = /^hello (.*)\n$/.exec(data);
        if (m) resolve({ ok: true, peerName: m[1]!, authorized: s.authorized });
        else resolve({ ok: false, client: `closed after ${JSON.stringify(data)}` });
      });
      s.on('error', (e) => resolve({ ok: false, client: e.message }));
    });
    return result;
  } finally {
    await new Promise((r) => server.close(r));
  }
}

describe('honeygate pki', () => {
  before(async () => {
    // Two farms side by side (the second `pki init` is another farm's CA, with a sensor of
    // the same name); each command waits only for its own CA.
    await Promise.all([
      (async () => {
        await pki(['init', '--dir', farm]);
        await Promise.all([
          pki([
            'issue',
            'hub.example.net',
            '--role',
            'hub',
            '--dir',
            farm,
            '--san',
            '127.0.0.1,IP:2001:db8::1',
          ]),
          pki(['issue', 'sensor-fra1', '--role', 'sensor', '--dir', farm, '--days', '30']),
        ]);
      })(),
      (async () => {
        await pki(['init', '--dir', other]);
        await pki(['issue', 'sensor-fra1', '--role', 'sensor', '--dir', other]);
      })(),
    ]);
  });

  it('writes keys 0600 and certificates 0644, and refuses to overwrite without --force', async () => {
    for (const f of ['ca.key', 'hub.example.net.key', 'sensor-fra1.key'])
      assert.equal(statSync(join(farm, f)).mode & 0o777, 0o600, f);
    for (const f of ['ca.crt', 'hub.example.net.crt', 'sensor-fra1.crt'])
      assert.equal(statSync(join(farm, f)).mode & 0o777, 0o644, f);
    assert.equal(statSync(farm).mode & 0o777, 0o700, 'the directory pki init made');

    const caBefore = readFileSync(join(farm, 'ca.crt'), 'utf8');
    const again = await pki(['init', '--dir', farm], 1);
    assert.match(again.stderr, /HG_ERR_PKI|ca\.key exists \(pass --force to replace it\)/);
    assert.equal(readFileSync(join(farm, 'ca.crt'), 'utf8'), caBefore, 'the CA is untouched');

    const certBefore = readFileSync(join(farm, 'sensor-fra1.crt'), 'utf8');
    const twice = await pki(['issue', 'sensor-fra1', '--role', 'sensor', '--dir', farm], 1);
    assert.match(twice.stderr, /sensor-fra1\.key exists \(pass --force to replace it\)/);
    assert.equal(readFileSync(join(farm, 'sensor-fra1.crt'), 'utf8'), certBefore);

    // A renewal: --force replaces both, with a new key.
    const keyBefore = readFileSync(join(farm, 'sensor-fra1.key'), 'utf8');
    await pki(['issue', 'sensor-fra1', '--role', 'sensor', '--dir', farm, '--days', '30', '--force']);
    assert.notEqual(readFileSync(join(farm, 'sensor-fra1.key'), 'utf8'), keyBefore);
    assert.equal(statSync(join(farm, 'sensor-fra1.key')).mode & 0o777, 0o600);
  });

  it('names, roles and expiry are what was asked', () => {
    const now = Date.now();
    const hub = new X509Certificate(readFileSync(join(farm, 'hub.example.net.crt')));
    assert.match(hub.subject, /^CN=hub\.example\.net$/m);
    assert.deepEqual(hub.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth only');
    assert.equal(
      hub.subjectAltName,
      'DNS:hub.example.net, IP Address:127.0.0.1, IP Address:2001:DB8:0:0:0:0:0:1',
    );
    assert.ok(Math.abs(new Date(hub.validTo).getTime() - (now + 365 * DAY)) < 60_000, hub.validTo);
    assert.equal(hub.ca, false);

    const sensor = new X509Certificate(readFileSync(join(farm, 'sensor-fra1.crt')));
    assert.match(sensor.subject, /^CN=sensor-fra1$/m);
    assert.match(sensor.subject, /^OU=sensor$/m);
    assert.deepEqual(sensor.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'clientAuth only');
    assert.equal(sensor.subjectAltName, 'DNS:sensor-fra1');
    assert.ok(Math.abs(new Date(sensor.validTo).getTime() - (now + 30 * DAY)) < 60_000, sensor.validTo);

    const ca = new X509Certificate(readFileSync(join(farm, 'ca.crt')));
    assert.equal(ca.ca, true);
    assert.ok(Math.abs(new Date(ca.validTo).getTime() - (now + 3650 * DAY)) < 120_000, ca.validTo);
    assert.equal(sensor.issuer, ca.subject);
    const otherCa = new X509Certificate(readFileSync(join(other, 'ca.crt')));
    assert.notEqual(otherCa.subject, ca.subject, 'each CA has a name of its own');
  });

  it('openssl verify -CAfile accepts them for their purpose, and not the other way round', {
    skip: needs('openssl'),
  }, () => {
    const verify = (cert: string, purpose: string, ca = join(farm, 'ca.crt')) => {
      try {
        return execFileSync('openssl', ['verify', '-CAfile', ca, '-purpose', purpose, cert], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        }).trim();
      } catch (e) {
        return `failed: ${(e as { stdout: string; stderr: string }).stdout}${(e as { stderr: string }).stderr}`;
      }
    };
    const hub = join(farm, 'hub.example.net.crt');
    const sensor = join(farm, 'sensor-fra1.crt');
    assert.equal(verify(hub, 'sslserver'), `${hub}: OK`);
    assert.equal(verify(sensor, 'sslclient'), `${sensor}: OK`);
    assert.match(verify(hub, 'sslclient'), /unsuitable certificate purpose/);
    assert.match(verify(sensor, 'sslserver'), /unsuitable certificate purpose/);
    assert.match(verify(join(other, 'sensor-fra1.crt'), 'sslclient'), /failed/);
  });

  it('a hub and a sensor certificate complete a mutual-TLS 1.3 handshake', async () => {
    const r = await handshake(files(farm, 'hub.example.net'), files(farm, 'sensor-fra1'), { loaded: true });
    assert.deepEqual(r, { ok: true, peerName: 'sensor-fra1', authorized: true });
    // The hub's IP SAN serves a sensor dialing the address (no server name).
    const byIp = await handshake(files(farm, 'hub.example.net'), files(farm, 'sensor-fra1'), {
      servername: '',
    });
    assert.equal(byIp.ok, true, JSON.stringify(byIp));
  });

  it("the hub refuses a sensor certificate from another farm's CA", async () => {
    // The sensor trusts the hub (the farm's CA) but holds the other farm's certificate.
    const foreign = { ...files(other, 'sensor-fra1'), ca: join(farm, 'ca.crt') };
    const r = await handshake(files(farm, 'hub.example.net'), foreign);
    assert.equal(r.ok, false, JSON.stringify(r));
    if (!r.ok) assert.match(r.client, /closed after ""|socket hang up|ECONNRESET/, r.client);
    const why = await handshake(files(farm, 'hub.example.net'), foreign, { hubRejects: false });
    assert.equal(why.ok, false);
    if (!why.ok)
      assert.match(
        why.client,
        /^closed after "refused (UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\\n"$/,
      );
  });

  it('a sensor refuses a hub certificate from another CA, and a certificate of the wrong role', async () => {
    const r = await handshake(files(farm, 'hub.example.net'), {
      ...files(farm, 'sensor-fra1'),
      ca: join(other, 'ca.crt'),
    });
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.client, /unable to get local issuer certificate|self.signed/, r.client);
    // A sensor certificate used by a client is fine; used by a hub, loadTls says why not.
    assert.throws(
      () => loadTls(files(farm, 'sensor-fra1'), { role: 'hub' }),
      /sensor certificate \(clientAuth\); a hub needs serverAuth/,
    );
  });

  it('pki show prints name, role, issuer and expiry, and checks the issuer with --ca', async () => {
    const { stdout } = await pki(['show', join(farm, 'sensor-fra1.crt'), '--ca', join(farm, 'ca.crt')]);
    const ca = new X509Certificate(readFileSync(join(farm, 'ca.crt')));
    const caName = ca.subject.split('\n').join(', ');
    assert.match(stdout, /^name {7}sensor-fra1$/m);
    assert.match(stdout, /^role {7}sensor \(clientAuth\)$/m);
    assert.ok(stdout.includes(`issuer     ${caName}\n`), stdout);
    assert.match(stdout, /^expires {4}\d{4}-\d\d-\d\dT[\d:.]+Z \(30 days left\)$/m);
    assert.match(stdout, /^chain {6}issued by /m);
    assert.match(
      formatCert(describeCert(readCert(join(farm, 'hub.example.net.crt')))),
      /^role {7}hub \(serverAuth\)$/m,
    );
    const foreign = await pki(['show', join(other, 'sensor-fra1.crt'), '--ca', join(farm, 'ca.crt')], 1);
    assert.match(foreign.stdout, /^chain {6}NOT issued by /m);
  });

  it('clear errors: no CA in the directory, a bad name or role', async () => {
    const [none, bad, role] = await Promise.all([
      pki(['issue', 'sensor-x', '--role', 'sensor', '--dir', join(dir, 'empty')], 1),
      pki(['issue', 'bad/name', '--role', 'sensor', '--dir', farm], 2),
      pki(['issue', 'sensor-x', '--role', 'collector', '--dir', farm], 2),
    ]);
    assert.match(none.stderr, /no CA in .*empty: run `honeygate pki init --dir .*empty` first/);
    assert.match(bad.stderr, /invalid name "bad\/name": must be dot-separated labels/);
    assert.match(role.stderr, /Allowed choices are hub, sensor/);
    // The same parsers and checks, without a process each.
    assert.throws(() => checkName('ca'), /invalid name "ca": the CA's own files are ca\.crt and ca\.key/);
    assert.throws(() => checkName('-x'), /invalid name "-x"/);
    assert.throws(() => checkName(`${'a'.repeat(64)}.example`), /invalid name/);
    assert.deepEqual(parseSans('hub.example.net, IP:192.0.2.1,2001:db8::1,[2001:db8::2]'), [
      { type: 'dns', value: 'hub.example.net' },
      { type: 'ip', value: '192.0.2.1' },
      { type: 'ip', value: '2001:db8::1' },
      { type: 'ip', value: '2001:db8::2' },
    ]);
    assert.throws(
      () => parseSans('IP:300.1.2.3'),
      /invalid --san "IP:300\.1\.2\.3": not an IPv4 or IPv6 address/,
    );
    assert.throws(() => parseSans('*.example.net'), /invalid --san "\*\.example\.net"/);
    assert.throws(() => parseDays('40000'), /invalid --days "40000": a whole number of days from 1 to 36500/);
    assert.throws(() => parseDays('1.5'), /invalid --days/);
    await assert.rejects(
      issueCert({ dir: farm, name: 'hub2', role: 'hub', days: 5000 }),
      /--days 5000 would outlive the CA, which expires /,
    );
    assert.throws(() => readCert(join(dir, 'missing.crt')), /cannot read .*missing\.crt: ENOENT/);
  });

  it('loadTls names the file and the fault', () => {
    const hub = files(farm, 'hub.example.net');
    const loaded = loadTls(hub, { role: 'hub' });
    assert.equal(loaded.name, 'hub.example.net');
    assert.equal(loaded.role, 'hub');
    assert.throws(
      () => loadTls({ ...hub, key: join(farm, 'sensor-fra1.key') }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'HG_ERR_PKI');
        assert.match(
          e.message,
          /key .*sensor-fra1\.key does not belong to certificate .*hub\.example\.net\.crt/,
        );
        return true;
      },
    );
    assert.throws(
      () => loadTls({ ...hub, ca: join(other, 'ca.crt') }),
      /is not issued by the CA in .*other\/ca\.crt/,
    );
    assert.throws(() => loadTls({ ...hub, cert: join(farm, 'nope.crt') }), /certificate .*nope\.crt: ENOENT/);
    assert.throws(
      () => loadTls(hub, { role: 'hub', now: Date.now() + 400 * DAY }),
      /hub\.example\.net\.crt expired .*: issue a new one \(honeygate pki issue hub\.example\.net --force\)/,
    );
    assert.throws(
      () => loadTls(hub, { label: 'tunnel.tls', role: 'sensor' }),
      /^Error: |tunnel\.tls: certificate/,
    );
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    assert.throws(() => loadTls({ ...hub, ca: junk }), /CA .*junk\.pem: no PEM certificate in it/);
    assert.throws(() => loadTls({ ...hub, key: junk }), /key .*junk\.pem: not a PEM private key/);
  });
});
