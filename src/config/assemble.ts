// Assembly: the checked raw document -> the defaulted, typed Config (types.ts). Runs only
// when checks.ts found no problem, so nothing here reports one.
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { assembleAction, DEFAULT_CAPTURE } from '../actions/definitions/index.js';
import { toContain } from '../contain/config.js';
import { assembleNats } from '../fleet/config.js';
import { assembleRecord, assembleRecordings } from '../record/config.js';
import { assembleTunnelDial, assembleTunnelListen } from '../tunnel/config.js';
import { expandBind, type Parsed, workerCount } from './checks.js';
import type { RawBackend, RawListener, RawRoute } from './schema.js';
import type { BackendConfig, Config, EventsConfig, ListenerConfig, Route, RouteMatch } from './types.js';

export { DEFAULT_CAPTURE } from '../actions/definitions/index.js';

function toListener(raw: RawListener, baseDir: string): ListenerConfig {
  const ap = raw.acceptProxy;
  return {
    name: raw.name,
    transport: raw.transport,
    bind: expandBind(raw),
    acceptProxy: ap ? { versions: [...new Set(ap.versions)], from: ap.from, timeoutMs: ap.timeout } : null,
    originalDst: raw.originalDst,
    tproxy: raw.tproxy
      ? {
          port: raw.tproxy.port,
          addresses: raw.tproxy.address,
          divert: raw.divert
            ? {
                interfaces: raw.divert.interface,
                addresses: raw.divert.addresses ?? null,
                ports: raw.divert.ports,
                exclude: raw.divert.exclude,
              }
            : null,
        }
      : null,
    ...(raw.tunnel ? { tunnel: assembleTunnelListen(raw.tunnel, baseDir) } : {}),
  };
}

function toMatch(raw: RawRoute['match']): RouteMatch | null {
  if (!raw) return null;
  const m: RouteMatch = {
    listeners: raw.listeners ?? null,
    dstPorts: raw.dstPorts ?? null,
    dstAddresses: raw.dstAddresses ?? null,
    srcAddresses: raw.srcAddresses ?? null,
    protocols: raw.protocol ?? null,
    ...(raw.sensors ? { sensors: raw.sensors } : {}),
  };
  // `match: {}` restricts nothing: the same as no match, a default rule.
  return Object.values(m).every((v) => v === null) ? null : m;
}

function toBackend(name: string, b: RawBackend, baseDir: string): BackendConfig {
  return {
    name,
    servers: b.servers ?? [],
    // DNAT keeps the attacker's address: a kernel backend is transparent, also for the flows
    // user space forwards to it (bind listeners, or the kernel's map left empty by health checks)
    source: b.engine === 'kernel' ? 'transparent' : b.source,
    balance: b.balance,
    health: b.health
      ? {
          intervalMs: b.health.interval,
          timeoutMs: b.health.timeout,
          rise: b.health.rise,
          fall: b.health.fall,
        }
      : null,
    // A sensor whose hub is unreachable still answers: capture unless told otherwise.
    fallback: b.fallback ?? (b.tunnel ? 'capture' : null),
    ...(b.record ? { record: assembleRecord(b.record) } : {}),
    connectTimeoutMs: b.connectTimeout,
    retries: b.retries,
    ...(b.tunnel ? { tunnel: assembleTunnelDial(b.tunnel, baseDir) } : {}),
    engine: b.engine,
  };
}

/** events.recordings with its defaults (the directory beside the SQLite store). */
function recordingsOf(events: Checked['events'], baseDir: string) {
  return assembleRecordings(
    events.recordings,
    baseDir,
    events.sqlite === null ? null : resolve(baseDir, events.sqlite),
  );
}

