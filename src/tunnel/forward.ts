// Forward over a tunnel (the sensor's side of a flow): one CONNECT stream to the hub, the
// PROXY v2 header first (the attacker's src and dst, UNIQUE_ID = this flow's event id, the
// sensor's name), then what an earlier stage read (a peek), then the pump both ways. The
// native relay cannot speak HTTP/2, so the flow is Node's (`flow.downstream` takes it).
import type { BackendConfig } from '../config/types.js';
import type { Flow } from '../gateway/flow.js';
import { pump } from '../gateway/pump.js';
import { formatEndpoint } from '../net/address.js';
import { encodeProxyV2, PP2_TYPE } from '../net/proxy-protocol.js';
import type { TunnelClient } from './sensor.js';
import { NGHTTP2_CONNECT_ERROR, PP2_TYPE_SENSOR, streamAsSocket } from './session.js';

/** `fallback` is forward.ts's: the backend's fallback when no tunnel is up. */
export function forwardTunnel(
  flow: Flow,
  backend: BackendConfig,
  client: TunnelClient | null,
  fallback: (why: string) => void,
): void {
  flow.action = 'forward';
  flow.backend = backend.name;
  flow.sourceMode = 'tunnel';
  const stream = client?.open(flow, formatEndpoint({ host: flow.dst.ip, port: flow.dst.port })) ?? null;
  if (!client || !stream) return fallback(`no tunnel to hub ${client?.hub ?? '(none)'} is up`);
  flow.server = client.hub;
  const tlvs = [
    { type: PP2_TYPE.UNIQUE_ID, value: Buffer.from(flow.id, 'ascii') },
    { type: PP2_TYPE_SENSOR, value: Buffer.from(client.sensorName, 'utf8') },
  ];
  // The hub reset its flow (a reject route, a honeypot's reset): reset the attacker too,
  // before the stream's error ends the flow with a FIN.
  stream.on('close', () => {
    if (stream.rstCode === NGHTTP2_CONNECT_ERROR && !flow.closed) flow.reset();
  });
  const upstream = streamAsSocket(stream);
  upstream.write(encodeProxyV2({ command: 'PROXY', src: flow.src, dst: flow.dst, tlvs }));
  pump(flow, upstream);
}
