// Upstream dials, one plan per backend `source:` mode: what to send first (a PROXY header
// announcing the attacker) and where to connect from (transparent: the attacker's address).
// Node dials a plan here; the native relay dials the same plan (relay.ts).
import net from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Endpoint, SourceMode } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import { openUpstream } from '../net/native.js';
import { encodeProxyV1, encodeProxyV2, PP2_TYPE } from '../net/proxy-protocol.js';
import { pooledReads } from '../net/read-pool.js';
import { isTunnelStream } from '../tunnel/session.js';
import type { Flow } from './flow.js';
import type { DialPlan } from './relay.js';

/** Connects with a deadline. Resolves with the socket paused; rejects with HG_ERR_UPSTREAM_CONNECT. */
export function connect(server: Endpoint, timeoutMs: number, extra: Partial<net.TcpNetConnectOpts> = {}) {
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ host: server.host, port: server.port, allowHalfOpen: true, ...extra });
    const where = `${server.host}:${server.port}`;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new HoneygateError('HG_ERR_UPSTREAM_CONNECT', `${where}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new HoneygateError('HG_ERR_UPSTREAM_CONNECT', `${where}: ${err.message}`, { cause: err }));
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => {}); // replaced by the pump's handler; a socket is never without one
      socket.pause();
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

/** What a dial in each source mode sends first and connects from. Throws HG_ERR_UPSTREAM_CONNECT when it must not be made. */
const PLANS: Record<SourceMode, (flow: Flow, server: Endpoint) => DialPlan> = {
  none: () => ({ header: null, local: null, transparent: false }),
  'proxy-v1': (flow) => ({ header: encodeProxyV1(flow.src, flow.dst), local: null, transparent: false }),
  // UNIQUE_ID carries the event id, so a honeypot's own logs join honeygate's events.
  'proxy-v2': (flow) => {
    const tlvs = [{ type: PP2_TYPE.UNIQUE_ID, value: Buffer.from(flow.id, 'ascii') }];
    return {
      header: encodeProxyV2({ command: 'PROXY', src: flow.src, dst: flow.dst, tlvs }),
      local: null,
      transparent: false,
    };
  },
  // From the attacker's own ip (and port, when free): the honeypot sees them on the wire.
  transparent: (flow, server) => {
    const where = `${server.host}:${server.port}`;
    const refuse = (why: string) => new HoneygateError('HG_ERR_UPSTREAM_CONNECT', `${where}: ${why}`);
    if (!flow.src.ip) throw refuse('the source address is unknown');
    // A proxy peer's PROXY header names the source: never send a SYN from an address
    // no attacker can have (or from the honeypot itself, a LAND packet).
    const range = ipaddr.parse(flow.src.ip).range();
    if (
      ['unspecified', 'broadcast', 'multicast', 'loopback'].includes(range) ||
      flow.src.ip === server.host
    ) {
      throw refuse(
        `will not connect from ${flow.src.ip} (${flow.src.ip === server.host ? 'the server itself' : range})`,
      );
    }
    const family = net.isIP(server.host);
    if (net.isIP(flow.src.ip) !== family) {
      throw refuse(
        `the attacker ${flow.src.ip} is IPv${net.isIP(flow.src.ip)}, the server IPv${family}: a transparent connection keeps the family`,
      );
    }
    return { header: null, local: flow.src, transparent: true };
  },
};

export function planDial(mode: SourceMode, flow: Flow, server: Endpoint): DialPlan {
  return PLANS[mode](flow, server);
}

/** Node's dial: a connected, paused socket that has sent the plan's header. */
export async function dial(
  mode: SourceMode,
  flow: Flow,
  server: Endpoint,
  timeoutMs: number,
): Promise<net.Socket> {
  const plan = planDial(mode, flow, server);
  // Into a tunnel stream, the honeypot's bytes are read into reused buffers (read-pool.ts);
  // a recording keeps its chunks, so a recorded flow reads as usual.
  const onread =
    !flow.recording && !flow.relayed && isTunnelStream(flow.downstream) ? pooledReads() : undefined;
  if (plan.transparent && plan.local) {
    return openUpstream({
      family: net.isIP(server.host) as 4 | 6,
      host: server.host,
      port: server.port,
      localAddress: plan.local.ip,
      localPort: plan.local.port,
      transparent: true,
      timeoutMs,
      onread,
    });
  }
  const socket = await connect(server, timeoutMs, onread ? { onread } : {});
  if (plan.header) socket.write(plan.header);
  return socket;
}
