// Prometheus metrics for one gateway and its recorder, in a registry of our own (never
// prom-client's global one, so tests and reloads can make as many as they like).
// Counts of finished flows come from the flowEnd diagnostics channel; everything else is
// read from the stats() snapshots at scrape time. Labels only ever carry names from the
// config (listener, route, backend, server) or our own enums (action, close reason, refusal
// reason, the classifiers' protocols), never an attacker's address: every label set is bounded.
// With worker processes this is the primary's registry: it publishes flowEnd for the events
// the workers send, its stats() sum theirs, and the process_* metrics are its own.
import diagnostics from 'node:diagnostics_channel';
import prom from 'prom-client';
import { PROTOCOLS } from '../classifiers/index.js';
import type { FlowEvent } from '../events/event.js';
import type { RecorderStats } from '../events/recorder.js';
import { type NatsSinkStats, openNatsSinks } from '../fleet/sink.js';
import { REFUSALS } from '../gateway/admit.js';
import { flowEnd } from '../gateway/flow.js';
import type { GatewayStats } from '../gateway/gateway.js';
import { conntrackTotals } from '../kernel/conntrack.js';
import { KERNEL_REFUSALS, kernelRefusedTotals } from '../kernel/refusals.js';

export interface MetricsSource {
  gateway: { stats(): GatewayStats };
  recorder: { stats(): RecorderStats };
  workers?: { running(): number; restarts(): number };
}

export interface Metrics {
  registry: prom.Registry;
  /** Stops counting flow events. The registry stays readable. */
  close(): void;
}

const PREFIX = 'honeygate_';

/** Distinct route names counted; beyond, "other" (routes come from the config: a guard, not a limit in use). */
const MAX_ROUTES = 1000;
const KNOWN_PROTOCOLS = new Set(PROTOCOLS);
const FLOW_LABELS = ['listener', 'route', 'action', 'protocol', 'close_reason'] as const;
type FlowLabel = (typeof FLOW_LABELS)[number];

// collectDefaultMetrics starts a GC observer and an event-loop-delay monitor that cannot be
// stopped; doing that once per process (not once per createMetrics) keeps them from piling up.
let processMetrics: prom.Registry | null = null;

function defaultMetrics(): prom.Metric[] {
  if (!processMetrics) {
    processMetrics = new prom.Registry();
    prom.collectDefaultMetrics({ register: processMetrics, prefix: PREFIX });
  }
  // Typed as plain descriptions, but at run time these are the metric objects themselves.
  return processMetrics.getMetricsAsArray() as unknown as prom.Metric[];
}

/** A counter whose value is a running total read from elsewhere at scrape time. */
function totalCounter(registry: prom.Registry, name: string, help: string, read: () => number): void {
  new prom.Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(Math.max(0, read()));
    },
  });
}

/**
 * One metric per row of `rows`, each a value per item of `items()` (read at scrape time, with
 * the item's labels): a 'gauge' set to it, a 'sum' gauge that adds the items sharing labels,
 * or a 'counter' that is a running total read from elsewhere. Reset at every scrape, so an
 * item gone (a tunnel after a reload, a sensor that left) disappears.
 */
function perItem<T, L extends string>(
  registry: prom.Registry,
  kind: 'gauge' | 'sum' | 'counter',
  labelNames: readonly L[],
  items: () => readonly (readonly [Record<L, string>, T])[],
  rows: readonly (readonly [name: string, help: string, read: (item: T) => number])[],
): void {
  for (const [name, help, read] of rows) {
    const config = { name: `${PREFIX}${name}`, help, labelNames, registers: [registry] };
    if (kind === 'counter') {
      new prom.Counter({
        ...config,
        collect() {
          this.reset();
          for (const [labels, item] of items()) this.inc(labels, read(item));
        },
      });
    } else {
      new prom.Gauge({
        ...config,
        collect() {
          this.reset();
          for (const [labels, item] of items()) {
            if (kind === 'sum') this.inc(labels, read(item));
            else this.set(labels, read(item));
          }
        },
      });
    }
  }
}

