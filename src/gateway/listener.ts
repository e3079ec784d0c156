// Listeners: ordinary sockets on every configured address and port, and for a tproxy
// listener one transparent socket per address, which receives every flow the firewall
// diverts (its local address is the flow's original destination). Each socket is keyed
// by its address so a reload keeps the sockets it still needs (even when the listener
// that owns the address was renamed), opens new ones and closes the rest, without
// dropping a connection on a kept port.

import { closeSync } from 'node:fs';
import net from 'node:net';
import type { Endpoint, ListenerConfig } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import type { Address } from '../events/event.js';
import { formatEndpoint, socketIp } from '../net/address.js';
import { listenSocket, relayBoundary, socketHint, socketName } from '../net/native.js';

export type OnConnection = (socket: net.Socket, bound: BoundSocket) => void;

export interface BoundSocket {
  key: string;
  listener: string; // the owning listener's name; a reload may change it
  close: () => void; // stops listening
  address: string; // the address actually bound (port 0 resolved)
  /**
   * Every flow's local address when the socket is bound to one address (not a wildcard, not
   * transparent): the flow's dst without a getsockname() per flow. null: ask the socket.
   */
  local: Address | null;
}

/**
 * The address; port 0 (tests: the kernel picks) is one socket per listener, and a
 * transparent socket never stands in for an ordinary one on the same address.
 */
export function socketKey(listener: string, e: Endpoint, transparent = false): string {
  const key = e.port === 0 ? `${listener}|${formatEndpoint(e)}` : formatEndpoint(e);
  return transparent ? `tproxy|${key}` : key;
}

/**
 * What a listener asks of the native relay (relay.ts's Relay is it): accept on an fd, and
 * stop. Named here so that this module does not import relay.ts, which imports BoundSocket.
 */
export interface RelayListen {
  /** Accepts on fd for `bound` from now on; returns the tag that unlisten() takes. */
  listen(fd: number, bound: BoundSocket, flags: number): number;
  unlisten(tag: number): void;
}

/** How a listener's sockets are accepted: by the native relay when there is one, else by Node. */
export interface Acceptor {
  onConnection: OnConnection;
  relay: RelayListen | null;
  shared: boolean; // SO_REUSEPORT: every worker process binds the same addresses
  /** Node's accept() failed on `bound` (EMFILE: libuv closed the queued connections itself). */
  onAcceptError?: (err: NodeJS.ErrnoException, bound: BoundSocket) => void;
}

/** BoundSocket.local: the bound address, unless it is a wildcard or a transparent socket's. */
function fixedLocal(host: string, port: number, transparent: boolean): Address | null {
  const ip = socketIp(host);
  return !transparent && ip && ip !== '0.0.0.0' && ip !== '::' ? { ip, port } : null;
}

/** Every socket a listener needs; `transparent` for a tproxy listener's. */
export function endpointsOf(l: ListenerConfig): { e: Endpoint; transparent: boolean }[] {
  if (l.tproxy) {
    const port = l.tproxy.port;
    return l.tproxy.addresses.map((host) => ({ e: { host, port }, transparent: true }));
  }
  return l.bind.map((e) => ({ e, transparent: false }));
}

const BACKLOG = 4096;

/** Binds one endpoint; rejects with HG_ERR_LISTEN naming it. */
export function bindOne(
  l: ListenerConfig,
  e: Endpoint,
  acceptor: Acceptor,
  transparent = false,
): Promise<BoundSocket> {
  const listener = l.name;
  const { onConnection, relay, shared } = acceptor;
  if (relay) return Promise.resolve(bindRelayed(l, e, relay, transparent, shared));
  return new Promise((resolve, reject) => {
    // pauseOnConnect: nothing is read before admission has looked at the flow.
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) =>
      onConnection(socket, bound),
    );
    const bound: BoundSocket = {
      key: socketKey(listener, e, transparent),
      listener,
      close: () => server.close(),
      address: '',
      local: null,
    };
    server.once('error', (err: NodeJS.ErrnoException) => {
      server.close();
      const where = `listener ${listener}: ${formatEndpoint(e)}`;
      reject(
        new HoneygateError('HG_ERR_LISTEN', `${where}: ${err.message}${socketHint(err.code)}`, {
          cause: err,
        }),
      );
    });
    const listening = () => {
      server.removeAllListeners('error');
      // After listen, an error is a failed accept (EMFILE, ...); connections' own are handled there.
      server.on('error', (err: NodeJS.ErrnoException) => acceptor.onAcceptError?.(err, bound));
      const a = server.address() as net.AddressInfo;
      bound.address = formatEndpoint({ host: a.address, port: a.port });
      bound.local = fixedLocal(a.address, a.port, transparent);
      resolve(bound);
    };
    if (transparent || shared) {
      // Node cannot set IP_TRANSPARENT, nor SO_REUSEPORT before Node 22.12: the addon binds
      // and listens, Node adopts the fd.
      let fd: number;
      try {
        fd = listenSocket(e.host, e.port, { transparent, reusePort: shared, backlog: BACKLOG });
      } catch (err) {
        const where = `listener ${listener}: ${transparent ? 'transparent ' : ''}${formatEndpoint(e)}`;
        reject(new HoneygateError('HG_ERR_LISTEN', `${where}: ${(err as Error).message}`, { cause: err }));
        return;
      }
      // For an fd, Node takes the backlog only as the positional argument (else 511).
      server.listen({ fd }, BACKLOG, listening);
      return;
    }
    // ipv6Only: "[::]:80" means IPv6; IPv4 is bound by its own "0.0.0.0:80" entry.
    server.listen(
      { host: e.host, port: e.port, ipv6Only: e.host.includes(':'), backlog: BACKLOG },
      listening,
    );
  });
}

/** The addon binds and listens; the relay accepts (the same checks as Node's listen). */
function bindRelayed(
  l: ListenerConfig,
  e: Endpoint,
  relay: RelayListen,
  transparent: boolean,
  shared: boolean,
) {
  let fd = -1;
  try {
    fd = listenSocket(e.host, e.port, { transparent, reusePort: shared, backlog: BACKLOG });
    const a = socketName(fd);
    const local = fixedLocal(a.host, a.port, transparent);
    const bound: BoundSocket = {
      key: socketKey(l.name, e, transparent),
      listener: l.name,
      close: () => relay.unlisten(tag),
      address: formatEndpoint({ host: a.host, port: a.port }),
      local,
    };
    const listen = relayBoundary().listen;
    const flags = (local ? 0 : listen.local) | (l.originalDst ? listen.originalDst : 0);
    const tag = relay.listen(fd, bound, flags);
    return bound;
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    const where = `listener ${l.name}: ${transparent ? 'transparent ' : ''}${formatEndpoint(e)}`;
    throw new HoneygateError('HG_ERR_LISTEN', `${where}: ${(err as Error).message}`, { cause: err });
  }
}

/** Binds every endpoint of the listeners not already in `existing`; all or nothing. */
export async function bindAll(
  listeners: ListenerConfig[],
  existing: ReadonlySet<string>,
  acceptor: Acceptor,
): Promise<BoundSocket[]> {
  const opened: BoundSocket[] = [];
  try {
    for (const l of listeners) {
      for (const { e, transparent } of endpointsOf(l)) {
        if (existing.has(socketKey(l.name, e, transparent))) continue;
        opened.push(await bindOne(l, e, acceptor, transparent));
      }
    }
  } catch (err) {
    for (const b of opened.reverse()) b.close();
    throw err;
  }
  return opened;
}
