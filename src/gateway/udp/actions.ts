// What each action does with a UDP flow. The action is chosen once, on the flow's first
// datagram; `flow.onDatagram` then takes every datagram of the flow (the first included).
// Every datagram back to the attacker passes the amplification guard (reply()).
//
//   forward: one upstream socket per flow to a server of the backend; `none` sends from
//            honeygate's address, `proxy-v2` puts a PROXY v2 DGRAM header before each
//            datagram (go-mmproxy's UDP mode reads exactly that), `transparent` sends from
//            the attacker's address and port (IP_TRANSPARENT). Replies from that server
//            go back through the guard. With the addon the upstream socket is a connected
//            UdpBatchPort (port.ts): batched sends and reads, and the kernel keeps out any
//            datagram that is not the server's; with HONEYGATE_RELAY=off, a dgram socket.
//   capture: records; answers each datagram with `capture.reply` when one is configured.
//   drop, reject: records and answers nothing (UDP has no reset; reject sends no ICMP).
import dgram from 'node:dgram';
import { closeSync } from 'node:fs';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Action, BackendConfig } from '../../config/types.js';
import { socketName, udpConnect, udpSocket } from '../../net/native.js';
import { encodeProxyV2, PP2_TYPE } from '../../net/proxy-protocol.js';
import { relayWanted } from '../relay.js';
import type { UdpFlow } from './flow.js';
import type { AmplificationGuard } from './guard.js';
import { UdpBatchPort } from './port.js';

/** Sends `payload` to the flow's attacker if the guard allows it; counts it either way. */
export function reply(flow: UdpFlow, guard: AmplificationGuard, payload: Buffer): void {
  if (flow.closed) return;
  const held = guard.allow(flow.src.ip, payload.length);
  if (held) return flow.held(payload.length, held);
  flow.sent(payload.length);
  flow.downstream.send(payload, flow.src);
}

export function runUdpAction(flow: UdpFlow, action: Action, guard: AmplificationGuard): void {
  flow.action = action.type;
  switch (action.type) {
    case 'forward':
      return forwardUdp(flow, action.backend, guard, 0);
    case 'capture': {
      const answer = action.capture.reply;
      flow.onDatagram = answer ? () => reply(flow, guard, answer) : () => {};
      flow.closeReason = 'capture-done';
      return;
    }
    case 'drop':
      flow.onDatagram = () => {};
      flow.closeReason = 'dropped';
      return;
    case 'reject':
      flow.onDatagram = () => {};
      flow.closeReason = 'rejected';
      return;
  }
}

const MAX_FALLBACK_DEPTH = 8;

function forwardUdp(flow: UdpFlow, backendName: string, guard: AmplificationGuard, depth: number): void {
  const pool = flow.runtime.pools.get(backendName);
  if (!pool) return flow.finish('error', `unknown backend ${backendName}`);
  const backend = pool.backend;
  flow.action = 'forward';
  flow.backend = backend.name;
  flow.sourceMode = backend.source;
  const family = net.isIP(flow.src.ip) as 4 | 6;
  // Transparent keeps the attacker's family; the others may cross families.
  const exclude =
    backend.source === 'transparent'
      ? new Set(pool.servers.filter((s) => net.isIP(s.endpoint.host) !== family).map((s) => s.key))
      : undefined;
  const server = pool.pick(flow.src.ip, exclude);
  if (!server) return fallback(flow, backend, guard, depth);
  pool.acquire(server);
  flow.defer(() => pool.release(server));
  const to = server.endpoint;
  flow.server = `${to.host.includes(':') ? `[${to.host}]` : to.host}:${to.port}`;
  const header =
    backend.source === 'proxy-v2'
      ? encodeProxyV2({
          family: net.isIP(flow.src.ip) === 4 && net.isIP(flow.dst.ip) === 4 ? 'UDP4' : 'UDP6',
          src: { ip: flow.src.ip, port: flow.src.port },
          dst: { ip: flow.dst.ip, port: flow.dst.port },
          tlvs: [{ type: PP2_TYPE.UNIQUE_ID, value: Buffer.from(flow.id, 'ascii') }],
        })
      : null;
  const serverFamily = net.isIP(to.host) as 4 | 6;
  try {
    if (relayWanted()) forwardBatched(flow, backend, guard, to, serverFamily, header);
    else forwardDgram(flow, backend, guard, to, serverFamily, header);
  } catch (err) {
    return flow.finish('error', `upstream socket: ${(err as Error).message}`);
  }
  flow.closeReason = 'idle-timeout';
}

