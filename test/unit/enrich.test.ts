// events.enrich: country and AS of the source from MaxMind-format databases the tests write
// themselves (test/helpers/mmdb.ts; documentation address ranges, private-use AS numbers),
// read by mmdb-lib; the config check of the files; the store's columns and the filters.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfigText } from '../../src/config/load.js';
import { Enricher } from '../../src/enrich/mmdb.js';
import { queryEvents } from '../../src/events/query.js';
import { Recorder } from '../../src/events/recorder.js';
import { SqliteSink } from '../../src/events/sqlite.js';
import { createLogger } from '../../src/log.js';
import { sampleEvent } from '../helpers/events.js';
import { buildMmdb, TEST_NETWORKS, writeMmdb } from '../helpers/mmdb.js';

let dir: string;
let country: string;
let asn: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'hg-enrich-'));
  country = join(dir, 'country.mmdb');
  asn = join(dir, 'asn.mmdb');
  writeMmdb(country, 'GeoLite2-Country', TEST_NETWORKS.country);
  writeMmdb(asn, 'GeoLite2-ASN', TEST_NETWORKS.asn);
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('Enricher', () => {
  it('names the country and AS of IPv4 and IPv6 sources; unknown and non-addresses get nothing', () => {
    const e = Enricher.open({ country, asn })!;
    assert.deepEqual(e.lookup('192.0.2.77'), { country: 'DE', asn: 64500, asOrg: 'Example Networks A' });
    assert.deepEqual(e.lookup('198.51.100.7'), { country: 'US', asn: 64501, asOrg: 'Example Networks B' });
    // In the country database's /24, outside the ASN database's /25
    assert.deepEqual(e.lookup('198.51.100.200'), { country: 'US', asn: null, asOrg: null });
    // registered_country when the record has no country; a 32-bit AS number
    assert.deepEqual(e.lookup('2001:db8::7'), { country: 'NL', asn: 4_200_000_000, asOrg: null });
    assert.equal(e.lookup('203.0.113.9'), null);
    assert.equal(e.lookup('*'), null);
    assert.equal(e.lookup(''), null);
    assert.equal(Enricher.open(null), null);
    assert.equal(Enricher.open({ country: null, asn: null }), null);
  });

  it('either database alone works', () => {
    assert.deepEqual(Enricher.open({ country, asn: null })!.lookup('192.0.2.1'), {
      country: 'DE',
      asn: null,
      asOrg: null,
    });
    assert.deepEqual(Enricher.open({ country: null, asn })!.lookup('192.0.2.1'), {
      country: null,
      asn: 64500,
      asOrg: 'Example Networks A',
    });
  });

  it('sets geo on the events of a batch, leaving unknown sources and tallies over many sources alone', () => {
    const e = Enricher.open({ country, asn })!;
    const batch = [
      sampleEvent({ src: { ip: '192.0.2.5', port: 1 } }),
      sampleEvent({ src: { ip: '203.0.113.5', port: 1 } }),
      sampleEvent({ type: 'rejected', src: { ip: '*', port: 0 } }),
    ];
    e.apply(batch);
    assert.deepEqual(batch[0]!.geo, { country: 'DE', asn: 64500, asOrg: 'Example Networks A' });
    assert.equal(batch[1]!.geo, undefined);
    assert.equal(batch[2]!.geo, undefined);
  });

  it('a missing, a gzip-packed, a truncated and a swapped file are clear errors', () => {
    const missing = join(dir, 'nope.mmdb');
    assert.throws(() => Enricher.open({ country: missing, asn: null }), {
      code: 'HG_ERR_CONFIG',
      message: `invalid configuration: events.enrich.country: cannot open "${missing}": ENOENT`,
    });
    const packed = join(dir, 'packed.mmdb.gz');
    writeFileSync(packed, Buffer.from('1f8b0800000000000003', 'hex'));
    assert.throws(
      () => Enricher.open({ country: packed, asn: null }),
      /is not a MaxMind DB file \(no metadata marker/,
    );
    // The marker and metadata kept, the search tree cut: mmdb-lib refuses it
    const whole = buildMmdb('GeoLite2-Country', TEST_NETWORKS.country);
    const cut = join(dir, 'cut.mmdb');
    writeFileSync(cut, whole.subarray(whole.indexOf('\xab\xcd\xefMaxMind.com', 0, 'latin1') - 2));
    assert.throws(() => Enricher.open({ country: cut, asn: null }), { code: 'HG_ERR_CONFIG' });
    assert.throws(
      () => Enricher.open({ country: asn, asn: country }),
      /events.enrich.country: ".*asn.mmdb" is a GeoLite2-ASN database; country wants a Country or City database/,
    );
  });
});

describe('events.enrich in the config', () => {
  const yaml = (c: string, a: string) => `
listeners: [{ name: l, bind: "127.0.0.1:0" }]
routes: [{ capture: {} }]
events:
  sqlite: null
  enrich:
    country: ${c}
    asn: ${a}
`;

  it('takes both paths, relative to the config file', () => {
    const r = loadConfigText(yaml('country.mmdb', 'asn.mmdb'), { baseDir: dir, fileName: 'c.yaml' });
    assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
    assert.deepEqual(r.config.events.enrich, { country, asn });
  });

  it('a missing or non-MMDB file is a problem at its line, as FILE:LINE: key.path: message', () => {
    writeFileSync(join(dir, 'text.mmdb'), 'not a database\n');
    const r = loadConfigText(yaml('missing.mmdb', 'text.mmdb'), { baseDir: dir, fileName: 'c.yaml' });
    assert.ok(!r.ok);
    assert.deepEqual(r.errors, [
      `c.yaml:7: events.enrich.country: cannot open "${join(dir, 'missing.mmdb')}": ENOENT`,
      `c.yaml:8: events.enrich.asn: "${join(dir, 'text.mmdb')}" is not a MaxMind DB file (no metadata marker; a .mmdb.gz or .tar.gz must be unpacked first)`,
    ]);
  });
});

describe('enriched events in the store', () => {
  it('the recorder enriches each batch; events --country and --asn find them', async () => {
    const db = join(dir, 'events.db');
    const recorder = new Recorder([new SqliteSink(db)], {
      queueSize: 100,
      batchMs: 10_000,
      log: createLogger('silent', 'json'),
    });
    recorder.enricher = Enricher.open({ country, asn });
    recorder.record(sampleEvent({ src: { ip: '192.0.2.5', port: 1 } }));
    recorder.record(sampleEvent({ src: { ip: '198.51.100.9', port: 2 } }));
    recorder.record(sampleEvent({ src: { ip: '2001:db8::9', port: 3 } }));
    recorder.record(sampleEvent({ src: { ip: '203.0.113.9', port: 4 } }));
    await recorder.close();

    const de = queryEvents(db, { country: 'DE' });
    assert.deepEqual(
      de.map((e) => [e.src.ip, e.geo]),
      [['192.0.2.5', { country: 'DE', asn: 64500, asOrg: 'Example Networks A' }]],
    );
    assert.deepEqual(
      queryEvents(db, { asn: 4_200_000_000 }).map((e) => e.src.ip),
      ['2001:db8::9'],
    );
    assert.deepEqual(
      queryEvents(db, { country: 'US', asn: 64501 }).map((e) => e.src.ip),
      ['198.51.100.9'],
    );
    const unknown = queryEvents(db, { src: '203.0.113.9' });
    assert.equal(unknown.length, 1);
    assert.equal(unknown[0]!.geo, undefined);
  });

  it('a new database file replaces the old one for the next batch (what SIGHUP does)', () => {
    const next = join(dir, 'country2.mmdb');
    writeMmdb(next, 'GeoLite2-Country', [{ cidr: '192.0.2.0/24', data: { country: { iso_code: 'FR' } } }]);
    assert.equal(Enricher.open({ country, asn: null })!.lookup('192.0.2.1')?.country, 'DE');
    assert.equal(Enricher.open({ country: next, asn: null })!.lookup('192.0.2.1')?.country, 'FR');
  });
});
