// Forward: pick a server of the backend, dial it in the backend's source mode, pump.
// A failed connect tries another server (retries); when none is left, or every server is
// down, the backend's fallback takes the flow (another backend, or capture).

import net from 'node:net';
import type { BackendConfig } from '../config/types.js';
import { dial, planDial } from '../gateway/dial.js';
import type { Flow } from '../gateway/flow.js';
import { pump } from '../gateway/pump.js';
import { type DialPlan, isFdExhaustion } from '../gateway/relay.js';
import { startRecording } from '../record/flow.js';
import { forwardTunnel } from '../tunnel/forward.js';
import { capture } from './capture.js';
import { CAPTURE_DEFAULTS, type CaptureOptions } from './definitions/index.js';

const MAX_FALLBACK_DEPTH = 8; // config validation rejects cycles; this is a second guard

export function forward(flow: Flow, backendName: string, depth = 0): void {
  const rt = flow.runtime;
  const pool = rt.pools.get(backendName);
  if (!pool) return flow.finish('error', `unknown backend ${backendName}`);
  const backend = pool.backend;
  if (backend.tunnel) {
    const client = rt.tunnels?.client(backend.name) ?? null;
    return forwardTunnel(flow, backend, client, (why) => fallback(flow, backend, why, depth));
  }
  flow.action = 'forward';
  flow.backend = backend.name;
  flow.sourceMode = backend.source;
  startRecording(flow, flow.route?.record ?? backend.record);

  const tried = new Set<string>();
  const limits = rt.config.limits;
  let lastError = 'every server is down';
  if (backend.source === 'transparent') {
    // A transparent connection keeps the attacker's address family: skip the other family.
    const family = net.isIP(flow.src.ip);
    for (const s of pool.servers) if (net.isIP(s.endpoint.host) !== family) tried.add(s.key);
    if (tried.size === pool.servers.length)
      lastError = `no IPv${family} server (source: transparent keeps the attacker's address family)`;
  }
  // Callbacks rather than an async loop: this runs for every flow, and the suspended
  // async frames would leave garbage behind on every one.
  let attempt = 0;
  const next = (): void => {
    const server = attempt++ <= backend.retries ? pool.pick(flow.src.ip, tried) : null;
    if (!server) return fallback(flow, backend, lastError, depth);
    tried.add(server.key);
    // Counted from the dial on, so leastconn spreads a burst of flows still connecting.
    pool.acquire(server);
    // Called back from the relay or a promise: a throw must end the flow, not escape.
    const failed = (err: unknown): void => {
      pool.release(server);
      if (flow.closed) return; // the attacker left while we were dialing
      // No descriptor for the upstream socket: our shortage, not the honeypot's. Another
      // server or a fallback would not help; the flow ends and new ones wait (admission).
      if (isFdExhaustion(err)) return flow.finish('fd-exhausted', (err as Error).message);
      lastError = (err as Error).message;
      warnThrottled(flow, backend, server.key, lastError);
      guard(flow, next);
    };
    const connected = (upstream: net.Socket | null): void => {
      if (flow.closed) {
        pool.release(server);
        upstream?.destroy(); // the attacker left while we were dialing
        return;
      }
      flow.defer(() => pool.release(server));
      flow.server = server.key;
      const from = upstream ? (upstream.localPort ?? 0) : flow.conn!.fromPort;
      if (backend.source === 'transparent' && from !== 0 && from !== flow.src.port) {
        // Another flow from the same address and port holds that 4-tuple: openUpstream fell back.
        flow.detail ??= `the honeypot sees source port ${from}: ${flow.src.port} was in use towards ${server.key}`;
      }
      if (upstream) return guard(flow, () => pump(flow, upstream));
      flow.pending = []; // sent by the relay with the header
      flow.defer(flow.runtime.deadlines.watch(flow));
    };
    try {
      // The relay holds (or takes back) the attacker's socket: it dials and copies natively.
      // A recorded flow stays with Node, whose pump records it (docs/recording.md, Cost).
      if (!flow.recording && (flow.relayed || flow.handBack())) {
        flow.conn!.forward(
          server.endpoint,
          relayPlan(flow, planDial(backend.source, flow, server.endpoint)),
          backend.connectTimeoutMs,
          flow.relayCaps(limits),
          (err) => (err ? failed(err) : connected(null)),
        );
      } else {
        dial(backend.source, flow, server.endpoint, backend.connectTimeoutMs)
          .then(connected, failed)
          .catch((err) => flow.finish('error', String(err)));
      }
    } catch (err) {
      failed(err); // a plan that must not be dialed (planDial throws), or a relay error
    }
  };
  next();
}

/** Runs a step; a throw ends the flow with an error event. */
function guard(flow: Flow, step: () => void): void {
  try {
    step();
  } catch (err) {
    flow.finish('error', String(err));
  }
}

/**
 * The dial plan with the bytes an earlier stage read (peek, PROXY header) after its header.
 * They stay pending until a dial succeeds: another server (a retry) gets them too.
 */
function relayPlan(flow: Flow, plan: DialPlan): DialPlan {
  const pending = flow.pending;
  if (pending.length === 0) return plan;
  return { ...plan, header: Buffer.concat(plan.header ? [plan.header, ...pending] : pending) };
}

function fallback(flow: Flow, backend: BackendConfig, why: string, depth: number): void {
  flow.detail = `backend ${backend.name}: ${why}`;
  if (backend.fallback === 'capture') return capture(flow, fallbackCapture(flow));
  if (backend.fallback && depth < MAX_FALLBACK_DEPTH) return forward(flow, backend.fallback, depth + 1);
  flow.finish('server-unavailable');
}

/** Capture used as a fallback: keeps as many bytes as the event can hold. */
function fallbackCapture(flow: Flow): CaptureOptions {
  return { ...CAPTURE_DEFAULTS, maxBytes: flow.runtime.config.limits.firstBytes };
}

// A dead honeypot under a scan would otherwise log once per flow.
const lastWarned = new Map<string, number>();
function warnThrottled(flow: Flow, backend: BackendConfig, server: string, message: string): void {
  const key = `${backend.name}/${server}`;
  const now = Date.now();
  if ((lastWarned.get(key) ?? 0) > now - 10_000) return;
  lastWarned.set(key, now);
  flow.runtime.log.warn(
    { code: 'HG_ERR_UPSTREAM_CONNECT', backend: backend.name, server },
    `cannot reach honeypot ${server} of backend ${backend.name}: ${message}`,
  );
}
