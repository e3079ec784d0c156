// The tunnel's two config sections: a hub's listener `tunnel:` (where sensors dial in) and a
// sensor's backend `tunnel:` (the hub it dials out to). Raw shapes (zod) and defaulted types;
// certificate paths resolve against the config's directory. Imports nothing of the data path.
import { resolve } from 'node:path';
import type { z } from 'zod';
import type { TunnelDial, TunnelListen, TunnelTls } from '../config/types.js';
import { conv, describe, list, nonEmptyText, obj, positiveDuration, text } from '../config/zod.js';
import { normalizeIp } from '../net/address.js';

/** "0.0.0.0:4443", "[::]:4443": a literal address with a port (0 only in tests). */
function listenAddress(v: unknown): { host: string; port: number } {
  const s = text(v);
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]]+):(\d{1,5})$/.exec(s);
  const host = m ? normalizeIp(m[1]!) : null;
  if (!m || !host || Number(m[2]) > 65535)
    throw new Error(`invalid address ${describe(v)} (ADDRESS:PORT, IPv6 as [ADDRESS]:PORT)`);
  return { host, port: Number(m[2]) };
}

/** "hub.example.net:4443", "203.0.113.5:4443", "[2001:db8::5]:4443". */
function hubAddress(v: unknown): { host: string; port: number } {
  const s = text(v);
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535 || (s.startsWith('[') && !normalizeIp(m[1]!)))
    throw new Error(`invalid hub ${describe(v)} (HOST:PORT, a name or an address; IPv6 as [ADDRESS]:PORT)`);
  return { host: normalizeIp(m[1]!) ?? m[1]!.toLowerCase(), port };
}

/** A certificate name as the hub lists it: what `pki issue NAME` puts in CN and subjectAltName. */
function sensorName(v: unknown): string {
  const s = nonEmptyText(v);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(s))
    throw new Error(`invalid sensor name ${describe(v)} (letters, digits, '.', '_', '-')`);
  return s;
}

const tlsShape = {
  ca: conv(nonEmptyText),
  cert: conv(nonEmptyText),
  key: conv(nonEmptyText),
};

export const tunnelListenSchema = obj({
  listen: conv(listenAddress),
  ...tlsShape,
  sensors: list(sensorName, { min: 1 }),
  headerTimeout: conv(positiveDuration).default(5000),
});

export const tunnelDialSchema = obj({
  hub: conv(hubAddress),
  ...tlsShape,
  serverName: conv(nonEmptyText).optional(),
});

export const sensorsMatch = list(sensorName, { min: 1 });

function tlsOf(raw: { ca: string; cert: string; key: string }, baseDir: string): TunnelTls {
  return { ca: resolve(baseDir, raw.ca), cert: resolve(baseDir, raw.cert), key: resolve(baseDir, raw.key) };
}

export function assembleTunnelListen(
  raw: z.output<typeof tunnelListenSchema>,
  baseDir: string,
): TunnelListen {
  return {
    listen: raw.listen,
    tls: tlsOf(raw, baseDir),
    sensors: [...new Set(raw.sensors)],
    headerTimeoutMs: raw.headerTimeout,
  };
}

export function assembleTunnelDial(raw: z.output<typeof tunnelDialSchema>, baseDir: string): TunnelDial {
  return { hub: raw.hub, tls: tlsOf(raw, baseDir), serverName: raw.serverName ?? raw.hub.host };
}