/** The events section; relative sink paths resolve against `baseDir` (the config file's directory). */
export function assembleEvents(events: Checked['events'], baseDir: string): EventsConfig {
  return {
    sensor: events.sensor ?? hostname(),
    sqlite: events.sqlite === null ? null : resolve(baseDir, events.sqlite),
    jsonl: events.jsonl === null ? null : resolve(baseDir, events.jsonl),
    createDirectories: events.createDirectories,
    updateIntervalMs: events.updateInterval,
    queueSize: events.queueSize,
    batchMs: events.batch,
    retention:
      events.retention && (events.retention.maxAge !== undefined || events.retention.maxSize !== undefined)
        ? { maxAgeMs: events.retention.maxAge ?? null, maxBytes: events.retention.maxSize ?? null }
        : null,
    ...(events.nats ? { nats: assembleNats(events.nats, baseDir) } : {}),
    ...(events.enrich && (events.enrich.country || events.enrich.asn)
      ? {
          enrich: {
            country: events.enrich.country ? resolve(baseDir, events.enrich.country) : null,
            asn: events.enrich.asn ? resolve(baseDir, events.enrich.asn) : null,
          },
        }
      : {}),
    ...(events.recordings ? { recordings: recordingsOf(events, baseDir) } : {}),
    scan: {
      enabled: events.scan.enabled,
      ports: events.scan.ports,
      addresses: events.scan.addresses,
      idleMs: events.scan.idle,
      maxDurationMs: events.scan.maxDuration,
      maxAddresses: events.scan.maxAddresses,
      maxSources: events.scan.maxSources,
    },
  };
}

/** The sections of a document `checkDocument` passed, every part present. */
export type Checked = Parsed & Required<Pick<Parsed, 'limits' | 'events' | 'log' | 'firewall' | 'workers'>>;

/** The Config of a checked document; relative sink paths resolve against `baseDir`. */
export function assemble(p: Checked, baseDir: string): Config {
  const { limits, events, admin, firewall, log, workers } = p;
  const listeners = p.listeners.map((l) => toListener(l.raw, baseDir));
  const routes: Route[] = p.routes.map(({ index, raw: r, action }) => ({
    index,
    name: r.name ?? `#${index}`,
    match: toMatch(r.match),
    action: assembleAction(action!, r[action!]),
    ...(r.record ? { record: assembleRecord(r.record) } : {}),
  }));
  if (routes.length === 0) routes.push({ index: 0, name: '#0', match: null, action: DEFAULT_CAPTURE });
  const backends = new Map<string, BackendConfig>();
  for (const [name, b] of p.backends) backends.set(name, toBackend(name, b, baseDir));
  return {
    listeners,
    routes,
    backends,
    limits: {
      maxConnections: limits.maxConnections,
      perSource: limits.perSource,
      perSourceRate: limits.perSourceRate,
      idleTimeoutMs: limits.idleTimeout,
      maxDurationMs: limits.maxDuration,
      maxBytesIn: limits.maxBytesIn,
      maxBytesOut: limits.maxBytesOut,
      firstBytes: limits.firstBytes,
      rejectLogIntervalMs: limits.rejectLogInterval,
      graceMs: limits.grace,
      udp: {
        idleTimeoutMs: limits.udp.idleTimeout,
        maxFlows: limits.udp.maxFlows,
        amplification: { ...limits.amplification },
      },
    },
    events: withRecordings(assembleEvents(events, baseDir), events, baseDir, routes, backends),
    admin: admin ? { listen: admin.listen, token: admin.token } : null,
    firewall: {
      mark: firewall.mark,
      mask: firewall.mask ?? firewall.mark,
      table: firewall.table,
      rulePriority: firewall.rulePriority,
      checkIntervalMs: firewall.checkInterval,
      kernelMark: firewall.kernelMark,
    },
    contain: toContain(p.contain),
    log,
    workers: workerCount(workers),
    user: p.identity ?? null,
  };
}

/** A config that records sessions gets events.recordings' defaults when it has no such section. */
function withRecordings(
  assembled: EventsConfig,
  events: Checked['events'],
  baseDir: string,
  routes: Route[],
  backends: Map<string, BackendConfig>,
): EventsConfig {
  if (assembled.recordings) return assembled;
  const records = routes.some((r) => r.record) || [...backends.values()].some((b) => b.record);
  return records ? { ...assembled, recordings: recordingsOf(events, baseDir) } : assembled;
}
