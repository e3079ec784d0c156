// A UDP tproxy listener: one transparent socket receives every datagram the firewall's
// TPROXY rule diverts to it, whatever its destination. dgram cannot read a datagram's
// original destination, so the addon does (native/udp.cc: recvmmsg, IP_RECVORIGDSTADDR).
//
// Replies must leave from that original destination, address and port, or the attacker's
// stack drops them. IP_PKTINFO can set a reply's source address but not a source port that
// no local socket holds, so each flow gets a socket of its own: IP_TRANSPARENT, bound to
// the original destination (SO_REUSEADDR: flows to the same destination share it), made
// on the flow's first reply and closed with the flow. The kernel may also deliver the
// attacker's next datagrams to that socket (TPROXY prefers a bound socket), so it reads too.
// Both sockets read and write in batches (port.ts).
import type { ListenerConfig } from '../../config/types.js';
import type { Logger } from '../../log.js';
import { formatEndpoint, normalizeIp, socketIp } from '../../net/address.js';
import { udpPort, udpSocket } from '../../net/native.js';
import type { BoundSocket } from '../listener.js';
import type { Downstream, OnDatagram } from './flow.js';
import { UdpBatchPort } from './port.js';

export function bindTproxy(
  l: ListenerConfig,
  host: string,
  port: number,
  onDatagram: OnDatagram,
  log: Logger,
): BoundSocket {
  const fd = udpSocket(host, port, { transparent: true, origDst: true, reuseAddr: true });
  const local = { ip: normalizeIp(host) ?? host, port };
  const bound: BoundSocket = {
    key: `udp|${l.name}|${formatEndpoint({ host, port })}|tproxy`,
    listener: l.name,
    close: () => receiver.close(),
    address: formatEndpoint({ host, port }),
    local: null,
  };
  const receiver = udpPort(fd, (numbers, hosts, payload) => {
    for (let i = 0; i < hosts.length / 2; i++) {
      const src = { ip: socketIp(hosts[i * 2]!) ?? hosts[i * 2]!, port: numbers[i * 4]! };
      const dstHost = hosts[i * 2 + 1]!;
      const dst = dstHost ? { ip: socketIp(dstHost) ?? dstHost, port: numbers[i * 4 + 1]! } : local;
      const bytes = payload.subarray(numbers[i * 4 + 2]!, numbers[i * 4 + 3]!);
      onDatagram(bound, bytes, src, dst, () => replySocket(bound, dst, onDatagram, log));
    }
  });
  return bound;
}

/** A flow's way back: a transparent socket bound to its original destination, made on first use. */
function replySocket(
  bound: BoundSocket,
  dst: { ip: string; port: number },
  onDatagram: OnDatagram,
  log: Logger,
): Downstream {
  let socket: UdpBatchPort | null = null;
  let failed = false;
  const self: Downstream = {
    send(payload, to) {
      if (failed) return;
      if (!socket) {
        try {
          const fd = udpSocket(dst.ip, dst.port, { transparent: true, reuseAddr: true });
          socket = new UdpBatchPort(
            fd,
            (numbers, hosts, batch) => {
              for (let i = 0; i < hosts.length / 2; i++) {
                const h = hosts[i * 2]!;
                const src = { ip: socketIp(h) ?? h, port: numbers[i * 4]! };
                onDatagram(
                  bound,
                  batch.subarray(numbers[i * 4 + 2]!, numbers[i * 4 + 3]!),
                  src,
                  dst,
                  () => self,
                );
              }
            },
            false,
          );
        } catch (err) {
          failed = true;
          log.warn({ err: (err as Error).message, dst }, 'cannot answer from the original destination');
          return;
        }
      }
      socket.send(payload, to);
    },
    close() {
      socket?.close();
      socket = null;
    },
  };
  return self;
}
