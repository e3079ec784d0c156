// Upstream dialers, one per backend `source:` mode. Each returns a connected socket whose
// first bytes (if any) announce the attacker's address; the pump takes it from there.
import net from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Endpoint, SourceMode } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import { openUpstream } from '../net/native.js';
import { encodeProxyV1, encodeProxyV2, PP2_TYPE } from '../net/proxy-protocol.js';
import type { Flow } from './flow.js';

export type Dialer = (flow: Flow, server: Endpoint, timeoutMs: number) => Promise<net.Socket>;

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

const none: Dialer = (_flow, server, timeoutMs) => connect(server, timeoutMs);

const proxyV1: Dialer = async (flow, server, timeoutMs) => {
  const socket = await connect(server, timeoutMs);
  socket.write(encodeProxyV1(flow.src, flow.dst));
  return socket;
};

const proxyV2: Dialer = async (flow, server, timeoutMs) => {
  const socket = await connect(server, timeoutMs);
  // UNIQUE_ID carries the event id, so a honeypot's own logs join honeygate's events.
  const tlvs = [{ type: PP2_TYPE.UNIQUE_ID, value: Buffer.from(flow.id, 'ascii') }];
  socket.write(encodeProxyV2({ command: 'PROXY', src: flow.src, dst: flow.dst, tlvs }));
  return socket;
};

/** From the attacker's own ip (and port, when free): the honeypot sees them on the wire. */
const transparent: Dialer = (flow, server, timeoutMs) => {
  const where = `${server.host}:${server.port}`;
  const family = net.isIP(server.host) as 4 | 6;
  if (!flow.src.ip) {
    return Promise.reject(
      new HoneygateError('HG_ERR_UPSTREAM_CONNECT', `${where}: the source address is unknown`),
    );
  }
  // A trusted upstream's PROXY header names the source: never send a SYN from an address
  // no attacker can have (or from the honeypot itself, a LAND packet).
  const range = ipaddr.parse(flow.src.ip).range();
  if (['unspecified', 'broadcast', 'multicast', 'loopback'].includes(range) || flow.src.ip === server.host) {
    const why = `will not connect from ${flow.src.ip} (${flow.src.ip === server.host ? 'the server itself' : range})`;
    return Promise.reject(new HoneygateError('HG_ERR_UPSTREAM_CONNECT', `${where}: ${why}`));
  }
  if (net.isIP(flow.src.ip) !== family) {
    const why = `the attacker ${flow.src.ip} is IPv${net.isIP(flow.src.ip)}, the server IPv${family}: a transparent connection keeps the family`;
    return Promise.reject(new HoneygateError('HG_ERR_UPSTREAM_CONNECT', `${where}: ${why}`));
  }
  return openUpstream({
    family,
    host: server.host,
    port: server.port,
    localAddress: flow.src.ip,
    localPort: flow.src.port,
    transparent: true,
    timeoutMs,
  });
};

export const DIALERS: Record<SourceMode, Dialer> = {
  none,
  'proxy-v1': proxyV1,
  'proxy-v2': proxyV2,
  transparent,
};