export function createMetrics(source: MetricsSource): Metrics {
  const registry = new prom.Registry();
  for (const m of defaultMetrics()) registry.registerMetric(m);

  // Counted here and handed to prom-client at scrape time: its inc() validates and hashes the
  // label object on every call, 0.9 against 0.3 µs per flow for these three counts.
  const flowCounts = new Map<string, { labels: Record<FlowLabel, string>; n: number }>();
  const flowBytes = { in: 0, out: 0 };
  new prom.Counter({
    name: `${PREFIX}flows_total`,
    help: 'Finished flows by listener, route, action, detected protocol and close reason.',
    labelNames: FLOW_LABELS,
    registers: [registry],
    collect() {
      this.reset();
      for (const { labels, n } of flowCounts.values()) this.inc(labels, n);
    },
  });
  new prom.Counter({
    name: `${PREFIX}flow_bytes_total`,
    help: 'Payload bytes of finished flows: in = attacker to gateway, out = gateway to attacker.',
    labelNames: ['direction'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ direction: 'in' }, flowBytes.in);
      this.inc({ direction: 'out' }, flowBytes.out);
    },
  });

  new prom.Gauge({
    name: `${PREFIX}open_flows`,
    help: 'Flows open now.',
    registers: [registry],
    collect() {
      this.set(source.gateway.stats().openFlows);
    },
  });
  new prom.Counter({
    name: `${PREFIX}refused_flows_total`,
    help: 'Flows refused at accept since start, by reason (admission limits, file descriptors run out).',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      const stats = source.gateway.stats();
      this.reset();
      const by = stats.refusedBy ?? {};
      // A source without the breakdown (an older worker): its total under limit-global.
      const known = REFUSALS.reduce((n, r) => n + (by[r] ?? 0), 0);
      for (const reason of REFUSALS) {
        const extra = reason === 'limit-global' ? Math.max(0, stats.refused - known) : 0;
        this.inc({ reason }, (by[reason] ?? 0) + extra);
      }
    },
  });

  // Session recordings (src/record/): present once a route or backend records.
  const recordings = () => source.gateway.stats().recordings;
  new prom.Gauge({
    name: `${PREFIX}recording_bytes`,
    help: 'Size of the session recordings on disk (events.recordings.maxSize bounds it).',
    registers: [registry],
    collect() {
      this.set(recordings()?.bytes ?? 0);
    },
  });
  new prom.Gauge({
    name: `${PREFIX}recording_suspended`,
    help: 'Whether session recording has stopped for want of disk space or a usable directory (1) or not (0).',
    registers: [registry],
    collect() {
      this.set(recordings()?.suspended ? 1 : 0);
    },
  });
  new prom.Counter({
    name: `${PREFIX}recordings_skipped_total`,
    help: 'Flows not recorded, or recorded only in part, for want of budget or disk space.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(recordings()?.skipped ?? 0);
    },
  });
  new prom.Counter({
    name: `${PREFIX}recordings_evicted_total`,
    help: 'Session recordings deleted, oldest first, to stay within maxSize and minFree.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(recordings()?.evicted ?? 0);
    },
  });

  const serverLabels = ['backend', 'server'] as const;
  const eachServer = (
    fn: (labels: { backend: string; server: string }, up: boolean, active: number) => void,
  ) => {
    for (const b of source.gateway.stats().backends) {
      for (const s of b.servers) fn({ backend: b.backend, server: s.server }, s.up, s.active);
    }
  };
  new prom.Gauge({
    name: `${PREFIX}server_up`,
    help: 'Whether a honeypot server passes its health checks (1) or not (0).',
    labelNames: serverLabels,
    registers: [registry],
    collect() {
      this.reset(); // servers dropped by a reload disappear
      eachServer((labels, up) => this.set(labels, up ? 1 : 0));
    },
  });
  new prom.Gauge({
    name: `${PREFIX}server_active_flows`,
    help: 'Flows forwarded to a honeypot server and still open.',
    labelNames: serverLabels,
    registers: [registry],
    collect() {
      this.reset();
      eachServer((labels, _up, active) => this.set(labels, active));
    },
  });

  // Tunnels (src/tunnel): a sensor's, one per tunnel backend; a hub's, one per connected sensor.
  const tunnelLabels = ['backend', 'hub'] as const;
  const tunnels = () =>
    (source.gateway.stats().tunnels ?? []).map((t) => [{ backend: t.backend, hub: t.hub }, t] as const);
  const hubs = () => (source.gateway.stats().hubs ?? []).map((h) => [{ listener: h.listener }, h] as const);
  perItem(registry, 'gauge', tunnelLabels, tunnels, [
    ['tunnel_up', "Whether the sensor's tunnel to its hub is up (1) or not (0).", (t) => (t.up ? 1 : 0)],
    ['tunnel_streams', 'Flows open on the tunnel (one HTTP/2 stream each).', (t) => t.streams],
    ['tunnel_buffered_bytes', "Bytes queued in the tunnel's open streams, both ways.", (t) => t.buffered],
  ]);
  perItem(registry, 'counter', tunnelLabels, tunnels, [
    ['tunnel_streams_opened_total', 'Streams (flows) opened on the tunnel.', (t) => t.opened],
    ['tunnel_reconnects_total', 'Tunnels to the hub set up again after the first.', (t) => t.reconnects],
  ]);
  perItem(registry, 'gauge', ['listener'], hubs, [
    ['hub_sensors', "Sensors connected to a hub's tunnel listener.", (h) => h.sensors.length],
  ]);
  // A sensor with more than one tunnel at the hub: its streams summed under one label set.
  const hubSensors = () =>
    (source.gateway.stats().hubs ?? []).flatMap((h) =>
      h.sensors.map((s) => [{ listener: h.listener, sensor: s.sensor }, s] as const),
    );
  perItem(registry, 'sum', ['listener', 'sensor'], hubSensors, [
    ['hub_streams', 'Flows open on the tunnels of one sensor at a hub.', (s) => s.streams],
  ]);
  perItem(registry, 'counter', ['listener'], hubs, [
    ['hub_streams_total', "Streams (flows) a hub's tunnel listener accepted.", (h) => h.streams],
    ['hub_refused_total', 'Tunnels a hub refused (another CA, a name not listed).', (h) => h.refused],
  ]);

  totalCounter(
    registry,
    `${PREFIX}conntrack_overruns_total`,
    'Times the conntrack event socket overran (ENOBUFS): kernel-routed flow records delayed, redelivered by the kernel (docs/kernel.md).',
    () => conntrackTotals().overruns,
  );
  new prom.Counter({
    name: `${PREFIX}kernel_refused_flows_total`,
    help: 'Flows of kernel routes (engine: kernel) the kernel reset over limits.perSource or perSourceRate, by reason; read from its counters once per limits.rejectLogInterval.',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const by = kernelRefusedTotals();
      for (const reason of KERNEL_REFUSALS) this.inc({ reason }, by[reason]);
    },
  });
  totalCounter(
    registry,
    `${PREFIX}conntrack_lost_total`,
    'Kernel-routed flows not recorded: the conntrack reader fell behind its 1,048,576-flow queue, or an event did not parse.',
    () => conntrackTotals().dropped + conntrackTotals().malformed,
  );
  totalCounter(registry, `${PREFIX}events_written_total`, 'Events handed to the sinks.', () => {
    return source.recorder.stats().written;
  });
  totalCounter(
    registry,
    `${PREFIX}events_dropped_total`,
    'Events dropped because the queue was full.',
    () => {
      return source.recorder.stats().dropped;
    },
  );
  totalCounter(registry, `${PREFIX}sink_errors_total`, 'Failed sink calls (one per sink per batch).', () => {
    return source.recorder.stats().sinkErrors;
  });
  new prom.Gauge({
    name: `${PREFIX}events_queued`,
    help: 'Events waiting for the next batch to the sinks.',
    registers: [registry],
    collect() {
      this.set(source.recorder.stats().queued);
    },
  });

  // events.retention: rows deleted from the SQLite store, by the bound that deleted them.
  new prom.Counter({
    name: `${PREFIX}events_deleted_total`,
    help: 'Events deleted from the SQLite store by events.retention, by reason (max-age, max-size).',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      const deleted = source.recorder.stats().store?.deleted;
      this.reset();
      this.inc({ reason: 'max-age' }, deleted?.['max-age'] ?? 0);
      this.inc({ reason: 'max-size' }, deleted?.['max-size'] ?? 0);
    },
  });
  if (source.recorder.stats().store) {
    new prom.Gauge({
      name: `${PREFIX}events_store_bytes`,
      help: 'Size of the SQLite event store (pages x page size; the file once checkpointed), with events.retention.',
      registers: [registry],
      collect() {
        this.set(source.recorder.stats().store?.storeBytes ?? 0);
      },
    });
  }

  // The fleet sink (events.nats): summed over the nats sinks open in this process (one, or none).
  const nats = (read: (s: NatsSinkStats) => number) => () => {
    let sum = 0;
    for (const sink of openNatsSinks) sum += read(sink.stats());
    return sum;
  };
  totalCounter(
    registry,
    `${PREFIX}nats_published_total`,
    'Events sent to NATS JetStream (a retry counts again).',
    nats((s) => s.published),
  );
  totalCounter(
    registry,
    `${PREFIX}nats_acknowledged_total`,
    'Events JetStream acknowledged.',
    nats((s) => s.acknowledged),
  );
  totalCounter(
    registry,
    `${PREFIX}nats_outbox_overflowed_total`,
    'Events deleted unsent because the outbox was full.',
    nats((s) => s.overflowed),
  );
  for (const [name, help, read] of [
    ['nats_outbox_events', 'Events waiting in the outbox for an acknowledgement.', nats((s) => s.outbox)],
    [
      'nats_outbox_oldest_age_seconds',
      'How long the oldest event in the outbox has waited.',
      nats((s) => s.oldestAgeMs / 1000),
    ],
    [
      'nats_connected',
      'Whether the nats sink is connected and publishing (1) or not (0).',
      nats((s) => (s.connected ? 1 : 0)),
    ],
  ] as const) {
    new prom.Gauge({
      name: `${PREFIX}${name}`,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  }

  const workers = source.workers;
  if (workers) {
    new prom.Gauge({
      name: `${PREFIX}workers`,
      help: 'Worker processes running (run with workers: above 1).',
      registers: [registry],
      collect() {
        this.set(workers.running());
      },
    });
    totalCounter(
      registry,
      `${PREFIX}worker_restarts_total`,
      'Worker processes started again after one exited.',
      () => workers.restarts(),
    );
  }

  const routes = new Set<string>();
  const routeLabel = (route: string | null): string => {
    if (route === null) return 'none';
    if (routes.has(route)) return route;
    if (routes.size >= MAX_ROUTES) return 'other';
    routes.add(route);
    return route;
  };
  // A subscriber that throws becomes an uncaught exception in the data path: never throw.
  const onFlowEnd = (message: unknown): void => {
    try {
      const e = message as FlowEvent;
      if (e?.type !== 'flow') return;
      const protocol = e.protocol === null ? 'none' : KNOWN_PROTOCOLS.has(e.protocol) ? e.protocol : 'other';
      const route = routeLabel(e.route);
      const action = e.action ?? 'none';
      const reason = e.closeReason ?? 'none';
      const key = `${e.listener}\0${route}\0${action}\0${protocol}\0${reason}`;
      let count = flowCounts.get(key);
      if (!count) {
        const labels = { listener: e.listener, route, action, protocol, close_reason: reason };
        count = { labels, n: 0 };
        flowCounts.set(key, count);
      }
      count.n += e.count > 0 ? e.count : 1;
      if (e.bytesIn > 0) flowBytes.in += e.bytesIn;
      if (e.bytesOut > 0) flowBytes.out += e.bytesOut;
    } catch {
      // a malformed event is not worth a crash; the recorder still has it
    }
  };
  diagnostics.subscribe(flowEnd.name, onFlowEnd);

  let closed = false;
  return {
    registry,
    close() {
      if (closed) return;
      closed = true;
      diagnostics.unsubscribe(flowEnd.name, onFlowEnd);
    },
  };
}
