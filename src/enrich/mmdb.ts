// Enrichment: the country and autonomous system of an event's source address, from
// MaxMind-format databases the operator supplies (events.enrich: GeoLite2/GeoIP2 Country or
// City for the country, GeoLite2/GeoIP2 ASN for the AS; any MMDB with the same record
// layout works, e.g. DB-IP's lite files). Read with mmdb-lib, whole into memory.
//
// Lookups run where the recorder hands a batch to the sinks (events/recorder.ts), never on
// the data path, and are cached per source address: a scanner's thousand flows cost one
// lookup per database.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Reader, type Response } from 'mmdb-lib';
import type { EnrichConfig } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import type { FlowEvent, SourceGeo } from '../events/event.js';
import { mmdbProblem } from './check.js';

/** Sources remembered; past this the oldest is forgotten (a Map keeps insertion order). */
const CACHE_SIZE = 65_536;

/** One database, read whole. Throws HG_ERR_CONFIG naming the key and the file. */
function openDb(path: string, key: string): Reader<Response> {
  const problem = mmdbProblem(path);
  if (problem) throw new HoneygateError('HG_ERR_CONFIG', `events.enrich.${key}: ${problem}`);
  let reader: Reader<Response>;
  try {
    const file = readFileSync(path);
    reader = new Reader<Response>(file);
    // mmdb-lib trusts the metadata: a file cut short (a download or copy that stopped) would
    // only fail, or answer garbage, at lookups. The tree and its 16-byte separator must fit.
    const { searchTreeSize, nodeCount, recordSize } = reader.metadata;
    if (!(nodeCount > 0) || ![24, 28, 32].includes(recordSize) || searchTreeSize + 16 > file.length)
      throw new Error(
        `its search tree (${nodeCount} nodes of ${recordSize}-bit records) does not fit in the file`,
      );
    reader.get('0.0.0.0'); // one walk down the tree: a broken pointer throws here, not on the first event
    reader.get('::');
  } catch (err) {
    throw new HoneygateError(
      'HG_ERR_CONFIG',
      `events.enrich.${key}: "${path}" is not a usable MaxMind DB file: ${(err as Error).message}`,
      { cause: err },
    );
  }
  // The two files swapped is an easy slip, and would only ever look up nothing.
  const type = String(reader.metadata.databaseType ?? '');
  const wrong =
    key === 'asn'
      ? /country|city/i.test(type) && !/asn/i.test(type)
      : /asn/i.test(type) && !/country|city/i.test(type);
  if (wrong) {
    const want = key === 'asn' ? 'an ASN database' : 'a Country or City database';
    throw new HoneygateError(
      'HG_ERR_CONFIG',
      `events.enrich.${key}: "${path}" is a ${type} database; ${key} wants ${want}`,
    );
  }
  return reader;
}

interface CountryRecord {
  country?: { iso_code?: string };
  registered_country?: { iso_code?: string };
}
interface AsnRecord {
  autonomous_system_number?: number;
  autonomous_system_organization?: string;
}

export class Enricher {
  private readonly cache = new Map<string, SourceGeo | null>();
  /** Lookups that failed on a broken record (counted, never thrown). */
  failures = 0;

  private constructor(
    private readonly country: Reader<Response> | null,
    private readonly asn: Reader<Response> | null,
    readonly files: { country: string | null; asn: string | null },
  ) {}

  /** The databases `cfg` names, read now (null: no enrichment). Throws HG_ERR_CONFIG on a missing or broken file. */
  static open(cfg: EnrichConfig | null | undefined): Enricher | null {
    if (!cfg || (!cfg.country && !cfg.asn)) return null;
    const country = cfg.country ? openDb(cfg.country, 'country') : null;
    const asn = cfg.asn ? openDb(cfg.asn, 'asn') : null;
    return new Enricher(country, asn, { country: cfg.country, asn: cfg.asn });
  }

  /** The country and AS of `ip`; null for a non-address or one neither database knows. Never throws. */
  lookup(ip: string): SourceGeo | null {
    const hit = this.cache.get(ip);
    if (hit !== undefined) return hit;
    const geo = isIP(ip) ? this.find(ip) : null;
    if (this.cache.size >= CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(ip, geo);
    return geo;
  }

  /** Sets `geo` on every event of the batch whose source it can name. Never throws. */
  apply(events: FlowEvent[]): void {
    for (const e of events) {
      if (e.geo !== undefined || !e.src?.ip) continue;
      const geo = this.lookup(e.src.ip);
      if (geo) e.geo = geo;
    }
  }

  private find(ip: string): SourceGeo | null {
    let country: string | null = null;
    let asn: number | null = null;
    let asOrg: string | null = null;
    try {
      const c = this.country?.get(ip) as CountryRecord | null | undefined;
      const code = c?.country?.iso_code ?? c?.registered_country?.iso_code;
      if (typeof code === 'string' && /^[A-Z]{2}$/.test(code)) country = code;
    } catch {
      this.failures++;
    }
    try {
      const a = this.asn?.get(ip) as AsnRecord | null | undefined;
      const n = a?.autonomous_system_number;
      if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) asn = n;
      const org = a?.autonomous_system_organization;
      if (typeof org === 'string' && org !== '') asOrg = org.slice(0, 256);
    } catch {
      this.failures++;
    }
    return country === null && asn === null && asOrg === null ? null : { country, asn, asOrg };
  }
}