/** The addon's way: a connected socket, datagrams out in sendmmsg batches, replies in recvmmsg batches. */
function forwardBatched(
  flow: UdpFlow,
  backend: BackendConfig,
  guard: AmplificationGuard,
  to: { host: string; port: number },
  family: 4 | 6,
  header: Buffer | null,
): void {
  const fd =
    backend.source === 'transparent'
      ? transparentSocket(flow, `${flow.src.ip}|${flow.src.port}|${flow.server}`)
      : udpSocket(family === 6 ? '::' : '0.0.0.0', 0, {});
  try {
    udpConnect(fd, to.host, to.port);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  const upstream = new UdpBatchPort(
    fd,
    (numbers, _hosts, payload) => {
      for (let i = 0; i < numbers.length; i += 4)
        reply(flow, guard, payload.subarray(numbers[i + 2]!, numbers[i + 3]!));
    },
    true,
    (errno) => {
      // ECONNREFUSED: an ICMP port unreachable from the honeypot. Kept, not fatal: UDP has no
      // connection, and the attacker may still send.
      flow.detail ??= `upstream: ${errnoText(errno)}`;
    },
  );
  flow.upstream = upstream;
  flow.onDatagram = header
    ? (payload) => upstream.send(Buffer.concat([header, payload]))
    : (payload) => upstream.send(payload);
}

function errnoText(errno: number): string {
  const name = Object.entries(osConstants.errno).find(([, n]) => n === errno)?.[0];
  return name ? `send ${name}` : `send errno ${errno}`;
}

/** Node's way (HONEYGATE_RELAY=off): a dgram socket, a syscall and a callback per datagram. */
function forwardDgram(
  flow: UdpFlow,
  backend: BackendConfig,
  guard: AmplificationGuard,
  to: { host: string; port: number },
  family: 4 | 6,
  header: Buffer | null,
): void {
  const upstream = openUpstream(flow, backend, family);
  flow.upstream = upstream;
  upstream.on('error', (err: NodeJS.ErrnoException) => {
    // ECONNREFUSED: an ICMP port unreachable from the honeypot. Kept, not fatal: UDP has no
    // connection, and the attacker may still send.
    flow.detail ??= `upstream: ${err.message}`;
  });
  upstream.on('message', (msg, rinfo) => {
    // Only the server's own datagrams: anyone else who found the port is not the honeypot.
    if (rinfo.port !== to.port || net.isIP(rinfo.address) === 0) return;
    reply(flow, guard, msg);
  });
  flow.onDatagram = (payload) => {
    const out = header ? Buffer.concat([header, payload]) : payload;
    upstream.send(out, to.port, to.host, (err) => {
      if (err) flow.detail ??= `upstream: ${err.message}`;
    });
  };
}

/** A socket towards the server: from the attacker's address (transparent) or an ephemeral one of ours. */
function openUpstream(flow: UdpFlow, backend: BackendConfig, family: 4 | 6): dgram.Socket {
  const type = family === 6 ? 'udp6' : 'udp4';
  if (backend.source !== 'transparent') {
    const s = dgram.createSocket(type);
    s.bind(0);
    return s;
  }
  // Unconnected: any server's replies reach whichever socket holds the address and port.
  const fd = transparentSocket(flow, `${flow.src.ip}|${flow.src.port}`);
  const s = dgram.createSocket(type);
  s.bind({ fd });
  return s;
}

// The attacker's address and port each live transparent upstream holds (one process: UDP
// listeners run with workers: 1). A scanner sends from one port to many decoys, and decoys
// routed to one honeypot would make sockets of one 4-tuple; the kernel hands every reply to
// the newest, and the older flows' answers would leave from the wrong decoy.
const heldTuples = new Set<string>();

/** The attacker's address and port, or when a live flow holds them (`key`), another port. */
function transparentSocket(flow: UdpFlow, key: string): number {
  if (!heldTuples.has(key)) {
    const fd = udpSocket(flow.src.ip, flow.src.port, { transparent: true, reuseAddr: true, mark: 0 });
    heldTuples.add(key);
    flow.defer(() => heldTuples.delete(key));
    return fd;
  }
  const fd = udpSocket(flow.src.ip, 0, { transparent: true, mark: 0 });
  let from: number;
  try {
    from = socketName(fd).port;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  flow.detail ??= `the honeypot sees source port ${from}: ${flow.src.port} was in use towards ${flow.server}`;
  return fd;
}

function fallback(flow: UdpFlow, backend: BackendConfig, guard: AmplificationGuard, depth: number): void {
  const why = 'every server is down';
  if (!backend.fallback || depth >= MAX_FALLBACK_DEPTH) return flow.finish('server-unavailable', why);
  flow.detail ??= `backend ${backend.name}: ${why}; fell back to ${backend.fallback}`;
  if (backend.fallback === 'capture') {
    flow.action = 'capture';
    flow.onDatagram = () => {};
    flow.closeReason = 'capture-done';
    return;
  }
  forwardUdp(flow, backend.fallback, guard, depth + 1);
}
